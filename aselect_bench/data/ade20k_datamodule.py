"""``ADE20KDataModule``: ADEChallengeData2016 through the mmseg ADE20K protocol (torchvision v2)."""

from __future__ import annotations

import random

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from aselect_bench.config import CLASSES, COUNT, NATURAL, check_arguments
from aselect_bench.data.ade20k import check_annotations, load_pair, read_split, resolve_root
from aselect_bench.data.calibration import calibration_images
from aselect_bench.data.corruption import Corruption, bind
from aselect_bench.data.manifest import manifest, manifest_digest
from aselect_bench.data.readable import check_readable
from aselect_bench.data.seg_transforms import SegEvalTransform, SegTrainTransform, resize_pair
from aselect_bench.errors import UserError

#: The held-out selection split: 1,000 of the real set's 20,210 training images (as in the paper's
#: protocol), the same share of a smaller set but at least ``SELECTION_MIN``, drawn with ``SELECTION_SEED``
#: whatever the run's seed (as the FGVC VPT-style val split in ``data/fgvc.py``).
SELECTION_SIZE, REAL_TRAIN_SIZE, SELECTION_MIN, SELECTION_SEED = 1000, 20210, 5, 0
#: ADEChallengeData2016's validation images (the split mmseg reports on).
REAL_VAL_SIZE = 2000


def selection_size(num_train: int) -> int:
    """Training images held out for selection: 1,000 of ADE20K's 20,210, the same share (>= 5) of a smaller set."""
    return max(SELECTION_MIN, round(num_train * SELECTION_SIZE / REAL_TRAIN_SIZE))


def protocol_sizes() -> dict[str, int]:
    """``{"train", "val", "test"}``: images per stage of the real ADE20K as this suite splits it (no files read):
    training, the selection split held out of it, and the official validation split."""
    held = selection_size(REAL_TRAIN_SIZE)
    return {"train": REAL_TRAIN_SIZE - held, "val": held, "test": REAL_VAL_SIZE}


def split_selection(pairs: list, size: int, seed: int = SELECTION_SEED) -> tuple[list, list]:
    """``(training pairs, selection pairs)``: ``size`` of ``pairs`` drawn with ``seed``, both in the given order."""
    if not 0 < size < len(pairs):
        raise UserError(f"ADE20K: cannot hold out {size} of {len(pairs)} training images for the selection split "
                        f"and still train on the rest; give more training images or a selection_size in "
                        f"1..{len(pairs) - 1}")
    held = set(random.Random(seed).sample(range(len(pairs)), size))
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


class SegmentationDataset(Dataset):
    """``[(image, annotation)]`` -> ``(image float [3, h, w] in [-1, 1], mask int64 [H, W] (255 ignore), index)``.

    Training views are random but reproducible: item ``i`` in epoch ``e`` draws from
    ``random.Random(hash((seed, e, i)))`` (the data module calls ``set_epoch``), whatever the worker. The data
    module leaves unreadable images out at setup (:mod:`aselect_bench.data.readable`); a file that cannot be read
    later (it changed since), like a bad annotation, stops the run.
    """

    def __init__(self, pairs, transform, num_classes: int, seed: int = 0, corruption=None):
        self.pairs, self.transform, self.num_classes, self.seed = list(pairs), transform, num_classes, seed
        self.corruption = corruption  # (image, path) -> image after the view (data/corruption.py), or None
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        image, mask, source = self._load(self.pairs[index])
        image = tv_tensors.Image(torch.from_numpy(image.copy()).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(mask)[None])
        image, mask = self.transform(image, mask, random.Random(hash((self.seed, self.epoch, index))))
        if self.corruption is not None:
            image = self.corruption(image, source)
        return image, mask, index

    def _load(self, pair):
        return (*load_pair(*pair, num_classes=self.num_classes), pair[0])

    def image_sizes(self) -> set[tuple[int, int]]:
        """The distinct ``(width, height)`` of the readable images (headers only)."""
        sizes = set()
        for image, _ in self.pairs:
            try:
                with Image.open(image) as img:
                    sizes.add(img.size)
            except (OSError, SyntaxError, ValueError):
                continue  # unreadable: left out at setup
        return sizes

    def fingerprint(self, root=None) -> str:
        """Identifies the pairs (what the files under ``root`` hold, not where they lie), transform and corruption."""
        corrupt = [] if self.corruption is None else [repr(self.corruption)]
        return manifest_digest(manifest(self.pairs, root), repr(self.transform), *corrupt)[:16]


