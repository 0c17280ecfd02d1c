"""The estimate's backbone at its real size (and where its weights came from) and batches at the real shapes:
the dataset when the data root holds it, else a synthetic batch at the true resolution and class count."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aselect_bench.analyses.resources import peak_memory_bytes, reset_peak_memory
from aselect_bench.data.calibration import calibration_images
from aselect_bench.errors import UserError


# ---------------------------------------------------------------- the backbone, and where its weights came from
@dataclass
class Loaded:
    """A backbone built for the estimate: ``weights`` is ``"pretrained"`` or ``"random"``, ``note`` says why."""

    source: str
    backbone: object
    weights: str
    note: str
    seconds: float
    peak_memory_bytes: int


def cached_weights(source: str) -> tuple[bool, str]:
    """Whether ``source`` has weights on this machine (no network), and a line saying where they were looked for.

    A registered model with a hub id counts when the Hugging Face cache holds it; a folder or hub id given by the
    user is always loaded as given (its errors are the user's to fix)."""
    from aselect_bench.backbones.registry import MODELS

    spec = MODELS.get(source)
    if spec is None:
        return True, f"{source} as given"
    if spec.folder is not None:
        return True, f"shipped in {spec.folder}"
    if spec.hub_id is None:
        return False, f"{source} is a test architecture without published weights"
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(spec.hub_id, local_files_only=True, allow_patterns=["transformer/config.json"])
        return True, f"{spec.hub_id} from the Hugging Face cache"
    except Exception:  # noqa: BLE001 - any miss means: not cached
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        return False, (f"{spec.hub_id} is not in the Hugging Face cache ({home}): the real architecture with "
                       f"random weights (speed and memory do not depend on them; pass --backbone FOLDER for real ones)")


def load(source: str, device, precision: str, say: Callable = print) -> Loaded:
    """Build ``source`` on ``device`` (pretrained when :func:`cached_weights`, else random) at ``precision``."""
    from aselect_bench.backbones import load_backbone
    from aselect_bench.precision import describe_precision

    pretrained, note = cached_weights(source)
    say(f"backbone {source}: {'pretrained' if pretrained else 'random'} weights ({note}); building it ...")
    reset_peak_memory(device)
    start = time.perf_counter()
    backbone = load_backbone(source, device=device, pretrained=pretrained)
    seconds = time.perf_counter() - start
    backbone.set_precision(describe_precision(precision, device)["precision"])
    say(f"built in {seconds:.0f} s: {parameters(backbone.transformer):,} transformer parameters")
    return Loaded(source, backbone, "pretrained" if pretrained else "random", note, seconds, peak_memory_bytes(device))


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


# ---------------------------------------------------------------- inputs at the real shapes
class Inputs:
    """Batches at the real shapes. ``sizes``: ``{"train", "val", "test"}`` images per stage; ``source``: one line."""

    def __init__(self, sizes: dict, num_classes: int, source: str, seed: int):
        self.sizes, self.num_classes, self.source, self.seed = sizes, num_classes, source, seed

    def train(self, batch: int, step: int) -> tuple:
        """``(images, targets, indices)`` of training step ``step`` (new images, hence fresh noise, each step)."""
        raise NotImplementedError

    def evaluation(self, batch: int) -> tuple:
        raise NotImplementedError

    def calibration(self, batch: int) -> torch.Tensor:
        raise NotImplementedError


class DatasetInputs(Inputs):
    """Batches from a set-up datamodule's splits (the real dataset, or the synthetic stand-in of a demo preset)."""

    def __init__(self, datamodule, num_classes: int, source: str, seed: int, eval_batch: int | None = None):
        sizes = {stage: len(datamodule.sets[stage]) for stage in ("train", "val", "test")}
        super().__init__(sizes, num_classes, source, seed)
        self.datamodule, self.eval_batch, self._train = datamodule, eval_batch, {}

    def train(self, batch, step):
        from torch.utils.data import DataLoader

        if batch not in self._train:
            self._train[batch] = iter(DataLoader(self.datamodule.sets["train"], batch_size=batch, shuffle=True,
                                                 generator=torch.Generator().manual_seed(self.seed)))
        return next(self._train[batch])

    def evaluation(self, batch):
        from torch.utils.data import DataLoader

        data = self.datamodule.sets["test" if self.eval_batch else "val"]
        return next(iter(DataLoader(data, batch_size=self.eval_batch or batch)))

    def calibration(self, batch):
        return calibration_images(self.datamodule, batch, self.seed)


class SyntheticInputs(Inputs):
    """Random images at the true resolution, labels over the true class count (per-pixel for segmentation)."""

    def __init__(self, sizes: dict, num_classes: int, source: str, seed: int, image_size: int,
                 segmentation: bool = False, eval_shape: tuple[int, int] | None = None):
        super().__init__(sizes, num_classes, source, seed)
        self.size, self.segmentation, self.eval_shape = image_size, segmentation, eval_shape

    def _batch(self, batch: int, shape: tuple[int, int], first: int) -> tuple:
        gen = torch.Generator().manual_seed(self.seed + first)
        images = torch.rand(batch, 3, *shape, generator=gen) * 2 - 1
        targets = torch.randint(0, self.num_classes, (batch, *shape) if self.segmentation else (batch,), generator=gen)
        return images, targets, torch.arange(first, first + batch)

    def train(self, batch, step):
        return self._batch(batch, (self.size, self.size), step * batch)

    def evaluation(self, batch):
        return self._batch(1, self.eval_shape, 0) if self.eval_shape else self._batch(batch, (self.size,) * 2, 0)

    def calibration(self, batch):
        return self._batch(batch, (self.size, self.size), 10**6)[0]


def ade20k_eval_shape(scale) -> tuple[int, int]:
    """``(H, W)`` of a typical ADE20K image (4:3 landscape) after mmseg's keep-ratio resize into ``scale``."""
    long, short = max(scale), min(scale)
    return short, min(long, round(short * 4 / 3))


def fgvc_inputs(preset, dataset: str, backbone, say: Callable) -> Inputs:
    from aselect_bench.data.fgvc import DATASETS, protocol_sizes
    from aselect_bench.experiments import dataset_path, fgvc_datamodule, prepare_dataset

    root = dataset_path(preset, "fgvc", dataset)
    if preset.synthetic or root.exists():
        root = prepare_dataset(preset, "fgvc", dataset)
        dm = fgvc_datamodule(preset.override(num_workers=0), dataset, backbone, root)
        return DatasetInputs(dm, dm.num_classes, f"{dataset} from {root}", preset.seed)
    if dataset not in DATASETS:
        raise UserError(f"unknown FGVC dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    classes = DATASETS[dataset].num_classes
    say(f"no {dataset} under {root}: a synthetic batch at {backbone.image_size} px and {classes} classes stands in")
    return SyntheticInputs(protocol_sizes(dataset), classes, f"synthetic {backbone.image_size} px images, "
                           f"{classes} classes (no {dataset} under {root}); split sizes as published", preset.seed,
                           backbone.image_size)


def ade20k_inputs(preset, backbone, crop: int, say: Callable) -> Inputs:
    from aselect_bench.data.ade20k_datamodule import protocol_sizes
    from aselect_bench.experiments import ade20k_datamodule, dataset_path, prepare_dataset

    cfg, root = preset.ade20k, dataset_path(preset, "ade20k", "ade20k")
    if preset.synthetic or root.exists():
        root = prepare_dataset(preset, "ade20k", "ade20k")
        dm = ade20k_datamodule(preset.override(**{"ade20k.num_workers": 0}), backbone, root)
        return DatasetInputs(dm, cfg.num_classes, f"ade20k from {root}", preset.seed, eval_batch=1)
    shape = ade20k_eval_shape(cfg.scale)
    say(f"no ADE20K under {root}: synthetic {crop} px crops, a {shape[0]}x{shape[1]} evaluation image and "
        f"{cfg.num_classes} classes stand in")
    return SyntheticInputs(protocol_sizes(), cfg.num_classes, f"synthetic {crop} px crops and a {shape[0]}x{shape[1]} "
                           f"evaluation image (ADE20K's typical 4:3 after the resize), {cfg.num_classes} classes (no "
                           f"ADE20K under {root}); split sizes as published", preset.seed, crop, segmentation=True,
                           eval_shape=shape)
