"""The FGVC experiment: a classification probe on one tap, its datamodule, and the fused-probe sweep."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from aselect_bench.experiments.base import Experiment, exhaustive_summary
from aselect_bench.settings import BenchPreset


def datamodule_arguments(preset: BenchPreset, name: str, root) -> dict:
    """The keyword arguments of the preset's :class:`FGVCDataModule` for dataset ``name`` at ``root`` (all but
    ``image_size``, the backbone's)."""
    return dict(dataset=name, data_root=str(root), batch_size=preset.fgvc.batch_size, num_workers=preset.num_workers,
                seed=preset.seed, train_augment=preset.fgvc.train_augment, strict=preset.strict,
                resize_ratio=preset.fgvc.resize_ratio,
                **({} if preset.corruption is None else {"corruption": asdict(preset.corruption)}))


def fgvc_datamodule(preset: BenchPreset, name: str, backbone, root: Path):
    """An :class:`FGVCDataModule` for ``name`` at ``root``, at the backbone's native size, set up (num_classes known)."""
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule

    datamodule = FGVCDataModule(image_size=backbone.image_size, **datamodule_arguments(preset, name, root))
    datamodule.setup("fit")
    return datamodule


def training_options(preset: BenchPreset) -> dict:
    """The keyword arguments every probe of the preset shares (optimiser, schedule, seed, feature caching)."""
    cfg = preset.fgvc
    return dict(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_fraction=cfg.warmup_fraction,
                label_smoothing=cfg.label_smoothing, seed=preset.seed, cache_features=not cfg.train_augment)


def probe_arguments(preset: BenchPreset, tap=None) -> dict:
    """The keyword arguments of the preset's :class:`ClassificationTask` (all but the backbone, the number of
    classes, the timestep and where features are cached)."""
    cfg = preset.fgvc
    return dict(tap=tap or cfg.tap, head=cfg.head, head_width=cfg.head_width, head_depth=cfg.head_depth,
                head_heads=cfg.head_heads, linear_norm=cfg.linear_norm, precision=preset.precision,
                **training_options(preset))


def fgvc_probe(preset: BenchPreset, backbone, num_classes: int, timestep=None, tap=None, feature_cache_root=None,
               seed: int | None = None):
    """The preset's :class:`ClassificationTask` on ``backbone`` (``seed``: the head's init and noise draws;
    default the preset's)."""
    from aselect_bench.tasks.classification import ClassificationTask

    options = {**probe_arguments(preset, tap), **({} if seed is None else {"seed": seed})}
    return ClassificationTask(backbone, num_classes=num_classes, timestep=timestep, feature_cache_root=feature_cache_root,
                              **options)


def fused_probe(preset: BenchPreset, backbone, pairs, num_classes: int, feature_cache_root=None):
    """The preset's probe as a :class:`FusedProbeTask`: one head per ``(tap, timestep)`` pair."""
    from aselect_bench.heads.probes import head_options
    from aselect_bench.tasks.fused import FusedProbeTask

    cfg = preset.fgvc
    head_kwargs = head_options(cfg.head, cfg.head_width, cfg.head_depth, cfg.head_heads, cfg.linear_norm)
    return FusedProbeTask(backbone, pairs, num_classes, head=cfg.head, head_kwargs=head_kwargs,
                          feature_cache_root=feature_cache_root, **training_options(preset))


class FGVCExperiment(Experiment):
    """Classification probe on one FGVC dataset (metric: top-1 in percent)."""

    supports_fused = True

    def __init__(self, preset: BenchPreset, dataset: str, backbone, datamodule):
        super().__init__("fgvc", dataset, preset, backbone, datamodule, preset.fgvc.max_epochs, preset.fgvc.tap, "top1")

    def make_task(self, timestep, tap=None, feature_cache_root=None, seed=None):
        return fgvc_probe(self.preset, self.backbone, self.datamodule.num_classes, timestep=timestep, tap=tap,
                          feature_cache_root=feature_cache_root, seed=seed)

    def fit_pairs(self, pairs, log_dir, name: str, progress: bool = True, feature_cache_root=None):
        """One fused run over ``pairs`` ``[(tap, timestep)]``: ``({(tap, t): {"val", "test"}}, Cost)``, each
        head tested at its own best validation epoch."""
        import lightning as L

        from aselect_bench.costs import measure_cost
        from aselect_bench.tasks.fit import make_trainer
        from aselect_bench.tasks.fused import pair_key

        L.seed_everything(self.preset.seed, workers=True, verbose=False)
        task = fused_probe(self.preset, self.backbone, pairs, self.datamodule.num_classes, feature_cache_root)
        with measure_cost(self.backbone) as cost:
            trainer, _ = make_trainer(log_dir, name, self.max_epochs, progress=progress, checkpoint=False)
            trainer.fit(task, datamodule=self.datamodule)
            trainer.test(task, datamodule=self.datamodule, verbose=False)
        val = task.best_val_top1()
        return {(tap, t): {"val": val[pair_key(tap, t)], "test": task.test_top1[pair_key(tap, t)]}
                for tap, t in pairs}, cost

    def fit_fused(self, candidates, log_dir, progress: bool = True, feature_cache_root=None) -> dict:
        """The fused exhaustive sweep: one data loop, one head per candidate; per-timestep metrics and cost."""
        rows, cost = self.fit_pairs([(self.hfr_tap, t) for t in candidates], log_dir, "fused-exhaustive", progress,
                                    feature_cache_root)
        return exhaustive_summary({t: rows[(self.hfr_tap, t)] for t in candidates}, cost)