class ADE20KDataModule(L.LightningDataModule):
    """ADE20K loaders; batches are ``(images [B, 3, h, w] in [-1, 1], masks int64 [B, H, W], indices [B])``.

    Splits (Lightning stage -> what it is, :attr:`SPLIT_NAMES`): ``train`` -> the training images less the
    selection slice; ``val`` -> the **selection** split, a fixed held-out slice of the training images
    (:func:`selection_size`, never trained on) on which every choice is made (best epoch, best timestep, best
    tap); ``test`` -> the official **validation** split, the one reported (test labels are not public).

    Args:
        data_root: the ``ADEChallengeData2016/`` folder or its parent.
        crop_size: training crop (512 in the paper; the backbone's native input at the demo preset).
        scale: resize scale ``(long, short)``: ``(2048, 512)`` in the protocol, ``(128, 32)`` at the demo.
        batch_size: training batch.
        num_workers, seed: loader workers; seed of the training views and of the shuffling (not of the
            selection slice, which is the same for every seed).
        num_classes: 150 for ADE20K (annotation values above it are refused).
        val_batch_size: evaluation batch. Used only when all evaluation images share one size; otherwise
            evaluation runs with batch size 1 (no padding: each image is predicted and scored at its own
            size, as mmseg does), which real ADE20K needs.
        cat_max_ratio, antialias: see :class:`SegTrainTransform`.
        strict: stop at the first unreadable image instead of leaving it out with a warning (every image is
            decoded once at setup: :mod:`aselect_bench.data.readable`; :meth:`bad_files` lists those left out).
        selection_size: images in the selection split (default: :func:`selection_size` of the training set).
        corruption: a seeded per-image :class:`~aselect_bench.data.corruption.Corruption` of every split's images
            and of the calibration images, after the view (``None``: the images as they are).
    Training masks are ``[B, c, c]``; evaluation masks keep the annotation's size ``[B, H, W]`` while
    the images are resized into ``scale``.
    """

    SPLIT_NAMES = {"train": "training", "val": "selection", "test": "validation"}

    def __init__(self, data_root: str = "data/ADEChallengeData2016", crop_size: int = 512, scale=(2048, 512),
                 batch_size: int = 16, num_workers: int = 2, seed: int = 0, num_classes: int = 150,
                 val_batch_size: int = 1, cat_max_ratio: float = 0.75, antialias: bool = False,
                 strict: bool = False, selection_size: int | None = None, corruption: Corruption | None = None):
        super().__init__()
        check_arguments(crop_size=(crop_size, COUNT), batch_size=(batch_size, COUNT),
                        val_batch_size=(val_batch_size, COUNT), num_workers=(num_workers, NATURAL),
                        num_classes=(num_classes, CLASSES), selection_size=(selection_size, COUNT))
        self.data_root, self.crop_size, self.scale = data_root, crop_size, tuple(scale)
        self.batch_size, self.val_batch_size, self.num_workers, self.seed = batch_size, val_batch_size, num_workers, seed
        self._training_seed = seed  # the training views' and order's seed: a repeat (another seed) sets it
        self.num_classes, self.cat_max_ratio, self.antialias = num_classes, cat_max_ratio, antialias
        self.strict, self.selection_size, self.unreadable = strict, selection_size, set()
        self.corruption = corruption
        self.sets: dict = {}
        self._eval_batch: int | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        train = SegTrainTransform(self.crop_size, self.scale, cat_max_ratio=self.cat_max_ratio, antialias=self.antialias)
        view = SegEvalTransform(self.scale, antialias=self.antialias)
        pairs = read_split(self.data_root, "train")
        size = selection_size(len(pairs)) if self.selection_size is None else self.selection_size
        training, selection = split_selection(pairs, size)
        validation = read_split(self.data_root, "val")
        root = resolve_root(self.data_root)
        check_annotations(pairs + validation, self.num_classes, root)  # a bad one stops now, not after a training
        self.unreadable = check_readable([image for image, _ in pairs + validation], root, self.strict, "ADE20K")
        training, selection, validation = ([p for p in split if str(p[0]) not in self.unreadable]
                                           for split in (training, selection, validation))
        self.sets = {name: SegmentationDataset(split, transform, self.num_classes, self.training_seed,
                                               corruption=self._corrupt())
                     for name, split, transform in (("train", training, train), ("val", selection, view),
                                                    ("test", validation, view))}

    def _corrupt(self):
        """The module's :attr:`corruption` bound to its folder (images keyed by their path under it), or None."""
        return bind(self.corruption, resolve_root(self.data_root))

    def split_sizes(self) -> dict[str, int]:
        """``{"training": n, "selection": n, "validation": n}``: images per split, by their plain names."""
        self.setup()
        return {self.SPLIT_NAMES[stage]: len(data) for stage, data in self.sets.items()}

    @property
    def training_seed(self) -> int:
        return self._training_seed

    @training_seed.setter
    def training_seed(self, seed: int) -> None:
        """Another repeat of the training: its own random views and order (the splits stay the same)."""
        self._training_seed = seed
        if self.sets:
            self.sets["train"].seed = seed

    def set_epoch(self, epoch: int) -> None:
        """New random training views each epoch (workers get the dataset anew at every epoch)."""
        self.setup()
        self.sets["train"].epoch = epoch

    def eval_batch_size(self) -> int:
        """``val_batch_size`` if every evaluation image (selection and validation) has one size, else 1."""
        self.setup()
        if self._eval_batch is None:
            same = self.val_batch_size == 1 or len(self.sets["val"].image_sizes() | self.sets["test"].image_sizes()) == 1
            self._eval_batch = self.val_batch_size if same else 1
        return self._eval_batch

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(self.sets[split], batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=False, drop_last=split == "train" and len(self.sets[split]) > batch_size,
                          generator=torch.Generator().manual_seed(self.training_seed) if shuffle else None)

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size(), shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size(), shuffle=False)

    def bad_files(self) -> list[str]:
        """The unreadable images left out of the splits at setup (paths, sorted)."""
        return sorted(self.unreadable)

    def split_size(self, stage: str) -> int:
        self.setup()
        return len(self.sets[stage])

    def view_fingerprint(self, stage: str) -> str | None:
        """A key of the fixed evaluation views (what their files hold, not where they lie; ``None`` for the random
        training views)."""
        self.setup()
        return None if stage == "train" else f"ade20k:{stage}:{self.sets[stage].fingerprint(resolve_root(self.data_root))}"

    def data_manifest(self, stage: str) -> list[str]:
        """The split's image and annotation files (paths relative to the data root, sizes, digests)."""
        self.setup()
        return manifest(self.sets[stage].pairs, resolve_root(self.data_root))

    def data_fingerprint(self, stage: str) -> str:
        """Identifies the split's data (:meth:`data_manifest`), whatever its view."""
        return manifest_digest(self.data_manifest(stage))[:16]

    def calibration_images(self, n: int, seed: int = 0) -> torch.Tensor:
        """``[min(n, N_train), 3, c, c]``: the HFR calibration set
        (:func:`~aselect_bench.data.calibration.calibration_images`), from the training part (neither the
        selection nor the validation split)."""
        return calibration_images(self, n, seed)

    def calibration_view(self, indices: list[int]) -> torch.Tensor:
        """``[len(indices), 3, c, c]`` in [-1, 1]: centre crops (crop size) of the training images at ``indices``
        at the evaluation scale."""
        from torchvision.transforms.v2 import functional as TF

        self.setup()
        train = self.sets["train"]
        view = SegmentationDataset([train.pairs[i] for i in indices], SegEvalTransform(self.scale, self.antialias),
                                   self.num_classes, corruption=self._corrupt())
        return torch.stack([TF.center_crop(view[i][0], [self.crop_size, self.crop_size]) for i in range(len(view))])

    def selection_images(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [M, 3, c, c], masks [M, c, c])``, ``M = min(n, selection size)``: labelled images of the
        selection split (held out from training, never the reported validation split), resized at the
        evaluation scale, the mask with nearest-neighbour to the image's size, both centre-cropped to the crop
        size: what the label-using timestep selectors read."""
        from torchvision.transforms.v2 import functional as TF

        self.setup()
        selection = self.sets["val"]
        order = torch.randperm(len(selection), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        view = SegmentationDataset([selection.pairs[i] for i in order], SegEvalTransform(self.scale, self.antialias),
                                   self.num_classes, corruption=self._corrupt())
        images, masks = [], []
        for i in range(len(view)):
            image, mask, _ = view[i]
            _, mask = resize_pair(image, mask[None], tuple(image.shape[-2:]))
            crop = [self.crop_size, self.crop_size]
            images.append(TF.center_crop(image, crop))
            masks.append(TF.center_crop(mask, crop)[0])
        return torch.stack(images), torch.stack(masks)

