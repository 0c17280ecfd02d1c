"""Sweeps as jobs on submitit (issue #36): the local executor end to end on the CPU, a SIGKILL resumed, a job
that always fails named with its log, and the SLURM job array built and handed to a stand-in ``sbatch``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, cli
from tests.test_faults_second_round import custom_preset

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {"hfr": {"candidates": [0, 500, 999], "num_images": 4}}

#: Imported by every Python process of a test that puts its folder first on PYTHONPATH (the jobs too): logs
#: each training's timestep (not a process's untimed one-batch warm-up), and makes the trainings at
#: ASELECT_TEST_FAIL_T raise.
SITECUSTOMIZE = """
import os
from aselect_bench.tasks.classification import ClassificationTask

def on_train_start(self):
    if "aselect-warm-up-" in self.trainer.default_root_dir:
        return
    with open(os.environ["ASELECT_TEST_TRAININGS"], "a") as log:
        log.write(f"{self.timestep}\\n")
    if str(self.timestep) == os.environ.get("ASELECT_TEST_FAIL_T"):
        raise RuntimeError(f"a training at t={self.timestep} that always fails")

ClassificationTask.on_train_start = on_train_start
"""


def compare(tmp_path: Path, *extra, fail_t=None, env_extra=None, process=True, **popen):
    """``aselect-bench compare`` on a tiny custom preset in a subprocess, one thread per process; with
    ``process=False`` in this process (:func:`~tests.test_cli.cli`, for a run that trains nothing here: the hooks
    of :data:`SITECUSTOMIZE` only reach new processes)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": f"{hooks}:{ROOT}", "OMP_NUM_THREADS": "1",
           "ASELECT_TEST_TRAININGS": str(tmp_path / "trainings.log"), "ASELECT_CACHE": str(tmp_path / "cache"),
           **({"ASELECT_TEST_FAIL_T": str(fail_t)} if fail_t is not None else {}), **(env_extra or {})}
    preset = tmp_path / "mine.yaml"
    if not preset.exists():
        custom_preset(tmp_path, **CANDIDATES)
    args = [sys.executable, "-m", "aselect_bench.cli", "compare", "--preset", str(preset), "--no-selectors",
            *map(str, extra)]
    if not process:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            return cli(*args[3:], cwd=tmp_path)
    if popen:
        return subprocess.Popen(args, cwd=tmp_path, env=env, text=True, **popen)
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def finished_candidates(state: Path) -> list[str]:
    """``["t0000", ...]``: the exhaustive pieces stored under ``state``."""
    return sorted(p.stem for p in state.rglob("exhaustive/t????.json"))


def trainings(tmp_path: Path) -> list[str]:
    log = tmp_path / "trainings.log"
    return log.read_text().split() if log.exists() else []


