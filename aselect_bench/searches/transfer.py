"""Transfer: what a user does who searched once on another dataset."""

from __future__ import annotations

from collections import Counter

from aselect_bench.searches.base import Budget, CannotPick, Context, Search, register


@register("transfer")
class Transfer(Search):
    """The exhaustive best of the other comparisons in the same results folder, by majority over them (ties
    towards the smaller t); only bests that are candidates of this grid count. No training but the final
    one."""

    @property
    def settings(self) -> dict:
        return {"vote": "majority of the other comparisons' exhaustive bests, ties towards the smaller t"}

    def choose(self, budget: Budget, context: Context, seed) -> int:
        votes = Counter(t for t in context.other_bests.values() if t in budget.candidates)
        if not votes:
            raise CannotPick("no other comparison in the results folder has its exhaustive best on this grid")
        return min(votes, key=lambda t: (-votes[t], t))
