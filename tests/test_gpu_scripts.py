"""The GPU scripts' dry runs on the CPU, so they cannot rot where no GPU is lent: benchmarks/gpu_check.sh (wheel
folder checks, the gpu tests with the CPU in the GPU's place, the summary) and benchmarks/perf/perf_gpu.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args, tmp_path, **env):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "ASELECT_CACHE": str(tmp_path / "cache"),
           **{k: str(v) for k, v in env.items()}}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


def test_gpu_check_dry_run_runs_the_gpu_tests_on_the_cpu_and_writes_its_summary(tmp_path):
    (tmp_path / "wheels").mkdir()
    result = run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], tmp_path, WHEELS=tmp_path / "wheels",
                 OUT=tmp_path / "out", PYTEST_ADDOPTS="-k 'hfr_scan and tiny-dit-latent'")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu_check (dry run: the gpu tests ran on the CPU): device cpu" in result.stdout
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["dry_run"] and summary["passed"] == 1 and summary["failed"] == summary["errors"] == 0
    assert summary["device"] == "cpu" and summary["torch"]
    assert (tmp_path / "out" / "gpu_check.txt").read_text().strip() in result.stdout


@pytest.mark.parametrize("wheels, required, message", [
    (["diffusers-0.42.1-py3-none-any.whl", "diffusers-0.41.0-py3-none-any.whl"], None,
     "diffusers: 2 versions (0.41.0, 0.42.1); keep one"),
    ([], "diffusers:diffusers no-such-dist:no_such_module", "no-such-dist: not installed and no wheel in"),
])
def test_gpu_check_stops_on_a_bad_wheel_folder_before_running_anything(tmp_path, wheels, required, message):
    (tmp_path / "wheels").mkdir()
    for name in wheels:
        (tmp_path / "wheels" / name).touch()
    env = {"WHEELS": tmp_path / "wheels", **({"REQUIRED": required} if required else {})}
    result = run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], tmp_path, **env)
    assert result.returncode == 2 and message in result.stderr and "passed" not in result.stdout


def test_perf_gpu_dry_run_writes_every_figure_and_the_projection(tmp_path):
    result = run([sys.executable, "benchmarks/perf/perf_gpu.py", "--dry-run", "--out", tmp_path / "gpu"], tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["dry_run"] and data["device"] == "cpu" and "DRY RUN" in (tmp_path / "gpu.md").read_text()
    model = data["models"]["tiny-dit-latent"]
    figures = model["extraction"]["32"]
    assert figures["tap_images_per_s"] > 0 and figures["full_images_per_s"] > 0 and figures["tflops"] > 0
    assert model["scan"]["seconds"] > 0 and model["upernet_step"]["ms"] > 0
    assert all(step["fresh_noise_ms"] > 0 and step["cached_features_ms"] > 0 for step in model["probe_steps"].values())
    projection = data["projection"]["per_model"]["tiny-dit-latent"]
    assert set(projection["fgvc"]) == {"cub", "nabirds", "flowers", "dogs", "cars", "aircraft"}
    for d in [*projection["fgvc"].values(), projection["ade20k"]]:
        fresh = d["fresh_noise"]
        assert 1 < fresh["exhaustive"] / fresh["aselect"] < data["projection"]["candidates"]  # the scan costs a little
