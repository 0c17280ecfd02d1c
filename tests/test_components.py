"""The component grid: one fused run with cached features, per-tap HFR timesteps, reports."""

from __future__ import annotations

import json

from aselect_bench import load_backbone
from aselect_bench.analyses.components import run_components, write_components
from tests.test_search import PRESET, BlobsExperiment


def test_component_grid_costs_one_pass_per_distinct_timestep(tmp_path, monkeypatch):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    backbone = load_backbone("tiny-dit", pretrained=False)
    exp = BlobsExperiment(PRESET, backbone)
    comps = ["query", "attn", "out"]
    result = run_components(exp, blocks=[0, 2], components=comps, runs_dir=tmp_path / "runs", progress=False)
    assert set(result["grid"]) == {f"blocks.{b}.{c}" for b in (0, 2) for c in comps}
    n = sum(len(exp.datamodule.sets[s]) for s in ("train", "val", "test"))
    scan = 6 * 3  # 6 calibration images x 3 candidates, one pass for all six taps
    assert result["scan_forwards"] == scan
    fused = result["forwards"] - scan
    assert fused == result["distinct_timesteps"] * n  # each image once per timestep, epochs read the cache
    assert result["one_separate_run"]["forwards"] == n  # from cold: not served by the fused run's cache
    assert result["separate_forwards"] == 6 * n
    for tap, row in result["grid"].items():  # each tap at its own HFR argmax
        assert row["timestep"] == max(result["hfr_curves"][tap], key=result["hfr_curves"][tap].get)
    assert result["best_tap"] == max(result["grid"], key=lambda t: result["grid"][t]["val_top1"])
    stem = write_components(result, tmp_path / "out")
    assert json.loads(stem.with_suffix(".json").read_text())["best_tap"] == result["best_tap"]
    assert "Validation top-1" in stem.with_suffix(".md").read_text() and stem.with_suffix(".png").exists()


def test_fixed_timestep_grid_costs_one_training_and_has_its_own_files(tmp_path, monkeypatch):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    exp = BlobsExperiment(PRESET, load_backbone("tiny-dit", pretrained=False))
    result = run_components(exp, blocks=[1], components=["key", "mlp"], timestep=20, runs_dir=tmp_path / "runs",
                            progress=False, measure_separate=False)
    n = sum(len(exp.datamodule.sets[s]) for s in ("train", "val", "test"))
    assert {row["timestep"] for row in result["grid"].values()} == {20}
    assert result["forwards"] - result["scan_forwards"] == n  # both heads from one pass over the data
    stem = write_components(result, tmp_path / "out")
    assert stem.name.endswith("-t20") and stem.with_suffix(".md").exists()
