"""The comparison: exhaustive vs A-SelecT, resumable after an interruption, fingerprinted, reported."""

from __future__ import annotations

import json

import pytest

from aselect_bench import load_backbone
from aselect_bench.analyses.compare import run_comparison, spearman
from aselect_bench.analyses.compare_report import write_comparison
from aselect_bench.experiments import FGVCExperiment
from aselect_bench.selectors import selector_names
from aselect_bench.settings import preset_from_dict
from tests.conftest import BlobsDataModule

PRESET = preset_from_dict({
    "name": "unit", "backbone": "tiny-dit", "seed": 0, "num_workers": 0,
    "hfr": {"candidates": [0, 300, 999], "num_images": 6},
    "fgvc": {"tap": "blocks.1.out", "head": "linear", "linear_norm": "batchnorm", "head_width": 16, "head_depth": 1,
             "head_heads": 2,
             "lr": 5e-2, "weight_decay": 0.0, "warmup_fraction": 0.0, "label_smoothing": 0.0, "max_epochs": 2,
             "batch_size": 8, "train_augment": False, "datasets": ["blobs"]},
})


class BlobsExperiment(FGVCExperiment):
    def __init__(self, preset, backbone):
        self.calls = []
        super().__init__(preset, "blobs", backbone, BlobsDataModule())

    def fit(self, timestep, log_dir, name, progress=True, selector=None, **kwargs):
        self.calls.append(timestep)
        return super().fit(timestep, log_dir, name, progress=False, **kwargs)


def metrics_only(result):
    per_t = {t: (r["val"], r["test"]) for t, r in result["exhaustive"]["per_timestep"].items()}
    return per_t, result["aselect"]["timestep"], result["aselect"]["test"], result["hfr"]