def without_timings(value):
    """A comparison without what differs between runs of the same work: seconds, what is read from them (a timing
    flagged as disturbed) and the job record."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if "seconds" not in k and k not in ("launcher", "scan_share_of_one_training", "run", "timing_disturbed")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_a_local_sweep_in_two_processes_matches_the_serial_run(tmp_path):
    serial = compare(tmp_path, "--out", "serial", "--state", "s1", "--runs", "r1")
    assert serial.returncode == 0, serial.stderr[-3000:]
    jobs = compare(tmp_path, "--launcher", "local", "--jobs", 2, "--out", "jobs", "--state", "s2", "--runs", "r2")
    assert jobs.returncode == 0, jobs.stderr[-3000:]
    assert "sweep: 4 of 4 jobs to run (local, 2 at a time)" in jobs.stdout
    assert "sweep: 0 pending, 0 running, 4 done, 0 failed" in jobs.stdout
    one, two = (json.loads((tmp_path / d / "fgvc-cub-mine.json").read_text()) for d in ("serial", "jobs"))
    assert without_timings(one) == without_timings(two)
    assert two["launcher"]["kind"] == "local" and two["launcher"]["jobs"] == 4 and two["wall_seconds"] > 0
    assert "Run as 4 local jobs (submitit)" in (tmp_path / "jobs" / "fgvc-cub-mine.md").read_text()
    again = compare(tmp_path, "--launcher", "local", "--jobs", 2, "--out", "jobs", "--state", "s2", "--runs", "r2")
    assert again.returncode == 0 and "sweep: 0 of 4 jobs to run" in again.stdout  # a rerun merges, submits nothing
    assert len(trainings(tmp_path)) == 8  # 3 + 1 serial, 3 + 1 as jobs, none on the rerun


def test_a_sweep_killed_midway_resumes_without_retraining_the_finished(tmp_path):
    args = ("--launcher", "local", "--jobs", 1, "--state", "state", "--out", "out", "--runs", "runs")
    proc = compare(tmp_path, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "state"
    deadline = time.monotonic() + 600
    while not finished_candidates(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its jobs, at once
    proc.wait()
    finished = finished_candidates(state)
    assert finished, "no candidate finished before the kill"
    before = trainings(tmp_path)
    result = compare(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    rerun = trainings(tmp_path)[len(before):]
    done_t = {str(int(name[1:])) for name in finished}
    assert not done_t & set(rerun[:-1]), (finished, rerun)  # the sweep's finished candidates are not trained again
    assert (tmp_path / "out" / "fgvc-cub-mine.json").exists()


def test_a_job_that_always_fails_is_named_with_its_log_and_the_rest_is_kept(tmp_path):
    result = compare(tmp_path, "--launcher", "local", "--jobs", 2, "--retries", 1, "--state", "state", "--out", "out",
                     "--runs", "runs", fail_t=500)
    assert_one_line_error(result, "job(s) failed 2 times, so their pieces are missing: fgvc/cub t=500 (log ")
    log = result.stderr.split("(log ", 1)[1].split(")", 1)[0]
    assert Path(log).is_file() and "a training at t=500 that always fails" in Path(log).read_text()
    assert "failed (log" in result.stdout and "submitting it again" in result.stdout  # the one retry
    assert finished_candidates(tmp_path / "state") == ["t0000", "t0999"]
    assert not (tmp_path / "out" / "fgvc-cub-mine.json").exists()


FAKE_SBATCH = """#!/bin/sh
cp "$1" "{copy}"
echo "Submitted batch job 4242"
"""


def test_the_slurm_job_array_is_built_with_its_resources_and_command(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(copy=tmp_path / "submitted.sh"))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it; the test never runs a job
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    result = compare(tmp_path, "--launcher", "slurm", "--no-wait", "--partition", "gpu", "--account", "lab",
                     "--time", 90, "--cpus-per-job", 6, "--mem-gb", 64, "--array-parallelism", 2,
                     "--slurm.mail-type", "END", "--seeds", 2, "--state", "state", "--out", "out", "--runs", "runs",
                     env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, process=False)
    assert result.returncode == 0, result.stderr[-3000:]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-7%2", "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=6", "#SBATCH --mem=64GB",
                 "#SBATCH --mail-type=END", "#SBATCH --signal=USR2@120"):
        assert line in script, (line, script)
    assert "submitit.core._submit" in script and "--requeue" not in result.stderr
    assert "submitted: 4242_0" in result.stdout and "rerun the same command to merge" in result.stdout
    record = json.loads(next((tmp_path / "state" / "jobs").glob("*/sweep.json")).read_text())
    assert record["jobs"] == 8  # 2 seeds x (3 candidates + A-SelecT's side)


@pytest.mark.parametrize("extra, fragment", [
    (["--launcher", "local", "--no-wait"], "--no-wait needs --launcher slurm"),
    (["--launcher", "local", "--only", "0"], "leave --only out"),
    (["--launcher", "slurm", "--slurm", "mail-type"], "write an extra sbatch option as KEY=VALUE"),
    (["--launcher", "local", "--jobs", "0"], "argument --jobs: 0 is not a positive integer"),
    (["--launcher", "slurm"], "--launcher slurm needs SLURM's sbatch and srun on PATH"),
    (["--dry-run"], "--dry-run is about jobs: add --launcher slurm or --launcher local"),
])
def test_launcher_options_are_checked_before_any_work(tmp_path, extra, fragment):
    assert_one_line_error(compare(tmp_path, *extra, process=False), fragment)


def test_a_dry_run_lists_the_jobs_and_submits_nothing(tmp_path):
    result = compare(tmp_path, "--launcher", "slurm", "--dry-run", "--state", "state", process=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dry run: 4 of 4 jobs to submit (slurm)" in result.stdout and "fgvc/cub t=500" in result.stdout
    assert "'array_parallelism': 64" in result.stdout and not list((tmp_path / "state").rglob("sweep.json"))
