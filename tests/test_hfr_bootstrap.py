"""How firm the HFR choice is: a seeded bootstrap over calibration images (support, runner-up, margin)."""

from __future__ import annotations

import pytest
import torch

from aselect_bench.plots import hfr_curve_figure
from aselect_bench.selectors import summarize_scan
from aselect_bench.selectors.support import WEAK_SUPPORT, bootstrap_choice


def noisy(mean: float, n: int = 64, seed: int = 0, sd: float = 0.02) -> torch.Tensor:
    return mean + sd * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_a_clear_peak_has_full_support():
    per_image = {0: noisy(0.50, seed=1), 50: noisy(0.90, seed=2), 100: noisy(0.40, seed=3)}
    firm = bootstrap_choice(per_image)
    assert firm["support"] == 1.0 and firm["runner_up"] is None
    assert firm["margin"] == pytest.approx(0.40, abs=0.02)  # to the next-best mean (t=0)
    result = summarize_scan(per_image, "blocks.0.out", 1.0, 192, {})
    assert result.timestep == 50 and result.support == 1.0 and result.weak_choice_warning() is None
    assert result.to_json()["support"] == 1.0 and result.to_json()["runner_up"] is None


def test_two_equal_peaks_split_the_support_and_warn():
    peak = noisy(0.80, seed=4, sd=0.05)
    per_image = {0: noisy(0.30, seed=5), 50: peak, 100: peak[torch.randperm(64, generator=torch.Generator().manual_seed(6))]}
    firm = bootstrap_choice(per_image)
    assert 0.35 < firm["support"] < 0.65 and firm["runner_up"] == 100 and abs(firm["margin"]) < 1e-9
    result = summarize_scan(per_image, "blocks.0.out", 1.0, 192, {})
    assert result.timestep == 50 and result.support < WEAK_SUPPORT
    warning = result.weak_choice_warning()
    assert warning is not None and "\n" not in warning and "runner-up t=100" in warning
    assert {"support", "runner_up", "margin"} <= result.to_json().keys()


def test_a_close_runner_up_is_found_and_the_bootstrap_is_seeded():
    """Per-image gains of t=50 over t=0: mean 0.003, sd 0.02 over 64 images (standard error 0.0025), so t=50
    wins about Phi(1.2) ~ 88% of the resamples."""
    z = torch.randn(64, generator=torch.Generator().manual_seed(7))
    gain = 0.003 + 0.02 * (z - z.mean()) / z.std(unbiased=False)
    base = noisy(0.7, seed=8, sd=0.05)
    per_image = {0: base, 50: base + gain, 100: noisy(0.2, seed=9)}
    firm = bootstrap_choice(per_image)
    assert firm["runner_up"] == 0 and 0.75 < firm["support"] < 0.97, firm
    assert firm["margin"] == pytest.approx(0.003, abs=1e-6)
    assert bootstrap_choice(per_image) == firm and bootstrap_choice(per_image, seed=1)["support"] != firm["support"]


def test_one_candidate_or_one_image():
    assert bootstrap_choice({7: torch.tensor([0.3, 0.4])}) == {"support": 1.0, "runner_up": None, "margin": None}
    assert bootstrap_choice({0: torch.tensor([0.2]), 9: torch.tensor([0.5])})["support"] == 1.0


def test_the_figure_shows_the_support():
    per_image = {0: noisy(0.5, seed=1), 50: noisy(0.9, seed=2)}
    result = summarize_scan(per_image, "blocks.0.out", 1.0, 128, {})
    fig = hfr_curve_figure(result.curve, result.timestep, result.spread, "HFR of blocks.0.out", result.firmness())
    assert "support 100%" in fig.axes[0].get_title()
