"""A search run live: it trains only what the search asks for, through the comparison's own pieces (state store,
locks, feature caches, resume), and must end with the same pick and the same epochs as its replay over the
exhaustive sweep's recorded curves (``aselect-bench compare --search NAME``).

:class:`LiveSource` is the :class:`~aselect_bench.searches.base.CurveSource` of one seed of a comparison. The
training at ``t`` is piece ``search/<name>/t0050`` of the comparison's store (``seed<r>/`` first for a later
seed); its curve so far lives in the Lightning checkpoint ``search/<name>/t0050.checkpoints/last.ckpt``, so asking
for more epochs *continues* that run (the same ``max_epochs`` schedule, the random states restored:
:mod:`aselect_bench.tasks.curves`), and a rerun after an interruption resumes from it. A training carried to
``max_epochs`` is tested and stored as a finished piece, like an exhaustive one. Where the exhaustive sweep's
piece at ``t`` is already finished (with its curve), its curve is read instead: it is the same training.
"""

from __future__ import annotations

import shutil

from aselect_bench.analyses.compare import exhaustive_piece, seed_prefix
from aselect_bench.io import atomic_write_json, read_json
from aselect_bench.searches.base import Context, build_search
from aselect_bench.searches.score import other_bests
from aselect_bench.tasks.curves import checkpoint_curve


def validation_runs(exp) -> int:
    """How many validation runs (history rows) a full training of ``exp`` makes: its epochs, or the validation
    points of an iteration-based schedule (``max_steps`` / ``val_check_interval``)."""
    options = exp.trainer_options()
    if options.get("max_steps") and options.get("val_check_interval"):
        return int(options["max_steps"]) // int(options["val_check_interval"])
    if options.get("max_steps"):
        batches = len(exp.datamodule.train_dataloader())
        return -(-int(options["max_steps"]) // batches)
    return int(exp.max_epochs)


def search_piece(name: str, t: int, repeat: int = 0) -> str:
    """The store's name of search ``name``'s training at ``t`` (of repeat ``repeat``)."""
    return f"{seed_prefix(repeat)}search/{name}/t{t:04d}"


class LiveSource:
    """The learning curves of one seed (``repeat``) of ``comparison``, trained on demand for search ``name``.

    ``trained`` lists what this source trained: ``(t, from epoch, to epoch)`` per continued run.
    """

    def __init__(self, comparison, repeat: int = 0, name: str = "live"):
        self.comparison, self.repeat, self.name = comparison, repeat, name
        self.store = comparison.store
        self.candidates = list(comparison.candidates)
        self.max_epochs = validation_runs(comparison.exp)
        self.trained: list[tuple[int, int, int]] = []

    def observe(self, t: int, epochs: int) -> list[dict]:
        """The rows of epochs ``1..epochs`` of the training at ``t``, training (continuing) it as far as needed."""
        from filelock import FileLock

        if t not in self.candidates or not 1 <= epochs <= self.max_epochs:
            raise ValueError(f"t={t}, {epochs} epochs: not a candidate or outside 1..{self.max_epochs}")
        finished = self.finished_row(t)
        if finished is not None:
            return finished["history"][:epochs]
        piece = search_piece(self.name, t, self.repeat)
        folder = self.store.root / f"{piece}.checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.store.root / f"{piece}.lock")):  # another run of this search waits, then reads
            if self.store.has(piece):
                return self.store.read(piece)["history"][:epochs]
            last = folder / "last.ckpt"
            rows = checkpoint_curve(last) if last.exists() else []
            if len(rows) < epochs:
                rows = self._continue(t, piece, len(rows), epochs, last if rows else None)
        return rows[:epochs]

    def finished_row(self, t: int) -> dict | None:
        """The finished full training at ``t`` with its curve: the exhaustive sweep's, else this search's; or None."""
        for piece in (exhaustive_piece(t, self.repeat), search_piece(self.name, t, self.repeat)):
            if self.store.has(piece):
                row = self.store.read(piece)
                if row.get("history"):
                    return row
        return None

    def _continue(self, t: int, piece: str, done: int, epochs: int, resume) -> list[dict]:
        """Train ``t`` from epoch ``done`` (its checkpoint ``resume``) to ``epochs``; at ``max_epochs`` the run is
        tested and stored as the finished piece (its cost: every segment's)."""
        full = epochs >= self.max_epochs
        folder = self.store.root / f"{piece}.checkpoints"
        print(f"search {self.name}: t={t} epochs {done + 1}..{epochs}"
              f"{f' (seed {self.repeat})' if self.repeat else ''}", flush=True)
        row = self.comparison._train(t, f"{piece}.to{epochs:03d}", self.repeat, f"search-{self.name}-t{t}",
                                     f"search/{self.name}/features", stop_after=None if full else epochs,
                                     resume=resume, checkpoint_dir=folder)
        self.trained.append((t, done, epochs))
        segments_file = self.store.root / f"{piece}.segments.json"
        segments = [*(read_json(segments_file) if segments_file.exists() else []),
                    {k: v for k, v in row.items() if k not in ("outcomes", "history")}]
        if not full:
            atomic_write_json(segments_file, segments)
            return row["history"]
        spent = {k: sum(s[k] for s in segments) for k in segments[-1]
                 if k in ("seconds", "forwards", "cpu_seconds", "gpu_seconds") and all(s.get(k) is not None
                                                                                   for s in segments)}
        atomic_write_json(self.store.path(piece), {**row, **spent, "segments": segments})
        segments_file.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # the finished piece holds all a report reads
        return row["history"]


def run_live(comparison, name: str, results_folder=None) -> dict:
    """Search ``name`` run live on every seed of ``comparison``: ``{"search", "live", "settings", "runs": [{
    "repeat", "timestep", "epochs", ..., "test", "trained"}]}`` (``test``: the full training at the pick;
    ``trained``: ``[t, from epoch, to epoch]`` of what this run trained, not read from earlier ones).
    ``results_folder``: where the ``transfer`` search finds the other comparisons."""
    exp = comparison.exp
    context = Context(other_bests({"task": exp.task, "dataset": exp.dataset, "preset": exp.preset.name,
                                   "backbone": exp.backbone.name}, results_folder) if results_folder else {})
    search, runs = build_search(name), []
    for repeat in comparison.repeats:
        source = LiveSource(comparison, repeat, name)
        for sampler_seed in search.sampler_seeds:  # a stochastic search's runs share the trainings they both ask
            before = len(source.trained)
            outcome = search.run_once(source, context, sampler_seed)
            row = source.finished_row(outcome.timestep) if outcome.timestep is not None else None
            runs.append({"repeat": repeat, **outcome.to_json(), "test": row["test"] if row else None,
                         "trained": [list(x) for x in source.trained[before:]]})
    return {"search": name, "live": True, "settings": search.settings, "runs": runs}

