"""HFR selectors: A-SelecT's High-Frequency Ratio (Liu et al., CVPR 2026) and its variants, and the one-pass
HFR scan on its own (:func:`select_timestep`, :func:`scan_hfr` for several taps at once).

``hfr`` is the paper's single pass with the preset's band (by default the authors' released config: a 1-D
FFT over the token sequence, cutoff 0.15). The variants read the same scan with other low bands, with each
channel's mean removed, or with the features averaged over 8 noise draws before the FFT (the injected noise
is itself high-frequency); they are the ablation ``compare`` scores beside the paper's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from aselect_bench.costs import measure_cost
from aselect_bench.errors import UserError
from aselect_bench.hfr import (
    DEFAULT_CANDIDATES,
    DEFAULTS,
    MODES,
    HFRSettings,
    high_frequency_ratio,
    low_band_mask,
)
from aselect_bench.selectors.base import Selector, register
from aselect_bench.selectors.features import check_candidates, encode_batches, features_at, scan_progress
from aselect_bench.selectors.support import bootstrap_choice, firmness_line, weak_choice_line


class HFRSelector(Selector):
    """Mean HFR of the calibration images' features; the argmax is chosen (per image, so the choice's
    bootstrap support is known)."""

    per_image = True

    def __init__(self, cutoff: float, mode: str, remove_mean: bool, noise_draws: int):
        self.band = dict(cutoff=cutoff, mode=mode, remove_mean=remove_mean)
        self.noise_draws = noise_draws

    @property
    def settings(self) -> dict:
        return {**self.band, "noise_draws": self.noise_draws}

    def score(self, features: torch.Tensor, labels=None) -> torch.Tensor:
        """``[N, C, h, w]`` -> HFR per image ``[N]``."""
        return high_frequency_ratio(features, **self.band)


@register("hfr")
def _paper(settings: HFRSettings) -> HFRSelector:
    return HFRSelector(settings.cutoff, settings.mode, settings.remove_mean, settings.noise_draws)


def variant_name(mode: str, remove_mean: bool, noise_draws: int) -> str:
    """``hfr-radial-demean-K8`` style names of the ablation's variants."""
    return f"hfr-{mode}{'-demean' if remove_mean else ''}-K{noise_draws}"


def _register_variants() -> None:
    """The ablation: every low band x remove_mean x 1 or 8 draws at the default cutoff, except the paper's
    own setting (that is ``hfr``)."""
    for draws in (1, 8):
        for mode in MODES:
            for remove_mean in (False, True):
                if (mode, remove_mean, draws) == (DEFAULTS.mode, DEFAULTS.remove_mean, DEFAULTS.noise_draws):
                    continue
                register(variant_name(mode, remove_mean, draws))(
                    lambda _settings, m=mode, r=remove_mean, k=draws: HFRSelector(DEFAULTS.cutoff, m, r, k))


_register_variants()


# ------------------------------------------------------------------------- the HFR scan on its own
@dataclass
class SelectionResult:
    """Outcome of a scan: ``timestep`` (argmax of the mean HFR), the curve, and the scan's cost."""

    timestep: int
    curve: dict[int, float]
    spread: dict[int, float]
    seconds: float
    forwards: int
    tap: str
    settings: dict = field(default_factory=dict)
    per_image: dict[int, list[float]] = field(default_factory=dict)
    support: float | None = None  # share of bootstrap resamples of the images whose argmax is ``timestep``
    runner_up: int | None = None  # the most frequent other argmax (None: no resample chose another)
    margin: float | None = None  # mean HFR at ``timestep`` minus at ``runner_up`` (or the next-best candidate)

    def to_json(self) -> dict:
        """The ``select`` output schema: timestep keys are strings of integers."""
        return {
            "timestep": self.timestep,
            "hfr": {str(t): v for t, v in self.curve.items()},
            "hfr_std": {str(t): v for t, v in self.spread.items()},
            "seconds": self.seconds,
            "forwards": self.forwards,
            "tap": self.tap,
            "support": self.support,
            "runner_up": self.runner_up,
            "margin": self.margin,
            **self.settings,
        }

    def firmness(self) -> str:
        """One line: ``support 97% (runner-up t=50, margin 0.0061)``."""
        return firmness_line(self.support, self.runner_up, self.margin)

    def weak_choice_warning(self) -> str | None:
        """One warning line when the bootstrap support is below :data:`~aselect_bench.selectors.support.WEAK_SUPPORT`,
        else ``None``."""
        return weak_choice_line(self.timestep, self.support, self.runner_up, self.margin)


