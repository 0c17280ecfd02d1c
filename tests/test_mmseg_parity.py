"""Our UperNet head, FCN auxiliary head, Feature2Pyramid neck and IoU metrics equal mmsegmentation's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aselect_bench.heads.upernet import FCNHead, Feature2Pyramid, UPerHead
from aselect_bench.metrics import SegmentationMetrics
from tests.mmseg_reference import import_mmseg

BN = dict(type="BN", requires_grad=True)


def randomize(module, seed=0):
    """Random weights and BatchNorm statistics, so the comparison exercises every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name else
                        torch.randn(t.shape, generator=g) * 0.2)


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_upernet_and_fcn_heads_equal_mmseg(size):
    mm = import_mmseg()
    ours = UPerHead([24, 24, 24, 24], channels=16, num_classes=7).eval()
    ref = mm.UPerHead(in_channels=[24] * 4, in_index=[0, 1, 2, 3], channels=16, num_classes=7, dropout_ratio=0.1,
                      norm_cfg=BN, align_corners=False).eval()
    randomize(ours)
    missing = ref.load_state_dict(ours.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    h, w = size
    inputs = [torch.randn(2, 24, h * s // 2, w * s // 2) for s in (8, 4, 2, 1)]
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs), ref(inputs), atol=1e-5, rtol=1e-5)
    aux, ref_aux = FCNHead(24, 12, 7, in_index=2).eval(), mm.FCNHead(
        in_channels=24, in_index=2, channels=12, num_convs=1, concat_input=False, dropout_ratio=0.1, num_classes=7,
        norm_cfg=BN, align_corners=False).eval()
    randomize(aux, 1)
    ref_aux.load_state_dict(aux.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(aux(inputs), ref_aux(inputs), atol=1e-5, rtol=1e-5)


def test_feature2pyramid_equals_mmseg():
    mm = import_mmseg()
    ours = Feature2Pyramid(16).eval()
    ref = mm.Feature2Pyramid(16, rescales=[4, 2, 1, 0.5], norm_cfg=BN).eval()
    randomize(ours)
    ref.load_state_dict(ours.state_dict(), strict=True)
    grids = [torch.randn(2, 16, 8, 8) for _ in range(4)]
    with torch.no_grad():
        for a, b in zip(ours(grids), ref(grids)):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert [t.shape[-1] for t in ours(grids)] == [32, 16, 8, 4]


def test_iou_metrics_equal_mmseg_iou_metric():
    mm = import_mmseg()
    rng = np.random.default_rng(0)
    num_classes = 6
    ours = SegmentationMetrics(num_classes)
    ref = mm.IoUMetric(iou_metrics=["mIoU"])
    ref.dataset_meta = {"classes": [f"c{i}" for i in range(num_classes)]}
    for _ in range(3):
        target = rng.integers(0, num_classes - 1, (20, 24))  # class 5 never appears in the ground truth
        target[rng.random(target.shape) < 0.2] = 255       # ignored pixels
        pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, num_classes - 2, target.shape))
        pred[pred == 255] = 0
        ours.update(torch.tensor(pred)[None], torch.tensor(target)[None])
        ref.process([], [{"pred_sem_seg": {"data": torch.tensor(pred)[None]},
                          "gt_sem_seg": {"data": torch.tensor(target)[None]}}])
    expected = ref.compute_metrics(ref.results)
    got = ours.compute()
    assert got["mIoU"].item() == pytest.approx(expected["mIoU"], abs=0.01)  # mmseg rounds to 2 decimals
    assert got["aAcc"].item() == pytest.approx(expected["aAcc"], abs=0.01)
    assert torch.isnan(got["per_class_iou"][5])  # absent everywhere: excluded from the mean, as in mmseg
