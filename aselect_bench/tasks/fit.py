"""One probe run end to end: (HFR scan) -> fit -> test at the best validation epoch, with its cost."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

#: The Trainers' ``deterministic`` mode: deterministic kernels wherever they exist, a warning (not an error) for
#: the CUDA ops that have none (``cross_entropy`` over pixels, ``interpolate``'s and adaptive pooling's backward:
#: the segmentation path). ``True`` would stop every segmentation fit on a GPU; on the CPU the two are the same.
DETERMINISTIC = "warn"


@dataclass
class RunResult:
    """What one run measured: metrics in percent, the timestep used, and its cost."""

    timestep: int
    val: float
    test: float
    seconds: float
    forwards: int
    hfr: dict = field(default_factory=dict)
    scan_seconds: float = 0.0
    scan_forwards: int = 0
    log_dir: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def make_trainer(log_dir, name: str, max_epochs: int, callbacks=(), progress: bool = True, **trainer_kwargs):
    """A Trainer that logs to TensorBoard under ``log_dir/name`` and keeps the best validation checkpoint."""
    checkpoint = ModelCheckpoint(monitor=trainer_kwargs.pop("monitor", "val/top1"), mode="max", save_last=True,
                                 filename="best-{epoch}")
    defaults = dict(accelerator="auto", devices=1, max_epochs=max_epochs, enable_progress_bar=progress,
                    enable_model_summary=False, log_every_n_steps=5, deterministic=DETERMINISTIC,
                    num_sanity_val_steps=0)
    trainer = L.Trainer(logger=TensorBoardLogger(str(log_dir), name=name, default_hp_metric=False),
                        callbacks=[checkpoint, *callbacks], **{**defaults, **trainer_kwargs})
    return trainer, checkpoint


def fit_and_test(task, datamodule, log_dir, name: str, max_epochs: int, selector=None, seed: int = 0,
                 progress: bool = True, monitor: str = "val/top1", test_metric: str = "test/top1",
                 **trainer_kwargs) -> RunResult:
    """Fit ``task`` (the selector picks its timestep first, if given), test the best validation checkpoint."""
    L.seed_everything(seed, workers=True, verbose=False)
    start, forwards0 = time.perf_counter(), task.backbone.forwards
    callbacks = [selector] if selector is not None else []
    trainer, checkpoint = make_trainer(log_dir, name, max_epochs, callbacks, progress, monitor=monitor,
                                       **trainer_kwargs)
    trainer.fit(task, datamodule=datamodule)
    best = checkpoint.best_model_path or None
    test = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    scan = selector.result if selector is not None else None
    return RunResult(
        timestep=int(task.timestep), val=float(checkpoint.best_model_score), test=float(test[test_metric]),
        seconds=time.perf_counter() - start, forwards=task.backbone.forwards - forwards0,
        hfr={str(t): v for t, v in scan.curve.items()} if scan else {},
        scan_seconds=scan.seconds if scan else 0.0, scan_forwards=scan.forwards if scan else 0,
        log_dir=str(Path(trainer.log_dir or log_dir)),
    )
