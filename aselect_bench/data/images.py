"""Robust image loading: every PIL mode to RGB, unreadable files as one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aselect_bench.errors import UserError


class UnreadableImage(UserError):
    """An image file that is missing, truncated or not an image (``path``: the file). Data sets may skip it."""

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = str(path)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit (``I;16*``), 32-bit integer (``I``) and float (``F``) grayscale -> ``L``, scaled, not clipped."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0  # 0..65535 -> 0..255
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0  # floats in [0, 1]
    return Image.fromarray(np.rint(arr).clip(0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> RGB: grayscale/16-bit/CMYK/YCbCr converted; alpha (RGBA, LA, palette transparency) over white."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path) -> Image.Image:
    """Open, fully decode and convert ``path`` to RGB; a missing or broken file raises :class:`UnreadableImage`."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later inside a worker
            return to_rgb(img)
    except FileNotFoundError:
        raise UnreadableImage(f"image {path} does not exist: restore it, or remove its line from the dataset's "
                              f"index files", path) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise UnreadableImage(f"cannot read image {path} ({err}): the file is truncated or not an image; replace "
                              f"it with an intact copy (re-extract the dataset archive)", path) from None
