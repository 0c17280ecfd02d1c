"""benchmarks/studies/interior.py (issue #29): the verdict on a curve whose answer is known, and the curves it takes from
committed comparisons instead of sweeping twice."""

from __future__ import annotations

import json

import pytest

from aselect_bench.errors import UserError
from aselect_bench.settings import load_bench_preset
from tests.test_pretrain_study import load

interior = load("interior")


def curve(vals: dict) -> dict:
    return {str(t): {"val": v, "test": v - 1} for t, v in vals.items()}


def test_verdict_finds_the_interior_best_and_its_significance():
    candidates = [0, 50, 100, 950]
    assert interior.verdict(curve({0: 40, 50: 45, 100: 41, 950: 8}), None, candidates)["interior"]
    assert not interior.verdict(curve({0: 46, 50: 45, 100: 41, 950: 8}), None, candidates)["interior"]
    assert not interior.verdict(curve({0: 6, 50: 5, 100: 4, 950: 9}), None, candidates)["interior"]  # noisiest
    seeds = {"0": {"0": {"val": 40}, "1": {"val": 41}, "2": {"val": 39}},
             "50": {"0": {"val": 45}, "1": {"val": 46}, "2": {"val": 44}}}
    v = interior.verdict(curve({0: 40, 50: 45, 100: 41, 950: 8}), seeds, candidates)
    assert v["seed_gain"] == pytest.approx(5) and v["significant"] and v["n_seeds"] == 3
    noisy = {"0": {"0": {"val": 40}, "1": {"val": 50}, "2": {"val": 30}}, "50": seeds["50"]}
    assert not interior.verdict(curve({0: 40, 50: 45, 100: 41, 950: 8}), noisy, candidates)["significant"]


def write_comparison(folder, preset, overrides, tap, candidates):
    per_t = {str(t): {"val": 40.0 + (t == 50) * 5, "test": 30.0, "seconds": 1.0, "forwards": 8} for t in candidates}
    report = {"preset": preset, "tap": tap, "candidates": candidates, "exhaustive": {"per_timestep": per_t},
              "run": {"overrides": overrides, "code_version": "0.1.0+abc"}}
    (folder / f"fgvc-cub-{preset}.json").write_text(json.dumps(report))


def test_curves_come_from_the_committed_comparison_run_the_same_way(tmp_path):
    preset = load_bench_preset("demo")
    grid = [0, 50, 100]
    assert interior.compared_cells(tmp_path, "cub", preset, {}, grid) is None  # none there: the sweep runs
    write_comparison(tmp_path, "demo", {}, preset.fgvc.tap, grid)
    cells = interior.compared_cells(tmp_path, "cub", preset, {"ade20k.max_epochs": 3}, grid)  # the other task's
    assert interior.best_timestep(cells["per_timestep"]) == 50 and cells["source"].endswith("@0.1.0+abc")
    assert set(cells["per_timestep"]["0"]) == {"val", "test"}
    with pytest.raises(UserError, match="drop --from-compare"):  # another tap: not this attempt's curve
        write_comparison(tmp_path, "demo", {}, "blocks.0.out", grid)
        interior.compared_cells(tmp_path, "cub", preset, {}, grid)
    write_comparison(tmp_path, "demo", {"fgvc.lr": 0.1}, preset.fgvc.tap, grid)
    with pytest.raises(UserError, match="overrides"):
        interior.compared_cells(tmp_path, "cub", preset, {}, grid)


def test_the_report_says_on_how_many_stand_ins_the_goal_is_met():
    seeds = {"0": {"0": {"val": 40}, "1": {"val": 41}, "2": {"val": 39}},
             "50": {"0": {"val": 45}, "1": {"val": 46}, "2": {"val": 44}}}
    cell = {"candidates": [0, 50, 100], "per_timestep": curve({0: 40, 50: 45, 100: 41}), "seeds": seeds,
            "random": {"timestep": 50, "val": 20.0, "test": 19.0}}
    store = {"attempts": {"final": {"note": "n", "overrides": {}, "datasets": {"cub": cell, "dogs": {
        **cell, "random": {"timestep": 50, "val": 60.0, "test": 59.0}}}}}}
    text = interior.markdown(store)
    assert "goal met on 1 of 2 FGVC stand-ins" in text and "ADE20K: not run" in text
