"""The searches (#42) on synthetic learning curves whose answers are worked out by hand; no training."""

from __future__ import annotations

import pytest

from aselect_bench.errors import UserError
from aselect_bench.searches import Budget, CannotPick, Context, ReplaySource, build_search, search_names
from aselect_bench.searches.halving import brackets, ladder

CANDIDATES = [0, 100, 200, 300, 400, 500, 600, 700, 800]  # index i <-> t = 100 * i


class Poison(dict):
    """A history row whose reported-split metric must never be read."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("a search read the reported split")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def curves(val, epochs: int = 9, candidates=CANDIDATES) -> dict:
    """``{t: history}`` with ``val(i, e)``; seconds ``e * (i + 1)``, forwards ``10 * e``; a poisoned ``test``."""
    return {t: [Poison(epoch=e, val=val(i, e), test=-val(i, e), seconds=float(e * (i + 1)), forwards=10 * e)
                for e in range(1, epochs + 1)] for i, t in enumerate(candidates)}


def late_bloomer(i: int, e: int) -> float:
    """Candidates 2, 5, 7 lead after 1 epoch (5.1, 4.5, 3.7); 5 leads after 3; 7 is best after 9."""
    head, slope = {2: (5, 0.1), 5: (4, 0.5), 7: (3, 0.7)}.get(i, (0, 0.1))
    return head + slope * e


def distinct(i: int, e: int) -> float:
    """Every candidate improves with its own slope; index 3 is best, then 4, 8, 7, ..."""
    return e * [0.1, 0.2, 0.3, 0.9, 0.8, 0.4, 0.5, 0.6, 0.7][i]


def run(name: str, val=late_bloomer, epochs: int = 9, context=None):
    outcomes = build_search(name).run(ReplaySource(curves(val, epochs)), context)
    return outcomes[0]


def test_ladder_and_brackets_follow_li_et_al():
    assert ladder(9) == [1, 3, 9] and ladder(10) == [1, 3, 9, 10] and ladder(1) == [1]
    assert brackets(9) == [(9, [1, 3, 9]), (5, [3, 9]), (3, [9])]
    assert brackets(2) == [(1, [2])]


def test_successive_halving_by_hand():
    # rung 1: all 9 for 1 epoch, 2, 5, 7 go on; rung 3: 5 (5.5) beats 7 (5.1) and 2 (5.3); 5 trained to 9
    out = run("successive-halving")
    assert out.timestep == 500
    assert out.observed == {0: 1, 100: 1, 200: 3, 300: 1, 400: 1, 500: 9, 600: 1, 700: 3, 800: 1}
    assert out.epochs == 6 * 1 + 2 * 3 + 9 == 21
    assert out.cost_fraction == pytest.approx(21 / 81)
    # seconds read off the rows at those epochs: e * (i + 1)
    assert out.seconds == (1 + 2 + 4 + 5 + 7 + 9) * 1 + 3 * 3 + 3 * 8 + 9 * 6
    assert out.forwards == 10 * 21


def test_hyperband_by_hand():
    # bracket s=2 is the halving above (-> 500); s=1: 5 evenly spaced (0, 200, 400, 600, 800) for 3 epochs,
    # 200 (5.3) is the one left; s=0: 0, 400, 800 for 9 (all 0.9: 0 first); the winners at 9: 500 (8.5)
    out = run("hyperband")
    assert out.timestep == 500
    assert out.observed == {0: 9, 100: 1, 200: 9, 300: 1, 400: 9, 500: 9, 600: 3, 700: 3, 800: 9}
    assert out.epochs == 9 + 1 + 9 + 1 + 9 + 9 + 3 + 3 + 9 == 53  # runs shared between brackets


def test_coarse_to_fine_by_hand():
    # every fourth (0, 400, 800) fully: 400 is best; then its neighbours 300 and 500; 300 is the best of all
    out = run("coarse-to-fine", distinct)
    assert out.timestep == 300
    assert out.observed == {0: 9, 300: 9, 400: 9, 500: 9, 800: 9}
    assert out.epochs == 45


def test_early_look_by_hand():
    # k = max(1, 9 // 8) = 1: the best after one epoch (200: 5.1) trained on to 9
    out = run("early-look")
    assert out.timestep == 200 and out.epochs == 8 + 9
    assert run("early-look", epochs=16).epochs == 9 * 2 + 14  # k = 2


def test_transfer_takes_the_majority_of_the_other_bests():
    others = {"a": 300, "b": 500, "c": 300, "d": 999}  # 999 is no candidate here: it does not vote
    out = run("transfer", context=Context(others))
    assert out.timestep == 300 and out.epochs == 9 and out.cost_fraction == pytest.approx(1 / 9)
    assert run("transfer", context=Context({"a": 500, "b": 100})).timestep == 100  # a tie: the smaller t


@pytest.mark.parametrize("context", [None, Context({"x": 999})])
def test_transfer_without_another_comparison_cannot_pick(context):
    out = run("transfer", context=context)
    assert out.timestep is None and out.epochs == 0 and "no other comparison" in out.reason


@pytest.mark.parametrize("name", search_names())
def test_no_history_no_pick(name):
    histories = curves(late_bloomer)
    histories[400] = None  # a comparison recorded before histories
    outcomes = build_search(name).run(ReplaySource(histories), Context({"a": 400}))
    assert all(o.timestep is None and "no learning curve recorded at t=400" in o.reason for o in outcomes)


@pytest.mark.parametrize("name", search_names())
def test_every_search_reads_val_only_and_stays_within_the_sweep(name):
    """The rows hold a poisoned ``test`` (reading it fails); every pick is a candidate, charged its full training."""
    for out in build_search(name).run(ReplaySource(curves(late_bloomer)), Context({"a": 700})):
        assert out.timestep in CANDIDATES and out.observed[out.timestep] == 9
        assert 9 <= out.epochs <= 81 and out.epochs == sum(out.observed.values())


def test_budget_charges_a_candidate_its_largest_epoch():
    budget = Budget(ReplaySource(curves(late_bloomer)))
    assert budget.val(200, 3) == pytest.approx(5.3) and "test" not in budget.observe(200, 3)[0]
    budget.observe(200, 1)  # seen already: nothing new
    budget.observe(500, 9)
    assert budget.cost()["epochs"] == 12 and budget.cost()["seconds"] == 3 * 3 + 9 * 6


def test_optuna_is_deterministic_per_sampler_seed():
    search = build_search("optuna-tpe")
    assert len(search.sampler_seeds) == 10
    source = ReplaySource(curves(distinct))
    first, again = search.run_once(source, Context(), 3), search.run_once(source, Context(), 3)
    assert first == again and first.sampler_seed == 3
    assert first.timestep in CANDIDATES and first.observed[first.timestep] == 9


def test_optuna_prunes_with_the_median_pruner():
    """After Optuna's 5 startup trials, a trial below the median of the others at an epoch stops there: some
    candidates are charged fewer than all epochs."""
    outcomes = build_search("optuna-tpe").run(ReplaySource(curves(distinct)))
    assert any(e < 9 for o in outcomes for e in o.observed.values())


def test_unknown_search_is_a_user_error():
    with pytest.raises(UserError, match="unknown search 'halving'; use one of successive-halving"):
        build_search("halving")


def test_replay_source_refuses_epochs_beyond_the_history():
    with pytest.raises(ValueError, match="asked for 10 epochs"):
        ReplaySource(curves(late_bloomer)).observe(0, 10)
    with pytest.raises(CannotPick):
        ReplaySource({0: None, 100: None}).observe(0, 1)


# ------------------------------------------------------------------------------------ one comparison's rows
def sweep(val, seed: int = 0, epochs: int = 9) -> dict:
    """One seed's exhaustive sweep ``{t: row}`` as the comparison stores it: the history, the final val/test,
    per-image outcomes (40 val, 50 test images) whose accuracy follows the final val."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = {}
    for t, history in curves(val, epochs).items():
        history = [{k: row[k] for k in ("epoch", "val", "seconds", "forwards")} for row in history]
        p = min(0.95, 0.1 + history[-1]["val"] / 10)
        outcomes = {split: {"kind": "top1", "correct": (rng.random(n) < p).astype(int).tolist()}
                    for split, n in (("val", 40), ("test", 50))}
        rows[t] = {"val": 100 * float(np.mean(outcomes["val"]["correct"])),
                   "test": 100 * float(np.mean(outcomes["test"]["correct"])), "seconds": history[-1]["seconds"] + 1,
                   "forwards": history[-1]["forwards"], "history": history, "outcomes": outcomes}
    return rows


