"""``SegmentationTask``: an UperNet head (with an FCN auxiliary head) on four taps of a frozen DiT."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from aselect_bench.data.ade20k import IGNORE_INDEX
from aselect_bench.errors import UserError
from aselect_bench.heads.inference import slide_inference, whole_inference
from aselect_bench.heads.upernet import (
    PYRAMID_LEVELS,
    FCNHead,
    Feature2Pyramid,
    UPerHead,
    check_pyramid_blocks,
)
from aselect_bench.metrics import SegmentationMetrics, per_image_counts
from aselect_bench.tasks.common import FrozenBackboneTask, PerImageOutcomes, unpack_batch

#: mmseg's ``LinearLR`` warm-up starts at this fraction of the learning rate (``start_factor=1e-6``).
WARMUP_START = 1e-6


class SegmentationTask(FrozenBackboneTask):
    """Per-pixel classification from four token grids -> Feature2Pyramid -> UPerHead (+ FCN aux, weight 0.4).

    Args:
        backbone: a registered model's name, hub id or folder (or a ready ``Backbone``).
        blocks: the four tapped blocks (default: the registered model's spread over the depth, e.g. 6/13/20/27 of 28).
        component: the component read at each block (default ``out``).
        hfr_tap: the tap whose HFR chooses the timestep (default: the second of the four).
        inference: ``whole`` or ``slide`` (crop and stride in pixels, mmseg's sliding window) for evaluation.
        warmup_iters: linear warm-up length in optimizer steps (mmseg's ADE20K schedule: 1,500); when given it
            takes precedence over ``warmup_fraction`` (of all steps). Poly decay (``poly_power``) follows.
    Logits are upsampled to the ground truth's size; metrics are mIoU, aAcc and per-class IoU in percent.
    """

    def __init__(self, backbone: str = "demo", num_classes: int = 150, blocks: list[int] | None = None,
                 component: str = "out", timestep: int | None = None, hfr_tap: str | None = None,
                 channels: int = 512, aux_channels: int = 256, aux_weight: float = 0.4, lr: float = 1e-4,
                 weight_decay: float = 0.01, warmup_fraction: float = 0.05, poly_power: float = 1.0,
                 inference: str = "whole", slide_crop: int = 512, slide_stride: int = 341, seed: int = 0,
                 num_overlays: int = 4, warmup_iters: int | None = None):
        from aselect_bench.backbones import MODELS
        from aselect_bench.tasks.common import resolve_backbone

        if warmup_iters is not None and (isinstance(warmup_iters, bool) or int(warmup_iters) != warmup_iters
                                         or warmup_iters < 0):
            raise UserError(f"warmup_iters must be a whole number of iterations >= 0 (mmseg: 1500), got {warmup_iters!r}")
        backbone = resolve_backbone(backbone)
        if blocks is None:
            spec = MODELS.get(backbone.name)
            n = backbone.num_blocks
            blocks = list(spec.seg_blocks) if spec and spec.seg_blocks else [n // 4, n // 2, 3 * n // 4, n - 1]
        check_pyramid_blocks(blocks)
        taps = [f"blocks.{b}.{component}" for b in blocks]
        super().__init__(backbone, taps, timestep, lr, weight_decay, warmup_fraction, seed)
        self.save_hyperparameters(ignore=["backbone"])
        self.hparams["backbone"] = backbone.name
        self.hfr_tap = hfr_tap or taps[1]
        width = self.backbone.hidden_size
        self.neck = Feature2Pyramid(width)
        self.decode_head = UPerHead([width] * PYRAMID_LEVELS, channels, num_classes)
        self.auxiliary_head = FCNHead(width, aux_channels, num_classes, in_index=2)
        self.num_classes, self.aux_weight, self.poly_power = num_classes, aux_weight, poly_power
        self.warmup_iters = None if warmup_iters is None else int(warmup_iters)
        self.inference, self.slide_crop, self.slide_stride = inference, slide_crop, slide_stride
        self.metrics = nn.ModuleDict({s: SegmentationMetrics(num_classes) for s in ("val", "test")})
        self.outcomes = PerImageOutcomes("miou")
        self.num_overlays = num_overlays
        self.overlays: list = []

    def forward(self, images: torch.Tensor, indices=None, stage: str = "val", window: int | None = None):
        """``images [B, 3, H, W]`` -> (logits, auxiliary logits), each ``[B, K, 4H/p, 4W/p]`` (p: patch).

        ``indices [B]`` and ``window`` fix the noise (see :meth:`FrozenBackboneTask.features`).
        """
        feats = self.features(images, indices, stage, window=window)
        pyramid = self.neck([feats[t] for t in self.taps])
        return self.decode_head(pyramid), self.auxiliary_head(pyramid)

    def training_step(self, batch, batch_idx):
        images, masks, indices = unpack_batch(batch)
        logits, aux = self(images, indices, "train")
        loss_main = self._ce(logits, masks)
        loss_aux = self._ce(aux, masks)
        loss = loss_main + self.aux_weight * loss_aux
        self.log_dict({"train/loss": loss, "train/loss_decode": loss_main, "train/loss_aux": loss_aux},
                      on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    @staticmethod
    def _ce(logits, masks):
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX)

    def predict_logits(self, images: torch.Tensor, indices=None, stage: str = "val") -> torch.Tensor:
        """Evaluation logits ``[B, K, H, W]`` at the input size (whole image or sliding window).

        The noise is fixed per image (``indices [B]``) whatever the batching, in both modes: the whole
        image gets its draw 0; sliding windows, which ``slide_inference`` predicts one call each in a fixed
        row-major order (set by the image size alone), are numbered and window ``k`` gets its image's draw
        ``k``. Per-window draws rather than one noise map of the padded image cropped per window: noise
        lives on the latent grid, and window offsets (a 341-pixel stride, windows shifted back to the
        border) do not fall on it, nor does the zero padding of small windows.
        """
        windows = itertools.count() if self.inference == "slide" else itertools.repeat(None)

        def predict(x):
            return F.interpolate(self(x, indices, stage, next(windows))[0], size=x.shape[-2:], mode="bilinear",
                                 align_corners=False)

        if self.inference == "slide":
            return slide_inference(predict, images, self.slide_crop, self.slide_stride, self.num_classes,
                                   self.backbone.patch_size)
        return whole_inference(predict, images, self.backbone.patch_size)

    def _eval_step(self, batch, batch_idx, stage):
        images, masks, indices = unpack_batch(batch)
        logits = self.predict_logits(images, indices, stage)
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        preds = logits.argmax(1)
        self.metrics[stage].update(preds, masks)
        self.outcomes.add(stage, indices, *per_image_counts(preds, masks, self.num_classes))
        if stage == "val" and len(self.overlays) < self.num_overlays:
            take = self.num_overlays - len(self.overlays)
            self.overlays += list(zip(images[:take].cpu(), masks[:take].cpu(), preds[:take].cpu()))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_start(self):
        self.overlays = []

    def _log_metrics(self, stage: str) -> dict:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        self.log_dict({f"{stage}/mIoU": values["mIoU"], f"{stage}/aAcc": values["aAcc"]}, prog_bar=stage == "val")
        return values

    def on_validation_epoch_end(self):
        self._log_metrics("val")
        self._log_overlays()
        self.outcomes.gather(self, "val")
        self.outcomes.finish("val")

    def on_test_epoch_end(self):
        values = self._log_metrics("test")
        self.outcomes.gather(self, "test")
        self.outcomes.finish("test")
        self.test_results = {"mIoU": values["mIoU"].item(), "aAcc": values["aAcc"].item(),
                             "per_class_iou": values["per_class_iou"].tolist()}

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        datamodule = self.trainer.datamodule
        if hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def _log_overlays(self) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if not self.overlays or not hasattr(experiment, "add_image"):
            return
        from aselect_bench.plots import segmentation_overlay

        experiment.add_image("val/overlays", segmentation_overlay(self.overlays), self.current_epoch, dataformats="HWC")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.head_parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = self.warmup_steps(total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.poly_factor(step, warmup, total, self.poly_power))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def warmup_steps(self, total: int) -> int:
        """Warm-up length: ``warmup_iters`` when given, else ``warmup_fraction`` of the ``total`` steps."""
        return self.warmup_iters if self.warmup_iters is not None else int(self.warmup_fraction * total)

    @staticmethod
    def poly_factor(step: int, warmup: int, total: int, power: float = 1.0) -> float:
        """LR factor at optimizer step ``step`` (0-based) of ``total``: mmseg's schedule as mmengine steps it,
        ``LinearLR`` from :data:`WARMUP_START` up to 1 at step ``warmup - 1``, then ``PolyLR`` (``eta_min`` 0)
        from 1 at step ``warmup`` down to 0 at the last step."""
        if step < warmup:
            return WARMUP_START + (1 - WARMUP_START) * step / max(1, warmup - 1)
        return max(0.0, 1 - (step - warmup) / max(1, total - warmup - 1)) ** power
