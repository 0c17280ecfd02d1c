"""load_rgb: every image mode becomes RGB; broken files are one clear error naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aselect_bench import UserError
from aselect_bench.data.images import load_rgb

GRAY = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)


@pytest.mark.parametrize("mode, suffix", [("L", "png"), ("LA", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg"),
                                          ("CMYK", "tif"), ("1", "png"), ("YCbCr", "jpg"), ("F", "tif"), ("I", "tif")])
def test_every_mode_becomes_rgb(tmp_path, mode, suffix):
    img = Image.fromarray(GRAY, mode="L").convert(mode)
    path = tmp_path / f"x.{suffix}"
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (64, 64)
    if mode in ("L", "LA", "RGBA", "P", "F", "I"):  # lossless and opaque: the gray values survive
        assert np.array_equal(np.asarray(out)[..., 1], GRAY)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 32896, 65535]], dtype=np.uint16).repeat(4, 0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_rgb(path))
    assert out.shape == (4, 4, 3) and out[0, :, 0].tolist() == [0, 100, 128, 255]


def test_alpha_and_palette_transparency_go_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png"))
    assert out[0, 0].tolist() == [200, 0, 0] and out[3, 0].tolist() == [255, 255, 255]
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    out = np.asarray(load_rgb(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [40, 50, 60] and out[1, 1].tolist() == [255, 255, 255]


def test_truncated_garbage_and_missing_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(UserError, match=r"cannot read image .*truncated.jpg .*replace it"):
        load_rgb(tmp_path / "truncated.jpg")
    (tmp_path / "garbage.jpg").write_bytes(b"hello")
    with pytest.raises(UserError, match=r"cannot read image .*garbage.jpg"):
        load_rgb(tmp_path / "garbage.jpg")
    with pytest.raises(UserError, match=r"image .*absent.jpg does not exist"):
        load_rgb(tmp_path / "absent.jpg")
