"""torchvision v2 classification transforms and the image-list dataset (reusable by other image tasks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from aselect_bench.data.images import load_rgb, to_rgb
from aselect_bench.data.manifest import manifest, manifest_digest

NO_IMAGE = torch.zeros(0)  # the image slot of a labels-only sample
RESIZE_RATIO = 1.14  # resize the short side to 1.14x the crop, as in the common 256 -> 224 protocol


def to_model_range() -> list:
    """PIL -> float tensor ``[3, H, W]`` in [-1, 1]."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)]


def classification_transform(image_size: int, train: bool, resize_ratio: float = RESIZE_RATIO) -> v2.Compose:
    """train: resize (short side ``resize_ratio * image_size``) + random crop + horizontal flip; eval: resize +
    center crop. Both give ``[3, image_size, image_size]`` in [-1, 1]. (The A-SelecT authors resize 576 for
    a 512 crop: ``resize_ratio=1.125``.)"""
    resize = v2.Resize(round(image_size * resize_ratio), antialias=True)
    if train:
        return v2.Compose([resize, v2.RandomCrop(image_size), v2.RandomHorizontalFlip(), *to_model_range()])
    return v2.Compose([resize, v2.CenterCrop(image_size), *to_model_range()])


def describe(transform) -> str:
    """A stable description of a transform pipeline (for cache fingerprints)."""
    return repr(transform)


def item_labels(items: Sequence) -> list[int]:
    """Labels of ``[(path or image, label)]`` items, without decoding images (``items.labels`` if it has one)."""
    labels = getattr(items, "labels", None)
    return list(labels) if labels is not None else [int(y) for _, y in items]


def take(items: Sequence, indices) -> Sequence:
    """``items`` restricted to ``indices`` (lazy sequences such as a hub split keep being lazy)."""
    return items.subset(indices) if hasattr(items, "subset") else [items[i] for i in indices]


class ImageListDataset(Dataset):
    """``[(path or PIL image, label)]`` -> ``(image [3, H, W] in [-1, 1], label, index)``.

    ``index`` is the position in the list: it keys per-image noise and feature caches (tasks read the
    batch as ``(images [B, 3, H, W], labels [B] int64, indices [B])``). Unreadable files are left out of ``items``
    at setup (:mod:`aselect_bench.data.readable`); one that cannot be read later (it changed since) stops the run.

    ``labels_only = True`` (when a task reads every feature of this split from a cache) makes batches
    ``(empty [B, 0], labels, indices)`` without opening a file. The flag lives in shared memory, so
    loader workers, persistent ones included, see it change; it is read once per batch.
    """

    def __init__(self, items: Sequence, transform, corruption=None):
        self.items = items if hasattr(items, "subset") else list(items)
        self.transform = transform
        self.corruption = corruption  # (image, source) -> image after the view (data/corruption.py), or None
        self._labels_only = torch.zeros(1, dtype=torch.bool).share_memory_()
        self._label_list = None

    @property
    def labels_only(self) -> bool:
        return bool(self._labels_only[0])

    @labels_only.setter
    def labels_only(self, value: bool) -> None:
        self._labels_only[0] = bool(value)

    def __getitems__(self, indices: list[int]) -> list:
        """One batch's samples (the DataLoader's batched fetch): the flag is read once, so a batch is uniform."""
        if not self.labels_only:
            return [self[i] for i in indices]
        if self._label_list is None:
            self._label_list = self.labels
        return [(NO_IMAGE, self._label_list[i], i) for i in indices]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image, label = self._load(self.items[index])
        return image, label, index

    def _load(self, item) -> tuple:
        source, label = item
        image = to_rgb(source) if isinstance(source, Image.Image) else load_rgb(source)
        view = self.transform(image)
        return (view if self.corruption is None else self.corruption(view, source)), label

    @property
    def labels(self) -> list[int]:
        return item_labels(self.items)

    def manifest(self, root=None) -> list[str] | None:
        """The images' paths relative to ``root``, sizes, digests and labels (:func:`~aselect_bench.data.manifest.
        manifest`), or None for a hub split (its ``fingerprint`` identifies it)."""
        return None if hasattr(self.items, "fingerprint") else manifest(self.items, root)

    def fingerprint(self, root=None) -> str:
        """Identifies the images (what the files under ``root`` hold, or the hub split's rows), labels and transform."""
        lines = self.manifest(root)
        data = [str(self.items.fingerprint)] if lines is None else lines
        corrupt = [] if self.corruption is None else [repr(self.corruption)]
        return manifest_digest(data, describe(self.transform), *corrupt)[:16]
