"""benchmarks/studies/pretrain_checkpoints.py: which models it compares (the kept checkpoints, then the shipped end) and
how a comparison becomes a row; ``pretrain_demo.py`` embeds the table only for the model it reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

STUDIES = Path(__file__).resolve().parents[1] / "benchmarks" / "studies"


def load(name: str):
    sys.path.insert(0, str(STUDIES))
    try:
        spec = importlib.util.spec_from_file_location(name, STUDIES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(STUDIES))


study = load("pretrain_checkpoints")


def write_checkpoint(root: Path, step: int, of: str) -> Path:
    folder = root / f"step-{step:05d}"
    folder.mkdir(parents=True)
    card = {"step": step, "checkpoint_of": of, "fixed_draw_loss": 0.1, "weights_sha256": f"sha{step}",
            "recipe": {"batch_size": 64}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def shipped(tmp_path: Path, monkeypatch, fingerprint: str, steps: int = 80) -> Path:
    end = tmp_path / "shipped"
    end.mkdir()
    (end / "card.json").write_text(json.dumps({"recipe_fingerprint": fingerprint, "steps": steps}))
    monkeypatch.setattr(study, "DEMO_FOLDER", end)
    return end


def test_the_points_are_the_checkpoints_in_step_order_then_the_shipped_model(tmp_path, monkeypatch):
    end = shipped(tmp_path, monkeypatch, "abc")
    for step in (40, 10, 20):
        write_checkpoint(tmp_path / "kept", step, "abc")
    points = study.checkpoints(tmp_path / "kept")
    assert [(s, f.name) for s, f, _ in points] == [(10, "step-00010"), (20, "step-00020"), (40, "step-00040"),
                                                   (80, end.name)]


def test_checkpoints_of_another_recipe_are_refused(tmp_path, monkeypatch):
    shipped(tmp_path, monkeypatch, "abc")
    write_checkpoint(tmp_path / "kept", 10, "other")
    with pytest.raises(SystemExit, match="recipe other.*shipped model is recipe abc"):
        study.checkpoints(tmp_path / "kept")


def test_no_checkpoints_is_one_clear_error(tmp_path, monkeypatch):
    shipped(tmp_path, monkeypatch, "abc")
    with pytest.raises(SystemExit, match="no checkpoints in .*aselect-bench pretrain --out"):
        study.checkpoints(tmp_path / "missing")


def comparison(best_t, best_test, hfr_t, hfr_test) -> dict:
    return {"exhaustive": {"best_timestep": best_t, "test_at_best": best_test},
            "aselect": {"timestep": hfr_t, "test": hfr_test, "support": 0.9},
            "regret": best_test - hfr_test, "spearman_hfr_val": -0.5}


def test_a_row_reads_both_kinds_of_card_and_the_table_and_pretrain_report_agree():
    kept = {"fixed_draw_loss": 0.2, "recipe": {"batch_size": 64}, "weights_sha256": "a"}
    end = {"fixed_draw_loss": {"before": 1.3, "after": 0.05}, "recipe": {"batch_size": 64}, "weights_sha256": "b"}
    rows = [study.row(300, kept, comparison(0, 30.0, 950, 8.0)), study.row(2400, end, comparison(0, 40.0, 50, 35.0))]
    assert rows[0]["samples"] == 19200 and rows[0]["regret"] == 22.0 and rows[1]["fixed_draw_loss"] == 0.05
    table = study.markdown_rows({"rows": rows})
    assert "| 300 | 19200 |" in table and "90%" in table and "22.000" in table


def test_pretrain_report_embeds_the_study_only_for_its_own_model(tmp_path):
    pretrain = load("pretrain_demo")
    path = tmp_path / "checkpoints.json"
    assert pretrain.checkpoint_study(path, {"weights_sha256": "b"}) is None
    path.write_text(json.dumps({"rows": [{"weights_sha256": "a"}, {"weights_sha256": "b"}]}))
    assert pretrain.checkpoint_study(path, {"weights_sha256": "b"})["rows"][-1]["weights_sha256"] == "b"
    assert pretrain.checkpoint_study(path, {"weights_sha256": "c"}) is None
