"""``ADE20KDataModule``: ADEChallengeData2016 through the mmseg ADE20K protocol (torchvision v2)."""

from __future__ import annotations

import hashlib
import random

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from aselect_bench.data.ade20k import load_mask, read_split
from aselect_bench.data.images import load_rgb
from aselect_bench.data.seg_transforms import SegEvalTransform, SegTrainTransform


class SegmentationDataset(Dataset):
    """``[(image, annotation)]`` -> ``(image [3, h, w] in [-1, 1], mask [H, W] int64 with 255 ignore, index)``.

    Training views are random but reproducible: the randomness of item ``i`` in epoch ``e`` is seeded by
    ``(seed, e, i)`` (``set_epoch`` is called by the data module).
    """

    def __init__(self, pairs, transform, num_classes: int, seed: int = 0):
        self.pairs, self.transform, self.num_classes, self.seed = list(pairs), transform, num_classes, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        image_path, mask_path = self.pairs[index]
        image = load_rgb(image_path)
        mask = load_mask(mask_path, self.num_classes, image_size=image.size)
        image = tv_tensors.Image(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(mask)[None])
        rng = random.Random(hash((self.seed, self.epoch, index)))
        image, mask = self.transform(image, mask, rng)
        return image.as_subclass(torch.Tensor), mask[0].as_subclass(torch.Tensor), index

    def fingerprint(self) -> str:
        h = hashlib.sha256(repr(self.transform).encode())
        for image, mask in self.pairs:
            h.update(f"{image}\t{mask}\n".encode())
        return h.hexdigest()[:16]


class ADE20KDataModule(L.LightningDataModule):
    """ADE20K loaders.

    Args:
        data_root: the ``ADEChallengeData2016/`` folder.
        crop_size: training crop (the backbone's native input at the demo preset, 512 in the paper).
        scale: the resize scale ``(long, short)``: ``(2048, 512)`` in the protocol.
        val_batch_size: evaluation batch (1 for real ADE20K, whose images differ in size).
    Batches are ``(images [B, 3, h, w], masks [B, H, W], indices [B])``.
    """

    def __init__(self, data_root: str = "data/ADEChallengeData2016", crop_size: int = 512, scale=(2048, 512),
                 batch_size: int = 16, val_batch_size: int = 1, num_workers: int = 2, seed: int = 0,
                 num_classes: int = 150, cat_max_ratio: float = 0.75):
        super().__init__()
        self.data_root, self.crop_size, self.scale = data_root, crop_size, tuple(scale)
        self.batch_size, self.val_batch_size, self.num_workers, self.seed = batch_size, val_batch_size, num_workers, seed
        self.num_classes, self.cat_max_ratio = num_classes, cat_max_ratio
        self.sets: dict = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        train = SegTrainTransform(self.crop_size, self.scale, cat_max_ratio=self.cat_max_ratio)
        val = SegEvalTransform(self.scale)
        self.sets = {"train": SegmentationDataset(read_split(self.data_root, "train"), train, self.num_classes, self.seed),
                     "val": SegmentationDataset(read_split(self.data_root, "val"), val, self.num_classes, self.seed)}
        self.sets["test"] = self.sets["val"]  # ADE20K's test annotations are not public: test = val

    def set_epoch(self, epoch: int) -> None:
        """New random training views each epoch (workers get the dataset anew at every epoch)."""
        self.setup()
        self.sets["train"].epoch = epoch

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=False, drop_last=split == "train" and len(self.sets[split]) > batch_size,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None)

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader("val", self.val_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.val_batch_size, shuffle=False)

    def split_size(self, stage: str) -> int:
        return len(self.sets[stage])

    def view_fingerprint(self, stage: str) -> str | None:
        return None if stage == "train" else f"{self.data_root}:{self.sets[stage].fingerprint()}"

    def calibration_images(self, n: int, seed: int = 0) -> torch.Tensor:
        """``[n, 3, c, c]``: center crops (crop size) of ``n`` train images in the evaluation scale."""
        from torchvision.transforms.v2 import functional as TF

        self.setup()
        train = self.sets["train"]
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        view = SegmentationDataset([train.pairs[i] for i in order], SegEvalTransform(self.scale), self.num_classes)
        return torch.stack([TF.center_crop(view[i][0], [self.crop_size, self.crop_size]) for i in range(len(view))])