def test_interrupted_comparison_resumes_without_recomputing(tmp_path, monkeypatch):
    backbone = load_backbone("tiny-dit", pretrained=False)
    reference = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "ref",
                               runs_dir=tmp_path / "runs", selectors=False, progress=False)

    exp = BlobsExperiment(PRESET, backbone)
    original_fit = exp.fit

    def killed_after_two(timestep, *args, **kwargs):
        if len(exp.calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the sweep
        return original_fit(timestep, *args, **kwargs)

    monkeypatch.setattr(exp, "fit", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(exp, state_root=tmp_path / "state", runs_dir=tmp_path / "runs",
                       selectors=False, progress=False)
    assert exp.calls == [0, 300]

    resumed_exp = BlobsExperiment(PRESET, backbone)
    resumed = run_comparison(resumed_exp, state_root=tmp_path / "state",
                             runs_dir=tmp_path / "runs", selectors=False, progress=False)
    chosen = resumed["aselect"]["timestep"]
    assert resumed_exp.calls == [999, chosen]  # only the unfinished candidate, then A-SelecT's training
    assert metrics_only(resumed) == metrics_only(reference)
    again = BlobsExperiment(PRESET, backbone)
    run_comparison(again, state_root=tmp_path / "state", runs_dir=tmp_path / "runs",
                   selectors=False, progress=False)
    assert again.calls == []  # everything finished is reused

    changed = PRESET.override(**{"fgvc.lr": 1e-2})
    fresh = BlobsExperiment(changed, backbone)
    run_comparison(fresh, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False,
                   progress=False, only=[0])
    assert fresh.calls == [0]  # a changed configuration never reuses stale results


def test_another_candidate_grid_gets_a_fresh_scan_and_is_recorded(tmp_path):
    backbone = load_backbone("tiny-dit", pretrained=False)
    first = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "state",
                           runs_dir=tmp_path / "runs", selectors=False, progress=False)
    grid = PRESET.override(**{"hfr.candidates": [0, 500]})
    exp = BlobsExperiment(grid, backbone)
    second = run_comparison(exp, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False,
                            progress=False)
    assert exp.calls[:2] == [0, 500]  # nothing of the 3-candidate comparison is reused
    assert second["fingerprint"] != first["fingerprint"]
    assert set(second["hfr"]) == {0, 500} and second["aselect"]["stages"]["scan"]["forwards"] == 6 * 2
    assert second["run"]["overrides"] == {"hfr.candidates": [0, 500]} and second["run"]["preset"] == "unit"


def test_comparison_accounting_selectors_fused_and_files(tmp_path):
    backbone = load_backbone("tiny-dit", pretrained=False)
    exp = BlobsExperiment(PRESET, backbone)
    result = run_comparison(exp, state_root=tmp_path / "state", runs_dir=tmp_path / "runs",
                            selectors=True, fused=True, progress=False)
    ex, a = result["exhaustive"], result["aselect"]
    assert ex["forwards"] == sum(r["forwards"] for r in ex["per_timestep"].values())
    assert a["forwards"] == a["stages"]["scan"]["forwards"] + a["stages"]["train"]["forwards"]
    assert a["stages"]["scan"]["forwards"] == 6 * 3  # 6 calibration images x 3 candidates
    # each strategy pays for its own features: A-SelecT's training is not helped by the exhaustive cache
    assert a["stages"]["train"]["forwards"] == ex["per_timestep"][a["timestep"]]["forwards"] > 0
    assert result["saving_forwards"] == pytest.approx(ex["forwards"] / a["forwards"])
    assert ex["best_timestep"] == max([0, 300, 999], key=lambda t: ex["per_timestep"][t]["val"])
    assert result["regret"] == pytest.approx(ex["test_at_best"] - a["test"])
    # A-SelecT's training reproduces the exhaustive run at the same timestep (same seed and data)
    assert a["test"] == ex["per_timestep"][a["timestep"]]["test"]
    rows = {r["name"]: r for r in result["selectors"]}
    assert set(rows) == set(selector_names("fgvc")) and len(rows) == 20
    assert rows["hfr"]["timestep"] == a["timestep"] and rows["hfr"]["scores"] == result["hfr"]
    for row in rows.values():  # every selector scored on the shared curve, none trained again
        t = row["timestep"]
        expected = ex["per_timestep"][t]["test"] if t is not None else sum(
            r["test"] for r in ex["per_timestep"].values()) / 3
        assert row["test"] == pytest.approx(expected) and row["regret"] == pytest.approx(ex["test_at_best"] - expected)
    assert rows["t0"]["timestep"] == 0 and rows["random"]["timestep"] is None
    assert rows["fixed-150"]["timestep"] == 0  # 0 and 300 are equally near 150: the cleaner one
    assert rows["t0"]["extra_forwards"] == 0 and not rows["t0"]["needs_scan"]  # a rule needs no scan
    assert rows["hfr-radial-K8"]["extra_forwards"] == 7 * 6 * 3  # 7 more draws of 6 images x 3 candidates
    labelled = result["scan"]["num_labelled"]
    assert labelled == len(exp.datamodule.sets["val"]) and rows["knn"]["extra_forwards"] == labelled * 3
    assert rows["knn"]["uses_labels"] and not rows["rankme"]["uses_labels"]
    assert rows["rankme"]["extra_forwards"] == 0 and rows["rankme"]["spearman"] is not None
    fused = result["fused_exhaustive"]
    assert set(fused["per_timestep"]) == {0, 300, 999}
    stem = write_comparison(result, tmp_path / "out", tensorboard_dir=tmp_path / "tb")
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["task"] == "fgvc" and set(saved) >= {"saving_seconds", "saving_forwards", "regret",
                                                       "spearman_hfr_val", "exhaustive", "aselect", "hfr"}
    assert stem.with_suffix(".png").stat().st_size > 1000
    markdown = stem.with_suffix(".md").read_text()
    assert "Per timestep" in markdown and "## Selectors" in markdown and "| knn | yes |" in markdown
    assert stem.with_name(stem.name + "-selectors.png").stat().st_size > 1000
    assert [r["name"] for r in saved["selectors"]] == [r["name"] for r in result["selectors"]]


def test_the_selector_scan_is_resumed_and_redone_only_for_another_selector_list(tmp_path, monkeypatch):
    import aselect_bench.analyses.compare as compare

    backbone = load_backbone("tiny-dit", pretrained=False)
    first = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "state",
                           runs_dir=tmp_path / "runs", selectors=["t0", "rankme"], progress=False)
    scans = []
    original = compare.run_selectors
    monkeypatch.setattr(compare, "run_selectors", lambda *a, **k: scans.append(a[1]) or original(*a, **k))
    again = BlobsExperiment(PRESET, backbone)
    second = run_comparison(again, state_root=tmp_path / "state", runs_dir=tmp_path / "runs",
                            selectors=["t0", "rankme"], progress=False)
    assert scans == [] and again.calls == [] and second["selectors"] == first["selectors"]  # all reused
    third = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "state",
                           runs_dir=tmp_path / "runs", selectors=["knn"], progress=False)
    assert [[s.name for s in group] for group in scans] == [["hfr", "knn"]]  # a new list: one new scan
    assert [r["name"] for r in third["selectors"]] == ["hfr", "knn"]


def test_spearman_edge_cases():
    assert spearman([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2], [1, 2]) is None
