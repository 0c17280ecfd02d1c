"""Which training images form the HFR calibration set: one rule for every datamodule."""

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
