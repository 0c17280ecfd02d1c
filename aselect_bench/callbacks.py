"""``HFRTimestepSelector``: the A-SelecT scan as a Lightning callback, run once before fitting."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from aselect_bench.errors import UserError
from aselect_bench.hfr import (
    DEFAULTS,
    HFRSettings,
    SelectionResult,
    check_candidates,
    scan_hfr,
    summarize_scan,
)
from aselect_bench.io import atomic_write_json


class HFRTimestepSelector(L.Callback):
    """Before fit: scan candidate timesteps on ``num_images`` calibration images, set ``pl_module.timestep``.

    Calibration images come from ``datamodule.calibration_images(n, seed)`` (the evaluation view, so
    augmentation randomness cannot change the choice), else from the first train batches. With several
    processes each rank scans its shard and the curve is all-reduced, so every rank picks the same
    timestep. A ``timestep`` already set on the task by the user skips the scan. Logs the curve as
    scalars indexed by timestep, a figure (titled with the bootstrap support of the choice), and the choice
    as a hyperparameter; writes ``hfr_selection.json`` (with ``support``, ``runner_up``, ``margin``) next to
    the logs; warns in one line when the support is below ``hfr.WEAK_SUPPORT``.
    """

    def __init__(self, num_images: int = DEFAULTS.num_images, candidates=DEFAULTS.candidates,
                 cutoff: float = DEFAULTS.cutoff, mode: str = DEFAULTS.mode, remove_mean: bool = DEFAULTS.remove_mean,
                 noise_draws: int = DEFAULTS.noise_draws, seed: int = 0, batch_size: int = 32, progress: bool = True):
        self.num_images, self.candidates = num_images, [int(t) for t in candidates]
        self.settings = dict(cutoff=cutoff, mode=mode, remove_mean=remove_mean, noise_draws=noise_draws)
        self.seed, self.batch_size, self.progress = seed, batch_size, progress
        self.result: SelectionResult | None = None

    @classmethod
    def from_settings(cls, settings: HFRSettings, seed: int = 0, **kwargs) -> HFRTimestepSelector:
        """The callback for a preset's :class:`~aselect_bench.hfr.HFRSettings`."""
        return cls(num_images=settings.num_images, candidates=settings.candidates, cutoff=settings.cutoff,
                   mode=settings.mode, remove_mean=settings.remove_mean, noise_draws=settings.noise_draws,
                   seed=seed, **kwargs)

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        if pl_module.timestep is not None:
            return  # fixed by the user (or restored from a checkpoint): no scan
        backbone = pl_module.backbone
        check_candidates(self.candidates, backbone.num_train_timesteps)
        images = self.calibration_images(trainer).to(pl_module.device)
        world, rank = trainer.world_size, trainer.global_rank
        start, stop = rank * len(images) // world, (rank + 1) * len(images) // world
        per_image, seconds, forwards = scan_hfr(
            backbone, images[start:stop], self.candidates, [pl_module.hfr_tap], seed=self.seed,
            batch_size=self.batch_size, progress=self.progress and rank == 0, first_index=start, **self.settings)
        tap = next(iter(per_image))
        per_image = self._gather(trainer, per_image[tap], len(images), start)
        forwards = int(trainer.strategy.reduce(torch.tensor(float(forwards), device=pl_module.device), reduce_op="sum"))
        self.result = summarize_scan(per_image, tap, seconds, forwards, {**self.settings, "num_images": len(images)})
        pl_module.timestep = self.result.timestep
        self._log(trainer, pl_module)

    def calibration_images(self, trainer) -> torch.Tensor:
        """``[N, 3, H, W]``: the datamodule's fixed calibration set, else the first train batches."""
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "calibration_images"):
            return datamodule.calibration_images(self.num_images, seed=self.seed)
        if datamodule is None:
            raise UserError("the HFR callback needs a datamodule (with calibration_images) to draw images from")
        batches, count = [], 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for batch in datamodule.train_dataloader():
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                batches.append(images)
                count += len(images)
                if count >= self.num_images:
                    break
        return torch.cat(batches)[: self.num_images]

    @staticmethod
    def _gather(trainer, values: dict, total: int, start: int) -> dict:
        """Place each rank's per-image HFR at its global index and sum over ranks: ``{t: [N]}``."""
        out = {}
        for t, v in values.items():
            full = torch.zeros(total, device=v.device)
            full[start:start + len(v)] = v
            out[t] = trainer.strategy.reduce(full, reduce_op="sum").cpu() if trainer.world_size > 1 else full.cpu()
        return out

    def _log(self, trainer, pl_module) -> None:
        result = self.result
        log_dir = trainer.log_dir or trainer.default_root_dir  # a collective under DDP: every rank asks
        if trainer.global_rank != 0:
            return
        from aselect_bench.plots import hfr_curve_figure

        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_scalar"):
                for t, v in result.curve.items():
                    experiment.add_scalar(f"hfr/{result.tap}", v, global_step=t)
                experiment.add_figure("hfr/curve", hfr_curve_figure(result.curve, result.timestep, result.spread,
                                                                     f"HFR of {result.tap}", result.firmness()),
                                      global_step=0)
            logger.log_hyperparams({"timestep": result.timestep, "hfr_tap": result.tap, "hfr_support": result.support,
                                    **result.settings})
        warning = result.weak_choice_warning()
        if warning:
            rank_zero_warn(warning)
        atomic_write_json(Path(log_dir) / "hfr_selection.json", result.to_json())
