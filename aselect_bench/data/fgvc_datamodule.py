"""``FGVCDataModule``: one FGVC dataset (or a hub dataset) as images in [-1, 1] at the backbone's size."""

from __future__ import annotations

import random
from collections import defaultdict

import lightning as L
import torch
from torch.utils.data import DataLoader

from aselect_bench.config import COUNT, NATURAL, check_arguments
from aselect_bench.data.calibration import calibration_images
from aselect_bench.data.corruption import Corruption, bind
from aselect_bench.data.fgvc import SPLITS, HubSplit, class_names, read_splits, resolve_root
from aselect_bench.data.manifest import manifest_digest
from aselect_bench.data.readable import check_readable
from aselect_bench.data.transforms import (
    RESIZE_RATIO,
    ImageListDataset,
    classification_transform,
    item_labels,
    take,
)
from aselect_bench.errors import UserError


def class_balanced_order(labels: list[int], seed: int) -> list[int]:
    """Indices of ``labels`` in a seeded order that visits every class once before any class twice (each
    class's images in a seeded random order): a prefix of any length is as class-balanced as it can be."""
    rng, by_class = random.Random(seed), defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    for members in by_class.values():
        rng.shuffle(members)
    return [i for _, _, i in sorted((rank, rng.random(), i) for members in by_class.values()
                                    for rank, i in enumerate(members))]


def limit_per_class(items, limit: int, seed: int):
    """At most ``limit`` items of each class, chosen with ``seed``, in their original order."""
    by_class = defaultdict(list)
    for i, label in enumerate(item_labels(items)):
        by_class[label].append(i)
    rng, keep = random.Random(seed), []
    for label in sorted(by_class):
        keep += rng.sample(by_class[label], min(limit, len(by_class[label])))
    return take(items, sorted(keep))


