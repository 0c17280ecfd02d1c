"""The command line: real runs, and user mistakes as one clear line with no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "aselect_bench.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("aselect-bench") and "error:" in line]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    result = cli("synth", "fgvc", "--layout", "cub", "--out", root, "--num-classes", 10, "--train-per-class", 3,
                 "--test-per-class", 1, "--image-size", 32)
    assert result.returncode == 0, result.stderr
    return root


def test_select_prints_the_curve_and_writes_json(cub_root, tmp_path):
    out = tmp_path / "selection.json"
    result = cli("select", "--backbone", "tiny-dit", "--dataset", "cub", "--data-root", cub_root,
                 "--tap", "blocks.1.query", "--candidates", "0,500,999", "--num-images", 6, "--out", out)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert set(saved["hfr"]) == {"0", "500", "999"} and saved["forwards"] == 18
    assert saved["timestep"] == int(max(saved["hfr"], key=saved["hfr"].get))
    assert saved["run"]["weights_id"] == "random-init-seed0"  # a random backbone is visible in the result
    assert f"chosen timestep: {saved['timestep']}" in result.stdout and "| timestep |" in result.stdout
    assert 0 < saved["support"] <= 1 and "margin" in saved and "runner_up" in saved
    assert f"how firm: support {100 * saved['support']:.0f}%" in result.stdout
    assert saved["run"]["precision"] in ("32", "bf16") and result.stdout.count("precision: ") == 1


@pytest.mark.parametrize("args, fragment", [
    (["--backbone", "no/such-folder-or-model", "--dataset", "cub", "--data-root", "."], "no weights for"),
    (["--backbone", "tiny-dit", "--dataset", "cub", "--data-root", "/nonexistent/cub"], "/nonexistent/cub"),
    (["--backbone", "tiny-dit", "--dataset", "cub", "--data-root", "CUB", "--tap", "blocks.99.out"],
     "block 99 does not exist"),
    (["--backbone", "tiny-dit", "--dataset", "cub", "--data-root", "CUB", "--tap", "blocks.0.bogus"],
     "unknown component"),
    (["--backbone", "tiny-dit", "--dataset", "cub", "--data-root", "CUB", "--candidates", "0,5000"],
     "outside the schedule"),
    (["--backbone", "tiny-dit", "--dataset", "cub", "--data-root", "CUB", "--candidates", "0,abc"],
     "'abc' is not an integer: give timesteps separated by commas"),
])
def test_select_mistakes_are_one_line(cub_root, args, fragment):
    args = [str(cub_root) if a == "CUB" else a for a in args]
    env_args = ["select", *args, "--num-images", "2"]
    assert_one_line_error(cli(*env_args), fragment)


def test_help_lists_every_command():
    result = cli("--help")
    for name in ("fit", "select", "compare", "components", "synth", "pretrain", "estimate"):
        assert name in result.stdout


def test_select_with_a_label_using_selector_reads_the_val_split(tmp_path):
    from aselect_bench.data.synth_fgvc import write_layout

    root = tmp_path / "cub"  # 20 training images a class: the val split holds two of each (leave-one-out needs two)
    write_layout("cub", root, num_classes=3, train_per_class=20, test_per_class=1, image_size=32)
    out = tmp_path / "knn.json"
    result = cli("select", "--backbone", "tiny-dit", "--dataset", "cub", "--data-root", root, "--selector",
                 "knn", "--tap", "blocks.1.out", "--candidates", "0,500,999", "--num-images", 6, "--out", out)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert saved["selector"] == "knn" and saved["uses_labels"] and set(saved["scores"]) == {"0", "500", "999"}
    assert saved["timestep"] == int(max(saved["scores"], key=saved["scores"].get))
    assert set(saved["hfr"]) == {"0", "500", "999"}  # the HFR curve is reported beside any selector
    assert saved["num_labelled"] > 0 and saved["forwards"] == 6 * 3 + saved["num_labelled"] * 3
    assert "knn score" in result.stdout and f"chosen timestep: {saved['timestep']}" in result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["select", "--selector", "token-ncm"], "does not apply to cub"),
    (["select", "--selector", "random"], "names no single timestep"),
    (["compare", "--selectors", "hfr,nope", "--preset", "demo"], "unknown timestep selector 'nope'"),
    (["compare", "--selectors", "token-ncm", "--preset", "demo"], "does not apply to the fgvc task"),
])
def test_selector_mistakes_are_one_line(cub_root, args, fragment):
    if args[0] == "select":
        args += ["--backbone", "tiny-dit", "--dataset", "cub", "--data-root", str(cub_root), "--num-images", "2"]
    assert_one_line_error(cli(*args), fragment)
