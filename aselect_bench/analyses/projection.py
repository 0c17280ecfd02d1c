"""Projected cost at real size, A-SelecT vs the exhaustive sweep, from measured seconds per image.

The one home of this arithmetic (``aselect-bench estimate`` and ``benchmarks/perf/perf_gpu.py`` share it):

- the HFR scan: each of ``num_images`` calibration images encoded once, then ``candidates x draws`` forwards;
- one training: ``iterations`` steps at the recipe's batch, plus its evaluation passes;
- A-SelecT = the scan + one training; exhaustive = one training per candidate; saving = exhaustive / A-SelecT;
- on GPUs, from FLOPs: seconds = FLOPs / (peak x mfu); the exhaustive sweep's trainings as one-GPU jobs on G GPUs
  take ``ceil(candidates / G)`` rounds of one training.
"""

from __future__ import annotations

import math


def hours(seconds: float) -> float:
    return seconds / 3600


def scan_seconds(num_images: int, candidates: int, draws: int, encode_per_image: float,
                 forward_per_image: float) -> float:
    """Seconds of one HFR scan: ``num_images`` encodes, ``num_images x candidates x draws`` forwards to the tap."""
    return num_images * encode_per_image + num_images * candidates * draws * forward_per_image


def epoch_iterations(train_images: int, epochs: int, batch: int, drop_last: bool = False) -> int:
    """Optimizer steps of ``epochs`` passes over ``train_images`` at ``batch`` (the last short batch kept unless
    ``drop_last``)."""
    per_epoch = train_images // batch if drop_last else math.ceil(train_images / batch)
    return epochs * max(1, per_epoch)


def strategy_hours(scan: float, training: float, candidates: int) -> dict:
    """``{"scan_hours", "training_hours", "aselect_hours", "exhaustive_hours", "saving"}`` from the seconds of
    one scan and of one training (evaluation passes included or not: both sides alike)."""
    aselect, exhaustive = scan + training, candidates * training
    return {"scan_hours": hours(scan), "training_hours": hours(training), "aselect_hours": hours(aselect),
            "exhaustive_hours": hours(exhaustive), "saving": exhaustive / aselect if aselect > 0 else None}


def flop_seconds(flops: float, peak_flops: float, mfu: float) -> float:
    """Seconds of ``flops`` on a device whose peak is ``peak_flops`` per second, used at the fraction ``mfu``."""
    return flops / (peak_flops * mfu)


def sweep_wall_hours(training_hours: float, jobs: int, gpus: int) -> float:
    """Wall-clock hours of ``jobs`` equal one-GPU trainings on ``gpus`` GPUs: ``ceil(jobs / gpus)`` rounds."""
    return math.ceil(jobs / gpus) * training_hours
