"""Cost accounting, in one place: wall seconds and backbone forwards (images passed through the transformer).

Every strategy the suite compares (an HFR scan, one training, an exhaustive sweep) is measured with
:func:`measure_cost`, so their costs are counted the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


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