class FGVCDataModule(L.LightningDataModule):
    """Train/val/test loaders of ``dataset`` under ``data_root`` (the folder with the files as distributed;
    for CUB, NABirds and Aircraft also their top folder itself, see :func:`~aselect_bench.data.fgvc.resolve_root`).

    Args:
        dataset: ``cub``, ``nabirds``, ``flowers``, ``dogs``, ``cars`` or ``aircraft``.
        image_size: the backbone's native input size (``None``: the model's ``image_size`` at setup).
        train_augment: random crop + flip for training; ``False`` gives a fixed view (cacheable features).
        resize_ratio: the short side is resized to ``resize_ratio * image_size`` before cropping.
        limit_per_class: keep at most this many training images per class (chosen with ``seed``).
        strict: stop at the first unreadable image instead of leaving it out with a warning (every image is
            decoded once at setup: :mod:`aselect_bench.data.readable`; :meth:`bad_files` lists those left out).
        hub_id, image_column, label_column: read a Hugging Face ``datasets`` dataset (hub id or local
            folder) instead of ``data_root``; see :class:`aselect_bench.data.fgvc.HubSplit`.
        corruption: a seeded per-image :class:`~aselect_bench.data.corruption.Corruption` of every split and of
            the calibration images, after the view (``None``: the images as they are).

    Batches are ``(images [B, 3, S, S] float in [-1, 1], labels [B] int64, indices [B])``.
    """

    #: Lightning stage -> the split's plain name in reports (as :attr:`ADE20KDataModule.SPLIT_NAMES`).
    SPLIT_NAMES = {"train": "training", "val": "val", "test": "test"}

    def __init__(self, dataset: str = "cub", data_root: str = "data", image_size: int | None = None,
                 batch_size: int = 64, num_workers: int = 2, seed: int = 0, train_augment: bool = True,
                 limit_per_class: int | None = None, strict: bool = False, hub_id: str | None = None,
                 image_column: str = "image", label_column: str = "label", resize_ratio: float = RESIZE_RATIO,
                 corruption: Corruption | dict | None = None):
        super().__init__()
        check_arguments(batch_size=(batch_size, COUNT), num_workers=(num_workers, NATURAL),
                        limit_per_class=(limit_per_class, COUNT))
        self.dataset, self.data_root, self.image_size = dataset, data_root, image_size
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.training_seed = seed  # the training order's seed: a repeat of the experiment (another seed) sets it
        self.train_augment, self.limit, self.strict = train_augment, limit_per_class, strict
        self.resize_ratio = resize_ratio
        self.corruption = Corruption(**corruption) if isinstance(corruption, dict) else corruption
        self.hub = (hub_id, image_column, label_column) if hub_id else None
        self.sets: dict[str, ImageListDataset] = {}
        self.unreadable: set[str] = set()
        self.class_names: list[str] = []

    @property
    def num_classes(self) -> int | None:
        """Number of classes; ``None`` before :meth:`setup`."""
        return len(self.class_names) or None

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        if self.image_size is None:
            module = self.trainer.lightning_module if self.trainer is not None else None
            if module is None or not hasattr(module, "image_size"):
                raise UserError("image_size is not set: pass the backbone's native size (e.g. 256 for DiT-XL/2)")
            self.image_size = int(module.image_size)
        items = self._read()
        if self.limit:
            items["train"] = limit_per_class(items["train"], self.limit, self.seed)
        items = self._readable(items)
        for split in SPLITS:
            view = classification_transform(self.image_size, split == "train" and self.train_augment, self.resize_ratio)
            self.sets[split] = self._dataset(items[split], view)

    def _dataset(self, items, view) -> ImageListDataset:
        """``items`` in ``view``, corrupted as the module's :attr:`corruption` says (keyed by path under the root)."""
        return ImageListDataset(items, view, bind(self.corruption, self._root()))

    def _root(self):
        """The folder the images' names are relative to (None for a hub dataset)."""
        return None if self.hub else resolve_root(self.dataset, self.data_root)

    def _readable(self, items: dict) -> dict:
        """``items`` without the unreadable images (recorded in :attr:`unreadable`), or the first one's error when
        ``strict``; a hub dataset's rows are decoded by ``datasets`` and kept as they are."""
        if self.hub:
            return items
        paths = [path for split in SPLITS for path, _ in items[split]]
        self.unreadable = check_readable(paths, self._root(), self.strict, f"the {self.dataset} dataset")
        return {split: [item for item in items[split] if str(item[0]) not in self.unreadable] for split in SPLITS}

    def _read(self) -> dict:
        """``{split: [(path or image, label)]}`` and the class names, from the folder or the hub."""
        if self.hub is None:
            self.class_names = class_names(self.dataset, self.data_root)
            return read_splits(self.dataset, self.data_root)
        hub_id, image_column, label_column = self.hub
        splits = {s: HubSplit(hub_id, s, image_column, label_column) for s in SPLITS}
        self.class_names = splits["train"].class_names
        return splits

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.training_seed) if shuffle else None,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def split_size(self, stage: str) -> int:
        self.setup()
        return len(self.sets[stage])

    def split_sizes(self) -> dict[str, int]:
        """``{"training": n, "val": n, "test": n}``: images per split, by their plain names."""
        self.setup()
        return {self.SPLIT_NAMES[stage]: len(data) for stage, data in self.sets.items()}

    def view_fingerprint(self, stage: str) -> str | None:
        """Identifies the images a split yields (what its files hold, not where they lie); ``None`` for randomly
        augmented training views."""
        if stage == "train" and self.train_augment:
            return None
        source = f"hub:{self.hub[0]}" if self.hub else self.dataset
        return f"{source}:{stage}:{self.sets[stage].fingerprint(self._root())}"

    def data_manifest(self, stage: str) -> list[str] | None:
        """The split's files (paths relative to the data root, sizes, digests) and labels, or None (hub)."""
        self.setup()
        return self.sets[stage].manifest(self._root())

    def data_fingerprint(self, stage: str) -> str:
        """Identifies the split's data (:meth:`data_manifest`; the hub split's rows), whatever its view."""
        lines = self.data_manifest(stage)
        return manifest_digest([str(self.sets[stage].items.fingerprint)] if lines is None else lines)[:16]

    def set_labels_only(self, stage: str, value: bool) -> None:
        """Yield ``(empty, labels, indices)`` batches for ``stage`` (its features are all cached) or images again."""
        self.sets[stage].labels_only = value

    def bad_files(self) -> list[str]:
        """The unreadable images left out of the splits at setup (paths, sorted)."""
        return sorted(self.unreadable)

    def calibration_images(self, n: int, seed: int = 0) -> torch.Tensor:
        """``[min(n, N_train), 3, S, S]``: the HFR calibration set (:func:`~aselect_bench.data.calibration.calibration_images`)."""
        return calibration_images(self, n, seed)

    def calibration_view(self, indices: list[int]) -> torch.Tensor:
        """``[len(indices), 3, S, S]``: the training images at ``indices`` in the evaluation view (no randomness)."""
        self.setup()
        train = self.sets["train"]
        eval_view = self._dataset(train.items, classification_transform(self.image_size, False, self.resize_ratio))
        return torch.stack([eval_view[i][0] for i in indices])

    def selection_images(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [M, 3, S, S], labels [M])``, ``M = min(n, N_val)``: labelled held-out images of the val split
        (the one every choice is made on; never the reported test split), class-balanced, in the evaluation
        view: what the label-using timestep selectors read."""
        self.setup()
        val = self.sets["val"]
        # a fresh view: never the labels-only cached mode
        view = self._dataset(val.items, classification_transform(self.image_size, False, self.resize_ratio))
        order = class_balanced_order(item_labels(val.items), seed)[:n]
        pairs = [view[i] for i in order]
        return torch.stack([p[0] for p in pairs]), torch.tensor([int(p[1]) for p in pairs])
