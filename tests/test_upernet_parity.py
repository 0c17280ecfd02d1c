"""Our Feature2Pyramid, UPerHead and FCNHead equal mmsegmentation 1.2.2's with the same weights."""

from __future__ import annotations

import pytest
import torch

from aselect_bench.heads.upernet import FCNHead, Feature2Pyramid, UPerHead
from tests.mmseg_reference import import_mmseg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # mmseg's deprecation/alignment notes

BN = dict(type="BN", requires_grad=True)
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def mm():
    return import_mmseg()


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so the comparison exercises every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name
                        else torch.randn(t.shape, generator=g) * 0.2)
    return module.eval()


def copy_into(ours: torch.nn.Module, ref: torch.nn.Module) -> torch.nn.Module:
    """Load our state dict into the mmseg module: the names must match one to one."""
    result = ref.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ref.eval()


def pyramid(batch: int, channels, h: int, w: int, seed: int = 0):
    """Four levels ``[B, C_i, 4h, 4w] ... [B, C_i, h/2, w/2]`` like Feature2Pyramid's output."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, int(h * s), int(w * s), generator=g) for c, s in zip(channels, (4, 2, 1, 0.5))]


@pytest.mark.parametrize("h,w", [(4, 4), (6, 10), (8, 8), (14, 6)])
def test_upernet_head_equals_mmseg(mm, h, w):
    ours = randomize(UPerHead([24, 24, 24, 24], channels=16, num_classes=7))
    ref = copy_into(ours, mm.UPerHead(in_channels=[24] * 4, in_index=[0, 1, 2, 3], channels=16, num_classes=7,
                                      pool_scales=(1, 2, 3, 6), dropout_ratio=0.1, norm_cfg=BN,
                                      align_corners=False))
    inputs = pyramid(2, [24] * 4, h, w)
    with torch.no_grad():
        out = ours(inputs)
        assert out.shape == (2, 7, 4 * h, 4 * w)
        torch.testing.assert_close(out, ref(inputs), **TOL)


def test_upernet_head_with_unequal_channels_and_align_corners(mm):
    channels = [8, 12, 16, 20]
    ours = randomize(UPerHead(channels, channels=10, num_classes=5, pool_scales=(1, 3), align_corners=True), 3)
    ref = copy_into(ours, mm.UPerHead(in_channels=channels, in_index=[0, 1, 2, 3], channels=10, num_classes=5,
                                      pool_scales=(1, 3), norm_cfg=BN, align_corners=True))
    inputs = pyramid(1, channels, 6, 4, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs), ref(inputs), **TOL)


@pytest.mark.parametrize("num_convs,concat_input", [(1, False), (2, True)])
def test_fcn_auxiliary_head_equals_mmseg(mm, num_convs, concat_input):
    ours = randomize(FCNHead(24, 12, 7, in_index=2, num_convs=num_convs, concat_input=concat_input), 1)
    ref = copy_into(ours, mm.FCNHead(in_channels=24, in_index=2, channels=12, num_convs=num_convs,
                                     concat_input=concat_input, dropout_ratio=0.1, num_classes=7, norm_cfg=BN,
                                     align_corners=False))
    for h, w in [(4, 4), (6, 10)]:
        inputs = pyramid(2, [24] * 4, h, w, seed=2)
        with torch.no_grad():
            out = ours(inputs)
            assert out.shape == (2, 7, h, w)
            torch.testing.assert_close(out, ref(inputs), **TOL)


def test_fcn_head_defaults_are_the_upernet_configs():
    head = FCNHead(32, num_classes=150)
    assert head.in_index == 2 and head.channels == 256 and not head.concat_input and len(head.convs) == 1
    assert head.dropout.p == 0.1


@pytest.mark.parametrize("rescales", [(4, 2, 1, 0.5), (2, 1, 0.5, 0.25)])
@pytest.mark.parametrize("h,w", [(8, 8), (8, 12)])
def test_feature2pyramid_equals_mmseg(mm, rescales, h, w):
    ours = randomize(Feature2Pyramid(16, rescales=rescales))
    ref = copy_into(ours, mm.Feature2Pyramid(16, rescales=list(rescales), norm_cfg=BN))
    grids = [torch.randn(2, 16, h, w) for _ in range(4)]
    with torch.no_grad():
        outs, expected = ours(grids), ref(grids)
    assert [o.shape[-2:] for o in outs] == [(int(h * s), int(w * s)) for s in rescales]
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a, b, **TOL)


def test_neck_and_head_end_to_end_equal_mmseg(mm):
    """Token grids -> Feature2Pyramid -> UPerHead / FCNHead, both stacks with the same weights."""
    neck, head, aux = (randomize(Feature2Pyramid(16)), randomize(UPerHead([16] * 4, 8, 6), 1),
                       randomize(FCNHead(16, 8, 6), 2))
    ref_neck = copy_into(neck, mm.Feature2Pyramid(16, norm_cfg=BN))
    ref_head = copy_into(head, mm.UPerHead(in_channels=[16] * 4, in_index=[0, 1, 2, 3], channels=8, num_classes=6,
                                           norm_cfg=BN))
    ref_aux = copy_into(aux, mm.FCNHead(in_channels=16, in_index=2, channels=8, num_convs=1, concat_input=False,
                                        num_classes=6, norm_cfg=BN))
    grids = [torch.randn(1, 16, 4, 6) for _ in range(4)]
    with torch.no_grad():
        ours, ref = neck(grids), ref_neck(grids)
        torch.testing.assert_close(head(ours), ref_head(ref), **TOL)
        torch.testing.assert_close(aux(ours), ref_aux(ref), **TOL)


def test_initialisation_follows_mmseg():
    head = UPerHead([16] * 4, 32, 10)
    assert torch.all(head.conv_seg.bias == 0) and 0.005 < head.conv_seg.weight.std().item() < 0.02
    assert torch.all(head.bottleneck.bn.weight == 1) and torch.all(head.bottleneck.bn.bias == 0)
    fan_out = 32 * 3 * 3  # kaiming normal, fan_out, ReLU gain: std = sqrt(2 / fan_out)
    assert head.fpn_bottleneck.conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)


def test_train_mode_gradients_reach_every_parameter():
    neck, head = Feature2Pyramid(8), UPerHead([8] * 4, 8, 3)
    out = head(neck([torch.randn(2, 8, 4, 4) for _ in range(4)]))
    out.square().mean().backward()
    for name, p in [*neck.named_parameters(), *head.named_parameters()]:
        assert p.grad is not None, name
