"""What every scan reads: the candidate timesteps, the clean inputs ``x0`` of the calibration images, and their
noised features at a timestep (noise seeded per image, so batching and sharding do not change them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from aselect_bench.backbones.noise import batch_noise
from aselect_bench.errors import UserError


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


def _check_finite(features: torch.Tensor, tap: str, timestep: int) -> None:
    """Stop the scan with one line naming the tap and timestep whose features hold NaN or inf."""
    if not torch.isfinite(features).all():
        raise UserError(f"the backbone produced NaN/inf features at {tap}, timestep {timestep}, so the HFR scan "
                        f"stops: check the weights (a corrupt checkpoint?) or use float32 instead of half precision")


def scan_progress(total: int, enabled: bool, desc: str):
    """A bar on a terminal, a line every 30 s in a log file (imported here: importing a scan needs no Lightning)."""
    from aselect_bench.progress import progress_bar

    return progress_bar(total, enabled, desc)
