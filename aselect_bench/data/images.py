"""Robust image loading: every PIL mode to RGB, unreadable files as one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aselect_bench.errors import UserError


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, 16-bit, CMYK, palette (with transparency), LA and RGBA images -> RGB (alpha over white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((arr / peak * 255).clip(0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def load_rgb(path) -> Image.Image:
    """Open, fully decode and convert ``path`` to RGB; a broken file raises :class:`UserError` naming it."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise UserError(f"image file {path} does not exist: restore it or remove it from the dataset index") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read image {path} ({err}): the file is truncated or not an image; "
                        f"replace it, or leave --strict off to skip such files with a warning") from None
