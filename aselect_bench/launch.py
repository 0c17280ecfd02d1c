"""Comparisons as jobs on submitit: a SLURM job array, or local processes (one per visible GPU, or ``--jobs N`` on
a CPU). No scheduler of our own: submitit submits, requeues and logs; this module splits the work, watches,
retries and merges.

Each piece of a comparison (:class:`~aselect_bench.analyses.compare.Comparison`: one training of the exhaustive
sweep, or A-SelecT's side: the scan every selector reads and the training at the chosen timestep; for every
seed) is one job. A job rebuilds the experiment from a plain spec and runs its piece in the comparison's state
store, whose pieces are written atomically under a file lock: a job that is preempted or times out is requeued
by submitit (:class:`PieceJob` is ``Checkpointable``) and resumes there; a rerun of the command submits only
what is neither finished nor queued; jobs never compute a piece twice. Once every piece is stored, the merge
writes exactly what a serial run writes, plus the sweep's wall-clock and job count.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import submitit

from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json, read_json
from aselect_bench.progress import format_duration

KINDS = ("slurm", "local")
#: Seconds between status lines while waiting.
STATUS_EVERY = 30.0
#: SLURM job states (the first word sacct or squeue writes) of a job that is still queued or running: its piece is
#: watched, never submitted again. Any other state (COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL,
#: OUT_OF_MEMORY...) or a job squeue no longer lists has ended: a piece it did not store is submitted again.
LIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                         "COMPLETING", "SUSPENDED", "RESIZING", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD",
                         "POWER_UP_NODE"})
#: A word of sbatch's refusal -> the preset's ``launcher.<key>`` and the flag that set it (the first match).
SBATCH_CAUSES = (("qos", "qos", "--qos"), ("account", "account", "--account"),
                 ("partition", "partition", "--partition"), ("time limit", "time_min", "--time"), ("memory", "mem_gb", "--mem-gb"),
                 ("feature", "constraint", "--constraint"), ("constraint", "constraint", "--constraint"),
                 ("gres", "gpus_per_job", "--gpus-per-job"), ("gpu", "gpus_per_job", "--gpus-per-job"),
                 ("cpu", "cpus_per_job", "--cpus-per-job"), ("array", "array_parallelism", "--array-parallelism"))


class SweepIncomplete(UserError):
    """Jobs failed after their retries: the message names each with its log; finished pieces are kept."""


class PieceJob(submitit.helpers.Checkpointable):
    """One job: rebuild the comparison from ``spec`` (plain JSON: task, dataset, preset, state and runs folders,
    the selectors, the piece) and run its piece. Requeued after a timeout or preemption with the same spec, it
    resumes from the store and the feature caches."""

    def __call__(self, spec: dict) -> dict:
        import torch

        from aselect_bench.analyses.compare import Comparison
        from aselect_bench.experiments import build_experiment, preset_backbone
        from aselect_bench.settings import preset_from_dict

        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        preset = preset_from_dict(spec["preset"], spec["preset"]["name"])
        exp = build_experiment(spec["task"], spec["dataset"], preset, preset_backbone(preset, spec["task"]))
        Comparison(exp, spec["state"], spec["runs"], spec["selectors"]).run_job(spec["job"])
        return spec["job"]


@dataclass
class Task:
    """One piece to run: its comparison, its job (``Comparison.jobs``), and what happened to it here."""

    comparison: object
    job: dict
    attempts: int = 0
    handle: object = None  # the submitit job of the current attempt
    gpu: int | None = None
    started: float = 0.0
    logs: list = field(default_factory=list)
    queued_before: bool = False  # watched: its job from an earlier command is still queued or running

    @property
    def key(self) -> str:
        """The piece(s) across sweeps: ``<label>/<fingerprint>/<piece>[+<piece>]``, the key of its job id in every
        ``sweep.json``."""
        c = self.comparison
        return f"{c.label}/{c.fingerprint}/" + "+".join(c.job_pieces(self.job))

    @property
    def name(self) -> str:
        job, c = self.job, self.comparison
        what = f"t={job['t']}" if job["kind"] == "exhaustive" else "A-SelecT (scan + training)"
        seed = f" seed {job['repeat']}" if job["repeat"] else ""
        level = f" {c.exp.preset.corruption.label}" if c.exp.preset.corruption else ""  # a ladder's level
        return f"{c.exp.task}/{c.exp.dataset}{level} {what}{seed}"

    def finished(self) -> bool:
        return all(self.comparison.store.has(p) for p in self.comparison.job_pieces(self.job))

    def busy_elsewhere(self) -> bool:
        """Whether another process holds a lock of this piece now (a job queued or running from an earlier
        submission, or another run of the command)."""
        from filelock import FileLock, Timeout

        for piece in self.comparison.job_pieces(self.job):
            lock = FileLock(str(self.comparison.store.root / f"{piece}.lock"))
            try:
                lock.acquire(timeout=0)
                lock.release()
            except Timeout:
                return True
        return False


def job_spec(comparison, job: dict, state: str, runs: str, selectors, threads: int | None) -> dict:
    exp = comparison.exp
    return {"task": exp.task, "dataset": exp.dataset, "preset": exp.preset.to_json(), "state": str(state),
            "runs": str(runs), "selectors": selectors, "job": job, "threads": threads}


def sweep_folder(comparisons, state) -> Path:
    """``<state>/jobs/<label or 'sweep'>-<fingerprint of the comparisons>``: submitit's pickles and logs, and the
    sweep's record."""
    from aselect_bench.analyses.compare import fingerprint

    labels = [c.label for c in comparisons]
    name = labels[0] if len(labels) == 1 else f"{comparisons[0].exp.task}-all-{comparisons[0].exp.preset.name}"
    return Path(state) / "jobs" / f"{name}-{fingerprint([c.fingerprint for c in comparisons])}"


