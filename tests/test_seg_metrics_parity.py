"""Our torchmetrics-based mIoU/aAcc/per-class IoU equal mmsegmentation 1.2.2's ``IoUMetric``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aselect_bench.metrics import SegmentationMetrics
from tests.mmseg_reference import import_mmseg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # mmseg's 0/0


def random_batches(num_classes: int, seed: int, n: int = 4):
    """``(pred, target)`` pairs of different sizes: 20% ignored pixels, class K-1 never in the ground truth,
    class K-2 never predicted, class K-3 in neither (absent everywhere)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = (17 + 3 * i, 23 - 2 * i)
        target = rng.integers(0, num_classes - 1, shape)
        target[target == num_classes - 3] = 0
        target[rng.random(shape) < 0.2] = 255
        pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, num_classes, shape))
        pred[np.isin(pred, [255, num_classes - 2, num_classes - 3])] = 1
        yield torch.tensor(pred), torch.tensor(target)


def mmseg_metric(mm, num_classes: int, batches):
    ref = mm.IoUMetric(iou_metrics=["mIoU"])
    ref.dataset_meta = {"classes": [f"c{i}" for i in range(num_classes)]}
    for pred, target in batches:
        ref.process({}, [{"pred_sem_seg": {"data": pred[None]}, "gt_sem_seg": {"data": target[None]}}])
    return ref


@pytest.mark.parametrize("num_classes,seed", [(6, 0), (9, 1), (150, 2)])
def test_iou_metrics_equal_mmseg_iou_metric(num_classes, seed):
    mm = import_mmseg()
    batches = list(random_batches(num_classes, seed))
    ours = SegmentationMetrics(num_classes)
    for pred, target in batches:
        ours.update(pred[None], target[None])
    got = ours.compute()
    ref = mmseg_metric(mm, num_classes, batches)

    # unrounded per-class values from mmseg's own formula
    totals = [torch.stack(t).sum(0) for t in zip(*ref.results)]  # what compute_metrics sums
    exact = mm.IoUMetric.total_area_to_metrics(*totals, metrics=["mIoU"])
    np.testing.assert_allclose(got["per_class_iou"].numpy(), exact["IoU"] * 100, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["per_class_acc"].numpy(), exact["Acc"] * 100, rtol=1e-5, atol=1e-4)
    assert got["mIoU"].item() == pytest.approx(np.nanmean(exact["IoU"]) * 100, abs=1e-4)
    assert got["aAcc"].item() == pytest.approx(exact["aAcc"] * 100, abs=1e-4)
    assert got["mAcc"].item() == pytest.approx(np.nanmean(exact["Acc"]) * 100, abs=1e-4)

    # mmseg's reported numbers (rounded to 2 decimals)
    reported = ref.compute_metrics(ref.results)
    for key in ("mIoU", "aAcc", "mAcc"):
        assert got[key].item() == pytest.approx(reported[key], abs=0.005 + 1e-6)

    iou = got["per_class_iou"]
    assert torch.isnan(iou[num_classes - 3])  # in neither prediction nor ground truth: excluded from the mean
    assert iou[num_classes - 1] == 0 and iou[num_classes - 2] == 0  # in one of them only: IoU 0, counted
    assert torch.isnan(got["per_class_acc"][num_classes - 1])


def test_logits_and_class_ids_give_the_same_metrics():
    logits = torch.randn(2, 5, 8, 8)
    target = torch.randint(0, 5, (2, 8, 8))
    target[:, 0] = 255
    a, b = SegmentationMetrics(5), SegmentationMetrics(5)
    a.update(logits, target)
    b.update(logits.argmax(1), target)
    for key, value in a.compute().items():
        torch.testing.assert_close(value, b.compute()[key], equal_nan=True)


def test_perfect_prediction_scores_100_and_ignored_pixels_do_not_count():
    target = torch.tensor([[[0, 1, 255], [2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 2], [2, 0, 1]]])  # wrong only where ignored
    m = SegmentationMetrics(4)
    m.update(pred, target)
    out = m.compute()
    assert out["mIoU"].item() == 100 and out["aAcc"].item() == 100 and torch.isnan(out["per_class_iou"][3])