def comparison(sweeps: dict) -> dict:
    """The parts of a comparison's result the searches read, with the candidates' own regret intervals."""
    from aselect_bench.analyses.compare import merge_repeats
    from aselect_bench.experiments.base import exhaustive_summary
    from aselect_bench.uncertainty import SeedMean, regret_intervals

    per_t = {t: merge_repeats([sweeps[r][t] for r in sweeps]) for t in CANDIDATES}
    if len(sweeps) > 1:  # each seed's history under repeats[i] (the contract)
        for t in CANDIDATES:
            per_t[t]["repeats"] = [{k: v for k, v in sweeps[r][t].items() if k != "outcomes"} for r in sweeps]
    val = {t: SeedMean([sweeps[r][t]["outcomes"]["val"] for r in sweeps]) for t in CANDIDATES}
    test = {t: SeedMean([sweeps[r][t]["outcomes"]["test"] for r in sweeps]) for t in CANDIDATES}
    for t, entry in regret_intervals(val, test)["per_candidate"].items():
        per_t[t].update(regret_ci=entry["ci"], tied_with_best=entry["tied_with_best"])
    return {"task": "fgvc", "dataset": "blobs", "preset": "unit", "backbone": "tiny-dit", "candidates": CANDIDATES,
            "seeds": len(sweeps), "exhaustive": exhaustive_summary(per_t),
            "bootstrap": {"resamples": 1000, "seed": 0, "level": 0.95}}


