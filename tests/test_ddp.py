"""Scale-out through Lightning's DDP: 2 CPU processes (gloo) select and score exactly like 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(devices: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "ddp_check.py"), str(devices), str(out)],
                            capture_output=True, text=True, env=env, cwd=out.parent, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = run(1, tmp_path / "one.json")
    double = run(2, tmp_path / "two.json")
    assert double["timestep"] == single["timestep"]
    assert double["forwards"] == single["forwards"]  # the scan is sharded, not repeated
    for t, v in single["curve"].items():
        assert double["curve"][t] == pytest.approx(v, abs=1e-5)
    assert double["val_top1"] == pytest.approx(single["val_top1"], abs=1e-4)
    assert double["val_loss"] == pytest.approx(single["val_loss"], abs=1e-3)
