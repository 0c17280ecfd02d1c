"""The ADE20K experiment: an UperNet head on DiT taps, trained at a timestep, scored by mIoU."""

from __future__ import annotations

from pathlib import Path

from aselect_bench.experiments.base import Experiment


def ade20k_datamodule(preset: dict, backbone, root: Path):
    """An :class:`ADE20KDataModule` over ``root`` (``ADEChallengeData2016/`` or its parent), set up."""
    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule

    cfg = preset["ade20k"]
    folder = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").exists() else root
    datamodule = ADE20KDataModule(str(folder), crop_size=cfg.get("crop_size") or backbone.image_size,
                                  scale=tuple(cfg["scale"]), batch_size=cfg["batch_size"],
                                  val_batch_size=cfg["val_batch_size"],
                                  num_workers=cfg.get("num_workers", preset["num_workers"]), seed=preset["seed"],
                                  num_classes=cfg["num_classes"], strict=preset.get("strict", False))
    datamodule.setup("fit")
    return datamodule


class ADE20KExperiment(Experiment):
    """Segmentation on ADE20K (or its synthetic stand-in); metric: mIoU in percent (test = val)."""

    def __init__(self, preset: dict, backbone, datamodule):
        self.cfg = preset["ade20k"]
        super().__init__("ade20k", "ade20k", preset, backbone, datamodule, self.cfg["max_epochs"], "", "mIoU")
        self.hfr_tap = self.make_task(0).hfr_tap

    def make_task(self, timestep):
        from aselect_bench.tasks.segmentation import SegmentationTask

        cfg = self.cfg
        return SegmentationTask(
            self.backbone, num_classes=cfg["num_classes"], blocks=cfg.get("blocks"), component=cfg["component"],
            timestep=timestep, channels=cfg["channels"], aux_channels=cfg["aux_channels"], lr=cfg["lr"],
            weight_decay=cfg["weight_decay"], warmup_fraction=cfg["warmup_fraction"], inference=cfg["inference"],
            slide_crop=cfg.get("slide_crop") or self.datamodule.crop_size,
            slide_stride=cfg.get("slide_stride") or max(1, self.datamodule.crop_size * 2 // 3), seed=self.preset["seed"])

    def class_names(self) -> list[str]:
        if self.preset.get("synthetic"):
            from aselect_bench.data.synth_ade20k import synthetic_class_names

            return synthetic_class_names(self.cfg["num_classes"])
        from aselect_bench.data.ade20k import CLASS_NAMES

        return list(CLASS_NAMES)