def scan_hfr(backbone, images, candidates: Sequence[int], taps: Sequence[str], cutoff=DEFAULTS.cutoff,
             mode=DEFAULTS.mode, remove_mean=False, noise_draws=1, seed=0, batch_size=32, progress=False, first_index=0):
    """Per-image HFR for every (tap, candidate): ``{tap: {t: tensor [N]}}``, plus (seconds, forwards).

    One backbone pass per (batch, candidate, draw) serves every tap; each image is encoded once.
    ``first_index`` is the global index of the first image (noise seeding when sharded over ranks).
    """
    candidates = check_candidates(candidates, backbone.num_train_timesteps)
    if noise_draws < 1:
        raise UserError(f"noise_draws must be >= 1, got {noise_draws}")
    band = dict(cutoff=cutoff, mode=mode, remove_mean=remove_mean)
    low_band_mask(2, 2, cutoff, mode)  # validates the band early
    with measure_cost(backbone) as cost:
        x0s = encode_batches(backbone, images, batch_size)
        result = {tap: {t: [] for t in candidates} for tap in taps}
        bar = scan_progress(len(candidates) * len(x0s), progress, "HFR scan")
        for t in candidates:
            for summed in features_at(backbone, x0s, t, taps, seed, range(noise_draws), first_index):
                for tap in taps:
                    result[tap][t].append(high_frequency_ratio(summed[tap] / noise_draws, **band))
                bar.update(1)
        bar.close()
    per_image = {tap: {t: torch.cat(x) for t, x in by_t.items()} for tap, by_t in result.items()}
    return per_image, cost.seconds, cost.forwards


def _check_finite_curve(per_image: dict, tap: str) -> None:
    """Refuse per-image HFR ``{t: [N]}`` holding NaN or inf, naming the tap and timestep."""
    for t, v in per_image.items():
        if not torch.isfinite(torch.as_tensor(v)).all():
            raise UserError(f"the HFR of {tap} at timestep {t} is not finite (NaN or inf), so no timestep can be "
                            f"chosen: check the backbone's features there (weights, half precision)")


def select_timestep(backbone, images, candidates: Sequence[int] = DEFAULT_CANDIDATES, tap: str = "blocks.9.query",
                    cutoff: float = DEFAULTS.cutoff, mode: str = DEFAULTS.mode, remove_mean: bool = False,
                    noise_draws: int = 1,
                    seed: int = 0, batch_size: int = 32, progress: bool = False) -> SelectionResult:
    """A-SelecT: mean HFR over ``images`` (tensor ``[N, 3, H, W]`` or DataLoader) at each candidate; argmax wins.

    ``noise_draws=K`` averages each image's features over K independent noise draws before the FFT
    (K = 1 is the paper's single pass). Ties go to the earliest candidate in the given order.
    """
    per_image, seconds, forwards = scan_hfr(backbone, images, candidates, [tap], cutoff, mode, remove_mean,
                                            noise_draws, seed, batch_size, progress)
    return summarize_scan(per_image[tap], tap, seconds, forwards,
                          dict(cutoff=cutoff, mode=mode, remove_mean=remove_mean, noise_draws=noise_draws))


def summarize_scan(per_image: dict[int, torch.Tensor], tap: str, seconds: float, forwards: int,
                   settings: dict) -> SelectionResult:
    """Turn per-image HFR ``{t: [N]}`` into a :class:`SelectionResult` (mean curve, spread, argmax).

    A NaN anywhere is refused (:class:`UserError` naming the tap and timestep): no argmax over NaN.
    """
    _check_finite_curve(per_image, tap)
    curve = {t: float(v.mean()) for t, v in per_image.items()}
    spread = {t: float(v.std(unbiased=False)) for t, v in per_image.items()}
    best = max(curve, key=lambda t: curve[t])  # first maximum in candidate order
    return SelectionResult(best, curve, spread, seconds, forwards, tap, settings,
                           {t: v.tolist() for t, v in per_image.items()}, **bootstrap_choice(per_image))
