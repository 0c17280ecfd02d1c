"""A comparison's error bars: bootstrap intervals over images for every candidate and every pick, paired regret
intervals with the best re-chosen on each resample, the candidates tied with the best, and, with several
seeds, means and standard errors over the repeats (:mod:`aselect_bench.uncertainty` does the arithmetic).

How to read them: a regret interval that contains 0 means the pick is *tied with the best*: on another draw of
as many images (of the held-out split that chose the best, and of the reported split) the exhaustive search
could as well have ended at the pick's timestep. A pick is *strictly worse* when the whole interval is above 0.
"""

from __future__ import annotations

from aselect_bench.experiments.base import best_on_validation
from aselect_bench.uncertainty import (
    LEVEL,
    RESAMPLES,
    SeedMean,
    mean_and_se,
    metric_interval,
    regret_intervals,
)

#: What the comparison's ``"bootstrap"`` entry says about how its intervals were made.
METHOD = ("percentile bootstrap over images; a regret resamples the selection split and the reported split "
          "together and re-takes the best on each resample; with seeds, each resample scores the mean over seeds")


def seed_pick(picks: list):
    """The one timestep a choice repeated over seeds reports: the most frequent pick, ties broken by the
    earliest seed (``[850, 950, 50]`` -> 850, ``[50, 950, 950]`` -> 950); ``None`` when no seed picked."""
    made = [t for t in picks if t is not None]
    return max(made, key=lambda t: (made.count(t), -made.index(t))) if made else None


def comparison_error_bars(result: dict, sweeps: dict, trains: list[dict], picks: dict, aselect_seconds: list[float],
                          resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> None:
    """Add the error bars to ``result`` (a comparison, changed in place).

    ``sweeps``: ``{repeat: {t: row}}`` (each row's ``outcomes``: per-image records of the selection and the
    reported split); ``trains``: A-SelecT's training of each repeat; ``picks``: ``{selector: [timestep or None
    per repeat]}``; ``aselect_seconds``: what A-SelecT cost in each repeat (scan and training), in the measure
    ``result["saving_measure"]`` names.
    Rows without per-image outcomes (kept by an earlier version) leave ``result["bootstrap"]`` None.
    """
    candidates, repeats = result["candidates"], list(sweeps)
    rows = [sweeps[r][t] for r in repeats for t in candidates] + trains
    if not all(row.get("outcomes") for row in rows):
        result["bootstrap"] = None
        return
    val = {t: SeedMean([sweeps[r][t]["outcomes"]["val"] for r in repeats]) for t in candidates}
    test = {t: SeedMean([sweeps[r][t]["outcomes"]["test"] for r in repeats]) for t in candidates}
    pick_metrics = {name: SeedMean([sweeps[r][t]["outcomes"]["test"] for r, t in zip(repeats, ts)])
                    for name, ts in picks.items() if ts[0] is not None}
    pick_metrics["A-SelecT"] = SeedMean([row["outcomes"]["test"] for row in trains])
    regrets = regret_intervals(val, test, resamples, seed, level, picks=pick_metrics)
    ex, per_t = result["exhaustive"], result["exhaustive"]["per_timestep"]
    for t in candidates:
        candidate = regrets["per_candidate"][t]
        per_t[t].update(ci=metric_interval(test[t], resamples, seed, level)["ci"],
                        val_ci=metric_interval(val[t], resamples, seed + 1, level)["ci"],
                        regret_if_picked=candidate["regret"], regret_ci=candidate["ci"],
                        tied_with_best=candidate["tied_with_best"])
    ex.update(test_at_best_ci=regrets["test_at_best"]["ci"], tied_with_best=regrets["tied_with_best"],
              best_frequency=regrets["best_frequency"])
    mine = regrets["picks"]["A-SelecT"]
    result["aselect"].update(ci=metric_interval(pick_metrics["A-SelecT"], resamples, seed, level)["ci"],
                             tied_with_best=mine["tied_with_best"])
    result["regret_ci"] = mine["ci"]
    for row in result.get("selectors", []):
        entry = regrets["random"] if row["timestep"] is None else regrets["picks"][row["name"]]
        row.update(regret_ci=entry["ci"], regret_se=entry["se"], tied_with_best=entry["tied_with_best"],
                   strictly_worse=entry["ci"][0] > 0)
    result["bootstrap"] = {"resamples": resamples, "seed": seed, "level": level, "method": METHOD}
    if len(repeats) > 1:
        _over_seeds(result, sweeps, trains, picks, aselect_seconds)


def _over_seeds(result: dict, sweeps: dict, trains: list[dict], picks: dict, aselect_seconds: list[float]) -> None:
    """Means and standard errors over the repeats: each candidate's metrics, how often each candidate is a
    repeat's best, each pick's regret within its repeat, and the time saving."""
    candidates, repeats = result["candidates"], list(sweeps)
    ex, per_t = result["exhaustive"], result["exhaustive"]["per_timestep"]
    for t in candidates:
        for split in ("val", "test"):
            per_t[t][f"{split}_se"] = mean_and_se([sweeps[r][t][split] for r in repeats])["se"]
    best = [best_on_validation(sweeps[r]) for r in repeats]
    ex.update(best_by_seed=best, best_frequency_seeds={t: best.count(t) / len(best) for t in candidates})

    def regret(r: int, t) -> float:  # within repeat r: its own best's test minus the pick's (grid mean for None)
        at = candidates if t is None else [t]
        return sweeps[r][best[r]]["test"] - sum(sweeps[r][u]["test"] for u in at) / len(at)

    result["regret_seeds"] = mean_and_se([sweeps[r][best[r]]["test"] - trains[i]["test"]
                                          for i, r in enumerate(repeats)])
    for row in result.get("selectors", []):
        row["regret_seeds"] = mean_and_se([regret(r, t) for r, t in zip(repeats, picks[row["name"]])])
    measure = result.get("saving_measure", "seconds")  # the time the savings are computed from
    exhaustive_seconds = [sum(sweeps[r][t][measure] for t in candidates) for r in repeats]
    result["saving_seconds_seeds"] = mean_and_se([e / a for e, a in zip(exhaustive_seconds, aselect_seconds)])
