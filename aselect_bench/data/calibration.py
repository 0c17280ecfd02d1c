"""Which training images form the HFR calibration set: one rule for every datamodule and every caller."""

from __future__ import annotations

import sys

import torch

from aselect_bench.errors import UserError


def calibration_order(num_images: int, available: int, seed: int = 0) -> list[int]:
    """Indices of ``num_images`` of ``available`` training images, drawn with ``seed`` (a seeded permutation).

    ``num_images`` must be a positive integer (one :class:`UserError` otherwise: a negative count would
    silently slice all but the last few). Asking for more than exist uses them all and says so in one line.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise UserError(f"the number of HFR calibration images must be a positive integer, got {num_images!r} "
                        f"(--num-images / hfr.num_images; the default is 64)")
    if num_images > available:
        print(f"note: {num_images} calibration images asked for, the training split has {available}: using all "
              f"{available}", file=sys.stderr, flush=True)
    return torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:num_images].tolist()


def calibration_images(datamodule, num_images: int, seed: int = 0) -> torch.Tensor:
    """``[min(num_images, N_train), 3, H, W]`` in [-1, 1]: the HFR calibration set of ``datamodule``.

    The suite's datamodules: the training images at :func:`calibration_order` (``num_images``, ``seed``), in
    the datamodule's evaluation view (``datamodule.calibration_view(indices)``: no augmentation randomness can
    change the choice). Any other datamodule: its own ``calibration_images(n, seed)`` when it has one, else the
    first ``num_images`` images of its train loader under ``torch.manual_seed(seed)``.
    """
    if datamodule is None:
        raise UserError("the HFR scan needs a datamodule (with calibration_images) to draw its images from")
    if hasattr(datamodule, "calibration_view"):
        return datamodule.calibration_view(calibration_order(num_images, datamodule.split_size("train"), seed))
    if hasattr(datamodule, "calibration_images"):
        return datamodule.calibration_images(num_images, seed=seed)
    return first_train_images(datamodule, num_images, seed)


def first_train_images(datamodule, num_images: int, seed: int = 0) -> torch.Tensor:
    """``[min(num_images, N_train), 3, H, W]``: the first images of ``datamodule``'s train loader (batches of
    images or of ``(images, ...)``), drawn under ``torch.manual_seed(seed)`` without touching the global RNG."""
    batches, count = [], 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in datamodule.train_dataloader():
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            batches.append(images)
            count += len(images)
            if count >= num_images:
                break
    return torch.cat(batches)[:num_images]
