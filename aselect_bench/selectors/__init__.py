"""Timestep selectors: A-SelecT's HFR and the rules a skeptic tries first, all reading one scan.

Add a selector: subclass :class:`Selector` (override ``score`` for a statistic of one candidate's features
``[N, C, h, w]``, or ``choose`` for a rule), and register a factory with ``@register("name")`` in one of
this package's modules (or your own, imported before use). ``compare`` then scores it on the exhaustive
curve next to the others, and ``select --selector name`` and the Lightning callback accept it.
"""

from aselect_bench.selectors.base import Labels, Selector, build_selector, register, selector_names
from aselect_bench.selectors.scan import (
    Choice,
    RawScores,
    Selection,
    collect_scores,
    finalize,
    labelled_set,
    run_selectors,
)

__all__ = ["Labels", "Selector", "build_selector", "register", "selector_names", "Choice", "RawScores",
           "Selection", "collect_scores", "finalize", "labelled_set", "run_selectors"]
