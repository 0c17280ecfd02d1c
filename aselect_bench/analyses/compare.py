"""Exhaustive search vs A-SelecT on the same candidate grid, data, seeds, head and schedule, and every
timestep selector scored on the same exhaustive curve.

- exhaustive: train + validate a head at every candidate, take the best validation metric, test there;
- A-SelecT: the scan, the preset's selector (``hfr`` by default) picks a timestep, one training there, tested;
- selectors (:mod:`aselect_bench.selectors`): every registered selector reads the same scan; each is scored
  on the exhaustive curve (its timestep's test metric, regret, Spearman of its score with the validation
  metric, its extra cost and its saving), without another training;
- fused exhaustive (optional, classification): one data loop with one head per candidate.

Every finished piece is written atomically under a folder keyed by a fingerprint of everything that
changes it (the preset with its overrides and candidate grid, the backbone's weights and precision, the
data), so an interrupted comparison resumes without recomputing anything and a changed configuration never
reuses stale results. Costs (:mod:`aselect_bench.costs`): wall seconds and ``forwards`` (images passed
through the backbone). Each strategy trains from its own cold feature cache. Timesteps are ``int`` keys in
memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

from aselect_bench.analyses.error_bars import comparison_error_bars, seed_pick
from aselect_bench.costs import Cost, cost_across_attempts, mean_cost, saving_measure
from aselect_bench.errors import CorruptFileError, UserError
from aselect_bench.experiments.base import describe_changes, exhaustive_summary
from aselect_bench.io import atomic_write_json, make_folder, read_json
from aselect_bench.reports import run_record, training_logdir
from aselect_bench.searches.score import search_rows
from aselect_bench.selectors import (
    Choice,
    build_selector,
    check_candidates,
    check_enough_images,
    labelled_set,
    run_selectors,
    selector_names,
)


def fingerprint(obj) -> str:
    """A short stable hash of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman rank correlation, ``None`` when undefined (fewer than 3 points or a constant series)."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    value = float(spearmanr(xs, ys).statistic)
    return None if math.isnan(value) else value


def int_keys(mapping: dict) -> dict:
    """``{"50": v}`` (as JSON stores timesteps) -> ``{50: v}``."""
    return {int(k): v for k, v in mapping.items()}


