"""HFR selectors: A-SelecT's High-Frequency Ratio (Liu et al., CVPR 2026) and its variants.

``hfr`` is the paper's single pass with the preset's band (by default the authors' released config: a 1-D
FFT over the token sequence, cutoff 0.15). The variants read the same scan with other low bands, with each
channel's mean removed, or with the features averaged over 8 noise draws before the FFT (the injected noise
is itself high-frequency); they are the ablation ``compare`` scores beside the paper's choice.
"""

from __future__ import annotations

import torch

from aselect_bench.hfr import DEFAULTS, MODES, HFRSettings, high_frequency_ratio
from aselect_bench.selectors.base import Selector, register


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
