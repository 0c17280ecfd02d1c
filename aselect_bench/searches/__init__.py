"""Searches over the timestep: what a user with a training budget does instead of a one-pass selector.

Every search reads learning curves through :class:`CurveSource` (a replay of a comparison's recorded histories,
or a live run) and ends with one full training at its pick; see :mod:`aselect_bench.searches.base` for the
interface and how to add one. The shipped searches register on import, in this order.

This package's ``__init__`` imports no live runner: :mod:`aselect_bench.analyses.compare` imports it.
"""

# the shipped searches register on import, in this order
from aselect_bench.searches import halving, grid, optuna_tpe, transfer  # noqa: F401, I001
from aselect_bench.searches.base import (
    Budget,
    CannotPick,
    Context,
    CurveSource,
    Outcome,
    ReplaySource,
    Search,
    build_search,
    register,
    search_names,
)

__all__ = ["Budget", "CannotPick", "Context", "CurveSource", "Outcome", "ReplaySource", "Search", "build_search",
           "register", "search_names"]
