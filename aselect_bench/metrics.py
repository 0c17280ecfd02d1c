"""Segmentation metrics with torchmetrics: per-class IoU, mIoU, pixel accuracy (aAcc) and mAcc, in percent.

Numerically mmsegmentation's ``IoUMetric``: pixels labelled 255 are ignored; a class with an empty
union (absent from both prediction and ground truth) has no IoU (NaN) and is left out of the mean; a
class absent from the ground truth has no accuracy (NaN, left out of mAcc).
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from aselect_bench.data.ade20k import IGNORE_INDEX


class SegmentationMetrics(MulticlassJaccardIndex):
    """Accumulates a confusion matrix over batches (``MulticlassJaccardIndex(average="none")``).

    ``update(preds, target)``: ``preds`` class ids ``[B, H, W]`` or logits ``[B, K, H, W]``,
    ``target`` ``[B, H, W]`` (255 = ignore).
    ``compute()`` -> ``{"per_class_iou": [K], "mIoU": [], "aAcc": [], "per_class_acc": [K], "mAcc": []}``,
    percentages 0-100, NaN where undefined (see the module docstring).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(num_classes, average="none", ignore_index=ignore_index, zero_division=float("nan"), **kwargs)

    def compute(self) -> dict[str, torch.Tensor]:
        confmat = self.confmat.double()  # rows: ground truth, columns: prediction
        intersect, label_area = confmat.diag(), confmat.sum(1)
        union = label_area + confmat.sum(0) - intersect
        iou = (intersect / union * 100).float()  # 0/0 -> NaN: absent from both
        acc = (intersect / label_area * 100).float()
        return {"per_class_iou": iou, "mIoU": iou.nanmean(),
                "aAcc": (intersect.sum() / label_area.sum().clamp_min(1) * 100).float(),
                "per_class_acc": acc, "mAcc": acc.nanmean()}


def per_image_counts(preds: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's per-class intersection and union pixel counts, ``([B, K], [B, K])``, from class ids
    ``preds [B, H, W]`` and ``target [B, H, W]`` (``ignore_index`` pixels left out): summed over images they
    give the confusion-matrix counts :class:`SegmentationMetrics` computes its IoU from."""
    b, k = preds.shape[0], num_classes
    keep = target != ignore_index
    image = torch.arange(b, device=preds.device)[:, None, None].expand_as(target)
    cells = (image * k + target.long()) * k + preds.long()  # (image, truth, prediction)
    confmat = torch.bincount(cells[keep], minlength=b * k * k).reshape(b, k, k)
    intersect = confmat.diagonal(dim1=1, dim2=2)
    return intersect, confmat.sum(2) + confmat.sum(1) - intersect
