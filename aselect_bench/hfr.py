"""High-Frequency Ratio (HFR) of feature maps, and the one-pass A-SelecT timestep scan.

Pure functions, no Lightning. ``HFR = energy outside the low band / total energy`` of the 2-D (or
token-sequence) FFT, per image; the timestep whose mean HFR peaks is chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real

import torch

from aselect_bench.backbones.noise import batch_noise
from aselect_bench.costs import measure_cost
from aselect_bench.errors import UserError

MODES = ("radial", "separable", "tokens1d")


#: Below this bootstrap support the choice is reported as weak (one warning line).
WEAK_SUPPORT = 0.8


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
    default; :mod:`aselect_bench.selectors`); ``label_images``: at most this many labelled held-out images
    for the label-using selectors.
    """

    candidates: tuple[int, ...] = tuple(range(0, 1000, 50)) + (999,)
    num_images: int = 64
    cutoff: float = 0.15
    mode: str = "tokens1d"
    remove_mean: bool = False
    noise_draws: int = 1
    selector: str = "hfr"
    label_images: int = 256

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
        if self.selector != "hfr":  # the default needs no check (and importing the registry here would be circular)
            from aselect_bench.selectors.base import build_selector

            if build_selector(self.selector).expected:
                raise UserError(f"selector {self.selector!r} names no single timestep (compare scores it by its "
                                f"expectation over the grid), so it cannot choose the training timestep: use another")

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
        """One warning line when the bootstrap support is below :data:`WEAK_SUPPORT`, else ``None``."""
        return weak_choice_line(self.timestep, self.support, self.runner_up, self.margin)


def firmness_line(support: float | None, runner_up: int | None, margin: float | None) -> str:
    """How firm a choice is, in one line: ``support 97% (runner-up t=50, margin 0.0061)``."""
    if support is None:
        return "support not measured"
    other = f"runner-up t={runner_up}" if runner_up is not None else "no resample chose another t"
    gap = f", margin {margin:.4f}" if margin is not None else ""
    return f"support {100 * support:.0f}% ({other}{gap})"


def weak_choice_line(timestep, support: float | None, runner_up: int | None, margin: float | None) -> str | None:
    """One warning line when the bootstrap ``support`` of ``timestep`` is below :data:`WEAK_SUPPORT`, else None."""
    if support is None or support >= WEAK_SUPPORT:
        return None
    gap = f", margin {margin:.4f}" if margin is not None else ""
    return (f"weak choice: t={timestep} wins only {100 * support:.0f}% of bootstrap resamples of the "
            f"calibration images (runner-up t={runner_up}{gap}); use more --num-images or more noise draws "
            f"before trusting it")


def check_candidates(candidates: Iterable[int], num_train_timesteps: int) -> list[int]:
    """Validated, de-duplicated candidate timesteps in the given order."""
    out = []
    for t in candidates:
        if isinstance(t, bool) or int(t) != t or not 0 <= int(t) < num_train_timesteps:
            raise UserError(f"candidate timestep {t!r} is outside the schedule [0, {num_train_timesteps})")
        if int(t) not in out:
            out.append(int(t))
    if not out:
        raise UserError("the candidate list is empty: give at least one timestep, e.g. 0,50,...,950")
    return out


def _batches(images, batch_size: int):
    """Yield image batches ``[b, 3, H, W]`` from a tensor or a DataLoader of tensors / (image, label)."""
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
        return
    for batch in images:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def encode_batches(backbone, images, batch_size: int = 32) -> list[torch.Tensor]:
    """The clean inputs ``x0`` of ``images`` (tensor ``[N, 3, H, W]`` or DataLoader), one tensor per batch;
    an empty image set is one clear error."""
    x0s = [backbone.encode(b) for b in _batches(images, batch_size) if len(b)]
    if not x0s:
        raise UserError("no calibration images: the image set for the HFR scan is empty")
    return x0s


