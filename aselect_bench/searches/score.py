"""The searches of one comparison, replayed on its recorded learning curves and scored as its selectors are.

A search's pick is scored exactly like a selector's: its test metric is the exhaustive sweep's training at the
pick (the same training), its regret against the exhaustive best, and its regret interval from the same paired
bootstrap (:func:`aselect_bench.uncertainty.regret_intervals`, the comparison's resamples and seed), with the
same tie rule (an interval containing 0: tied with the best). With seeds, each seed's sweep is one replay; a
stochastic search (Optuna) runs once per sampler seed on each, and its regret scores the mean over all runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aselect_bench.analyses.error_bars import seed_pick
from aselect_bench.experiments.base import best_on_validation
from aselect_bench.io import read_json
from aselect_bench.reports import comparison_name
from aselect_bench.searches.base import (
    Context,
    Outcome,
    ReplaySource,
    build_search,
    recorded_sweeps,
    search_names,
)
from aselect_bench.uncertainty import LEVEL, RESAMPLES, SeedMean, mean_and_se, regret_intervals

#: What a search's ``cost_fraction`` is a fraction of.
COST_OF = "epochs of the exhaustive search (every candidate trained for max_epochs, per seed)"


def replay(sweeps: dict, names: list[str] | None = None, context: Context | None = None) -> dict:
    """Every search in ``names`` (all registered ones by default) on each seed's recorded curves:
    ``{name: {repeat: [Outcome per sampler seed]}}``. ``sweeps``: ``{repeat: {t: row with "history"}}``."""
    sources = {r: ReplaySource.from_sweep(sweep) for r, sweep in sweeps.items()}
    return {name: {r: build_search(name).run(source, context) for r, source in sources.items()}
            for name in names or search_names()}


def search_rows(result: dict, sweeps: dict, names: list[str] | None = None, context: Context | None = None) -> list:
    """The comparison's ``searches`` list (see :func:`search_row`), their regret intervals read off one
    bootstrap of ``sweeps``' per-image outcomes when the comparison has them (``result["bootstrap"]``)."""
    runs = replay(sweeps, names, context)
    intervals = _intervals(result, sweeps, runs)
    return [search_row(name, by_repeat, sweeps, result, intervals.get(name)) for name, by_repeat in runs.items()]


def search_row(name: str, runs: dict[int, list[Outcome]], sweeps: dict, result: dict, interval: dict | None) -> dict:
    """One search's row: ``{"name", "timestep" (most frequent pick), "timesteps" (every run's, seed-major, when
    more than one), "cost_fraction", "cost_of", "epochs", "seconds", "forwards" (summed over seeds, mean over
    sampler seeds), "regret", "regret_ci", "tied_with_best", "strictly_worse", "settings", "runs"}``; a search
    that cannot pick has ``"timestep": None`` and ``"reason"``, and no cost or regret."""
    search = build_search(name)
    outs = [o for r in runs for o in runs[r]]
    row = {"name": name, "settings": search.settings, "cost_of": COST_OF,
           "runs": [{"repeat": r, **o.to_json()} for r in runs for o in runs[r]]}
    failed = next((o for o in outs if o.timestep is None), None)
    if failed is not None:
        return {**row, "timestep": None, "reason": failed.reason, "cost_fraction": None, "epochs": None,
                "seconds": None, "forwards": None, "regret": None, "regret_ci": None, "tied_with_best": None}
    picks = [o.timestep for o in outs]
    mean = {k: sum(np.mean([getattr(o, k) for o in runs[r]]) for r in runs) for k in ("epochs", "seconds", "forwards")}
    tests = [np.mean([sweeps[r][o.timestep]["test"] for o in runs[r]]) for r in runs]  # per seed
    history_seconds = sum(row_["history"][-1]["seconds"] for sweep in sweeps.values() for row_ in sweep.values())
    row.update(timestep=seed_pick(picks), **({"timesteps": picks} if len(picks) > 1 else {}),
               cost_fraction=float(np.mean([o.cost_fraction for o in outs])),
               epochs=_whole(mean["epochs"]), seconds=float(mean["seconds"]), forwards=_whole(mean["forwards"]),
               seconds_fraction=float(mean["seconds"] / history_seconds) if history_seconds else None,
               test=float(np.mean(tests)), regret=result["exhaustive"]["test_at_best"] - float(np.mean(tests)),
               regret_ci=None, tied_with_best=None)
    if interval is not None:
        row.update(regret_ci=interval["ci"], regret_se=interval["se"], tied_with_best=interval["tied_with_best"],
                   strictly_worse=interval["ci"][0] > 0)
    if len(runs) > 1:  # within each seed: its own best's test minus its pick's
        within = [sweeps[r][best_on_validation(sweeps[r])]["test"] - t for r, t in zip(runs, tests)]
        row["regret_seeds"] = mean_and_se(within)
    if len(search.sampler_seeds) > 1:
        regrets = [sweeps[r][best_on_validation(sweeps[r])]["test"] - sweeps[r][o.timestep]["test"]
                   for r in runs for o in runs[r]]
        row["spread"] = {"sampler_seeds": len(search.sampler_seeds), "regret": _spread(regrets),
                         "cost_fraction": _spread([o.cost_fraction for o in outs])}
    return row


