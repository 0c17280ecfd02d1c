"""Launcher faults (issue 41: 1, 10, 15): a ``--no-wait`` SLURM sweep run again submits nothing SLURM still queues,
sbatch refusing the array is one line naming the key to fix, and a launcher option the chosen launcher would ignore
is refused. SLURM is played by stub ``sbatch``/``sacct``/``squeue``/``srun`` scripts on PATH that log their calls;
no job ever runs, so nothing here trains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import submitit
from submitit.slurm.slurm import SlurmInfoWatcher

from aselect_bench.cli import build_parser
from tests.test_faults import run_in_process
from tests.test_faults_second_round import custom_preset

#: Each stub logs ``<tool> <args>`` to calls.log in its folder's parent. sbatch numbers arrays 4242, 4243...
#: refuses with the text of sbatch.refuse if there is one, or answers sbatch.answer; sacct answers with sacct.txt (or fails as on a
#: cluster without accounting), and with sacct.later.txt from its second call on; squeue lists squeue.txt (or fails),
#: and squeue.later.txt from its second call on.
STUBS = {
    "sbatch": """
if [ -f "$HERE/sbatch.refuse" ]; then cat "$HERE/sbatch.refuse" >&2; exit 1; fi
if [ -f "$HERE/sbatch.answer" ]; then cat "$HERE/sbatch.answer"; exit 0; fi
n=$(cat "$HERE/sbatch.next" 2>/dev/null || echo 4242)
echo $((n + 1)) > "$HERE/sbatch.next"
echo "Submitted batch job $n"
""",
    "sacct": """
if [ ! -f "$HERE/sacct.txt" ]; then echo "sacct: error: Slurm accounting storage is disabled" >&2; exit 1; fi
echo "JobID|State|NodeList"
if [ -f "$HERE/sacct.asked" ] && [ -f "$HERE/sacct.later.txt" ]; then cat "$HERE/sacct.later.txt"; exit 0; fi
touch "$HERE/sacct.asked"
cat "$HERE/sacct.txt"
""",
    "squeue": """
if [ ! -f "$HERE/squeue.txt" ]; then echo "squeue: error: Unable to contact slurm controller" >&2; exit 1; fi
if [ -f "$HERE/squeue.asked" ] && [ -f "$HERE/squeue.later.txt" ]; then cat "$HERE/squeue.later.txt"; exit 0; fi
touch "$HERE/squeue.asked"
cat "$HERE/squeue.txt"
""",
    "srun": "exit 1\n",
}


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """Stub SLURM tools first on PATH; returns the folder of their answer files and call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in STUBS.items():
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nHERE="{tmp_path}"\necho "{tool} $*" >> "$HERE/calls.log"\n{body}')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path


@pytest.fixture
def submit(tmp_path, capsys):
    """``compare --launcher slurm --no-wait EXTRA`` (without --no-wait if ``wait``) on a tiny preset (3 candidates +
    A-SelecT's side: 4 pieces), in this process: ``(status, out, err)``."""
    preset = custom_preset(tmp_path, hfr={"candidates": [0, 500, 999], "num_images": 4})
    argv = ["compare", "--preset", str(preset), "--no-selectors", "--launcher", "slurm", "--state",
            str(tmp_path / "state"), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]

    def run(*extra, wait=False):
        return run_in_process([*argv, *([] if wait else ["--no-wait"]), *extra], capsys)
    return run


def calls(folder: Path, tool: str) -> list[str]:
    log = folder / "calls.log"
    return [line for line in log.read_text().splitlines() if line.startswith(f"{tool} ")] if log.exists() else []


def record(folder: Path) -> dict:
    return json.loads(next((folder / "state" / "jobs").glob("*/sweep.json")).read_text())


def assert_one_line(status: int, err: str, fragment: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("aselect-bench: error:")]
    assert status == 2 and "Traceback" not in err and len(lines) == 1 and fragment in lines[0], err
    return lines[0]


# ------------------------------------------------------------------- 1. a rerun submits nothing still queued

def test_a_no_wait_rerun_submits_nothing_slurm_still_queues(slurm, submit):
    status, out, err = submit()
    assert status == 0, err
    assert "sweep: 0 queued, 4 submitted" in out
    (slurm / "sacct.txt").write_text("4242_[0-3]|PENDING|None assigned\n")  # the array as sacct lists it pending
    status, out, err = submit()
    assert status == 0, err
    assert "sweep: 4 queued, 0 submitted" in out
    assert ("submitted: nothing (every piece is finished or queued); still queued from an earlier submission: "
            "4242_0, 4242_1, 4242_2, 4242_3;") in out
    assert len(calls(slurm, "sbatch")) == 1
    assert calls(slurm, "sacct") == ["sacct -o JobID,State,NodeList --parsable2 -j 4242"]
    sweep = record(slurm)
    assert sweep["jobs"] == 4 and sorted(sweep["job_ids"].values()) == [f"4242_{i}" for i in range(4)]


