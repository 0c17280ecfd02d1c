"""Timestep selectors: A-SelecT's HFR and the rules a skeptic tries first, all reading one scan.

Add a selector: subclass :class:`Selector` (override ``score`` for a statistic of one candidate's features
``[N, C, h, w]``, or ``choose`` for a rule), and register a factory with ``@register("name")`` in one of
this package's modules (or your own, imported before use). ``compare`` then scores it on the exhaustive
curve next to the others, and ``select --selector name`` and the Lightning callback accept it.
"""

# the shipped selectors register on import, in this order (hfr first)
from aselect_bench.selectors import hfr, rules, spectrum, labelled  # noqa: F401, I001
from aselect_bench.selectors.base import (
    Labels,
    Selector,
    build_selector,
    check_enough_images,
    register,
    selector_names,
    training_selector,
)
from aselect_bench.selectors.features import check_candidates
from aselect_bench.selectors.hfr import SelectionResult, scan_hfr, select_timestep, summarize_scan
from aselect_bench.selectors.scan import (
    Choice,
    RawScores,
    Selection,
    collect_scores,
    finalize,
    labelled_set,
    run_selectors,
)

__all__ = ["Labels", "Selector", "build_selector", "check_enough_images", "register", "selector_names", "training_selector",
           "check_candidates", "SelectionResult", "scan_hfr", "select_timestep", "summarize_scan", "Choice",
           "RawScores", "Selection", "collect_scores", "finalize", "labelled_set", "run_selectors"]
