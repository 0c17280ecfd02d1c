"""Image modes, broken files, the synthetic generator and the FGVC data module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aselect_bench import UserError
from aselect_bench.data.fgvc_datamodule import FGVCDataModule
from aselect_bench.data.images import load_rgb
from aselect_bench.data.synth_fgvc import render_samples, write_layout


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "I;16", "RGBA", "LA"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    arr = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 200)
        assert img.mode.startswith("I;16")
    elif mode == "P":
        img = Image.fromarray(arr, mode="L").convert("P")
    else:
        img = Image.fromarray(arr, mode="L").convert(mode)
    path = tmp_path / ("x.png" if mode != "CMYK" else "x.jpg")
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (64, 64)


def test_truncated_and_garbage_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(UserError, match="truncated.jpg"):
        load_rgb(truncated)
    (tmp_path / "garbage.jpg").write_bytes(b"hello")
    with pytest.raises(UserError, match="garbage.jpg"):
        load_rgb(tmp_path / "garbage.jpg")


def test_generator_is_deterministic_and_fine_grained():
    a, la = render_samples(3, 12, 32, seed=5)
    b, lb = render_samples(3, 12, 32, seed=5)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and len(set(la.tolist())) == 12
    assert not np.array_equal(a, render_samples(3, 12, 32, seed=6)[0])


def linear_probe_accuracy(x, y, xt, yt, steps=300):
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
    """Colour histograms + radially binned power spectrum: blind to position and rotation."""
    x = images.astype(np.float32) / 255
    hist = np.stack([np.histogram(img[..., c], bins=8, range=(0, 1))[0] for img in x for c in range(3)])
    hist = hist.reshape(len(x), -1)
    gray = x.mean(-1)
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean((1, 2), keepdims=True)), axes=(1, 2))) ** 2
    r = np.hypot(*np.mgrid[-16:16, -16:16]).astype(int)
    radial = np.stack([[p[r == k].mean() for k in range(1, 16)] for p in power])
    return np.concatenate([hist, np.log1p(radial)], 1)


def test_synthetic_classes_are_hard_for_raw_pixels_but_learnable():
    """Neither trivial nor impossible: a linear probe on raw 32x32 pixels stays near chance, while one on
    position/rotation-blind features (colour + spectrum) finds the fine-grained cues."""
    x, y = render_samples(40, 12, 32, seed=0)
    xt, yt = render_samples(15, 12, 32, seed=1)
    raw = linear_probe_accuracy(x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt)
    invariant = linear_probe_accuracy(invariant_features(x), y, invariant_features(xt), yt)
    assert raw < 0.3, raw
    assert invariant > 1 / 12 + 0.08, (invariant, raw)


def test_datamodule_shapes_range_indices_and_calibration(tmp_path):
    write_layout("flowers", tmp_path, num_classes=10, train_per_class=5, test_per_class=2, image_size=48)
    dm = FGVCDataModule("flowers", tmp_path, image_size=32, batch_size=7, num_workers=0, train_augment=True)
    dm.setup("fit")
    images, labels, indices = next(iter(dm.train_dataloader()))
    assert images.shape == (7, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert labels.dtype == torch.int64 and dm.num_classes == 10 and indices.max() < dm.split_size("train")
    assert dm.view_fingerprint("train") is None and dm.view_fingerprint("val") is not None
    c1, c2 = dm.calibration_images(6, seed=0), dm.calibration_images(6, seed=0)
    assert torch.equal(c1, c2) and not torch.equal(c1, dm.calibration_images(6, seed=1))


def test_unreadable_image_is_skipped_with_a_warning_or_stops_when_strict(tmp_path):
    write_layout("aircraft", tmp_path, num_classes=10, train_per_class=5, test_per_class=2, image_size=32)
    dm = FGVCDataModule("aircraft", tmp_path, image_size=16, batch_size=100, num_workers=0)
    dm.setup()
    broken = dm.sets["test"].items[0][0]
    broken.write_bytes(b"broken")
    with pytest.warns(UserWarning, match=broken.name):
        images, _, _ = next(iter(dm.test_dataloader()))
    assert len(images) == 20 and dm.bad_files() == [str(broken)]
    strict = FGVCDataModule("aircraft", tmp_path, image_size=16, batch_size=100, num_workers=0, strict=True)
    with pytest.raises(UserError, match=broken.name):
        next(iter(strict.test_dataloader()))
