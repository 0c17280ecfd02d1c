"""Segmentation metrics with torchmetrics: per-class IoU, mIoU and pixel accuracy (aAcc), in percent.

Classes absent from both prediction and ground truth have no IoU (NaN) and are left out of the mean,
as mmsegmentation's ``IoUMetric`` does; pixels labelled 255 are ignored.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassJaccardIndex

IGNORE_INDEX = 255


class SegmentationMetrics(MulticlassJaccardIndex):
    """``update(preds [B, H, W] or logits [B, K, H, W], target [B, H, W])``; ``compute()`` -> dict."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(num_classes, average="none", ignore_index=ignore_index, zero_division=float("nan"), **kwargs)

    def compute(self) -> dict[str, torch.Tensor]:
        per_class = super().compute() * 100
        confmat = self.confmat.float()
        return {"per_class_iou": per_class, "mIoU": per_class.nanmean(),
                "aAcc": confmat.diag().sum() / confmat.sum().clamp_min(1) * 100}
