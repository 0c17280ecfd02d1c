"""The synthetic fine-grained generator: deterministic, >= 10 classes, neither trivial nor impossible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import loadmat

from aselect_bench.data.fgvc import class_names as read_class_names
from aselect_bench.data.synth_fgvc import class_factors, class_names, render_samples, write_layout
from aselect_bench.errors import UserError


def test_same_seed_same_bytes_in_every_file(tmp_path):
    for layout in ("cars", "aircraft"):  # .mat files (dated headers by default) and text indices
        a = write_layout(layout, tmp_path / f"{layout}-a", num_classes=10, train_per_class=3, test_per_class=1,
                         image_size=32, seed=3)
        b = write_layout(layout, tmp_path / f"{layout}-b", num_classes=10, train_per_class=3, test_per_class=1,
                         image_size=32, seed=3)
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and len(files) > 40
        assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    x, y = render_samples(3, 12, 32, seed=5)
    assert np.array_equal(x, render_samples(3, 12, 32, seed=5)[0]) and np.array_equal(y, np.repeat(np.arange(12), 3))
    assert not np.array_equal(x, render_samples(3, 12, 32, seed=6)[0])
    assert np.array_equal(render_samples(5, 12, 32, seed=5)[0].reshape(12, 5, 32, 32, 3)[:, :3],
                          x.reshape(12, 3, 32, 32, 3))  # more images per class keep the first ones


def test_at_least_ten_classes_each_a_distinct_combination_of_small_details(tmp_path):
    names = class_names(12)
    assert len(set(names)) == 12 and len({class_factors(k) for k in range(24)}) == 24
    write_layout("aircraft", tmp_path, train_per_class=2, test_per_class=1, image_size=32)  # default: 12 classes
    variants = read_class_names("aircraft", tmp_path)
    assert len(variants) == 12 and any("/" in v and " " in v for v in variants)


def test_cars_boxes_are_real_boxes_around_the_bird(tmp_path):
    write_layout("cars", tmp_path, num_classes=10, train_per_class=2, test_per_class=1, image_size=64)
    ann = loadmat(tmp_path / "devkit" / "cars_train_annos.mat", squeeze_me=True)["annotations"]
    x1, y1, x2, y2 = (ann[f].astype(int) for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
    assert (1 <= x1).all() and (x1 < x2).all() and (x2 <= 64).all() and (1 <= y1).all() and (y1 < y2).all()
    area = (x2 - x1 + 1) * (y2 - y1 + 1) / 64**2
    assert 0.04 < area.min() and area.max() < 0.9 and len(set(zip(x1, y1))) > 10  # boxes move with the bird


def linear_probe_accuracy(x, y, xt, yt, steps=300):
    """Test accuracy of full-batch logistic regression on standardised features ``[N, D]``."""
    x, xt = torch.tensor(x, dtype=torch.float32), torch.tensor(xt, dtype=torch.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xt = (x - mean) / std, (xt - mean) / std
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), 1e-2, weight_decay=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.tensor(y)).backward()
        opt.step()
    return (model(xt).argmax(1) == torch.tensor(yt)).float().mean().item()


def invariant_features(images):
    """``[N, D]``: colour histograms + radially binned power spectrum, blind to position and rotation."""
    x = images.astype(np.float32) / 255
    hist = np.stack([np.histogram(img[..., c], bins=8, range=(0, 1))[0] for img in x for c in range(3)])
    gray = x.mean(-1)
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean((1, 2), keepdims=True)), axes=(1, 2))) ** 2
    size = x.shape[1]
    r = np.hypot(*np.mgrid[-size // 2:size // 2, -size // 2:size // 2]).astype(int)
    radial = np.stack([[p[r == k].mean() for k in range(1, size // 2)] for p in power])
    return np.concatenate([hist.reshape(len(x), -1), np.log1p(radial)], 1)


def test_raw_pixels_are_far_from_solving_it_but_the_cues_are_there():
    """A linear probe on raw 32x32 pixels lands well above chance but far from 100% (position, rotation,
    clutter and lighting hide the small details); position/rotation-blind features do better."""
    x, y = render_samples(40, 12, 32, seed=0)
    xt, yt = render_samples(15, 12, 32, seed=1)
    raw = linear_probe_accuracy(x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt)
    invariant = linear_probe_accuracy(invariant_features(x), y, invariant_features(xt), yt)
    assert 1 / 12 + 0.05 < raw < 0.5, raw
    assert invariant > raw + 0.05, (invariant, raw)


def test_grain_is_fine_detail_of_a_random_strength_that_leaves_the_coarse_image():
    """Sensor grain (``grain``) adds per-pixel noise whose strength varies from image to image; the same seed
    renders the same scene underneath, so the coarse image (8x8 means) barely moves."""
    clean, y0 = render_samples(3, 12, 64, seed=2, grain=0.0)
    grainy, y1 = render_samples(3, 12, 64, seed=2, grain=0.3)
    assert np.array_equal(y0, y1)
    fine = [np.abs(np.diff(x.astype(np.float32) / 255, axis=2)).mean((1, 2, 3)) for x in (clean, grainy)]
    assert (fine[1] > fine[0]).all() and fine[1].mean() > 2 * fine[0].mean()
    assert fine[1].std() > 3 * fine[0].std()  # a strength of its own per image (ISO)
    coarse = [x.astype(np.float32).reshape(len(x), 8, 8, 8, 8, 3).mean((2, 4)) / 255 for x in (clean, grainy)]
    assert np.abs(coarse[1] - coarse[0]).mean() < 0.03
    with pytest.raises(UserError, match="grain"):
        render_samples(1, 12, 32, grain=1.5)
