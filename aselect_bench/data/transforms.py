"""torchvision v2 transforms and the image-list dataset shared by the classification data modules."""

from __future__ import annotations

import hashlib
import warnings

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from aselect_bench.data.images import load_rgb, to_rgb
from aselect_bench.errors import UserError

RESIZE_RATIO = 1.14  # resize the short side to 1.14x the crop, as in the common 256 -> 224 protocol


def to_model_range() -> list:
    """PIL -> float tensor ``[3, H, W]`` in [-1, 1]."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)]


def classification_transform(image_size: int, train: bool) -> v2.Compose:
    """train: resize + random crop + flip; eval: resize + center crop; both to ``image_size``."""
    resize = v2.Resize(round(image_size * RESIZE_RATIO), antialias=True)
    if train:
        return v2.Compose([resize, v2.RandomCrop(image_size), v2.RandomHorizontalFlip(), *to_model_range()])
    return v2.Compose([resize, v2.CenterCrop(image_size), *to_model_range()])


def describe(transform) -> str:
    """A stable description of a transform pipeline (for cache fingerprints)."""
    return repr(transform)


class ImageListDataset(Dataset):
    """``[(path, label)]`` -> ``(image [3, H, W] in [-1, 1], label, index)``.

    A file that cannot be read is skipped with a warning naming it (the next readable image stands in,
    and the file is recorded in ``bad_files``), or stops the run when ``strict``.
    """

    def __init__(self, items, transform, strict: bool = False):
        self.items, self.transform, self.strict = list(items), transform, strict
        self.bad_files: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        for offset in range(len(self.items)):
            path, label = self.items[(index + offset) % len(self.items)]
            try:
                image = to_rgb(path) if isinstance(path, Image.Image) else load_rgb(path)
            except UserError:
                if self.strict:
                    raise
                if str(path) not in self.bad_files:
                    warnings.warn(f"skipping unreadable image {path}", stacklevel=2)
                    self.bad_files.add(str(path))
                continue
            return self.transform(image), label, index
        raise UserError("no readable image in this split: every file failed to load")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for i, (path, label) in enumerate(self.items):
            h.update(f"{i if isinstance(path, Image.Image) else path}\t{label}\n".encode())
        h.update(describe(self.transform).encode())
        return h.hexdigest()[:16]
