"""``FGVCDataModule``: one FGVC dataset (or a hub dataset) as images in [-1, 1] at the backbone's size."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from aselect_bench.data.fgvc import read_split
from aselect_bench.data.transforms import ImageListDataset, classification_transform
from aselect_bench.errors import UserError


class FGVCDataModule(L.LightningDataModule):
    """Train/val/test loaders of ``dataset`` under ``data_root`` (the folder with the files as distributed).

    Args:
        dataset: ``cub``, ``nabirds``, ``flowers``, ``dogs``, ``cars`` or ``aircraft``.
        image_size: the backbone's native input size (``None``: read from the model at setup).
        train_augment: random crop + flip for training; ``False`` gives a fixed view (cacheable features).
        strict: stop at the first unreadable image instead of skipping it with a warning.
        hub_id, image_column, label_column: read a Hugging Face ``datasets`` dataset instead of a folder.
    Batches are ``(images [B, 3, S, S], labels [B], indices [B])``.
    """

    def __init__(self, dataset: str = "cub", data_root: str = "data", image_size: int | None = None,
                 batch_size: int = 64, num_workers: int = 2, seed: int = 0, train_augment: bool = True,
                 strict: bool = False, hub_id: str | None = None, image_column: str = "image",
                 label_column: str = "label"):
        super().__init__()
        self.dataset, self.data_root, self.image_size = dataset, data_root, image_size
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_augment, self.strict = train_augment, strict
        self.hub = (hub_id, image_column, label_column) if hub_id else None
        self.sets: dict = {}
        self.num_classes: int | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        if self.image_size is None:
            module = self.trainer.lightning_module if self._trainer else None
            if module is None or not hasattr(module, "image_size"):
                raise UserError("image_size is not set: pass the backbone's native size (e.g. 256 for DiT-XL/2)")
            self.image_size = module.image_size
        splits = {}
        for split in ("train", "val", "test"):
            items = self._read(split)
            train_view = split == "train" and self.train_augment
            splits[split] = ImageListDataset(items, classification_transform(self.image_size, train_view), self.strict)
        self.sets = splits
        self.num_classes = 1 + max(max(y for _, y in ds.items) for ds in splits.values())
        if self.hub is None:
            from aselect_bench.data.fgvc import num_classes

            self.num_classes = num_classes(self.dataset, self.data_root)

    def _read(self, split: str):
        if self.hub is None:
            return read_split(self.dataset, self.data_root, split)
        from aselect_bench.data.hub import read_hub_split

        return read_hub_split(*self.hub, split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def split_size(self, stage: str) -> int:
        return len(self.sets[stage])

    def view_fingerprint(self, stage: str) -> str | None:
        """Identifies the images a split yields; ``None`` for randomly augmented training views."""
        if stage == "train" and self.train_augment:
            return None
        source = f"hub:{self.hub[0]}:{stage}" if self.hub else str(self.data_root)
        return f"{source}:{self.sets[stage].fingerprint()}"

    def bad_files(self) -> list[str]:
        """Unreadable images skipped so far (in this process)."""
        return sorted(set().union(*(ds.bad_files for ds in self.sets.values())))

    def calibration_images(self, n: int, seed: int = 0) -> torch.Tensor:
        """``[n, 3, S, S]``: ``n`` train images chosen with ``seed``, in the evaluation view (no randomness)."""
        self.setup()
        train = self.sets["train"]
        eval_view = ImageListDataset(train.items, classification_transform(self.image_size, False), self.strict)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        return torch.stack([x for x, _, _ in Subset(eval_view, order)])
