"""Seconds and peak memory of a piece of work on the device at hand, and the largest batch that fits.

Memory: on CUDA the allocator's ``max_memory_allocated``; on a CPU the process's resident high-water mark
(``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs``; Linux). On CUDA an
out-of-memory error can be caught and the batch halved; on a CPU the kernel kills the process instead, so
the need of a batch is predicted from measured batches and refused before it runs (:func:`predict_fit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

STATUS, CLEAR_REFS, MEMINFO = Path("/proc/self/status"), Path("/proc/self/clear_refs"), Path("/proc/meminfo")
#: Share of the available memory a predicted batch may use (the rest absorbs the prediction's error).
MEMORY_MARGIN = 0.9


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU needs nothing)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synced(fn: Callable, device) -> Callable:
    """``fn`` that returns only once the device has finished its work."""
    if torch.device(device).type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize(device))[0]


def timed(fn: Callable, device) -> float:
    """Wall seconds of ``fn()``, the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _status_bytes(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (``VmHWM``, ``VmRSS``), ``None`` where unreadable."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_memory(device) -> bool:
    """Start a new peak-memory window; ``False`` where the peak cannot be reset (it then covers the process)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        CLEAR_REFS.write_text("5")  # Linux: resets VmHWM to the current resident size
        return True
    except OSError:
        return False


def peak_memory_bytes(device) -> int:
    """Peak memory since the last :func:`reset_peak_memory`: CUDA max allocated, or the CPU process's peak RSS."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = _status_bytes("VmHWM")
    if peak is None:
        import resource
        import sys

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return peak


def current_memory_bytes(device) -> int:
    """Memory in use now: CUDA allocated, or the CPU process's resident size (0 where unreadable)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return _status_bytes("VmRSS") or 0


def available_memory_bytes(device) -> int | None:
    """Memory a new allocation could still get: free CUDA memory, or the CPU's ``MemAvailable`` (``None`` where
    unreadable)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class EncodeTime:
    """Seconds spent in ``backbone.encode`` and the images it encoded, while :func:`timing_encode` is active."""

    seconds: float = 0.0
    images: int = 0


@contextmanager
def timing_encode(backbone, device) -> Iterator[EncodeTime]:
    """Count the seconds of every ``backbone.encode`` call inside the block (the VAE share of a stage)."""
    record, original = EncodeTime(), backbone.encode

    def encode(images):
        synchronize(device)
        start = time.perf_counter()
        out = original(images)
        synchronize(device)
        record.seconds += time.perf_counter() - start
        record.images += len(images)
        return out

    backbone.encode = encode
    try:
        yield record
    finally:
        del backbone.encode  # the class's method again


def optimizer_step(module, loss_fn: Callable, device, lr: float = 1e-4, weight_decay: float = 0.0,
                   optimizer=None) -> Callable:
    """One training step as a function: ``loss_fn()`` forward, backward, an optimizer step (``optimizer``, else a
    new AdamW) on ``module``'s trainable parameters (a frozen backbone has none)."""
    opt = optimizer or torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr,
                                         weight_decay=weight_decay)

    def step():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return synced(step, device)


def halvings(batch: int, smallest: int = 1) -> list[int]:
    """``batch, batch // 2, ...`` down to ``smallest``: the batches tried, largest first."""
    out = [batch]
    while out[-1] // 2 >= smallest:
        out.append(out[-1] // 2)
    return out


def largest_that_runs(run: Callable[[int], object], batch: int, smallest: int = 1,
                      cleanup: Callable[[], object] = lambda: None) -> int | None:
    """The first of :func:`halvings` of ``batch`` for which ``run(b)`` ends without a CUDA out-of-memory error
    (``cleanup()`` after each one), or ``None`` when not even ``smallest`` does."""
    for tried in halvings(batch, smallest):
        try:
            run(tried)
            return tried
        except torch.cuda.OutOfMemoryError:
            pass
        cleanup()  # outside the except clause: the error's traceback no longer holds the step's tensors
    return None


def predict_fit(batch: int, measured: dict[int, int], available: int, smallest: int = 1) -> int | None:
    """The largest of :func:`halvings` of ``batch`` whose predicted extra memory fits ``MEMORY_MARGIN x available``.

    ``measured``: ``{batch: bytes}`` of peak memory above the level before the stage, for one or two batches. With
    one point the need grows in proportion (an upper bound: fixed costs are counted per image); with two, on the
    line through them. ``None``: not even ``smallest`` fits.
    """
    (b1, m1), *rest = sorted(measured.items())
    if rest:
        b2, m2 = rest[-1]
        slope = max(0.0, (m2 - m1) / (b2 - b1))

        def need(b):
            return m1 + slope * (b - b1)
    else:
        def need(b):
            return m1 * b / b1
    return next((b for b in halvings(batch, smallest) if need(b) <= MEMORY_MARGIN * available), None)
