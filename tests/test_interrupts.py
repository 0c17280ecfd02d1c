"""SIGINT/SIGTERM stop a long command with status 130/143, one line saying what was kept, and no partial output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aselect_bench.cli import run_guarded

# A tiny demo recipe with far more steps than the test waits for: the signal lands inside Trainer.fit.
LONG_PRETRAIN = """
import sys
from aselect_bench.backbones.registry import dit_config
from aselect_bench.cli import run_guarded
from aselect_bench.pretrain import Recipe, pretrain_demo

tiny = tuple(sorted(dit_config(depth=2, heads=2, head_dim=16, sample_size=16, patch_size=2, in_channels=3,
                               out_channels=3, num_classes=1).items()))
recipe = Recipe(steps=100_000, batch_size=4, warmup=1, fgvc_images=24, scene_images=8, image_size=16,
                precision="32", transformer=tiny)
run_guarded(pretrain_demo, sys.argv[1], recipe=recipe)
"""


def stop_during_training(tmp_path: Path, signum: int) -> subprocess.CompletedProcess:
    out = tmp_path / "model"
    env = {**os.environ, "ASELECT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen([sys.executable, "-c", LONG_PRETRAIN, str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    for line in proc.stdout:  # the duration notice comes right before Trainer.fit
        if "one step measured" in line or time.monotonic() > deadline:
            break
    time.sleep(3)  # inside the training loop by now
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert not out.exists() and not list(tmp_path.glob(".model.tmp-*")), "a partial model folder was left"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_pretraining_exits_nonzero_and_keeps_nothing_partial(tmp_path, signum, status):
    result = stop_during_training(tmp_path, signum)
    assert result.returncode == status, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("aselect-bench: stopped by")]
    assert len(lines) == 1 and signal.Signals(signum).name in lines[0] and "kept" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "Received SIGTERM" not in result.stderr  # Lightning's own line beside ours (issue #35)


def test_lightnings_own_sigterm_exit_is_not_success(capsys):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    def stopped_by_lightning():
        raise SIGTERMException  # a SystemExit whose status would be 0

    with pytest.raises(SystemExit) as exit_info:
        run_guarded(stopped_by_lightning)
    assert exit_info.value.code == 143 and "stopped by SIGTERM" in capsys.readouterr().err


def test_handlers_are_restored_and_other_exits_pass_through():
    before = signal.getsignal(signal.SIGTERM)
    assert run_guarded(lambda: 7) == 7 and signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(SystemExit) as exit_info:
        run_guarded(sys.exit, 3)
    assert exit_info.value.code == 3