def _whole(x) -> int | float:
    """``x`` as an ``int`` when it is whole (a deterministic search's epochs), else a ``float`` (a mean)."""
    return int(x) if float(x).is_integer() else float(x)


def _spread(values) -> dict:
    """``{"mean", "sd", "min", "max", "n"}`` (``sd`` with ddof 1, None for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None, "min": float(v.min()),
            "max": float(v.max()), "n": int(v.size)}


def _intervals(result: dict, sweeps: dict, runs: dict) -> dict:
    """``{name: regret entry}`` from one :func:`regret_intervals` over every search's pick (a seed mean over its
    runs), with the comparison's bootstrap settings; ``{}`` without per-image outcomes."""
    boot = result.get("bootstrap")
    if not boot:
        return {}
    candidates, repeats = result["candidates"], list(sweeps)
    val = {t: SeedMean([sweeps[r][t]["outcomes"]["val"] for r in repeats]) for t in candidates}
    test = {t: SeedMean([sweeps[r][t]["outcomes"]["test"] for r in repeats]) for t in candidates}
    picks = {name: SeedMean([sweeps[r][o.timestep]["outcomes"]["test"] for r in by_repeat for o in by_repeat[r]])
             for name, by_repeat in runs.items() if all(o.timestep is not None for os in by_repeat.values()
                                                        for o in os)}
    regrets = regret_intervals(val, test, boot.get("resamples", RESAMPLES), boot.get("seed", 0),
                               boot.get("level", LEVEL), picks=picks)
    return regrets["picks"]


# --------------------------------------------------------------------------------- transfer, when written
def other_bests(result: dict, folder) -> dict[str, int]:
    """``{file stem: exhaustive best}`` of the other comparisons in the results folder ``folder`` with the same
    backbone (files with ``"exhaustive"``; this comparison's own file left out)."""
    own = comparison_name(result)
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        if path.stem == own:
            continue
        try:
            other = read_json(path)
        except Exception:  # a leaderboard or a damaged file: not a comparison
            continue
        if isinstance(other, dict) and "exhaustive" in other and other.get("backbone") == result.get("backbone"):
            out[path.stem] = int(other["exhaustive"]["best_timestep"])
    return out


def with_transfer(result: dict, folder) -> None:
    """Re-score the ``transfer`` row of ``result`` (in place) on the other comparisons now in ``folder``. Its
    pick is the same at every seed, so its regret interval is the candidate's own (``per_timestep[t]``), the
    same bootstrap as every other pick's."""
    rows = result.get("searches")
    if not rows or not any(r["name"] == "transfer" for r in rows):
        return
    sweeps = recorded_sweeps(result)
    runs = replay(sweeps, ["transfer"], Context(other_bests(result, folder)))["transfer"]
    t = next(iter(runs.values()))[0].timestep
    cell = result["exhaustive"]["per_timestep"].get(t) or result["exhaustive"]["per_timestep"].get(str(t)) or {}
    interval = ({"ci": cell["regret_ci"], "se": None, "tied_with_best": cell["tied_with_best"]}
                if t is not None and cell.get("regret_ci") else None)
    row = search_row("transfer", runs, sweeps, result, interval)
    result["searches"] = [row if r["name"] == "transfer" else r for r in rows]
