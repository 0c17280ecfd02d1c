"""Seeded per-image corruptions, applied as a data transform (never written to disk).

A :class:`Corruption` (``kind``, ``level``, ``seed``) changes each image after its view transform, on the
``[3, H, W]`` tensor in ``[-1, 1]`` at the backbone's input size, the same way in every split and in the HFR
calibration images. Its random draw depends only on ``(seed, image identity, kind, level)``: the image's path
relative to the dataset's folder (or, for an in-memory image, a digest of its pixels), never on the epoch,
the worker or the batch. Level ``0`` is the clean image for every kind.

Kinds and their level scales (pixels ``p = (x + 1) / 2`` in ``[0, 1]``):

- ``gauss``: ``p + level * n``, ``n ~ N(0, 1)`` per pixel and channel (``2 * level`` on the suite's ``[-1, 1]``),
  clamped to the valid range. The known-answer case: see :func:`aselect_bench.backbones.noise.matched_timestep`.
- ``shot``: photon noise, ``Poisson(p * c) / c`` with ``c = 1 / level**2`` photons at white: the noise std is
  ``level * sqrt(p)`` (``level`` at white), clamped.
- ``jpeg``: JPEG compression at quality ``round(100 * (1 - level))`` (at least 1); ``level`` in ``[0, 1]``.
- ``blur``: Gaussian blur of std ``level`` pixels at the input size (kernel ``2 * ceil(3 * level) + 1``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from aselect_bench.errors import UserError

#: The corruption kinds and what their level means.
KINDS = {"gauss": "noise std on [0, 1] pixels", "shot": "photon-noise std at white on [0, 1] pixels",
         "jpeg": "1 - JPEG quality / 100", "blur": "Gaussian blur std in pixels at the input size"}


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``kind`` (:data:`KINDS`), ``level`` (its own scale, 0 = clean) and the draw's ``seed``."""

    kind: str
    level: float
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "level", float(self.level))  # 0 and 0.0 are one level (and one draw)
        if self.kind not in KINDS:
            raise UserError(f"corruption.kind {self.kind!r} is not a corruption: use one of {', '.join(KINDS)}")
        if not math.isfinite(self.level) or self.level < 0 or (self.kind == "jpeg" and self.level > 1):
            top = "1" if self.kind == "jpeg" else "a finite number"
            raise UserError(f"corruption.level {self.level!r} is outside {self.kind}'s scale ({KINDS[self.kind]}): "
                            f"give a level from 0 up to {top}")

    @property
    def label(self) -> str:
        """``gauss0.1``: the kind and level, for folder and run names."""
        return f"{self.kind}{self.level:g}"

    def generator(self, key: str) -> torch.Generator:
        """The draw of the image named ``key``: seeded by a hash of ``(seed, key, kind, level)``."""
        digest = hashlib.sha256(f"{self.seed}|{key}|{self.kind}|{self.level!r}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def apply(self, image: torch.Tensor, key: str) -> torch.Tensor:
        """``image [3, H, W]`` float in [-1, 1] -> the corrupted image, same shape and range."""
        if self.level == 0:
            return image
        pixels = (image.float() + 1) / 2
        return (_CORRUPT[self.kind](pixels, self.level, self.generator(key)) * 2 - 1).to(image.dtype)


def _gauss(p: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    return (p + level * torch.randn(p.shape, generator=gen)).clamp(0, 1)


def _shot(p: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    photons = 1 / level**2
    return (torch.poisson(p.clamp(0, 1) * photons, generator=gen) / photons).clamp(0, 1)


def _jpeg(p: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:  # noqa: ARG001 - no randomness
    from torchvision.io import decode_jpeg, encode_jpeg

    quality = max(1, round(100 * (1 - level)))
    as_bytes = (p.clamp(0, 1) * 255).round().to(torch.uint8)
    return decode_jpeg(encode_jpeg(as_bytes, quality=quality)).float() / 255


def _blur(p: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:  # noqa: ARG001 - no randomness
    from torchvision.transforms.v2 import functional as TF

    size = 2 * math.ceil(3 * level) + 1
    return TF.gaussian_blur(p, [size, size], [level, level])


_CORRUPT = {"gauss": _gauss, "shot": _shot, "jpeg": _jpeg, "blur": _blur}


def image_key(source, root=None) -> str:
    """What identifies an image for its draw: a file's path relative to ``root`` (POSIX; the path as given when
    outside it), or a digest of an in-memory PIL image's mode, size and pixels."""
    if hasattr(source, "tobytes"):
        pixels = hashlib.sha256(source.tobytes()).hexdigest()[:32]
        return f"pixels:{source.mode}:{source.size}:{pixels}"
    path = Path(source)
    if root is not None:
        for inner, outer in ((path, Path(root)), (path.resolve(), Path(root).resolve())):
            if inner.is_relative_to(outer):
                return inner.relative_to(outer).as_posix()
    return path.as_posix()


class ImageCorruption:
    """A corruption bound to a dataset's folder: ``(image [3, H, W], source) -> image`` (``source``: the image's
    path or PIL image), what the datasets call after their view transform. Picklable (loader workers)."""

    def __init__(self, corruption: Corruption, root=None):
        self.corruption, self.root = corruption, None if root is None else str(root)

    def __call__(self, image: torch.Tensor, source) -> torch.Tensor:
        return self.corruption.apply(image, image_key(source, self.root))

    def __repr__(self) -> str:  # in the datasets' fingerprints: what changes the pixels, not where the data lies
        c = self.corruption
        return f"Corruption(kind={c.kind!r}, level={c.level!r}, seed={c.seed})"


def bind(corruption: Corruption | None, root) -> ImageCorruption | None:
    """The datamodules' hook: ``None`` (no corruption, or level 0: the clean images) or an :class:`ImageCorruption`."""
    if corruption is None or corruption.level == 0:
        return None
    return ImageCorruption(corruption, root)