class Store:
    """Finished pieces of one comparison as JSON files under ``root`` (atomic writes, resumable), each computed
    under its own file lock (``<piece>.lock``), so runs (or jobs of a sweep) that share the folder never do a
    piece twice: a second run skips or waits for what the first is computing, then reads its result."""

    #: What :meth:`try_run` returns for a piece another process is computing now.
    BUSY = object()

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def read(self, name: str, keys: tuple[str, ...] = ()):
        return read_json(self.path(name), keys)

    def try_run(self, name: str, fn, keys: tuple[str, ...] = (), wait: bool = True):
        """``(value, reused)``: the stored piece, else ``fn()`` computed under the piece's lock and stored. When
        another process holds the lock: with ``wait`` say so and wait for it (then read its result), else
        return :attr:`BUSY`. ``keys``: entries a stored piece must have (else it is reported as damaged)."""
        from filelock import FileLock, Timeout

        if self.has(name):
            return self.read(name, keys), True
        make_folder(self.path(name).parent, "the --state folder")
        lock = FileLock(str(self.root / f"{name}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                return self.BUSY
            print(f"{name}: another run is computing it (lock {lock.lock_file}); waiting for it", flush=True)
            lock.acquire()
        try:
            if self.has(name):  # finished by the other run meanwhile
                return self.read(name, keys), True
            value = fn()
            atomic_write_json(self.path(name), value)
            return json.loads(json.dumps(value)), False  # the same form a resumed run reads back
        finally:
            lock.release()

    def get_or_run(self, name: str, fn, keys: tuple[str, ...] = ()):
        return self.try_run(name, fn, keys, wait=True)


def record_config(store: Store, config: dict, manifests: dict) -> None:
    """Write a comparison state's ``config.json`` (and, new, the data's file lists ``data-files.json``); a new state
    of a comparison that had one before first says what changed (:func:`describe_changes`): it trains anew."""
    root = store.root
    if not (root / "config.json").exists():
        earlier = sorted((p for p in root.parent.glob("*/config.json") if p.parent != root),
                         key=lambda p: p.stat().st_mtime)
        if earlier:
            last = earlier[-1].parent
            try:
                files = read_json(last / "data-files.json") if (last / "data-files.json").exists() else {}
                changed = describe_changes(read_json(earlier[-1]), config, files, manifests)
            except CorruptFileError:
                changed = "its earlier configuration cannot be read"
            print(f"note: {changed or 'the configuration changed'} since the state in {last}: every piece is "
                  f"trained anew into {root}", file=sys.stderr, flush=True)
        atomic_write_json(root / "data-files.json", manifests)
    atomic_write_json(root / "config.json", config)


#: The entries every stored training piece has.
TRAINING_KEYS = ("val", "test", "seconds", "forwards")


def comparison_selectors(task: str, selectors=True, default: str = "hfr") -> list[str]:
    """The selectors a comparison scores: ``True`` every one that applies to ``task``, ``False`` only the
    preset's ``default``, or a list of names (the default is always included, first)."""
    names = selector_names(task) if selectors is True else [] if selectors is False else list(selectors)
    return [default] + [n for n in names if n != default]


def check_candidates_to_compare(candidates, only=None) -> None:
    """A comparison needs at least two candidate timesteps (with one, both strategies are the same training), and
    ``only`` (a share of the sweep) must be candidates of the grid (another timestep would train for nothing:
    the merge reads the grid)."""
    if len(set(candidates)) < 2:
        raise UserError(f"a comparison needs at least 2 candidate timesteps, got {list(candidates)}: with one, "
                        f"exhaustive search and A-SelecT train the same head; give --candidates 0,50,... (or use "
                        f"'aselect-bench select' for a single scan)")
    outside = [t for t in only or () if t not in candidates]
    if outside:
        raise UserError(f"--only {outside[0]} is not a candidate of the grid ({', '.join(map(str, candidates))}): "
                        f"give timesteps of the grid, or change the grid with --candidates")


def seed_prefix(repeat: int) -> str:
    """Where repeat ``repeat`` keeps its pieces in the store (the first repeat at the top, as before seeds)."""
    return "" if repeat == 0 else f"seed{repeat}/"


def exhaustive_piece(t: int, repeat: int = 0) -> str:
    """The store's name of the exhaustive sweep's training at ``t`` (of repeat ``repeat``)."""
    return f"{seed_prefix(repeat)}exhaustive/t{t:04d}"


def selection_piece(names: list[str], repeat: int = 0) -> str:
    return f"{seed_prefix(repeat)}selectors/{fingerprint(names)}"


def aselect_piece(repeat: int = 0) -> str:
    return f"{seed_prefix(repeat)}aselect/train"


class Comparison:
    """One comparison's pieces in its store, each resumable and computed once (:class:`Store`): the exhaustive
    sweep's trainings and A-SelecT's side (the scan every selector reads, then one training at the preset
    selector's timestep), for every repeat (``preset.seeds``); :meth:`result` merges them.

    The pieces are what a launcher (:mod:`aselect_bench.launch`) runs as jobs: :meth:`jobs` names them,
    :meth:`job_pieces` says what each stores, :meth:`run_job` runs one.
    """

    def __init__(self, exp, state_root="runs/compare", runs_dir="runs", selectors=True, progress: bool = True):
        check_candidates_to_compare(exp.preset.hfr.candidates)
        check_candidates(exp.preset.hfr.candidates, exp.backbone.num_train_timesteps)
        self.exp, self.progress = exp, progress
        self.config = exp.describe()
        self.fingerprint = fingerprint(self.config)
        corruption = exp.preset.corruption
        # a corrupted comparison (one level of a ladder) keeps its pieces and logs beside the clean one's
        self.label = f"{exp.task}-{exp.dataset}-{exp.preset.name}" + (f"-{corruption.label}" if corruption else "")
        self.store = Store(Path(state_root) / self.label / self.fingerprint)
        record_config(self.store, self.config, exp.data_manifests())
        self.log_root = training_logdir(runs_dir, "compare", self.label)
        self.candidates = list(exp.preset.hfr.candidates)
        self.default = exp.preset.hfr.selector
        self.names = comparison_selectors(exp.task, selectors, self.default)
        check_enough_images(build_selector(self.default, exp.preset.hfr), exp.preset.hfr.num_images,
                            "the preset's hfr.num_images")
        self.repeats = range(exp.preset.seeds)
        self.warm = False  # has this process warmed up (warm_up) for this comparison?

    # ----------------------------------------------------------------------------------------- the pieces
    def _train(self, t: int, piece: str, repeat: int, name: str, cache: str, **fit_options) -> dict:
        """One training at ``t`` with its learning curve (``history``); each strategy trains from its own cold
        feature cache. ``fit_options``: a partial or continued run (:meth:`Experiment.fit`; ``test`` None)."""
        exp, store = self.exp, self.store
        self.warm_up()
        with cost_across_attempts(store.root / f"{piece}.attempts.json", exp.backbone) as earlier:
            run = exp.fit(timestep=t, log_dir=self.log_root, name=f"{seed_prefix(repeat)}{name}",
                          progress=self.progress, repeat=repeat,
                          feature_cache_root=store.root / seed_prefix(repeat) / cache, **fit_options)
        # a resumed training reads the features its interrupted attempts cached: count what those cost too
        spent = Cost(run.seconds, run.forwards, run.cpu_seconds, run.gpu_seconds) + earlier.cost
        return {"val": run.val, "test": run.test, **spent.to_json(), "outcomes": run.outcomes, "history": run.history,
                **earlier.to_json()}

    def candidate(self, t: int, repeat: int = 0, wait: bool = True):
        """The exhaustive sweep's training at ``t`` (repeat ``repeat``): ``(row, reused)``, or :attr:`Store.BUSY`."""
        piece = exhaustive_piece(t, repeat)
        return self.store.try_run(piece, lambda: self._train(t, piece, repeat, f"exhaustive-t{t}", "features"),
                                  TRAINING_KEYS, wait=wait)

    def exhaustive(self, only=None) -> dict:
        """``{repeat: {t: row}}`` of every repeat's sweep (``only``: just these candidates), computing what is
        missing: first every piece no other run is computing, then waiting for the others."""
        check_candidates_to_compare(self.candidates, only)
        todo = [(r, t) for r in self.repeats for t in (only or self.candidates)]
        rows, self.reused = {r: {} for r in self.repeats}, 0
        for wait in (False, True):
            busy = []
            for r, t in todo:
                print(f"exhaustive: t={t}{f' (seed {r})' if r else ''}", flush=True)
                outcome = self.candidate(t, r, wait)
                if outcome is Store.BUSY:
                    print(f"exhaustive: t={t} is being trained by another run; coming back to it", flush=True)
                    busy.append((r, t))
                    continue
                rows[r][t], reused = outcome
                self.reused += reused
            todo = busy
        return {r: {t: rows[r][t] for t in (only or self.candidates)} for r in self.repeats}

    def warm_up(self) -> None:
        """Before this process times its first piece: :func:`warm_up` once, so no strategy pays it."""
        if not self.warm:
            warm_up(self.exp, self.candidates[0])
            self.warm = True

    def selection(self, repeat: int = 0) -> dict:
        """Every selector on one scan (repeat ``repeat``'s noise draws; the same images for every repeat)."""
        return self.store.get_or_run(selection_piece(self.names, repeat),
                                     lambda: self.warm_up() or _select(self.exp, self.names, self.progress,
                                                                       repeat))[0]

    def aselect(self, repeat: int = 0) -> tuple[dict, dict]:
        """A-SelecT's side of repeat ``repeat``: ``(selection, training row)`` at the preset selector's choice."""
        selection = self.selection(repeat)
        t = selection["choices"][self.default]["timestep"]
        why = no_pick(selection["choices"][self.default])
        if why is not None:
            raise UserError(f"the preset's selector {self.default!r} picks no timestep: {why}; raise the preset's "
                            f"hfr.num_images or choose another hfr.selector")
        piece = aselect_piece(repeat)
        row, _ = self.store.get_or_run(piece, lambda: self._train(t, piece, repeat, f"aselect-t{t}",
                                                                  "features-aselect"), TRAINING_KEYS)
        return selection, row

    # -------------------------------------------------------------------------------------- as jobs
    def jobs(self) -> list[dict]:
        """Every piece as a job: ``{"kind": "exhaustive", "t", "repeat"}`` or ``{"kind": "aselect", "repeat"}``."""
        return [*({"kind": "exhaustive", "t": t, "repeat": r} for r in self.repeats for t in self.candidates),
                *({"kind": "aselect", "repeat": r} for r in self.repeats)]

    def job_pieces(self, job: dict) -> list[str]:
        if job["kind"] == "exhaustive":
            return [exhaustive_piece(job["t"], job["repeat"])]
        return [selection_piece(self.names, job["repeat"]), aselect_piece(job["repeat"])]

    def run_job(self, job: dict) -> None:
        if job["kind"] == "exhaustive":
            self.candidate(job["t"], job["repeat"])
        else:
            self.aselect(job["repeat"])

    # -------------------------------------------------------------------------------------------- merge
    def result(self, fused: bool = False) -> dict:
        """The comparison: every repeat's pieces (computed when missing) merged, with error bars
        (:mod:`aselect_bench.analyses.error_bars`)."""
        exp, candidates = self.exp, self.candidates
        sweeps = self.exhaustive()
        sides = {r: self.aselect(r) for r in self.repeats}
        per_timestep = {t: merge_repeats([sweeps[r][t] for r in self.repeats]) for t in candidates}
        exhaustive = exhaustive_summary(per_timestep)
        selections = [sides[r][0] for r in self.repeats]
        trains = [sides[r][1] for r in self.repeats]
        train = merge_repeats(trains)
        stages = {"scan": sum((_cost_of(s, self.default) for s in selections), Cost()),
                  "train": Cost.from_json(train)}
        total = stages["scan"] + stages["train"]
        ex_cost = sum((Cost.from_json(row) for row in per_timestep.values()), Cost())
        exhaustive["cpu_seconds"] = ex_cost.cpu_seconds
        measure = saving_measure([ex_cost, total], exp.backbone.device)
        choices = [s["choices"][self.default] for s in selections]
        aselect = {"timestep": seed_pick([c["timestep"] for c in choices]), "selector": self.default,
                   "val": train["val"], "test": train["test"], **total.to_json(),
                   "stages": {n: c.to_json() for n, c in stages.items()},
                   **{k: choices[0][k] for k in ("support", "runner_up", "margin")},
                   **{k: train[k] for k in ("history", "repeats") if k in train}}  # its learning curve(s)
        hfr = mean_scores([s["choices"]["hfr"]["scores"] for s in selections]) if "hfr" in selections[0]["choices"] \
            else {}
        result = {
            "task": exp.task, "dataset": exp.dataset, "preset": exp.preset.name, "label": self.label,
            **({"corruption": exp.preset.to_json()["corruption"]} if exp.preset.corruption else {}),
            "metric": exp.metric_name,
            "splits": exp.split_names(), "backbone": exp.backbone.name, "tap": exp.hfr_tap, "candidates": candidates,
            "seeds": len(self.repeats), "hfr": hfr, "exhaustive": exhaustive, "aselect": aselect,
            "saving_seconds": exhaustive[measure] / aselect[measure], "saving_measure": measure,
            "saving_wall_seconds": exhaustive["seconds"] / aselect["seconds"],
            "saving_forwards": exhaustive["forwards"] / aselect["forwards"],
            "ideal_saving": len(candidates),
            "scan_share_of_one_training": stages["scan"].seconds / train["seconds"],
            "regret": exhaustive["test_at_best"] - aselect["test"],
            "spearman_hfr_val": spearman([hfr[t] for t in candidates], [per_timestep[t]["val"] for t in candidates])
            if hfr else None,
            "selectors": score_selectors(selections, sweeps, exhaustive, candidates, measure),
            "selectors_no_pick": selectors_without_pick(selections, self.names),
            "scan": {**selections[0]["scan"], "num_images": selections[0]["num_images"],
                     "num_labelled": selections[0]["num_labelled"]},
            "test_checkpoint": exp.test_checkpoint, "hfr_settings": exp.preset.hfr.to_json(),
            "fingerprint": self.fingerprint, "run": run_record(exp.preset, exp.backbone, [exp.datamodule]),
            "resumed": {name: {k: row[k] for k in ("attempts", "cost_complete")} for name, row in
                        [*((f"exhaustive t={t}{f' seed {r}' if r else ''}", sweeps[r][t])
                           for r in self.repeats for t in candidates),
                         *((f"A-SelecT training{f' seed {r}' if r else ''}", trains[r]) for r in self.repeats)]
                        if "attempts" in row},
        }
        if len(self.repeats) > 1:
            aselect["timesteps"] = [c["timestep"] for c in choices]
        picks = {name: [s["choices"][name]["timestep"] for s in selections] for name in
                 (row["name"] for row in result["selectors"])}
        result["timing_disturbed"] = result["saving_seconds"] > result["ideal_saving"]
        aselect_seconds = [getattr(_cost_of(s, self.default) + Cost.from_json(row), measure)
                           for s, row in zip(selections, trains)]
        comparison_error_bars(result, sweeps, trains, picks, aselect_seconds)
        result["searches"] = search_rows(result, sweeps)  # replayed on the recorded curves (#42)
        if (fused or self.store.has("fused")) and exp.supports_fused:
            fused_result, _ = self.store.get_or_run("fused", lambda: exp.fit_fused(
                candidates, self.log_root, self.progress, feature_cache_root=self.store.root / "features-fused"))
            result["fused_exhaustive"] = {**fused_result, "per_timestep": int_keys(fused_result["per_timestep"])}
        return result


def warm_up(exp, timestep: int) -> None:
    """An untimed training of one batch (fit, validation, test) at ``timestep`` in a throwaway folder: what a
    process pays once (imports, kernel set-up, the first Trainer, logger and loaders) is paid here, before any
    strategy's clock starts, so the first piece timed is not charged for it."""
    import tempfile

    from aselect_bench.tasks.fit import make_trainer

    one_batch = dict(max_steps=1, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1,
                     val_check_interval=1.0, check_val_every_n_epoch=1)
    options = {k: v for k, v in exp.trainer_options().items() if k != "max_epochs"}  # one epoch, given below
    with tempfile.TemporaryDirectory(prefix="aselect-warm-up-") as folder:
        task = exp.make_task(timestep, feature_cache_root=Path(folder) / "features", seed=exp.training_seed(0))
        trainer, _ = make_trainer(folder, "warm-up", 1, progress=False, monitor=f"val/{exp.metric_name}",
                                  **{**options, **one_batch})
        trainer.fit(task, datamodule=exp.datamodule)
        trainer.test(task, datamodule=exp.datamodule, ckpt_path="best", verbose=False)  # a checkpoint saved, read


def merge_repeats(rows: list[dict]) -> dict:
    """One training's repeats as one row: mean ``val``/``test``, summed ``seconds``/``forwards`` (what all the
    repeats cost), the interrupted attempts summed; with several repeats also each repeat's numbers and learning
    curve (``repeats[i].history``; one repeat keeps its ``history`` in the row)."""
    if len(rows) == 1:
        return {k: v for k, v in rows[0].items() if k != "outcomes"}  # the per-image outcomes stay in the store
    merged = sum((Cost.from_json(r) for r in rows), Cost()).to_json()
    merged.update(val=sum(r["val"] for r in rows) / len(rows), test=sum(r["test"] for r in rows) / len(rows),
                  repeats=[{k: r[k] for k in (*TRAINING_KEYS, "history") if k in r} for r in rows])
    attempts = [r for r in rows if "attempts" in r]
    if attempts:
        merged.update({k: sum(r[k] for r in attempts) for k in ("attempts", "interrupted_seconds",
                                                                 "interrupted_forwards")},
                      cost_complete=all(r["cost_complete"] for r in attempts))
    return merged


def mean_scores(curves: list[dict]) -> dict:
    """The mean over repeats of ``{t: score}`` curves (JSON keys), ``int`` keys; a score missing in a repeat
    (``None``) is left out of that timestep's mean."""
    out = {}
    for t in curves[0]:
        values = [c[t] for c in curves if c.get(t) is not None]
        out[int(t)] = sum(values) / len(values) if values else None
    return out


def run_comparison(exp, state_root="runs/compare", runs_dir="runs", selectors=True, fused: bool = False,
                   only=None, progress: bool = True) -> dict | None:
    """Run (or resume) the comparison for experiment ``exp`` on its preset's candidate grid (at least two), over
    the preset's repeats (``seeds``).

    ``selectors``: which selectors to score (:func:`comparison_selectors`). ``fused``: also run the fused
    exhaustive baseline (a finished one is reported whenever it exists). ``only``: train just these candidates
    of the exhaustive sweep and stop (a share of the sweep; a later run without ``only`` merges). Returns the
    comparison dict (or None).
    """
    comparison = Comparison(exp, state_root, runs_dir, selectors, progress)
    if only:
        comparison.exhaustive(only)
        trained = len(only) * len(comparison.repeats) - comparison.reused
        print(f"trained {trained} candidate(s), reused {comparison.reused}; state in {comparison.store.root}")
        return None
    return comparison.result(fused)


def _select(exp, names: list[str], progress: bool, repeat: int = 0) -> dict:
    """Every selector in ``names`` on one scan of the experiment's calibration (and, for label-using
    selectors, labelled held-out) images, with repeat ``repeat``'s noise draws: the
    :class:`~aselect_bench.selectors.Selection` as JSON."""
    preset = exp.preset
    selectors = [build_selector(n, preset.hfr) for n in names]
    labelled = labels = None
    unscored = {}
    if any(s.uses_labels for s in selectors):
        try:
            labelled, labels = labelled_set(exp.datamodule, preset.hfr.label_images, preset.seed)
        except UserError as err:
            if build_selector(preset.hfr.selector, preset.hfr).uses_labels:
                raise
            print(f"note: the label-using selectors pick no timestep in this comparison: {err}", file=sys.stderr,
                  flush=True)
            unscored = {s.name: Choice(s.name, None, None, True, True, 0, 0.0, s.settings,
                                       no_pick=f"no labelled held-out images to read: {err}")
                        for s in selectors if s.uses_labels}
            selectors = [s for s in selectors if not s.uses_labels]
    selection = run_selectors(exp.backbone, selectors, preset.hfr.candidates, exp.hfr_tap, exp.calibration_images(),
                              labelled, labels, seed=exp.training_seed(repeat), progress=progress)
    selection.choices = {n: unscored.get(n) or selection.choices[n] for n in names}  # every name, in order
    return selection.to_json()


def no_pick(choice: dict) -> str | None:
    """Why a stored choice names no timestep (``None``: it picked one, or it is the random rule's expectation);
    a choice stored before ``no_pick`` existed whose every score is undefined picked nothing either."""
    if choice.get("no_pick"):
        return choice["no_pick"]
    scores = choice.get("scores")
    return "every candidate's score is undefined" if scores and all(v is None for v in scores.values()) else None


def selectors_without_pick(selections: list[dict], names: list[str]) -> list[dict]:
    """The selectors that picked no timestep in some repeat, with why: ``[{"name", "uses_labels", "reason"}]``
    (a name missing from a stored scan: left out by an earlier version)."""
    rows = []
    for name in names:
        choices = [s["choices"].get(name) for s in selections]
        reasons = ["not in the stored scan (an earlier version left it out): delete the selectors/ folder of "
                   "the --state to scan again" if c is None else no_pick(c) for c in choices]
        why = next((r for r in reasons if r is not None), None)
        if why is not None:
            uses = next((c["uses_labels"] for c in choices if c is not None), build_selector(name).uses_labels)
            rows.append({"name": name, "uses_labels": uses, "reason": why})
    return rows


def _cost_of(selection: dict, name: str) -> Cost:
    """What selector ``name`` cost in a stored selection: the scan (when it needs one) plus its own extra."""
    c = selection["choices"][name]
    scan = Cost.from_json(selection["scan"]) if c["needs_scan"] else Cost()
    return scan + Cost(c["extra_seconds"], c["extra_forwards"], c.get("extra_cpu_seconds"))


def score_selectors(selections: list[dict], sweeps: dict, exhaustive: dict, candidates: list[int],
                    measure: str = "seconds") -> list[dict]:
    """Each selector's choice scored on the exhaustive curve, over the repeats (``selections[r]`` read
    ``sweeps[r]``): ``{"name", "timestep", "val", "test", "regret", "spearman", "extra_forwards", "extra_seconds",
    "uses_labels", "needs_scan", "seconds", "cpu_seconds", "forwards", "saving_seconds", "saving_forwards",
    "timing_disturbed", ...}``, metrics the mean over repeats; ``saving_seconds`` is computed from ``measure``
    (``"cpu_seconds"`` or wall ``"seconds"``), and ``timing_disturbed`` marks one above its ideal (the grid's size).

    A selector's cost is what it needs (the scan, its extra work) plus one training at its timestep, taken
    from the exhaustive sweep's run there (the same training), summed over repeats; the random rule
    (``timestep`` None) is scored by its expectation over the grid: mean metrics, mean regret, mean training cost.
    """
    rows = []
    for name in [n for n in selections[0]["choices"] if all(n in s["choices"] for s in selections)]:
        choices = [s["choices"][name] for s in selections]
        if any(no_pick(c) is not None for c in choices):
            continue  # no pick, nothing to score: listed with why (selectors_without_pick)
        picks = [c["timestep"] for c in choices]
        cost, val, test = Cost(), [], []
        for selection, t, sweep in zip(selections, picks, sweeps.values()):
            at = [t] if t is not None else candidates
            val.append(sum(sweep[u]["val"] for u in at) / len(at))
            test.append(sum(sweep[u]["test"] for u in at) / len(at))
            cost += _cost_of(selection, name) + mean_cost([Cost.from_json(sweep[u]) for u in at])
        scores = mean_scores([c["scores"] for c in choices]) if choices[0]["scores"] is not None else None
        scored = [u for u in candidates if scores is not None and scores.get(u) is not None]
        per_t, c = exhaustive["per_timestep"], choices[0]
        mean_test = sum(test) / len(test)
        rows.append({
            "name": name, "timestep": seed_pick(picks),
            **({"timesteps": picks} if len(picks) > 1 else {}),
            "val": sum(val) / len(val), "test": mean_test, "regret": exhaustive["test_at_best"] - mean_test,
            "spearman": spearman([scores[u] for u in scored], [per_t[u]["val"] for u in scored]) if scores else None,
            "extra_forwards": sum(x["extra_forwards"] for x in choices),
            "extra_seconds": sum(x["extra_seconds"] for x in choices),
            "uses_labels": c["uses_labels"], "needs_scan": c["needs_scan"], "seconds": cost.seconds,
            "cpu_seconds": cost.cpu_seconds, "forwards": cost.forwards,
            "saving_seconds": exhaustive[measure] / getattr(cost, measure),
            "timing_disturbed": exhaustive[measure] / getattr(cost, measure) > len(candidates),
            "saving_forwards": exhaustive["forwards"] / cost.forwards if cost.forwards else None,
            "settings": c["settings"], "scores": scores, **{k: c[k] for k in ("support", "runner_up", "margin")}})
    return rows