def test_a_search_pick_is_scored_as_a_selector_pick():
    """One seed: a search's regret and interval are those of its pick as a candidate of the grid."""
    from aselect_bench.searches.score import search_rows

    sweeps = {0: sweep(distinct)}
    result = comparison(sweeps)
    rows = {row["name"]: row for row in search_rows(result, sweeps)}
    assert list(rows) == search_names()
    halving = rows["successive-halving"]
    t = halving["timestep"]
    cell = result["exhaustive"]["per_timestep"][t]
    assert halving["regret"] == pytest.approx(result["exhaustive"]["test_at_best"] - cell["test"])
    assert halving["regret_ci"] == pytest.approx(cell["regret_ci"])
    assert halving["tied_with_best"] == cell["tied_with_best"]
    assert halving["cost_fraction"] == pytest.approx(halving["epochs"] / 81)
    assert rows["transfer"]["timestep"] is None and "no other comparison" in rows["transfer"]["reason"]
    tpe = rows["optuna-tpe"]
    assert len(tpe["timesteps"]) == 10 and tpe["spread"]["sampler_seeds"] == 10
    assert tpe["regret_ci"] is not None and tpe["cost_fraction"] == pytest.approx(tpe["spread"]["cost_fraction"]["mean"])


def test_seeds_give_one_pick_each_and_transfer_reads_the_results_folder(tmp_path):
    from aselect_bench.io import atomic_write_json
    from aselect_bench.searches.score import search_rows, with_transfer

    sweeps = {0: sweep(distinct, 0), 1: sweep(late_bloomer, 1)}
    result = comparison(sweeps)
    result["searches"] = search_rows(result, sweeps)
    rows = {row["name"]: row for row in result["searches"]}
    assert rows["successive-halving"]["timesteps"] == [300, 500]  # distinct -> 300 (by hand: rungs 9 -> 3 -> 1)
    assert rows["successive-halving"]["regret_seeds"]["n"] == 2
    assert rows["early-look"]["epochs"] == 2 * 17  # summed over the seeds
    for name, best in (("fgvc-other-unit", 400), ("fgvc-third-unit", 400), ("fgvc-blobs-unit", 0)):  # last: its own
        atomic_write_json(tmp_path / f"{name}.json", {"backbone": "tiny-dit", "exhaustive": {"best_timestep": best}})
    for r in sweeps.values():  # as written: no per-image outcomes in the JSON
        for row in r.values():
            row.pop("outcomes")
    with_transfer(result, tmp_path)
    transfer = next(row for row in result["searches"] if row["name"] == "transfer")
    assert transfer["timestep"] == 400 and transfer["epochs"] == 2 * 9
    assert transfer["regret_ci"] == result["exhaustive"]["per_timestep"][400]["regret_ci"]


# ------------------------------------------------------------------------------ reports and the frontier
def test_the_pareto_front_keeps_what_nothing_dominates():
    from aselect_bench.analyses.frontier import pareto_front, point

    points = [point("a", "selector", 0.05, 3.0), point("b", "selector", 0.05, 5.0), point("c", "search", 0.2, 1.0),
              point("d", "search", 0.5, 1.0), point("exhaustive", "exhaustive", 1.0, 0.0)]
    assert [p["name"] for p in pareto_front(points)] == ["a", "c", "exhaustive"]


