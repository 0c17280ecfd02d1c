"""The command line: real runs, and user mistakes as one clear line with no traceback."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import subprocess
import sys
import traceback
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch

from aselect_bench.tasks.common import EVAL_MODE_WARNING


def cli(*args, cwd=None, process: bool = False) -> subprocess.CompletedProcess:
    """``aselect-bench ARGS`` as a user runs it: its exit status, stdout and stderr.

    Run in this process (a new Python process costs ~6 CPU-seconds of imports before the command starts): the
    arguments through :func:`aselect_bench.cli.main` in ``cwd``, with stdout, stderr, logging and warnings captured
    as a fresh interpreter shows them, an uncaught exception printed as a traceback with status 1, and the
    process state a command may change (environment, working folder, RNGs, threads) restored afterwards.
    ``process=True`` runs a real ``python -m aselect_bench.cli`` for what only a process shows (its own imports'
    output, signals)."""
    argv = [str(a) for a in args]
    if process:
        return subprocess.run([sys.executable, "-m", "aselect_bench.cli", *argv], capture_output=True, text=True,
                              cwd=cwd, timeout=300)
    from aselect_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _process_state(cwd, argv), redirect_stdout(out), redirect_stderr(err), _fresh_warnings(err), \
            _logging_to(err):
        try:
            main(argv)
            status = 0
        except SystemExit as stop:
            status = _exit_status(stop.code, err)
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc(file=err)
            status = 1
    return subprocess.CompletedProcess(["aselect-bench", *argv], status, out.getvalue(), err.getvalue())


def _exit_status(code, err) -> int:
    """``SystemExit(code)`` as the interpreter turns it into a status (a message is printed, status 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=err)
    return 1


@contextmanager
def _process_state(cwd, argv):
    """The working folder ``cwd``, ``sys.argv`` of the command, and what a new process has not said yet (the
    precision line); environment, RNGs and threads restored after."""
    from aselect_bench import precision

    precision._announced.clear()
    saved = (os.getcwd(), sys.argv, dict(os.environ), torch.get_num_threads(), torch.get_rng_state(),
             random.getstate(), np.random.get_state())
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["aselect-bench", *argv]
        yield
    finally:
        os.chdir(saved[0])
        sys.argv = saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
        torch.set_num_threads(saved[3])
        torch.set_rng_state(saved[4])
        random.setstate(saved[5])
        np.random.set_state(saved[6])


@contextmanager
def _fresh_warnings(err):
    """Warnings as a new interpreter shows them on stderr: Python's default filters (deprecations, imports and
    resources ignored, every other warning once per place), whatever pytest or an earlier test set."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: err.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        # what the suite's modules filter when a process imports them (a fresh process runs that code)
        warnings.filterwarnings("ignore", message=EVAL_MODE_WARNING)
        yield


@contextmanager
def _logging_to(err):
    """Every logging handler that writes to a terminal stream writes to ``err`` meanwhile (Lightning's and
    others' handlers keep the stream they were made with)."""
    handlers = [h for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
                for h in getattr(logger, "handlers", []) if type(h) is logging.StreamHandler]
    streams = [h.stream for h in handlers]
    for handler in handlers:  # not setStream: it flushes the old stream, which may be a closed capture
        handler.stream = err
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams):
            handler.stream = stream


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