def test_a_rerun_that_waits_watches_the_queued_jobs_through_submitit(slurm, submit, monkeypatch):
    """Without --no-wait the rerun waits on the queued jobs (submitit's sacct watcher) instead of submitting them;
    here they end without their pieces, and with --retries 0 the sweep stops naming them, having submitted nothing."""
    monkeypatch.setattr(submitit.SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))  # no state from other tests
    assert submit()[0] == 0
    (slurm / "sacct.txt").write_text("4242_[0-3]|RUNNING|node1\n")
    (slurm / "sacct.later.txt").write_text("4242_[0-3]|COMPLETED|node1\n")
    status, out, err = submit("--retries", "0", wait=True)
    assert "sweep: 4 queued, 0 submitted" in out
    assert_one_line(status, err, "4 job(s) failed 1 times, so their pieces are missing: fgvc/cub t=0 (log ")
    assert len(calls(slurm, "sbatch")) == 1 and len(calls(slurm, "sacct")) == 2


def test_a_dry_run_counts_the_queued_jobs_as_not_to_submit(slurm, submit):
    assert submit()[0] == 0
    (slurm / "sacct.txt").write_text("4242_[0-3]|PENDING|None assigned\n")
    status, out, err = submit("--dry-run")
    assert status == 0, err
    assert "dry run: 0 of 4 jobs to submit (slurm), 4 still queued" in out and len(calls(slurm, "sbatch")) == 1


def test_a_piece_queued_by_another_sweep_of_the_state_is_not_submitted_again(slurm, submit, tmp_path):
    """``--dataset cub --no-wait``, then ``--dataset all``: a sweep of its own (another folder under
    --state/jobs), which must still see cub's queued jobs."""
    custom_preset(tmp_path, hfr={"candidates": [0, 500, 999], "num_images": 4},
                  fgvc={"tap": "blocks.1.out", "max_epochs": 1, "batch_size": 16, "datasets": ["cub", "flowers"]})
    assert submit()[0] == 0
    (slurm / "sacct.txt").write_text("4242_[0-3]|PENDING|None assigned\n")
    status, out, err = submit("--dataset", "all")
    assert status == 0, err
    assert "sweep: 4 queued, 4 submitted" in out and "submitted: 4243_0, 4243_1, 4243_2, 4243_3;" in out
    assert len(list((slurm / "state" / "jobs").glob("*/sweep.json"))) == 2


def test_a_piece_whose_job_ended_without_it_is_submitted_again(slurm, submit):
    assert submit()[0] == 0
    first = record(slurm)["job_ids"]
    states = {"4242_0": "RUNNING", "4242_1": "FAILED", "4242_2": "CANCELLED by 1000", "4242_3": "COMPLETED"}
    (slurm / "sacct.txt").write_text("".join(f"{job}|{state}|node1\n{job}.batch|{state}|node1\n"
                                             for job, state in states.items()))
    status, out, err = submit()
    assert status == 0, err
    assert "sweep: 1 queued, 3 submitted" in out
    assert "job 4242_1 ended (FAILED) without its piece" in out and "job 4242_2 ended (CANCELLED)" in out
    sweep = record(slurm)
    assert sweep["jobs"] == 7 and len(calls(slurm, "sbatch")) == 2
    running = next(name for name, job in first.items() if job == "4242_0")
    assert sweep["job_ids"][running] == "4242_0"
    assert sorted(job for name, job in sweep["job_ids"].items() if name != running) == ["4243_0", "4243_1", "4243_2"]


def test_without_accounting_squeue_says_what_is_queued(slurm, submit):
    assert submit()[0] == 0
    (slurm / "squeue.txt").write_text("4242_0|PENDING\n4242_2|RUNNING\n999_1|PENDING\n")  # sacct fails: squeue
    status, out, err = submit()
    assert status == 0, err
    assert "sweep: 2 queued, 2 submitted" in out and "job 4242_1 ended (GONE)" in out
    assert "Traceback" not in err and "Bypassing sacct error" not in err
    assert record(slurm)["jobs"] == 6 and len(calls(slurm, "squeue")) == 1


def test_when_slurm_answers_nothing_the_rerun_stops_before_submitting(slurm, submit):
    assert submit()[0] == 0
    status, _, err = submit()
    line = assert_one_line(status, err, "cannot tell whether SLURM still queues job(s) 4242_0")
    assert "Unable to contact slurm controller" in line and "rerun when SLURM answers" in line
    assert len(calls(slurm, "sbatch")) == 1 and record(slurm)["jobs"] == 4


# -------------------------------------------------------------------------------- 10. sbatch refuses the job

def test_sbatch_refusing_the_array_is_one_line_naming_the_key_to_fix(slurm, submit):
    (slurm / "sbatch.refuse").write_text("sbatch: error: Batch job submission failed: Invalid partition name "
                                         "specified\n")
    status, out, err = submit("--partition", "gpu-nope")
    line = assert_one_line(status, err, "sbatch refused the job array: 'sbatch: error: Batch job submission failed: "
                                        "Invalid partition name specified'")
    assert "fix launcher.partition in the preset, or pass --partition" in line
    assert "FailedJobError" not in err and not list((slurm / "state").rglob("sweep.json"))


