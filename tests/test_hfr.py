"""HFR on signals whose answer is known, against a numpy reference, and the one-pass scan."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aselect_bench import UserError, high_frequency_ratio, load_backbone, select_timestep
from aselect_bench.hfr import DEFAULT_CANDIDATES, MODES
from aselect_bench.selectors import scan_hfr, summarize_scan


def numpy_hfr(feats: np.ndarray, cutoff: float, mode: str, remove_mean: bool) -> np.ndarray:
    """Independent reference: explicit loops over frequency bins."""
    b, c, h, w = feats.shape
    x = feats.astype(np.float64)
    if remove_mean:
        x = x - x.mean(axis=(2, 3), keepdims=True)
    out = np.zeros(b)
    for i in range(b):
        if mode == "tokens1d":
            spec = np.abs(np.fft.fft(x[i].reshape(c, h * w), axis=-1)) ** 2
            freqs = np.fft.fftfreq(h * w)
            low = sum(spec[:, k].sum() for k in range(h * w) if abs(freqs[k]) <= cutoff)
        else:
            spec = np.abs(np.fft.fft2(x[i], axes=(-2, -1))) ** 2
            fu, fv = np.fft.fftfreq(h), np.fft.fftfreq(w)
            low = 0.0
            for u in range(h):
                for v in range(w):
                    inside = (math.hypot(fu[u], fv[v]) <= cutoff if mode == "radial"
                              else abs(fu[u]) <= cutoff and abs(fv[v]) <= cutoff)
                    if inside:
                        low += spec[:, u, v].sum()
        total = spec.sum()
        out[i] = 0.0 if total == 0 else (total - low) / total
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cutoff", [0.05, 0.15, 0.3])
@pytest.mark.parametrize("remove_mean", [False, True])
def test_matches_numpy_reference(mode, cutoff, remove_mean):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3, 4, 8, 12)) + rng.normal(size=(3, 4, 1, 1)) * 3  # non-zero means
    feats += np.cos(2 * np.pi * np.arange(12) / 12)[None, None, None, :]  # some low-frequency content
    ours = high_frequency_ratio(torch.tensor(feats, dtype=torch.float32), cutoff, mode, remove_mean)
    np.testing.assert_allclose(ours.numpy(), numpy_hfr(feats, cutoff, mode, remove_mean), atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_constant_map_is_zero_and_zeros_are_not_nan(mode):
    assert torch.allclose(high_frequency_ratio(torch.full((2, 5, 8, 8), 3.0), mode=mode), torch.zeros(2), atol=1e-6)
    zero = high_frequency_ratio(torch.zeros(2, 5, 8, 8), mode=mode)
    assert torch.equal(zero, torch.zeros(2))


def test_checkerboard_and_column_stripes_are_all_high():
    r, c = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = ((-1.0) ** (r + c))[None, None]
    for mode in ("radial", "separable"):
        assert high_frequency_ratio(checker, mode=mode).item() == pytest.approx(1.0, abs=1e-6)
    stripes = ((-1.0) ** c)[None, None].float()  # token sequence alternates: frequency 0.5
    assert high_frequency_ratio(stripes, mode="tokens1d").item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("mode", ["radial", "separable"])
def test_sinusoid_below_and_above_the_cutoff(mode):
    rows = torch.arange(32.0)[:, None].expand(32, 32)
    below = torch.cos(2 * math.pi * 2 / 32 * rows)[None, None]  # 0.0625 cycles/token
    above = torch.cos(2 * math.pi * 8 / 32 * rows)[None, None]  # 0.25 cycles/token
    assert high_frequency_ratio(below, 0.15, mode).item() == pytest.approx(0.0, abs=1e-6)
    assert high_frequency_ratio(above, 0.15, mode).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_white_noise_gives_the_area_outside_the_low_band(mode):
    from aselect_bench.hfr import low_band_mask

    torch.manual_seed(0)
    noise = torch.randn(8, 64, 32, 32)
    expected = 1 - low_band_mask(32, 32, 0.15, mode).float().mean().item()
    assert high_frequency_ratio(noise, 0.15, mode).mean().item() == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    x = torch.randn(2, 3, 8, 8)
    ours = high_frequency_ratio(x.to(dtype))
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, high_frequency_ratio(x.to(dtype).float()))


def test_bad_inputs_are_refused():
    with pytest.raises(UserError, match="unknown HFR mode"):
        high_frequency_ratio(torch.zeros(1, 1, 4, 4), mode="bogus")
    with pytest.raises(UserError, match=r"\[B, C, H, W\]"):
        high_frequency_ratio(torch.zeros(4, 4))


@pytest.mark.parametrize("mode", MODES)
def test_non_finite_features_are_an_error_never_a_nan_ratio(mode):
    for bad in (float("nan"), float("inf"), -float("inf")):
        features = torch.rand(2, 3, 4, 4)
        features[1, 2, 3, 0] = bad
        with pytest.raises(UserError, match="hold NaN or inf"):
            high_frequency_ratio(features, mode=mode)
    with pytest.raises(UserError, match="energy overflows float32"):  # finite, but |x|^2 is inf
        high_frequency_ratio(torch.full((1, 1, 4, 4), 1e30), mode=mode)


class PeakedBackbone:
    """Features whose HFR is known: a constant plus a frequency-0.5 cosine whose amplitude peaks at t = 700."""

    num_train_timesteps = 1000

    def __init__(self):
        self.forwards = 0  # like Backbone: images passed through the transformer

    def encode(self, images):
        return images

    def extract_x0(self, x0, t, taps, noise=None):
        self.forwards += len(x0)
        amplitude = 1 - abs(t - 700) / 1000
        cols = torch.arange(16.0)[None, :].expand(16, 16)
        grid = (1 + amplitude * torch.cos(math.pi * cols))[None, None].expand(len(x0), 2, 16, 16)
        return {tap: grid.clone() for tap in taps}


def test_argmax_is_taken_over_exactly_the_given_candidates():
    images = torch.zeros(6, 3, 16, 16)
    result = select_timestep(PeakedBackbone(), images, [0, 300, 650, 999], tap="blocks.0.out", batch_size=4)
    assert list(result.curve) == [0, 300, 650, 999]
    assert result.timestep == 650
    assert result.forwards == 6 * 4
    result = select_timestep(PeakedBackbone(), images, [999, 100], tap="blocks.0.out")
    assert result.timestep == 999


def test_default_grid_has_21_candidates():
    assert len(DEFAULT_CANDIDATES) == 21 and DEFAULT_CANDIDATES[-1] == 999 and DEFAULT_CANDIDATES[1] == 50


def test_scan_is_deterministic_batch_invariant_and_accepts_dataloaders():
    backbone = load_backbone("tiny-dit", pretrained=False)
    torch.manual_seed(1)
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    kw = dict(candidates=[0, 400, 999], tap="blocks.1.query", seed=3)
    a = select_timestep(backbone, images, batch_size=4, **kw)
    b = select_timestep(backbone, images, batch_size=4, **kw)
    assert a.curve == b.curve and a.timestep == b.timestep
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(6)), batch_size=5)
    c = select_timestep(backbone, loader, **kw)
    for t in a.curve:
        assert c.curve[t] == pytest.approx(a.curve[t], abs=1e-6)
    d = select_timestep(backbone, images, batch_size=4, **{**kw, "seed": 4})
    assert d.curve != a.curve
    assert a.forwards == 18 and a.seconds > 0
    assert set(a.to_json()) >= {"timestep", "hfr", "seconds", "forwards"}
    assert list(a.to_json()["hfr"]) == ["0", "400", "999"]


def test_noise_draws_average_features_before_the_fft():
    backbone = load_backbone("tiny-dit", pretrained=False)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    single = select_timestep(backbone, images, [999], tap="blocks.3.out", noise_draws=1)
    avg = select_timestep(backbone, images, [999], tap="blocks.3.out", noise_draws=8)
    assert avg.forwards == 8 * single.forwards
    # at t = 999 the input is almost pure noise: averaging 8 draws removes most of its high frequencies
    assert avg.curve[999] < single.curve[999]


def test_empty_or_bad_candidates_are_refused():
    backbone = load_backbone("tiny-dit", pretrained=False)
    with pytest.raises(UserError, match="empty"):
        select_timestep(backbone, torch.zeros(1, 3, 16, 16), [], tap="blocks.0.out")
    with pytest.raises(UserError, match="outside the schedule"):
        select_timestep(backbone, torch.zeros(1, 3, 16, 16), [0, 1000], tap="blocks.0.out")
    with pytest.raises(UserError, match="no calibration images"):
        select_timestep(backbone, torch.zeros(0, 3, 16, 16), [0], tap="blocks.0.out")


class BrokenBackbone(PeakedBackbone):
    """``PeakedBackbone`` whose features at one (tap, timestep) hold a NaN."""

    def extract_x0(self, x0, t, taps, noise=None):
        feats = super().extract_x0(x0, t, taps, noise)
        if t == 400:
            feats["blocks.2.out"][0, 0, 0, 0] = float("nan")
        return feats


def test_scan_stops_naming_the_timestep_and_tap_of_non_finite_features():
    images = torch.zeros(3, 3, 16, 16)
    with pytest.raises(UserError, match=r"NaN/inf features at blocks.2.out, timestep 400"):
        scan_hfr(BrokenBackbone(), images, [0, 400, 999], ["blocks.1.out", "blocks.2.out"])
    per_image, _, _ = scan_hfr(BrokenBackbone(), images, [0, 999], ["blocks.2.out"])  # fine elsewhere
    assert summarize_scan(per_image["blocks.2.out"], "blocks.2.out", 0.0, 6, {}).timestep == 999


def test_no_argmax_over_nan():
    per_image = {0: torch.tensor([0.2, 0.3]), 50: torch.tensor([float("nan"), 0.9]), 100: torch.tensor([0.1, 0.1])}
    with pytest.raises(UserError, match="HFR of blocks.0.out at timestep 50 is not finite"):
        summarize_scan(per_image, "blocks.0.out", 0.0, 6, {})


def test_per_image_noise_never_repeats_across_images_and_draws():
    """Training draw e of image i must not be image i+1's draw e-31 (the old seed formula's collision)."""
    from aselect_bench.backbones.noise import image_noise

    seen = {}
    for index in range(3):
        for draw in range(40):
            key = tuple(image_noise((4,), 0, 500, index, draw).tolist())
            assert key not in seen, (index, draw, seen.get(key))
            seen[key] = (index, draw)
    assert torch.equal(image_noise((4,), 0, 500, 1, 7), image_noise((4,), 0, 500, 1, 7))
