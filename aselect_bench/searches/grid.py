"""Two grid searches a practitioner writes by hand: a coarse grid then its neighbours, and a short look at
every candidate."""

from __future__ import annotations

from aselect_bench.searches.base import Budget, Context, Search, register


@register("coarse-to-fine")
class CoarseToFine(Search):
    """Every ``stride``-th candidate (the first included) trained fully; then the untried grid neighbours of
    the best (one on each side), also fully; the best of all by val at ``max_epochs``."""

    stride = 4

    @property
    def settings(self) -> dict:
        return {"stride": self.stride, "neighbours": 1}

    def choose(self, budget: Budget, context: Context, seed) -> int:
        ts, full = budget.candidates, budget.max_epochs
        coarse = ts[::self.stride]
        i = ts.index(budget.best(coarse, full))
        tried = set(coarse) | {ts[j] for j in (i - 1, i + 1) if 0 <= j < len(ts)}
        return budget.best([t for t in ts if t in tried], full)


@register("early-look")
class EarlyLook(Search):
    """Every candidate for ``k = max(1, max_epochs // 8)`` epochs (1/8 of the budget); the best by val then
    trained on to ``max_epochs``."""

    fraction = 8

    @property
    def settings(self) -> dict:
        return {"look": f"max(1, max_epochs // {self.fraction})"}

    def choose(self, budget: Budget, context: Context, seed) -> int:
        return budget.best(budget.candidates, max(1, budget.max_epochs // self.fraction))