def test_an_sbatch_answer_without_a_job_id_says_to_check_the_queue(slurm, submit):
    (slurm / "sbatch.answer").write_text("sbatch: queued on the federation\n")
    status, _, err = submit()
    line = assert_one_line(status, err, "sbatch's answer names no job id (Could not make sense of sbatch output")
    assert "the array may be queued without a record here, so check squeue --me" in line


# ------------------------------------------------------------- 15. launcher options the launcher would ignore

def launcher_options() -> list[str]:
    """Every option of compare's launcher group but ``--launcher`` itself and the two about jobs
    (``--no-wait``, ``--dry-run``), read from the parser so that a new one is checked too."""
    compare = build_parser()._subparsers._group_actions[0].choices["compare"]
    group = next(g for g in compare._action_groups if g.title == "jobs (submitit)")
    return [a.option_strings[0] for a in group._group_actions
            if a.option_strings[0] not in ("--launcher", "--no-wait", "--dry-run")]


VALUES = {"--slurm": "mail-type=END", "--partition": "gpu", "--account": "lab", "--qos": "normal",
          "--constraint": "h100"}


@pytest.mark.parametrize("flag", launcher_options())
def test_a_launcher_option_without_launcher_is_refused(tmp_path, capsys, flag):
    status, _, err = run_in_process(["compare", "--preset", str(tmp_path / "never-read.yaml"), flag,
                                     VALUES.get(flag, "2")], capsys)
    fix = "--launcher local" if flag == "--jobs" else "--launcher slurm"
    assert_one_line(status, err, f"{flag} is a launcher setting, ignored without --launcher: add {fix}")


@pytest.mark.parametrize("launcher, flag, fragment", [
    ("local", "--partition", "--partition is a SLURM setting, ignored by --launcher local"),
    ("local", "--array-parallelism", "--array-parallelism is a SLURM setting, ignored by --launcher local"),
    ("local", "--slurm", "--slurm is a SLURM setting, ignored by --launcher local"),
    ("slurm", "--jobs", "--jobs is how many local jobs run at once, ignored by --launcher slurm"),
])
def test_a_launcher_option_the_chosen_launcher_ignores_is_refused(tmp_path, capsys, launcher, flag, fragment):
    status, _, err = run_in_process(["compare", "--preset", str(tmp_path / "never-read.yaml"), "--launcher",
                                     launcher, flag, VALUES.get(flag, "2")], capsys)
    assert_one_line(status, err, fragment)


def test_no_wait_without_launcher_suggests_slurm_only(tmp_path, capsys):
    status, _, err = run_in_process(["compare", "--preset", str(custom_preset(tmp_path)), "--no-wait"], capsys)
    line = assert_one_line(status, err, "--no-wait is about SLURM jobs")
    assert "add --launcher slurm" in line and "local" not in line



def test_the_status_line_counts_a_stored_piece_whose_job_is_still_ending_as_done_only():
    """A job that has stored its piece but whose process has not ended yet was counted running and done at once,
    and the status line said '-1 pending' (seen in a local ladder sweep)."""
    from aselect_bench.launch import Sweep, Task

    class Stored:
        def __init__(self, stored):
            self.stored = stored

        def job_pieces(self, job):
            return ["piece"]

        @property
        def store(self):
            return type("S", (), {"has": lambda _, piece: self.stored})()

    sweep = Sweep.__new__(Sweep)
    sweep.slots, sweep.durations = 1, []
    sweep.tasks = [Task(Stored(True), {}, handle=object()), Task(Stored(False), {}, handle=object()),
                   Task(Stored(False), {})]
    assert sweep.status([]) == "sweep: 1 pending, 1 running, 1 done, 0 failed"


def test_waiting_without_accounting_sees_a_job_squeue_no_longer_lists(slurm, submit, monkeypatch):
    """submitit's watcher reads sacct only: on a cluster without accounting a waiting run never saw a job that died
    before writing its result (out of memory, scancel) and waited for ever. squeue, asked at each status interval,
    now says it is gone: its piece is failed (here, --retries 0) and named, nothing submitted twice."""
    import aselect_bench.launch as launch

    monkeypatch.setattr(submitit.SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))  # no state from other tests
    monkeypatch.setattr(launch, "STATUS_EVERY", 0.0)
    assert submit()[0] == 0  # 4 jobs queued; sacct has no accounting (no sacct.txt)
    (slurm / "squeue.txt").write_text("".join(f"4242_{i}|RUNNING\n" for i in range(4)))
    (slurm / "squeue.later.txt").write_text("")  # then killed: squeue lists none of them
    status, out, err = submit("--retries", "0", wait=True)
    assert "sweep: 4 queued, 0 submitted" in out
    assert_one_line(status, err, "4 job(s) failed 1 times, so their pieces are missing: fgvc/cub t=0 (log ")
    assert len(calls(slurm, "sbatch")) == 1
