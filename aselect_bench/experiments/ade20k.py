"""The ADE20K experiment: an UperNet head on DiT taps, trained at a timestep, scored by mIoU.

Every choice (the best epoch, the exhaustive argmax, the component grid's best tap) is made on the
*selection* split, a held-out slice of the training images (the ``val`` stage); the official validation
split (the ``test`` stage) is only reported, at the last iteration, as mmseg reports it.
"""

from __future__ import annotations

from pathlib import Path

from aselect_bench.experiments.base import Experiment
from aselect_bench.settings import BenchPreset


def ade20k_datamodule(preset: BenchPreset, backbone, root: Path):
    """An :class:`ADE20KDataModule` over ``root`` (``ADEChallengeData2016/`` or its parent), set up."""
    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule

    cfg = preset.ade20k
    datamodule = ADE20KDataModule(str(root), crop_size=cfg.crop_size or backbone.image_size, scale=cfg.scale,
                                  batch_size=cfg.batch_size, val_batch_size=cfg.val_batch_size,
                                  num_workers=preset.num_workers if cfg.num_workers is None else cfg.num_workers,
                                  seed=preset.seed, num_classes=cfg.num_classes, strict=preset.strict,
                                  corruption=preset.corruption)
    datamodule.setup("fit")
    return datamodule


def segmentation_task(preset: BenchPreset, backbone, timestep, crop: int, seed: int | None = None):
    """The preset's :class:`SegmentationTask` on ``backbone``, trained at ``crop`` px (the slide window's default)."""
    from aselect_bench.tasks.segmentation import SegmentationTask

    cfg = preset.ade20k
    return SegmentationTask(
        backbone, num_classes=cfg.num_classes, blocks=cfg.blocks, component=cfg.component,
        timestep=timestep, channels=cfg.channels, aux_channels=cfg.aux_channels, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_fraction=cfg.warmup_fraction, warmup_iters=cfg.warmup_iters,
        inference=cfg.inference, slide_crop=cfg.slide_crop or crop,
        slide_stride=cfg.slide_stride or max(1, crop * 2 // 3), seed=preset.seed if seed is None else seed)


class ADE20KExperiment(Experiment):
    """Segmentation on ADE20K (or its synthetic stand-in); metric: mIoU in percent."""

    test_checkpoint = "last"

    def __init__(self, preset: BenchPreset, backbone, datamodule):
        self.cfg = preset.ade20k
        super().__init__("ade20k", "ade20k", preset, backbone, datamodule, self.cfg.max_epochs, "", "mIoU")
        self.hfr_tap = self.make_task(0).hfr_tap

    def trainer_options(self) -> dict:
        """Iteration-based schedules (mmseg's 160k iterations, validation every 16k) when the preset sets them."""
        cfg, options = self.cfg, {}
        if cfg.max_iters:
            options.update(max_steps=cfg.max_iters, max_epochs=-1)
        if cfg.val_every_iters:
            options.update(val_check_interval=cfg.val_every_iters, check_val_every_n_epoch=None)
        return options

    def make_task(self, timestep, feature_cache_root=None, seed=None):
        return segmentation_task(self.preset, self.backbone, timestep, self.datamodule.crop_size, seed)

    def class_names(self) -> list[str]:
        if self.preset.synthetic:
            from aselect_bench.data.synth_ade20k import synthetic_class_names

            return synthetic_class_names(self.cfg.num_classes)
        from aselect_bench.data.ade20k import CLASS_NAMES

        return list(CLASS_NAMES)
