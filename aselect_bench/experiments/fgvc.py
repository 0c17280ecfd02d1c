"""The FGVC experiment: a classification probe on one tap, its datamodule, and the fused-probe sweep."""

from __future__ import annotations

from pathlib import Path

from aselect_bench.experiments.base import Experiment


def fgvc_datamodule(preset: dict, name: str, backbone, root: Path):
    """An :class:`FGVCDataModule` for ``name`` at ``root``, at the backbone's native size, set up (num_classes known)."""
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule

    cfg = preset["fgvc"]
    datamodule = FGVCDataModule(name, root, image_size=backbone.image_size,
                                batch_size=cfg["batch_size"], num_workers=preset["num_workers"],
                                seed=preset["seed"], train_augment=cfg["train_augment"],
                                strict=preset.get("strict", False))
    datamodule.setup("fit")
    return datamodule


def fgvc_probe(preset: dict, backbone, num_classes: int, timestep=None, tap=None):
    """The preset's :class:`ClassificationTask` on ``backbone``."""
    from aselect_bench.tasks.classification import ClassificationTask

    cfg = preset["fgvc"]
    return ClassificationTask(
        backbone, num_classes=num_classes, tap=tap or cfg["tap"], timestep=timestep, head=cfg["head"],
        head_width=cfg["head_width"], head_depth=cfg["head_depth"], head_heads=cfg["head_heads"], lr=cfg["lr"],
        weight_decay=cfg["weight_decay"], warmup_fraction=cfg["warmup_fraction"],
        label_smoothing=cfg["label_smoothing"], seed=preset["seed"], cache_features=not cfg["train_augment"],
        linear_norm=cfg["linear_norm"],
    )


def fused_probe(preset: dict, backbone, pairs, num_classes: int):
    """The preset's probe as a :class:`FusedProbeTask`: one head per ``(tap, timestep)`` pair."""
    from aselect_bench.heads.probes import head_options
    from aselect_bench.tasks.fused import FusedProbeTask

    cfg = preset["fgvc"]
    head_kwargs = head_options(cfg["head"], cfg["head_width"], cfg["head_depth"], cfg["head_heads"], cfg["linear_norm"])
    return FusedProbeTask(backbone, pairs, num_classes, head=cfg["head"], head_kwargs=head_kwargs, lr=cfg["lr"],
                          weight_decay=cfg["weight_decay"], warmup_fraction=cfg["warmup_fraction"],
                          label_smoothing=cfg["label_smoothing"], seed=preset["seed"],
                          cache_features=not cfg["train_augment"])



class FGVCExperiment(Experiment):
    """Classification probe on one FGVC dataset (metric: top-1 in percent)."""

    supports_fused = True

    def __init__(self, preset: dict, dataset: str, backbone, datamodule):
        super().__init__("fgvc", dataset, preset, backbone, datamodule, preset["fgvc"]["max_epochs"],
                         preset["fgvc"]["tap"], "top1")

    def make_task(self, timestep, tap=None):
        return fgvc_probe(self.preset, self.backbone, self.datamodule.num_classes, timestep=timestep, tap=tap)

    def fit_fused(self, candidates, log_dir, progress: bool = True) -> dict:
        """The fused exhaustive sweep: one data loop, one head per candidate; cost and per-timestep metrics."""
        import time

        import lightning as L

        from aselect_bench.tasks.fit import DETERMINISTIC
        from aselect_bench.tasks.fused import pair_key

        L.seed_everything(self.preset["seed"], workers=True, verbose=False)
        task = fused_probe(self.preset, self.backbone, [(self.hfr_tap, t) for t in candidates],
                           self.datamodule.num_classes)
        start, forwards0 = time.perf_counter(), self.backbone.forwards
        trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=self.max_epochs, enable_checkpointing=False,
                            logger=L.pytorch.loggers.TensorBoardLogger(str(log_dir), name="fused-exhaustive"),
                            enable_progress_bar=progress, enable_model_summary=False, deterministic=DETERMINISTIC,
                            num_sanity_val_steps=0)
        trainer.fit(task, datamodule=self.datamodule)
        trainer.test(task, datamodule=self.datamodule, verbose=False)
        val = task.best_val_top1()
        per_timestep = {str(t): {"val": val[pair_key(self.hfr_tap, t)], "test": task.test_top1[pair_key(self.hfr_tap, t)]}
                        for t in candidates}
        best = max(candidates, key=lambda t: per_timestep[str(t)]["val"])
        return {"per_timestep": per_timestep, "best_timestep": best, "test_at_best": per_timestep[str(best)]["test"],
                "seconds": time.perf_counter() - start, "forwards": self.backbone.forwards - forwards0}