class Sweep:
    """Submit, watch, retry: runs ``tasks`` through a submitit executor of ``kind`` until each is finished or has
    failed ``1 + retries`` times."""

    def __init__(self, comparisons, kind: str, settings, folder: Path, state, runs, selectors, jobs: int | None = None):
        if kind not in KINDS:
            raise UserError(f"unknown launcher {kind!r}: use slurm or local")
        self.comparisons, self.kind, self.settings, self.folder = comparisons, kind, settings, Path(folder)
        self.state, self.runs, self.selectors = state, runs, selectors
        self.record_path = self.folder / "sweep.json"
        self.record = read_json(self.record_path) if self.record_path.exists() else {"started": None, "jobs": 0}
        self.slots, self.gpus, self.threads = self._slots(jobs)
        self.tasks = [Task(c, job) for c in comparisons for job in c.jobs()]
        self.durations: list[float] = []

    # ------------------------------------------------------------------------------------------- resources
    def _slots(self, jobs: int | None) -> tuple[int, list[int], int | None]:
        """``(parallel jobs, free GPUs, torch threads per job)``: SLURM runs the array's parallelism; locally one
        job per visible GPU, or ``jobs`` processes sharing this machine's cores on a CPU."""
        if self.kind == "slurm":
            return self.settings.array_parallelism, [], None
        import torch

        gpus = list(range(torch.cuda.device_count()))
        if gpus and jobs is None:
            return len(gpus), gpus, None
        slots = jobs or 1
        return slots, gpus[:slots], max(1, (os.cpu_count() or 1) // slots)

    def executor(self):
        """The submitit executor; its pickles and logs (named by job id) in the sweep's folder under the state tree."""
        s = self.settings
        if self.kind == "local":
            executor = submitit.LocalExecutor(folder=str(self.folder))
            executor.update_parameters(timeout_min=s.time_min, gpus_per_node=0)
            return executor
        executor = submitit.SlurmExecutor(folder=str(self.folder), max_num_timeout=3)
        executor.update_parameters(**slurm_parameters(s, self.folder.name))
        return executor

    # ------------------------------------------------------------------------------------------ the loop
    def todo(self) -> list[Task]:
        return [t for t in self.tasks if not t.finished() and t.handle is None]

    def submit(self, tasks: list[Task]) -> None:
        if not tasks:
            return
        executor = self.executor()
        if self.record["started"] is None:
            self.record["started"] = time.time()
        specs = [job_spec(t.comparison, t.job, self.state, self.runs, self.selectors, self.threads) for t in tasks]
        if self.kind == "slurm":
            handles = submit_array(executor, specs)
        else:
            handles = []
            for task, spec in zip(tasks, specs):
                task.gpu = self.gpus.pop(0) if self.gpus else None
                executor.update_parameters(gpus_per_node=0 if task.gpu is None else 1,
                                           visible_gpus=() if task.gpu is None else (task.gpu,))
                handles.append(executor.submit(PieceJob(), spec))
        for task, handle in zip(tasks, handles):
            task.handle, task.attempts, task.started = handle, task.attempts + 1, time.time()
            task.logs.append(str(handle.paths.stderr))
        self.record["jobs"] += len(tasks)
        self.record["job_ids"] = {**self.record.get("job_ids", {}), **{t.key: t.handle.job_id for t in tasks}}
        atomic_write_json(self.record_path, self.record)

    def poll(self, retries: int) -> list[Task]:
        """Collect the jobs that ended: finished ones free their slot, failed ones are submitted again until they
        have failed ``1 + retries`` times. Returns the tasks that failed for good."""
        failed, gone = [], self.gone_from_slurm()
        for task in [t for t in self.tasks if t.handle is not None and (t in gone or t.handle.done())]:
            if task.gpu is not None:
                self.gpus.append(task.gpu)
            elsewhere, task.handle = isinstance(task.handle, _Elsewhere), None
            if elsewhere:  # the other process ended: finished, or its piece is submitted here now
                continue
            if task.finished():
                self.durations.append(time.time() - task.started)
            elif task.attempts > retries:
                failed.append(task)
            else:
                print(f"sweep: {task.name} failed (log {task.logs[-1]}); submitting it again", flush=True)
        return failed

    def gone_from_slurm(self) -> list[Task]:
        """SLURM, at most every :data:`STATUS_EVERY` seconds: the watched jobs SLURM no longer queues or runs
        (sacct, or squeue where there is no accounting). submitit's own watcher reads sacct only, so without
        accounting a job killed before it wrote its result (out of memory, scancel) would be waited on for ever.
        A job younger than that interval is left to submitit (SLURM may not list a new job at once)."""
        now = time.monotonic()
        if self.kind != "slurm" or now - getattr(self, "_asked", float("-inf")) < STATUS_EVERY:
            return []
        self._asked = now
        watched = [t for t in self.tasks if isinstance(t.handle, submitit.SlurmJob)
                   and time.time() - t.started >= STATUS_EVERY]
        if not watched:
            return []
        try:
            states = slurm_states([str(t.handle.job_id) for t in watched])
        except UserError:  # SLURM did not answer this time: ask again at the next interval
            return []
        return [t for t in watched if states[str(t.handle.job_id)] not in LIVE_STATES]

    def status(self, failed: list[Task]) -> str:
        done = sum(t.finished() for t in self.tasks)
        # a job whose piece is stored but whose process is still ending counts as done, not running too
        running = sum(t.handle is not None and not t.finished() for t in self.tasks)
        pending = len(self.tasks) - running - done - len(failed)
        eta = ""
        if self.durations and pending + running:
            mean = sum(self.durations) / len(self.durations)
            eta = (f"; ETA {format_duration(mean * math.ceil((pending + running) / self.slots))} (mean job "
                   f"{format_duration(mean)} over {len(self.durations)} finished)")
        return f"sweep: {pending} pending, {running} running, {done} done, {len(failed)} failed{eta}"

    def recorded_jobs(self) -> dict[str, list[tuple[Path, str]]]:
        """``{task key: [(sweep folder, job id), ...]}`` from every sweep's ``sweep.json`` under ``<state>/jobs``,
        this sweep's first: a piece submitted by another sweep of the same state (``--dataset cub``, then
        ``--dataset all``) is known too."""
        records = [self.record_path, *sorted(Path(self.state, "jobs").glob("*/sweep.json"))]
        jobs: dict[str, list] = {}
        for path in dict.fromkeys(records):
            record = self.record if path == self.record_path else read_json(path)
            for key, job_id in record.get("job_ids", {}).items():
                jobs.setdefault(key, []).append((path.parent, str(job_id)))
        return jobs

    def watch_queued(self) -> int:
        """SLURM: each unfinished piece whose recorded job SLURM still queues or runs is watched, not submitted
        again; one whose job ended without storing it is named and left to submit. Returns how many are watched."""
        recorded = self.recorded_jobs()
        waiting = [(t, recorded[t.key]) for t in self.tasks if t.key in recorded and not t.finished()]
        if not waiting:
            return 0
        states = slurm_states(sorted({job_id for _, jobs in waiting for _, job_id in jobs}))
        for task, jobs in waiting:
            live = [(folder, job_id) for folder, job_id in jobs if states[job_id] in LIVE_STATES]
            if not live:
                folder, job_id = jobs[0]
                print(f"sweep: {task.name}: job {job_id} ended ({states[job_id]}) without its piece, so it is "
                      f"submitted again", flush=True)
                continue
            folder, job_id = live[0]
            task.handle, task.queued_before = submitit.SlurmJob(str(folder), job_id), True
            task.attempts, task.started = task.attempts + 1, time.time()
            task.logs.append(str(task.handle.paths.stderr))
        return sum(t.queued_before for t, _ in waiting)

    def mark_elsewhere(self) -> None:
        """Watch, instead of submitting, each piece another process holds the lock of now."""
        for task in self.todo():
            if task.busy_elsewhere():
                print(f"sweep: {task.name} is running elsewhere (an earlier submission); not submitted again",
                      flush=True)
                task.handle = _Elsewhere(task)

    def submit_missing(self) -> None:
        """Submit every piece that is neither finished, nor queued or running in SLURM (its recorded job), nor
        computed by another process (its lock), under one lock for every sweep of the state: two commands never
        submit one piece twice."""
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(Path(self.state, "jobs", "submit.lock"))):
            if self.record_path.exists():
                self.record = read_json(self.record_path)
            queued = self.watch_queued() if self.kind == "slurm" else 0
            self.mark_elsewhere()
            todo = self.todo()
            self.submit(todo)
        if self.kind == "slurm":
            print(f"sweep: {queued} queued, {len(todo)} submitted", flush=True)

    def run(self, wait: bool = True, retries: int = 1, poll_seconds: float = 2.0) -> list[Task]:
        """Submit what is neither finished, queued nor running elsewhere and, with ``wait``, watch until every task
        has finished or failed for good (returned)."""
        if self.kind == "slurm" or not wait:
            self.submit_missing()
        else:
            self.mark_elsewhere()
        if not wait:
            return []
        failed, last = [], 0.0
        while True:
            failed += self.poll(retries)
            free = self.slots - sum(t.handle is not None for t in self.tasks)
            if self.kind == "local" and free > 0:
                self.submit([t for t in self.todo() if t not in failed][:free])
            elif self.kind == "slurm":
                self.submit([t for t in self.todo() if t not in failed])  # the retries
            if all(t.handle is None for t in self.tasks):
                print(self.status(failed), flush=True)
                return failed
            if time.monotonic() - last >= STATUS_EVERY:
                print(self.status(failed), flush=True)
                last = time.monotonic()
            time.sleep(poll_seconds)