def test_comparison_markdown_rows_and_frontier_figure():
    from aselect_bench.analyses.compare_report import comparison_frontier, searches_lines
    from aselect_bench.analyses.frontier import comparison_points
    from aselect_bench.searches.score import search_rows

    sweeps = {0: sweep(distinct)}
    result = comparison(sweeps)
    result.update(metric="top1", splits={"val": "val", "test": "test"}, searches=search_rows(result, sweeps),
                  selectors=[{"name": "hfr", "saving_seconds": 9.0, "regret": 2.0, "regret_ci": [0.5, 3.0],
                              "tied_with_best": False}])
    text = "\n".join(searches_lines(result))
    assert "| successive-halving | 300 |" in text and "- transfer cannot pick: no other comparison" in text
    assert "over 10 sampler seeds" in text
    points = {p["name"]: p for p in comparison_points(result)}
    assert points["hfr"]["cost"] == pytest.approx(1 / 9) and points["exhaustive"]["cost"] == 1
    assert points["early-look"]["cost"] == pytest.approx(17 / 81) and "transfer" not in points
    assert comparison_frontier(result).axes[0].get_xscale() == "log"


def test_the_leaderboard_lists_the_searches_with_their_mean_cost(tmp_path):
    import json

    from aselect_bench.analyses.leaderboard import write_leaderboard
    from aselect_bench.io import atomic_write_json

    def searches(regret: float, tied: bool) -> list[dict]:
        return [{"name": "early-look", "timestep": 300, "regret": regret, "regret_ci": [regret - 1, regret + 1],
                 "regret_se": 0.5, "tied_with_best": tied, "strictly_worse": not tied, "cost_fraction": 0.2},
                {"name": "transfer", "timestep": None, "reason": "no other comparison"}]

    for dataset, regret, tied in (("cub", 0.0, True), ("dogs", 4.0, False)):
        atomic_write_json(tmp_path / f"fgvc-{dataset}-demo.json", {
            "task": "fgvc", "dataset": dataset, "preset": "demo", "metric": "top1", "run": {"code_version": "x"},
            "selectors": [{"name": "hfr", "timestep": 50, "regret": 1.0, "uses_labels": False, "spearman": None,
                           "saving_seconds": 10.0, "tied_with_best": True}],
            "searches": searches(regret, tied)})
    write_leaderboard(tmp_path, "demo")
    board = json.loads((tmp_path / "selectors.json").read_text())
    rows = {r["name"]: r for r in board["searches"]}
    assert rows["early-look"]["mean_regret"] == 2.0 and rows["early-look"]["mean_cost_fraction"] == pytest.approx(0.2)
    assert (rows["early-look"]["tied"], rows["early-look"]["worse"]) == (1, 1)
    assert rows["transfer"]["datasets"] == 0 and set(rows["transfer"]["cannot_pick"]) == {"fgvc/cub", "fgvc/dogs"}
    assert board["selectors"][0]["mean_cost_fraction"] == pytest.approx(0.1)
    markdown = (tmp_path / "selectors.md").read_text()
    assert "| early-look | 2.00 [" in markdown and "| 20.0% |" in markdown
    assert "tied with the best on every comparison: **hfr** at 10.0%" in markdown
    assert "| early-look | search | 20.0% | 2.00 [" in markdown and "| exhaustive | exhaustive | 100.0% |" in markdown
    assert "| hfr | selector | 10.0% | 1.00 [1.00, 1.00] | yes |" in markdown  # the cheapest: on the front
    assert (tmp_path / "frontier.png").stat().st_size > 1000


def test_a_replay_reads_a_written_comparison_and_transfer_only_counts_the_same_backbone(tmp_path):
    """``ReplaySource.from_comparison`` reads each seed's curves from the JSON as written; another backbone's
    comparison is no evidence for this one."""
    from aselect_bench.io import atomic_write_json
    from aselect_bench.searches.score import other_bests

    sweeps = {0: sweep(distinct, 0), 1: sweep(late_bloomer, 1)}
    result = comparison(sweeps)
    picks = [build_search("successive-halving").run(ReplaySource.from_comparison(result, r))[0].timestep
             for r in (0, 1)]
    assert picks == [300, 500]
    atomic_write_json(tmp_path / "fgvc-other-unit.json", {"backbone": "dit-xl-2-256", "exhaustive": {"best_timestep": 0}})
    atomic_write_json(tmp_path / "fgvc-third-unit.json", {"backbone": "tiny-dit", "exhaustive": {"best_timestep": 200}})
    assert other_bests(result, tmp_path) == {"fgvc-third-unit": 200}
