"""SegmentationTask: per-image noise in sliding-window inference, mmseg's warm-up + poly LR schedule."""

from __future__ import annotations

import types

import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.tasks.segmentation import WARMUP_START, SegmentationTask


def tiny_task(seed: int = 0, **kwargs) -> SegmentationTask:
    torch.manual_seed(0)  # the same head weights for every seed
    return SegmentationTask(load_backbone("tiny-dit", pretrained=False), num_classes=3, timestep=300, channels=8,
                            aux_channels=8, seed=seed, **kwargs).eval()


def test_slide_inference_noise_is_fixed_per_image_whatever_the_batching():
    task = tiny_task(inference="slide", slide_crop=16, slide_stride=8)  # 2 overlapping windows of 16 x 24
    images = torch.rand(3, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(1)
        together = task.predict_logits(images, torch.arange(3))
        torch.manual_seed(2)  # the global RNG plays no part
        split = torch.cat([task.predict_logits(images[:1], torch.arange(1)),
                           task.predict_logits(images[1:], torch.arange(1, 3))])
        torch.testing.assert_close(split, together, rtol=0, atol=1e-5)
        # image 1 alone, as the first of its batch, still gets image 1's noise
        torch.testing.assert_close(task.predict_logits(images[1:2], torch.tensor([1])), together[1:2], rtol=0,
                                   atol=1e-5)
        other = tiny_task(seed=1, inference="slide", slide_crop=16, slide_stride=8).predict_logits(images,
                                                                                                 torch.arange(3))
    assert together.shape == (3, 3, 16, 24) and (other - together).abs().max() > 1e-3  # the seed matters


def test_whole_inference_noise_is_fixed_per_image_also_when_padded():
    task = tiny_task()
    images = torch.rand(3, 3, 16, 15) * 2 - 1  # padded to the patch multiple (16 x 16) before the backbone
    with torch.no_grad():
        together = task.predict_logits(images, torch.arange(3))
        torch.testing.assert_close(torch.cat([task.predict_logits(images[i:i + 1], torch.tensor([i]))
                                              for i in range(3)]), together, rtol=0, atol=1e-5)


def lrs_of(task: SegmentationTask, total: int, lr: float = 1.0) -> list[float]:
    """The learning rate of every optimizer step of ``task``'s schedule over ``total`` steps."""
    task._trainer = types.SimpleNamespace(estimated_stepping_batches=total)
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    out = []
    for _ in range(total):
        out.append(optimizer.param_groups[0]["lr"] / lr)
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_iters_take_precedence_then_poly_decay():
    task = tiny_task(warmup_fraction=0.5, warmup_iters=15, lr=1.0)
    lrs = lrs_of(task, 100)
    assert task.warmup_steps(100) == 15
    assert lrs[0] == pytest.approx(WARMUP_START) and lrs[14] == pytest.approx(1.0) == lrs[15]
    assert all(a < b for a, b in zip(lrs[:15], lrs[1:15]))  # rising through the warm-up
    assert lrs[15 + 42] == pytest.approx(0.5) and lrs[-1] == 0.0  # poly: 1 at step 15, 0 at the last step
    fraction = tiny_task(warmup_fraction=0.2, lr=1.0)
    by_fraction = lrs_of(fraction, 100)
    assert fraction.warmup_steps(100) == 20 and by_fraction[18] < 1 and by_fraction[19] == pytest.approx(1.0)
    for bad in (-1, 1.5, True):
        with pytest.raises(UserError, match="warmup_iters must be a whole number"):
            SegmentationTask("tiny-dit", num_classes=3, warmup_iters=bad)


def test_schedule_equals_mmengine_linear_warmup_and_poly():
    """mmseg's ADE20K schedule: LinearLR(start_factor=1e-6, end=W) then PolyLR(power=1, eta_min=0, W..T)."""
    scheduler = pytest.importorskip("mmengine.optim.scheduler")
    warmup, total = 15, 100
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedulers = [scheduler.LinearLR(optimizer, start_factor=WARMUP_START, by_epoch=False, begin=0, end=warmup),
                  scheduler.PolyLR(optimizer, eta_min=0.0, power=1.0, by_epoch=False, begin=warmup, end=total)]
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for s in schedulers:
            s.step()
    ours = [SegmentationTask.poly_factor(step, warmup, total) for step in range(total)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert lrs_of(tiny_task(warmup_iters=warmup, lr=1.0), total) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_a_block_list_that_is_not_four_long_is_one_clear_error():
    with pytest.raises(UserError, match=r"UperNet takes 4 tapped blocks .* got 2 \(\[0, 1\]\)"):
        SegmentationTask(load_backbone("tiny-dit", pretrained=False), num_classes=3, blocks=[0, 1], timestep=10)
