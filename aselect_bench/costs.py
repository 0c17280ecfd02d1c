"""Cost accounting, in one place: wall seconds, this process's CPU seconds, CUDA seconds on a GPU, and backbone
forwards (images passed through the transformer).

Every strategy the suite compares (an HFR scan, one training, an exhaustive sweep) is measured with
:func:`measure_cost`, so their costs are counted the same way; :func:`cost_across_attempts` adds what the
interrupted attempts of a resumed piece cost. Wall time is what a user waits, but other processes on the
machine inflate it; the process's CPU time (``time.process_time``: every thread of this process, no other
process) is what they cannot inflate on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aselect_bench.io import atomic_write_json, read_json


@dataclass
class Cost:
    """What a piece of work cost: ``seconds`` of wall time, ``forwards`` (images through the backbone),
    ``cpu_seconds`` of this process's CPU time and, on a GPU, ``gpu_seconds`` (CUDA time on the device's stream).
    ``None`` is unknown (a record from before it was measured): a sum with an unknown part is unknown."""

    seconds: float = 0.0
    forwards: int = 0
    cpu_seconds: float | None = 0.0
    gpu_seconds: float | None = None

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.seconds + other.seconds, self.forwards + other.forwards,
                    _add(self.cpu_seconds, other.cpu_seconds), _add_gpu(self.gpu_seconds, other.gpu_seconds))

    def to_json(self) -> dict:
        gpu = {} if self.gpu_seconds is None else {"gpu_seconds": self.gpu_seconds}
        return {"seconds": self.seconds, "forwards": self.forwards, "cpu_seconds": self.cpu_seconds, **gpu}

    def add_(self, other: Cost) -> None:
        """Add ``other`` in place (a running total)."""
        self.__dict__.update((self + other).__dict__)

    @classmethod
    def from_json(cls, data: dict, prefix: str = "") -> Cost:
        """A stored cost (keys ``{prefix}seconds``, ...); a record without CPU time gets ``cpu_seconds`` None."""
        return cls(data[f"{prefix}seconds"], data[f"{prefix}forwards"], data.get(f"{prefix}cpu_seconds"),
                   data.get(f"{prefix}gpu_seconds"))


def mean_cost(costs: list[Cost]) -> Cost:
    """The mean of ``costs`` (what one of them costs on average)."""
    total, n = sum(costs, Cost()), len(costs)
    return Cost(total.seconds / n, total.forwards / n, None if total.cpu_seconds is None else total.cpu_seconds / n,
                None if total.gpu_seconds is None else total.gpu_seconds / n)


def saving_measure(costs: list[Cost], device) -> str:
    """The measure a time saving is computed from: ``"cpu_seconds"`` (this process's CPU time, which other
    processes cannot inflate) on a CPU when every cost recorded it, else ``"seconds"`` (wall time)."""
    on_cpu = str(device).split(":")[0] == "cpu"
    return "cpu_seconds" if on_cpu and all(c.cpu_seconds is not None for c in costs) else "seconds"


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _add_gpu(a: float | None, b: float | None) -> float | None:
    return a if b is None else b if a is None else a + b


@contextmanager
def measure_cost(backbone) -> Iterator[Cost]:
    """``with measure_cost(backbone) as cost: ...``: afterwards ``cost`` holds the block's wall and CPU seconds
    (CUDA seconds too when ``backbone`` runs on a GPU) and the forwards ``backbone`` counted meanwhile (filled in
    even when the block raises)."""
    cost = Cost()
    events = _cuda_events(backbone)
    start, cpu, forwards = time.perf_counter(), time.process_time(), backbone.forwards
    try:
        yield cost
    finally:
        cost.seconds, cost.forwards = time.perf_counter() - start, backbone.forwards - forwards
        cost.cpu_seconds = time.process_time() - cpu
        if events is not None:
            events[1].record()
            events[1].synchronize()
            cost.gpu_seconds = events[0].elapsed_time(events[1]) / 1000


def _cuda_events(backbone):
    """A started pair of CUDA timing events on the backbone's device, or ``None`` off a GPU."""
    import torch

    device = getattr(backbone, "device", None)
    if device is None or torch.device(device).type != "cuda":
        return None
    with torch.cuda.device(device):
        pair = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        pair[0].record()
    return pair


@dataclass
class Attempts:
    """Earlier attempts at a piece of work that stopped before it finished (an interrupt, an error, a kill).

    ``cost``: what the recorded ones cost; ``count``: how many there were; ``unknown``: how many of them never
    recorded their cost (killed outright, e.g. ``kill -9``), so ``cost`` is then a lower bound.
    """

    cost: Cost
    count: int = 0
    unknown: int = 0

    def to_json(self) -> dict:
        """``{}`` for a first attempt; else ``{"attempts", "interrupted_seconds", "interrupted_forwards",
        "interrupted_cpu_seconds", "cost_complete"}`` (``attempts`` counts the finishing one too)."""
        if not self.count:
            return {}
        return {"attempts": self.count + 1, "interrupted_seconds": self.cost.seconds,
                "interrupted_forwards": self.cost.forwards, "interrupted_cpu_seconds": self.cost.cpu_seconds,
                "cost_complete": self.unknown == 0}


@contextmanager
def cost_across_attempts(record, backbone) -> Iterator[Attempts]:
    """``with cost_across_attempts(path, backbone) as earlier: ...``: the cost of a resumable piece of work over
    all its attempts, kept in the small JSON file ``record``.

    A resumed piece reuses what an interrupted attempt left (cached features), so its own cost alone
    under-counts it; the caller adds ``earlier.cost``. While the block runs, ``record`` counts one more attempt
    of unknown cost; if the block raises (SIGINT, SIGTERM, an error), the cost it spent is written there before
    the exception passes on. An attempt killed outright stays counted in ``earlier.unknown``.
    """
    record = Path(record)
    saved = read_json(record) if record.exists() else {"attempts": 0, "seconds": 0.0, "forwards": 0,
                                                       "cpu_seconds": 0.0, "unknown": 0}
    earlier = Attempts(Cost.from_json(saved), saved["attempts"], saved["unknown"])
    atomic_write_json(record, {**saved, "attempts": saved["attempts"] + 1, "unknown": saved["unknown"] + 1})
    finished = False
    try:
        with measure_cost(backbone) as cost:
            yield earlier
        finished = True
    finally:
        if not finished:
            spent = earlier.cost + cost
            try:
                atomic_write_json(record, {"attempts": saved["attempts"] + 1, **spent.to_json(),
                                           "unknown": saved["unknown"]})
            except OSError:
                pass  # the disk is full or gone: the attempt stays counted as one of unknown cost
