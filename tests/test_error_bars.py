"""A comparison's error bars (issue #37): per-image outcomes kept by every training, intervals on every candidate
and every pick, ties with the best, and seeds as resumable repeats."""

from __future__ import annotations

import pytest

from aselect_bench import load_backbone
from aselect_bench.analyses.compare import run_comparison
from aselect_bench.uncertainty import as_metric
from tests.test_search import PRESET, BlobsExperiment


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("tiny-dit", pretrained=False)


def test_every_training_keeps_the_per_image_outcomes_of_its_reported_numbers(tmp_path, backbone):
    run = BlobsExperiment(PRESET, backbone).fit(300, tmp_path, "t300", progress=False)
    assert as_metric(run.outcomes["val"]).value == pytest.approx(run.val, abs=1e-4)  # the best epoch's
    assert as_metric(run.outcomes["test"]).value == pytest.approx(run.test, abs=1e-4)
    assert len(run.outcomes["val"]["correct"]) == 15


def test_a_comparison_carries_intervals_and_ties(tmp_path, backbone):
    result = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "state",
                            runs_dir=tmp_path / "runs", progress=False)
    ex = result["exhaustive"]
    for row in ex["per_timestep"].values():
        lo, hi = row["ci"]
        assert lo <= row["test"] <= hi and row["val_ci"][0] <= row["val"] <= row["val_ci"][1]
    best = ex["best_timestep"]
    assert best in ex["tied_with_best"] and ex["per_timestep"][best]["regret_if_picked"] == 0
    assert sum(ex["best_frequency"].values()) == pytest.approx(1)
    assert result["regret_ci"][0] <= result["regret"] <= result["regret_ci"][1]
    assert result["aselect"]["tied_with_best"] == (result["regret_ci"][0] <= 0 <= result["regret_ci"][1])
    for row in result["selectors"]:
        assert row["regret_ci"][0] <= row["regret"] + 1e-9 and row["regret"] - 1e-9 <= row["regret_ci"][1]
        assert row["strictly_worse"] == (row["regret_ci"][0] > 0)
        if row["timestep"] is not None:
            assert row["tied_with_best"] == (row["timestep"] in ex["tied_with_best"])
    assert result["bootstrap"]["resamples"] == 1000 and "seeds" not in ex["per_timestep"][best]


def test_seeds_are_resumable_repeats_and_the_first_is_reused(tmp_path, backbone):
    one = BlobsExperiment(PRESET, backbone)
    single = run_comparison(one, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False,
                            progress=False)
    two = BlobsExperiment(PRESET.override(seeds=2), backbone)
    result = run_comparison(two, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False,
                            progress=False)
    assert len(two.calls) == 4  # seed 1 only: its three candidates and its A-SelecT training
    assert result["seeds"] == 2 and len(result["exhaustive"]["best_by_seed"]) == 2
    row = result["exhaustive"]["per_timestep"][300]
    seeds = [r["test"] for r in row["repeats"]]
    assert seeds[0] == single["exhaustive"]["per_timestep"][300]["test"]  # seed 0 is the single run's
    assert row["test"] == pytest.approx(sum(seeds) / 2) and row["test_se"] is not None
    assert row["seconds"] == pytest.approx(sum(r["seconds"] for r in row["repeats"]))
    assert result["regret_seeds"]["n"] == 2 and result["saving_seconds_seeds"]["n"] == 2
    assert sum(result["exhaustive"]["best_frequency_seeds"].values()) == pytest.approx(1)
    again = BlobsExperiment(PRESET.override(seeds=2), backbone)
    run_comparison(again, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False, progress=False)
    assert again.calls == []
