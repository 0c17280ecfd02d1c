"""Build the pieces of a benchmark run from a preset: data (generated when synthetic), probe, selector."""

from __future__ import annotations

import shutil
from pathlib import Path

from aselect_bench.callbacks import HFRTimestepSelector
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json, read_json


def dataset_root(preset: dict, task: str, name: str, data_root=None) -> Path:
    """Where dataset ``name`` lives: ``<data_root>/<name>`` (synthetic presets: ``<data_root>/<task>/<name>``).

    A synthetic preset writes the dataset there first, in the original layout, if it is missing.
    """
    base = Path(data_root or preset.get("data_root") or "data")
    if not preset.get("synthetic"):
        root = base / name
        if not root.exists():
            raise UserError(f"dataset folder {root} does not exist: put the {name} files as distributed under "
                            f"{root} (or pass --data-root/DATA_ROOT with one folder per dataset)")
        return root
    root = base / task / name
    if task == "fgvc":
        from aselect_bench.data import synth_fgvc as generator

        args = dict(layout=name, seed=preset["seed"] + sorted(preset["fgvc"]["datasets"]).index(name),
                    **preset["synth"]["fgvc"])
    else:
        from aselect_bench.data import synth_ade20k as generator

        args = dict(seed=preset["seed"], **preset["synth"]["ade20k"])
    expected = {"generator_version": generator.GENERATOR_VERSION, **args}
    marker = root / ".aselect_synth.json"
    if marker.exists() and {k: v for k, v in read_json(marker).items() if k in expected} == expected:
        return root
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise UserError(f"{root} holds files that this suite did not generate; move them or choose another "
                        f"--data-root for the synthetic {name} data")
    shutil.rmtree(root, ignore_errors=True)  # stale synthetic data (another generator version or size)
    if task == "fgvc":
        generator.write_layout(out_dir=root, **args)
    else:
        generator.write_ade20k(root, **args)
        atomic_write_json(marker, expected)
    return root


def fgvc_datamodule(preset: dict, name: str, backbone, data_root=None):
    """An :class:`FGVCDataModule` for ``name`` at the backbone's native size, set up (num_classes known)."""
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule

    cfg = preset["fgvc"]
    datamodule = FGVCDataModule(name, dataset_root(preset, "fgvc", name, data_root), image_size=backbone.image_size,
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


def hfr_selector(preset: dict, **overrides) -> HFRTimestepSelector:
    """The preset's HFR scan settings as a callback (``overrides`` replace single settings)."""
    settings = {**preset["hfr"], **overrides}
    return HFRTimestepSelector(seed=preset["seed"], **settings)


class Experiment:
    """One task on one dataset under one preset: builds data and heads, trains at a timestep, scans HFR.

    The comparison (:mod:`aselect_bench.search`) and the benchmarks drive everything through this, so
    both strategies share data, seeds, head and schedule.
    """

    supports_fused = False

    def __init__(self, task: str, dataset: str, preset: dict, backbone, datamodule, max_epochs: int,
                 hfr_tap: str, metric_name: str):
        self.task, self.dataset, self.preset, self.backbone = task, dataset, preset, backbone
        self.datamodule, self.max_epochs, self.hfr_tap, self.metric_name = datamodule, max_epochs, hfr_tap, metric_name

    def describe(self) -> dict:
        """Everything that determines a result (for fingerprints)."""
        return {"task": self.task, "dataset": self.dataset, "preset": self.preset,
                "backbone": self.backbone.fingerprint, "hfr_tap": self.hfr_tap}

    def hfr_settings(self) -> dict:
        hfr = self.preset["hfr"]
        return dict(cutoff=hfr["cutoff"], mode=hfr["mode"], remove_mean=hfr["remove_mean"])

    def calibration_images(self):
        return self.datamodule.calibration_images(self.preset["hfr"]["num_images"], seed=self.preset["seed"])

    def make_task(self, timestep, **kwargs):
        raise NotImplementedError

    def fit(self, timestep, log_dir, name: str, progress: bool = True, selector=None, **task_kwargs):
        """Train at ``timestep`` (or let ``selector`` choose it) and test the best validation epoch."""
        import lightning as L

        from aselect_bench.runs import fit_and_test

        L.seed_everything(self.preset["seed"], workers=True, verbose=False)  # the head's init is seeded too
        self.last_task = self.make_task(timestep, **task_kwargs)
        return fit_and_test(self.last_task, self.datamodule, log_dir, name, self.max_epochs, selector,
                            seed=self.preset["seed"], progress=progress, monitor=f"val/{self.metric_name}",
                            test_metric=f"test/{self.metric_name}")


class FGVCExperiment(Experiment):
    """Classification probe on one FGVC dataset (metric: top-1 in percent)."""

    supports_fused = True

    def __init__(self, preset: dict, dataset: str, backbone, data_root=None):
        cfg = preset["fgvc"]
        datamodule = fgvc_datamodule(preset, dataset, backbone, data_root)
        super().__init__("fgvc", dataset, preset, backbone, datamodule, cfg["max_epochs"], cfg["tap"], "top1")

    def make_task(self, timestep, tap=None):
        return fgvc_probe(self.preset, self.backbone, self.datamodule.num_classes, timestep=timestep, tap=tap)

    def fit_fused(self, candidates, log_dir, progress: bool = True) -> dict:
        """The fused exhaustive sweep: one data loop, one head per candidate; cost and per-timestep metrics."""
        import time

        import lightning as L

        from aselect_bench.tasks.fused import pair_key

        L.seed_everything(self.preset["seed"], workers=True, verbose=False)
        task = fused_probe(self.preset, self.backbone, [(self.hfr_tap, t) for t in candidates],
                           self.datamodule.num_classes)
        start, forwards0 = time.perf_counter(), self.backbone.forwards
        trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=self.max_epochs, enable_checkpointing=False,
                            logger=L.pytorch.loggers.TensorBoardLogger(str(log_dir), name="fused-exhaustive"),
                            enable_progress_bar=progress, enable_model_summary=False, deterministic=True,
                            num_sanity_val_steps=0)
        trainer.fit(task, datamodule=self.datamodule)
        trainer.test(task, datamodule=self.datamodule, verbose=False)
        val = task.best_val_top1()
        per_timestep = {str(t): {"val": val[pair_key(self.hfr_tap, t)], "test": task.test_top1[pair_key(self.hfr_tap, t)]}
                        for t in candidates}
        best = max(candidates, key=lambda t: per_timestep[str(t)]["val"])
        return {"per_timestep": per_timestep, "best_timestep": best, "test_at_best": per_timestep[str(best)]["test"],
                "seconds": time.perf_counter() - start, "forwards": self.backbone.forwards - forwards0}


def build_experiment(task: str, dataset: str, preset: dict, backbone, data_root=None) -> Experiment:
    """The experiment for ``task`` (``fgvc`` or ``ade20k``) on ``dataset``."""
    if task == "fgvc":
        return FGVCExperiment(preset, dataset, backbone, data_root)
    if task == "ade20k":
        from aselect_bench.segmentation_experiment import ADE20KExperiment

        return ADE20KExperiment(preset, backbone, data_root)
    raise UserError(f"unknown task {task!r}: use fgvc or ade20k")
