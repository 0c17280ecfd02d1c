"""The cost-regret frontier: every selector, every search and the exhaustive search itself on one chart, x = cost
as a fraction of the exhaustive search's, y = regret with its interval, and the Pareto front (no other point is
both cheaper and of lower regret).

Costs are fractions of the exhaustive search, each measured the way its kind spends: a *selector* costs its
time (the scan, its extra work and one training at its pick, as measured in the sweep) over the exhaustive
sweep's time (``1 / saving_seconds``); a *search* costs the epochs it trains over the sweep's epochs
(``cost_fraction``). One epoch of one candidate costs about the same at every candidate, so both read as the
share of the sweep's compute; the exhaustive search is at cost 1, regret 0.
"""

from __future__ import annotations

#: What the x axis says.
COST_LABEL = ("cost / exhaustive search (log): selectors by time (scan + 1 training), searches by epochs trained")


def point(name: str, kind: str, cost, regret, ci=None, tied=None) -> dict:
    """One point: ``{"name", "kind" ("selector" | "search" | "exhaustive"), "cost", "regret", "ci", "tied"}``."""
    return {"name": name, "kind": kind, "cost": cost, "regret": regret, "ci": ci, "tied": tied}


def comparison_points(result: dict) -> list[dict]:
    """The points of one comparison: every scored selector, every search that picked, the exhaustive search."""
    points = [point(r["name"], "selector", 1 / r["saving_seconds"], r["regret"], r.get("regret_ci"),
                    r.get("tied_with_best")) for r in result.get("selectors", []) if r.get("saving_seconds")]
    points += [point(r["name"], "search", r["cost_fraction"], r["regret"], r.get("regret_ci"), r.get("tied_with_best"))
               for r in result.get("searches", []) if r.get("timestep") is not None]
    return points + [point("exhaustive", "exhaustive", 1.0, 0.0, [0.0, 0.0], True)]


def board_points(board: dict) -> list[dict]:
    """The points of a leaderboard (:func:`~aselect_bench.analyses.leaderboard.build_leaderboard`): each
    selector's and search's mean cost and mean regret with its two-stage interval, and the exhaustive search."""
    points = [point(r["name"], "selector", r["mean_cost_fraction"], r["mean_regret"], r.get("mean_regret_ci"))
              for r in board["selectors"] if r.get("mean_cost_fraction") is not None]
    points += [point(r["name"], "search", r["mean_cost_fraction"], r["mean_regret"], r.get("mean_regret_ci"))
               for r in board.get("searches", []) if r.get("mean_cost_fraction") is not None]
    return points + [point("exhaustive", "exhaustive", 1.0, 0.0, [0.0, 0.0], True)]


def pareto_front(points: list[dict]) -> list[dict]:
    """The points no other point dominates (another at most as costly with a lower regret, or cheaper with at
    most the regret), cheapest first."""
    def dominated(p: dict) -> bool:
        return any((q["cost"] <= p["cost"] and q["regret"] < p["regret"]) or
                   (q["cost"] < p["cost"] and q["regret"] <= p["regret"]) for q in points)

    return sorted((p for p in points if not dominated(p)), key=lambda p: (p["cost"], p["regret"]))