class _Elsewhere:
    """A handle for a piece another process is computing: done when its lock is free."""

    job_id = "elsewhere"

    def __init__(self, task: Task):
        self.task = task

    def done(self) -> bool:
        return not self.task.busy_elsewhere()


def slurm_parameters(settings, name: str) -> dict:
    """submitit's ``SlurmExecutor`` parameters from :class:`~aselect_bench.settings.LauncherSettings`."""
    params = {"job_name": f"aselect-{name}", "time": settings.time_min, "gpus_per_node": settings.gpus_per_job,
              "cpus_per_task": settings.cpus_per_job, "ntasks_per_node": 1, "nodes": 1,
              "array_parallelism": settings.array_parallelism, "signal_delay_s": 120}
    optional = {"partition": settings.partition, "account": settings.account, "qos": settings.qos,
                "constraint": settings.constraint, "mem": None if settings.mem_gb is None else f"{settings.mem_gb}GB"}
    params.update({k: v for k, v in optional.items() if v is not None})
    if settings.slurm:
        params["additional_parameters"] = dict(settings.slurm)
    return params


def submit_array(executor, specs: list[dict]) -> list:
    """Submit ``specs`` as one SLURM job array; the jobs (``"<array id>_<index>"``). sbatch refusing it (a bad
    partition, account, time limit...) stops with one :func:`sbatch_refused` line, not submitit's traceback."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr before raising it
            with executor.batch():
                return [executor.submit(PieceJob(), spec) for spec in specs]
    except (FailedJobError, OSError) as error:
        raise sbatch_refused(str(error)) from None
    except FailedSubmissionError as error:  # sbatch ran, but its answer names no job id
        raise UserError(f"sbatch's answer names no job id ({str(error).splitlines()[0]}): the array may be queued "
                        f"without a record here, so check squeue --me (and scancel it) before rerunning") from None


def sbatch_refused(message: str) -> UserError:
    """One line quoting sbatch's own reason and naming the preset key and flag that fix it."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or ["no message"]
    reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1])
    causes = [(key, flag) for word, key, flag in SBATCH_CAUSES if word in reason.lower()]
    fix = (f"fix launcher.{causes[0][0]} in the preset, or pass {causes[0][1]}" if causes else
           "check the preset's launcher: section, or the flags that override it (--partition, --account, --qos, "
           "--time, --mem-gb, --constraint, --slurm.KEY)")
    return UserError(f"sbatch refused the job array: {reason!r}: {fix}, then rerun the same command (nothing was "
                     f"submitted)")


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: state}`` for recorded SLURM jobs (``"4242_0"``): the first word of the state SLURM reports
    (``PENDING``, ``FAILED``...; see :data:`LIVE_STATES`), ``"GONE"`` for a job squeue no longer lists. Asks sacct
    (read by submitit's ``SlurmInfoWatcher``), then squeue for the jobs sacct does not know or where it fails (a
    cluster without accounting); one line if SLURM answers neither."""
    states = _sacct_states(job_ids)
    unknown = [job_id for job_id in job_ids if job_id not in states]
    if unknown:
        states.update(_squeue_states(unknown))
    return states


def _slurm(command: list[str]) -> tuple[str | None, str]:
    """``(stdout, "")`` of a SLURM query, or ``(None, why it failed)``."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, str(error)
    if done.returncode:
        return None, (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return done.stdout, ""


def _sacct_states(job_ids: list[str]) -> dict[str, str]:
    from submitit.slurm.slurm import SlurmInfoWatcher

    command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for array in sorted({job_id.split("_")[0] for job_id in job_ids}):
        command += ["-j", array]
    out, _ = _slurm(command)
    info = SlurmInfoWatcher().read_info(out) if out else {}
    return {job_id: info[job_id]["State"].split()[0].upper() for job_id in job_ids
            if info.get(job_id, {}).get("State")}


def _squeue_states(job_ids: list[str]) -> dict[str, str]:
    out, why = _slurm(["squeue", "--noheader", "--array", "--user", getpass.getuser(), "--format", "%i|%T"])
    if out is None:
        raise UserError(f"cannot tell whether SLURM still queues job(s) {', '.join(job_ids)} of this sweep (sacct "
                        f"does not know them and squeue failed: {why}): rerun when SLURM answers (a queued job is "
                        f"never submitted twice), or scancel them first")
    listed = dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
    return {job_id: listed.get(job_id, "GONE").split()[0].upper() for job_id in job_ids}


def launch(comparisons, kind: str, state, runs, selectors, jobs: int | None = None, wait: bool = True,
           dry_run: bool = False) -> dict | None:
    """Run the comparisons' missing pieces as jobs. Returns the launcher record for the results
    (``{"kind", "jobs", "settings", "wall_seconds"}``) once every piece is stored, or None (``wait=False``, or a
    dry run). A job that failed ``1 + retries`` times stops it with one :class:`SweepIncomplete` line."""
    settings = comparisons[0].exp.preset.launcher
    sweep = Sweep(comparisons, kind, settings, sweep_folder(comparisons, state), state, runs, selectors, jobs)
    todo = [t for t in sweep.tasks if not t.finished()]
    if dry_run:
        queued = dry_run_queued(sweep) if kind == "slurm" else ""
        todo = sweep.todo()
        print(f"dry run: {len(todo)} of {len(sweep.tasks)} jobs to submit ({kind}){queued}, in {sweep.folder}")
        for task in todo:
            print(f"  {task.name}")
        if kind == "slurm":
            print(f"  sbatch array: {slurm_parameters(settings, sweep.folder.name)}")
        return None
    print(f"sweep: {len(todo)} of {len(sweep.tasks)} jobs to run ({kind}, {sweep.slots} at a time), logs in "
          f"{sweep.folder}", flush=True)
    failed = sweep.run(wait, settings.retries)
    if not wait:
        print(no_wait_line(sweep.tasks))
        return None
    if failed:
        names = "; ".join(f"{t.name} (log {t.logs[-1]})" for t in failed)
        raise SweepIncomplete(f"{len(failed)} job(s) failed {1 + settings.retries} times, so their pieces are "
                              f"missing: {names}; every finished piece is kept: fix the cause and rerun the same "
                              f"command to run only these")
    return {"kind": kind, "jobs": sweep.record["jobs"], "settings": asdict(settings),
            "wall_seconds": wall_seconds(sweep)}


def dry_run_queued(sweep: Sweep) -> str:
    """A dry run asks SLURM about the jobs recorded earlier too, where it answers: ``", 3 still queued"``."""
    try:
        queued = sweep.watch_queued()
    except UserError:
        return " (SLURM did not say whether the jobs submitted earlier are still queued; a real run asks first)"
    return f", {queued} still queued" if queued else ""


def no_wait_line(tasks: list[Task]) -> str:
    """What ``--no-wait`` leaves behind: the jobs it submitted, and those still queued from an earlier command."""
    watched = [t for t in tasks if t.handle is not None and not isinstance(t.handle, _Elsewhere)]
    new = ", ".join(str(t.handle.job_id) for t in watched if not t.queued_before)
    old = ", ".join(str(t.handle.job_id) for t in watched if t.queued_before)
    return (f"submitted: {new or 'nothing (every piece is finished or queued)'}"
            f"{f'; still queued from an earlier submission: {old}' if old else ''}; when they are done, rerun the "
            f"same command to merge (it submits nothing that is finished, queued or running)")


def wall_seconds(sweep: Sweep) -> float | None:
    """The sweep's wall-clock: from its first submission to the last piece stored (None if nothing was run)."""
    if sweep.record["started"] is None:
        return None
    ends = [c.store.path(p).stat().st_mtime for t in sweep.tasks for c in [t.comparison] for p in c.job_pieces(t.job)]
    return max(ends) - sweep.record["started"]


def check_launcher_options(kind: str | None, wait: bool, fused: bool, only, dry_run: bool = False) -> None:
    """What a launched comparison cannot do, said before any work."""
    import shutil

    if kind is None:
        if not wait:
            raise UserError("--no-wait is about SLURM jobs (submit, return, merge on a rerun): add --launcher slurm")
        if dry_run:
            raise UserError("--dry-run is about jobs: add --launcher slurm or --launcher local")
        return
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if kind == "slurm" and missing and not dry_run:
        raise UserError(f"--launcher slurm needs SLURM's {' and '.join(missing)} on PATH, and this machine has "
                        f"{'neither' if len(missing) == 2 else 'none'}: run the command on the cluster's login node, "
                        f"or use --launcher local (or --dry-run to see the jobs)")
    if only:
        raise UserError("--only splits a sweep by hand; with --launcher every candidate is a job already: leave "
                        "--only out")
    if fused:
        raise UserError("--fused runs one data loop for all candidates, which is not split into jobs: run it "
                        "without --launcher")
    if not wait and kind == "local":
        raise UserError("--no-wait needs --launcher slurm: local jobs are this command's own processes (it runs "
                        "--jobs of them at a time)")

