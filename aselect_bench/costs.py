"""Cost accounting, in one place: wall seconds and backbone forwards (images passed through the transformer).

Every strategy the suite compares (an HFR scan, one training, an exhaustive sweep) is measured with
:func:`measure_cost`, so their costs are counted the same way; :func:`cost_across_attempts` adds what the
interrupted attempts of a resumed piece cost.
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
    """What a piece of work cost: ``seconds`` of wall time and ``forwards`` (images through the backbone)."""

    seconds: float = 0.0
    forwards: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.seconds + other.seconds, self.forwards + other.forwards)

    def to_json(self) -> dict:
        return {"seconds": self.seconds, "forwards": self.forwards}


@contextmanager
def measure_cost(backbone) -> Iterator[Cost]:
    """``with measure_cost(backbone) as cost: ...``: afterwards ``cost`` holds the block's seconds and the
    forwards ``backbone`` counted meanwhile (filled in even when the block raises)."""
    cost = Cost()
    start, forwards = time.perf_counter(), backbone.forwards
    try:
        yield cost
    finally:
        cost.seconds, cost.forwards = time.perf_counter() - start, backbone.forwards - forwards


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
        "cost_complete"}`` (``attempts`` counts the finishing one too)."""
        if not self.count:
            return {}
        return {"attempts": self.count + 1, "interrupted_seconds": self.cost.seconds,
                "interrupted_forwards": self.cost.forwards, "cost_complete": self.unknown == 0}


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
    saved = read_json(record) if record.exists() else {"attempts": 0, "seconds": 0.0, "forwards": 0, "unknown": 0}
    earlier = Attempts(Cost(saved["seconds"], saved["forwards"]), saved["attempts"], saved["unknown"])
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
                atomic_write_json(record, {"attempts": saved["attempts"] + 1, "seconds": spent.seconds,
                                           "forwards": spent.forwards, "unknown": saved["unknown"]})
            except OSError:
                pass  # the disk is full or gone: the attempt stays counted as one of unknown cost
