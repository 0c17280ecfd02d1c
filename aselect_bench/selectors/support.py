"""How firm a choice is: the bootstrap support of the argmax over the calibration images, in numbers and in one
line (the warning when it is weak)."""

from __future__ import annotations

import torch

#: Below this bootstrap support the choice is reported as weak (one warning line).
WEAK_SUPPORT = 0.8


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


def firmness_line(support: float | None, runner_up: int | None, margin: float | None) -> str:
    """How firm a choice is, in one line: ``support 97% (runner-up t=50, margin 0.0061)``."""
    if support is None:
        return "support not measured"
    other = f"runner-up t={runner_up}" if runner_up is not None else "no resample chose another t"
    gap = f", margin {margin:.4f}" if margin is not None else ""
    return f"support {100 * support:.0f}% ({other}{gap})"


def weak_choice_line(timestep, support: float | None, runner_up: int | None, margin: float | None,
                     images_option: str = "--num-images") -> str | None:
    """One warning line when the bootstrap ``support`` of ``timestep`` is below :data:`WEAK_SUPPORT`, else None;
    ``images_option`` names the setting that gives more calibration images where the user runs it."""
    if support is None or support >= WEAK_SUPPORT:
        return None
    gap = f", margin {margin:.4f}" if margin is not None else ""
    return (f"weak choice: t={timestep} wins only {100 * support:.0f}% of bootstrap resamples of the "
            f"calibration images (runner-up t={runner_up}{gap}); use more {images_option} or more noise draws "
            f"before trusting it")
