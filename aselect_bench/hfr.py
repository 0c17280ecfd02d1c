"""High-Frequency Ratio (HFR) of feature maps, and the settings of the A-SelecT scan.

Pure functions, no Lightning, no selector: ``HFR = energy outside the low band / total energy`` of the 2-D
(or token-sequence) FFT, per image. The scan that picks the timestep whose mean HFR peaks
(``select_timestep``) lives a floor above, in :mod:`aselect_bench.selectors.hfr`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Real
from typing import Annotated

import torch

from aselect_bench.config import Bound, Count, Natural, NotEmpty
from aselect_bench.errors import UserError

MODES = ("radial", "separable", "tokens1d")


def check_cutoff(cutoff) -> float:
    """The low-band edge, ``0 < cutoff < 0.5`` cycles per token, or one :class:`UserError`.

    ``torch.fft.fftfreq`` spans [-0.5, 0.5): at 0.5 or above the low band holds every frequency (of
    ``tokens1d`` and ``separable``), so every HFR would be 0 and the "choice" the first candidate; at 0 or below
    it holds nothing (not even the mean).
    """
    if isinstance(cutoff, bool) or not isinstance(cutoff, Real) or not 0 < cutoff < 0.5:
        raise UserError(f"HFR cutoff {cutoff!r} is outside (0, 0.5): it is the low band's edge in cycles per token, "
                        f"and 0.5 is the highest frequency a token grid holds (a cutoff at or above it leaves no high "
                        f"band, so every HFR is 0); the authors use 0.15")
    return float(cutoff)


@dataclass(frozen=True)
class HFRSettings:
    """The A-SelecT scan's settings, and the one home of their defaults.

    ``candidates``: the grid on which the paper's saving is quoted, 0, 50, ..., 950 and 999 (21);
    ``num_images``: calibration images; ``cutoff``/``mode``: the low band, by default the authors' released
    config (``IMP.CUTOFF 0.15``, ``IMP.LOW_FREQ_1D True``: a 1-D FFT over the row-major token sequence, our
    reading of it, since their HFR code is not public); ``remove_mean``; ``noise_draws`` (1 = the paper's
    single pass); ``selector``: the rule that picks the timestep from the scan (``hfr``, the paper, by
    default; :mod:`aselect_bench.selectors`, which checks the name where a preset or callback is built:
    :func:`~aselect_bench.selectors.base.training_selector`); ``label_images``: at most this many labelled
    held-out images for the label-using selectors.
    """

    candidates: Annotated[tuple[Natural, ...], NotEmpty()] = tuple(range(0, 1000, 50)) + (999,)
    num_images: Count = 64
    cutoff: float = 0.15
    mode: str = "tokens1d"
    remove_mean: bool = False
    noise_draws: Count = 1
    selector: str = "hfr"
    label_images: Annotated[int, Bound(2)] = 256  # leave-one-out needs two

    def __post_init__(self):
        object.__setattr__(self, "candidates", tuple(int(t) for t in self.candidates))
        repeated = sorted({t for t in self.candidates if self.candidates.count(t) > 1})
        if repeated:
            raise UserError(f"HFR candidates list timestep {repeated[0]} more than once: give each candidate once")
        if any(t < 0 for t in self.candidates):
            raise UserError(f"HFR candidates hold a negative timestep ({min(self.candidates)}): t = 0 is the clean "
                            f"image, give timesteps from 0 up")
        if self.mode not in MODES:
            raise UserError(f"unknown HFR mode {self.mode!r}; use one of {', '.join(MODES)}")
        check_cutoff(self.cutoff)
        if self.num_images < 1 or self.noise_draws < 1:
            raise UserError(f"HFR num_images and noise_draws must be >= 1 (got {self.num_images}, {self.noise_draws})")
        if self.label_images < 2:
            raise UserError(f"label_images must be >= 2 (leave-one-out needs two), got {self.label_images}")

    def band(self) -> dict:
        """The arguments of :func:`high_frequency_ratio`: ``cutoff``, ``mode``, ``remove_mean``."""
        return dict(cutoff=self.cutoff, mode=self.mode, remove_mean=self.remove_mean)

    def to_json(self) -> dict:
        return {**asdict(self), "candidates": list(self.candidates)}


DEFAULTS = HFRSettings()
DEFAULT_CANDIDATES = DEFAULTS.candidates


def low_band_mask(h: int, w: int, cutoff: float, mode: str, device=None) -> torch.Tensor:
    """Boolean mask of the low band over the ``fft2`` frequency grid ``[h, w]`` (or ``[h * w]`` for tokens1d);
    ``cutoff`` in (0, 0.5) (:func:`check_cutoff`)."""
    check_cutoff(cutoff)
    if mode == "tokens1d":
        return torch.fft.fftfreq(h * w, device=device).abs() <= cutoff
    fu = torch.fft.fftfreq(h, device=device)[:, None]
    fv = torch.fft.fftfreq(w, device=device)[None, :]
    if mode == "radial":
        return (fu**2 + fv**2).sqrt() <= cutoff
    if mode == "separable":
        return (fu.abs() <= cutoff) & (fv.abs() <= cutoff)
    raise UserError(f"unknown HFR mode {mode!r}; use one of {', '.join(MODES)}")


def _half_spectrum(h: int, w: int, cutoff: float, mode: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The low band and the bin weights over the ``rfft`` (``tokens1d``: ``[h * w // 2 + 1]``) or ``rfft2``
    (``[h, w // 2 + 1]``) grid: a real signal's spectrum is conjugate-symmetric and every low band here is
    symmetric in the sign of the frequency, so each kept bin stands for itself and its mirror (weight 2) except
    the ones that are their own mirror (zero and, for an even length, the Nyquist bin). ``cutoff`` in (0, 0.5)."""
    check_cutoff(cutoff)
    n = h * w if mode == "tokens1d" else w
    weights = torch.full((n // 2 + 1,), 2.0, device=device)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    if mode == "tokens1d":
        return torch.fft.rfftfreq(n, device=device).abs() <= cutoff, weights
    fu = torch.fft.fftfreq(h, device=device)[:, None]
    fv = torch.fft.rfftfreq(w, device=device)[None, :]
    low = (fu**2 + fv**2).sqrt() <= cutoff if mode == "radial" else (fu.abs() <= cutoff) & (fv.abs() <= cutoff)
    return low, weights.expand(h, -1)


def high_frequency_ratio(features: torch.Tensor, cutoff: float = DEFAULTS.cutoff, mode: str = DEFAULTS.mode,
                         remove_mean: bool = False) -> torch.Tensor:
    """HFR of ``features [B, C, H, W]`` -> ``[B]`` in [0, 1] (0 when the energy is 0, never NaN).

    Frequencies come from ``torch.fft.fftfreq`` (cycles per token, in [-0.5, 0.5)); energy ``|X|^2`` is
    summed over channels. ``remove_mean`` subtracts each channel's spatial mean first. (Computed on the half
    spectrum of the real input, ``rfft``, with each bin weighted for its mirror: the same sums as the full
    ``fft``/``fft2`` at about half the work.)
    Non-finite input has no ratio: features holding NaN or inf (or so large that their energy overflows
    float32) raise :class:`UserError`, never return NaN.
    """
    if features.ndim != 4:
        raise UserError(f"features must be [B, C, H, W]; got shape {tuple(features.shape)}")
    if mode not in MODES:
        raise UserError(f"unknown HFR mode {mode!r}; use one of {', '.join(MODES)}")
    x = features.float()
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    b, c, h, w = x.shape
    if mode == "tokens1d":
        spectrum = torch.fft.rfft(x.reshape(b, c, h * w), dim=-1)  # [B, C, N // 2 + 1]
    else:
        spectrum = torch.fft.rfft2(x, dim=(-2, -1))  # [B, C, H, W // 2 + 1]
    low, weights = _half_spectrum(h, w, cutoff, mode, device=x.device)
    energy = spectrum.abs().square().sum(1) * weights  # [B, ...]: summed over channels, mirrors counted
    total = energy.flatten(1).sum(1)
    if not torch.isfinite(total).all():  # NaN/inf features, or an energy beyond float32: no ratio
        if not torch.isfinite(features).all():
            raise UserError("the features hold NaN or inf, which have no HFR: check the backbone's weights and "
                            "precision (run in float32 to rule out half-precision overflow)")
        raise UserError("the features' spectral energy overflows float32 (values near 1e19 or more), which has "
                        "no HFR: check the backbone's weights")
    high = (energy * (~low)).flatten(1).sum(1)
    return torch.where(total > 0, high / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))