def features_at(backbone, x0s: list[torch.Tensor], timestep: int, taps: Sequence[str], seed: int = 0,
                draws: Iterable[int] = (0,), first_index: int = 0):
    """Per batch of ``x0s``: ``{tap: [b, C, h, w]}`` at ``timestep``, summed over the noise ``draws`` (divide by
    their number for the mean). Noise is seeded per image (global index from ``first_index``), so the features
    do not depend on batching or on how images are sharded over processes; non-finite features stop the scan
    with one line naming the tap and timestep."""
    draws = list(draws)
    offset = first_index
    for x0 in x0s:
        summed = None
        for draw in draws:
            noise = batch_noise(x0.shape[1:], seed, timestep, range(offset, offset + len(x0)), draw)
            feats = backbone.extract_x0(x0, timestep, list(taps), noise=noise)
            summed = feats if summed is None else {k: summed[k] + feats[k] for k in feats}
        for tap in taps:
            _check_finite(summed[tap], tap, timestep)
        offset += len(x0)
        yield summed


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
        bar = _progress(len(candidates) * len(x0s), progress, "HFR scan")
        for t in candidates:
            for summed in features_at(backbone, x0s, t, taps, seed, range(noise_draws), first_index):
                for tap in taps:
                    result[tap][t].append(high_frequency_ratio(summed[tap] / noise_draws, **band))
                bar.update(1)
        bar.close()
    per_image = {tap: {t: torch.cat(x) for t, x in by_t.items()} for tap, by_t in result.items()}
    return per_image, cost.seconds, cost.forwards


def _check_finite(features: torch.Tensor, tap: str, timestep: int) -> None:
    """Stop the scan with one line naming the tap and timestep whose features hold NaN or inf."""
    if not torch.isfinite(features).all():
        raise UserError(f"the backbone produced NaN/inf features at {tap}, timestep {timestep}, so the HFR scan "
                        f"stops: check the weights (a corrupt checkpoint?) or use float32 instead of half precision")


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


def bootstrap_choice(per_image: dict[int, torch.Tensor], resamples: int = 1000, seed: int = 0) -> dict:
    """How firm the argmax of the mean HFR is: resample the N images with replacement ``resamples`` times.

    ``per_image``: ``{t: HFR [N]}`` (same images at every ``t``). Returns ``{"support", "runner_up",
    "margin"}``: the share of resamples whose argmax (first maximum in candidate order, as the scan) is the
    full-sample choice; the most frequent other argmax (``None`` if no resample chose another; ties go to
    the earlier candidate); and the mean-HFR gap between the choice and the runner-up (or, without one,
    the next-best candidate; ``None`` with a single candidate). Seeded: the same input gives the same answer.
    """
    ts = list(per_image)
    hfr = torch.stack([torch.as_tensor(per_image[t], dtype=torch.float64).flatten() for t in ts])  # [T, N]
    n = hfr.shape[1]
    chosen = int(hfr.mean(1).argmax())
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=gen)
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    winners = (weights @ hfr.T).argmax(1)  # [R]: argmax of each resample's mean curve
    counts = torch.bincount(winners, minlength=len(ts))
    means = hfr.mean(1)
    others = [i for i in range(len(ts)) if i != chosen and counts[i] > 0]
    runner = max(others, key=lambda i: (int(counts[i]), -i)) if others else None
    if runner is None and len(ts) > 1:
        gap = float(means[chosen] - max(float(means[i]) for i in range(len(ts)) if i != chosen))
    else:
        gap = float(means[chosen] - means[runner]) if runner is not None else None
    return {"support": float(counts[chosen]) / resamples, "runner_up": ts[runner] if runner is not None else None,
            "margin": gap}


def _progress(total: int, enabled: bool, desc: str):
    from aselect_bench.progress import progress_bar  # a bar on a terminal, a line every 30 s in a log file

    return progress_bar(total, enabled, desc)
