"""Successive halving and Hyperband (Li et al., "Hyperband", JMLR 2018), resume-based as ASHA (Li et al.,
MLSys 2020): a candidate promoted to the next rung continues its run, so it is charged only the new epochs.

Published defaults: ``eta = 3``, a minimum resource of 1 epoch, the maximum ``max_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aselect_bench.searches.base import Budget, Context, Search, register

ETA = 3


def ladder(max_epochs: int, eta: int = ETA, min_epochs: int = 1) -> list[int]:
    """The rungs of successive halving: ``min_epochs * eta^i`` below ``max_epochs``, then ``max_epochs``
    (``ladder(9) == [1, 3, 9]``, ``ladder(10) == [1, 3, 9, 10]``)."""
    rungs, r = [], min_epochs
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    return rungs + [max_epochs]


def halve(budget: Budget, ts: Sequence[int], rungs: Sequence[int], eta: int = ETA) -> int:
    """Successive halving of ``ts`` over ``rungs`` (epochs, the last is the full training): at each rung every
    survivor is trained to it and the best ``max(1, n // eta)`` by val go on (grid order on ties); one left
    goes straight to the end. Returns the winner (the best at the last rung)."""
    ts = list(ts)
    for r in rungs[:-1]:
        if len(ts) == 1:
            return ts[0]
        keep = set(budget.top(ts, r, max(1, len(ts) // eta)))
        ts = [t for t in ts if t in keep]
    return budget.best(ts, rungs[-1])


@register("successive-halving")
class SuccessiveHalving(Search):
    """Every candidate for 1 epoch, the best third for 3, the best third of those for 9, ... up to
    ``max_epochs``."""

    eta = ETA

    @property
    def settings(self) -> dict:
        return {"eta": self.eta, "min_epochs": 1}

    def choose(self, budget: Budget, context: Context, seed) -> int:
        return halve(budget, budget.candidates, ladder(budget.max_epochs, self.eta), self.eta)


def evenly(ts: Sequence[int], n: int) -> list[int]:
    """``n`` of ``ts`` spread evenly over the grid, both ends included (all of them when ``n >= len(ts)``)."""
    if n >= len(ts):
        return list(ts)
    if n == 1:
        return [ts[0]]
    return [ts[round(k * (len(ts) - 1) / (n - 1))] for k in range(n)]


def brackets(max_epochs: int, eta: int = ETA) -> list[tuple[int, list[int]]]:
    """Li et al.'s brackets over a maximum resource ``R = max_epochs`` (minimum 1 epoch): for ``s = s_max..0``,
    ``(n, rungs)`` with ``n = ceil((s_max + 1) / (s + 1) * eta^s)`` configurations and rungs
    ``floor(R * eta^(i - s))`` for ``i < s``, then ``R`` (``brackets(9) == [(9, [1, 3, 9]), (5, [3, 9]),
    (3, [9])]``)."""
    s_max = int(math.floor(math.log(max_epochs, eta) + 1e-9))
    out = []
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) / (s + 1) * eta ** s)
        rungs = [max(1, math.floor(max_epochs * eta ** (i - s) + 1e-9)) for i in range(s)] + [max_epochs]
        out.append((n, rungs))
    return out


@register("hyperband")
class Hyperband(Search):
    """Li et al.'s brackets, each a successive halving from a different minimum resource; the bracket winners
    are compared at ``max_epochs``. A bracket's ``n`` configurations are ``n`` candidates spread evenly over
    the grid (Li et al. draw them at random; a grid this small is better covered evenly, and the replay stays
    deterministic). Runs are shared between brackets (resume-based): a candidate already trained to k epochs
    is not trained again."""

    eta = ETA

    @property
    def settings(self) -> dict:
        return {"eta": self.eta, "min_epochs": 1, "configurations": "evenly spaced over the grid"}

    def choose(self, budget: Budget, context: Context, seed) -> int:
        winners = [halve(budget, evenly(budget.candidates, n), rungs, self.eta)
                   for n, rungs in brackets(budget.max_epochs, self.eta)]
        return budget.best([t for t in budget.candidates if t in winners], budget.max_epochs)
