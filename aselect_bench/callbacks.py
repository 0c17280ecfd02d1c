"""``HFRTimestepSelector``: the timestep selection (A-SelecT's HFR scan by default, or any registered selector)
as a Lightning callback, run once before fitting."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from aselect_bench.data.calibration import calibration_images
from aselect_bench.hfr import DEFAULTS, HFRSettings
from aselect_bench.io import atomic_write_json
from aselect_bench.selectors import (
    Selection,
    build_selector,
    check_candidates,
    check_enough_images,
    collect_scores,
    finalize,
    labelled_set,
    training_selector,
)

#: The setting that gives the callback more calibration images (``fit``'s option and config key, a preset's key).
IMAGES_OPTION = "hfr.num_images (fit: --hfr.num_images or the config key hfr: num_images)"


class HFRTimestepSelector(L.Callback):
    """Before fit: scan candidate timesteps on ``num_images`` calibration images and let ``selector`` (default
    ``hfr``, the paper's single pass) set ``pl_module.timestep``.

    Calibration images come from :func:`~aselect_bench.data.calibration.calibration_images` (the datamodule's
    evaluation view, so augmentation randomness cannot change the choice); a label-using
    selector also reads ``datamodule.selection_images(label_images, seed)`` (held-out, never the reported
    split). The HFR curve is computed alongside any other selector. With several processes and per-image
    selectors (the HFR family) each rank scans its shard and the scores are all-reduced; other selectors run
    whole on every rank (deterministic noise: the same choice). A ``timestep`` already set on the task skips
    the scan. Logs the curves as scalars indexed by timestep, a figure (titled with the choice's bootstrap
    support), and the choice as hyperparameters; writes ``hfr_selection.json`` (the ``select`` output) next
    to the logs; warns in one line when the support is below ``selectors.support.WEAK_SUPPORT``.
    """

    def __init__(self, num_images: int = DEFAULTS.num_images, candidates=DEFAULTS.candidates,
                 cutoff: float = DEFAULTS.cutoff, mode: str = DEFAULTS.mode, remove_mean: bool = DEFAULTS.remove_mean,
                 noise_draws: int = DEFAULTS.noise_draws, seed: int = 0, batch_size: int = 32, progress: bool = True,
                 selector: str = DEFAULTS.selector, label_images: int = DEFAULTS.label_images):
        self.num_images, self.candidates = num_images, [int(t) for t in candidates]
        self.settings = dict(cutoff=cutoff, mode=mode, remove_mean=remove_mean, noise_draws=noise_draws)
        self.seed, self.batch_size, self.progress = seed, batch_size, progress
        self.hfr_settings = HFRSettings(num_images=num_images, selector=selector, label_images=label_images,
                                        **self.settings)
        training_selector(selector, self.hfr_settings)  # a bad name stops here, before any training
        self.selector, self.label_images = selector, label_images
        self.result: Selection | None = None

    @classmethod
    def from_settings(cls, settings: HFRSettings, seed: int = 0, **kwargs) -> HFRTimestepSelector:
        """The callback for a preset's :class:`~aselect_bench.hfr.HFRSettings`."""
        return cls(num_images=settings.num_images, candidates=settings.candidates, cutoff=settings.cutoff,
                   mode=settings.mode, remove_mean=settings.remove_mean, noise_draws=settings.noise_draws,
                   seed=seed, selector=settings.selector, label_images=settings.label_images, **kwargs)

    @property
    def choice(self):
        """The chosen selector's :class:`~aselect_bench.selectors.Choice` (after the scan)."""
        return None if self.result is None else self.result.choices[self.selector]

    def selectors(self) -> list:
        """The configured selector, and ``hfr`` beside it for the curve."""
        names = [self.selector] + (["hfr"] if self.selector != "hfr" else [])
        return [build_selector(n, self.hfr_settings) for n in names]

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        if pl_module.timestep is not None:
            return  # fixed by the user (or restored from a checkpoint): no scan
        backbone = pl_module.backbone
        check_candidates(self.candidates, backbone.num_train_timesteps)
        selectors = self.selectors()
        images = calibration_images(trainer.datamodule, self.num_images, self.seed).to(pl_module.device)
        check_enough_images(selectors[0], len(images), IMAGES_OPTION)
        labelled = labels = None
        if selectors[0].uses_labels:
            labelled, labels = labelled_set(trainer.datamodule, self.label_images, self.seed)
        world, rank = trainer.world_size, trainer.global_rank
        shard = world > 1 and all(s.per_image or not s.needs_scan for s in selectors)
        start, stop = (rank * len(images) // world, (rank + 1) * len(images) // world) if shard else (0, len(images))
        raw = collect_scores(backbone, selectors, self.candidates, pl_module.hfr_tap, images[start:stop], labelled,
                             labels, seed=self.seed, batch_size=self.batch_size,
                             progress=self.progress and rank == 0, first_index=start)
        if shard:
            raw.scores = {name: self._gather(trainer, per_t, len(images), start) for name, per_t in raw.scores.items()}
            raw.scan.forwards = int(trainer.strategy.reduce(torch.tensor(float(raw.scan.forwards),
                                                                         device=pl_module.device), reduce_op="sum"))
            raw.num_images = len(images)
        self.result = finalize(selectors, raw, pl_module.hfr_tap)
        self.choice.refuse_if_no_pick(f"raise {IMAGES_OPTION} or use another selector (hfr.selector)")
        pl_module.timestep = self.choice.timestep
        self._log(trainer)

    @staticmethod
    def _gather(trainer, values: dict, total: int, start: int) -> dict:
        """Place each rank's per-image scores at their global index and sum over ranks: ``{t: [N]}``."""
        out = {}
        for t, v in values.items():
            v = torch.as_tensor(v, device=trainer.strategy.root_device)
            full = torch.zeros(total, device=v.device)
            full[start:start + len(v)] = v
            out[t] = trainer.strategy.reduce(full, reduce_op="sum").cpu()
        return out

    def _log(self, trainer) -> None:
        selection, choice = self.result, self.choice
        log_dir = trainer.log_dir or trainer.default_root_dir  # a collective under DDP: every rank asks
        if trainer.global_rank != 0:
            return
        from aselect_bench.plots import hfr_curve_figure

        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_scalar"):
                for name, c in selection.choices.items():
                    for t, v in (c.scores or {}).items():
                        if v is not None:
                            experiment.add_scalar(f"{'hfr' if name == 'hfr' else f'selector/{name}'}/{selection.tap}",
                                                  v, global_step=t)
                hfr = selection.choices.get("hfr")
                if hfr is not None:
                    experiment.add_figure("hfr/curve", hfr_curve_figure(hfr.scores, hfr.timestep, hfr.spread,
                                                                         f"HFR of {selection.tap}", hfr.firmness()),
                                          global_step=0)
            logger.log_hyperparams({"timestep": choice.timestep, "selector": self.selector, "hfr_tap": selection.tap,
                                    "hfr_support": choice.support, **self.settings})
        warning = choice.weak_choice_warning(IMAGES_OPTION)
        if warning:
            rank_zero_warn(warning)
        atomic_write_json(Path(log_dir) / "hfr_selection.json", selection.record(self.selector))
