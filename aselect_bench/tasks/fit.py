"""One probe run end to end: (HFR scan) -> fit -> test at the best validation epoch, with its cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from aselect_bench.costs import measure_cost
from aselect_bench.progress import quiet_lightning, training_progress
from aselect_bench.tasks.curves import LearningCurve


@dataclass
class RunResult:
    """What one run measured: metrics in percent, the timestep used, and its cost."""

    timestep: int
    val: float
    test: float | None  # None: a partial run (``stop_after``), never tested
    seconds: float
    forwards: int
    hfr: dict = field(default_factory=dict)
    selector: str | None = None  # the selector that chose ``timestep`` (None: fixed by the caller)
    scan_seconds: float = 0.0
    scan_forwards: int = 0
    log_dir: str = ""
    outcomes: dict = field(default_factory=dict)  # {"val", "test"}: per-image records (aselect_bench.uncertainty)
    history: list = field(default_factory=list)  # the learning curve (aselect_bench.tasks.curves)
    cpu_seconds: float | None = None  # this process's CPU time (aselect_bench.costs), beside the wall ``seconds``
    gpu_seconds: float | None = None  # CUDA time, on a GPU

    def to_json(self) -> dict:
        return asdict(self)


#: How every benchmark Trainer is seeded and kept repeatable: on the CPU every kernel is deterministic; on CUDA,
#: ops without a deterministic kernel (2-D cross entropy, bilinear-interpolation and adaptive-pooling backward)
#: warn instead of raising, so segmentation trains on a GPU.
DETERMINISM = "warn"
#: Every benchmark Trainer's settings (besides its schedule, logger, callbacks and progress display).
TRAINER_DEFAULTS = dict(accelerator="auto", devices=1, enable_model_summary=False, log_every_n_steps=5,
                        deterministic=DETERMINISM, num_sanity_val_steps=0)


def checkpoint_options(monitor: str = "val/top1") -> dict:
    """The suite's ``ModelCheckpoint``: the best epoch by ``monitor`` (higher is better) and the last one."""
    return dict(monitor=monitor, mode="max", save_last=True, filename="best-{epoch}")


def make_trainer(log_dir, name: str, max_epochs: int, callbacks=(), progress: bool = True, checkpoint: bool = True,
                 monitor: str = "val/top1", logger: bool = True, checkpoint_dir=None, **trainer_kwargs):
    """The suite's Trainer: logging to TensorBoard under ``log_dir/name`` (unless ``logger=False``); with
    ``checkpoint`` it keeps the best validation checkpoint (by ``monitor``) and the last one (in
    ``checkpoint_dir``, default the log folder's ``checkpoints/``); with ``progress``,
    Lightning's bar on a terminal or a line every 30 s in a log file. Returns
    ``(trainer, checkpoint callback or None)``."""
    quiet_lightning()
    saver = ModelCheckpoint(dirpath=checkpoint_dir, **checkpoint_options(monitor)) if checkpoint else None
    bar, lines = training_progress(progress, name)
    defaults = dict(**TRAINER_DEFAULTS, max_epochs=max_epochs, enable_progress_bar=bar, enable_checkpointing=checkpoint)
    trainer = L.Trainer(logger=TensorBoardLogger(str(log_dir), name=name, default_hp_metric=False) if logger else False,
                        default_root_dir=str(log_dir),
                        callbacks=[*([saver] if saver else []), *callbacks, *lines], **{**defaults, **trainer_kwargs})
    return trainer, saver


def fit_and_test(task, datamodule, log_dir, name: str, max_epochs: int, selector=None, seed: int = 0,
                 progress: bool = True, monitor: str = "val/top1", test_metric: str = "test/top1",
                 test_checkpoint: str = "best", stop_after: int | None = None, resume=None, checkpoint_dir=None,
                 **trainer_kwargs) -> RunResult:
    """Fit ``task`` (the timestep-selector callback picks its timestep first, if given), then test it at ``test_checkpoint``:
    the ``best`` validation checkpoint or the ``last`` weights. ``val`` is the best validation score
    (``best``) or the last one (``last``); ``history`` the learning curve, the tested row carrying ``"test"``.

    A partial run: ``stop_after`` validation runs of the full ``max_epochs`` schedule, not tested (``test``
    None); ``resume`` (a checkpoint of the same training, e.g. ``checkpoint_dir/last.ckpt``) continues it."""
    L.seed_everything(seed, workers=True, verbose=False)
    curve = LearningCurve(task.backbone, monitor, stop_after)
    callbacks = [*([selector] if selector is not None else []), curve]
    with measure_cost(task.backbone) as cost:
        trainer, checkpoint = make_trainer(log_dir, name, max_epochs, callbacks, progress, monitor=monitor,
                                           checkpoint_dir=checkpoint_dir, **trainer_kwargs)
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume)
        history = list(curve.rows)  # testing a checkpoint restores the callback's rows of that epoch
        best = checkpoint.best_model_path or None
        last_val = float(trainer.callback_metrics[monitor]) if monitor in trainer.callback_metrics else float("nan")
        test = None if stop_after is not None else trainer.test(
            task, datamodule=datamodule, ckpt_path=best if test_checkpoint == "best" else None, verbose=False)[0]
    selection = selector.result if selector is not None else None
    scan = selection.cost_of(selector.selector) if selection else None
    hfr = selection.choices.get("hfr") if selection else None
    val = float(checkpoint.best_model_score) if test_checkpoint == "best" else last_val
    outcomes = getattr(task, "outcomes", None) if test is not None else None
    if test is not None and history:
        tested_row(history, test_checkpoint)["test"] = float(test[test_metric])
    return RunResult(
        timestep=int(task.timestep), val=val, test=None if test is None else float(test[test_metric]),
        seconds=cost.seconds, forwards=cost.forwards, cpu_seconds=cost.cpu_seconds, gpu_seconds=cost.gpu_seconds,
        hfr=dict(hfr.scores) if hfr else {}, selector=selector.selector if selection else None,
        scan_seconds=scan.seconds if scan else 0.0, scan_forwards=scan.forwards if scan else 0,
        log_dir=str(Path(trainer.log_dir or log_dir)),
        outcomes=reported_outcomes(outcomes, test_checkpoint) if outcomes is not None else {},
        history=history,
    )


def tested_row(rows: list[dict], test_checkpoint: str) -> dict:
    """The row of the validation run whose weights were tested: the first with the best ``val`` (``best``, as
    ``ModelCheckpoint`` keeps it), or the last (``last``)."""
    if test_checkpoint == "last":
        return rows[-1]
    return max(rows, key=lambda r: r["val"])  # the first of equal ones


def reported_outcomes(outcomes, test_checkpoint: str) -> dict:
    """``{"val": record, "test": record}``: the per-image records behind the reported metrics, the validation
    run the test was scored at (``best``: the first with the highest score, as ``ModelCheckpoint`` keeps it;
    ``last``) and the test run."""
    runs = outcomes.snapshots
    if not runs or outcomes.test_record is None:
        return {}
    val = outcomes.best_snapshot()[0] if test_checkpoint == "best" else runs[-1]
    return {"val": val, "test": outcomes.test_record}
