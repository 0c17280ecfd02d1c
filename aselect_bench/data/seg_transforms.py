"""The mmsegmentation ADE20K pipeline with torchvision v2 functional ops; image and mask move together.

train: random resize of ``scale`` by a ratio in [0.5, 2] (keeping the aspect ratio), random crop with
``cat_max_ratio`` (retried up to 10 times), horizontal flip, photometric distortion; eval: resize to
``scale`` keeping the aspect ratio (the mask stays at its original size, as mmseg evaluates).
"""

from __future__ import annotations

import random

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

IGNORE_INDEX = 255


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale`` with ``keep_ratio``: the long side fits ``max(scale)``, the short side ``min(scale)``."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize_pair(image, mask, size):
    image = TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
    mask = TF.resize(mask, list(size), interpolation=InterpolationMode.NEAREST) if mask is not None else None
    return image, mask


def random_crop(image, mask, crop: int, cat_max_ratio: float, rng: random.Random):
    """A ``crop`` x ``crop`` window (smaller images are padded: image with 0, mask with 255)."""
    h, w = image.shape[-2:]
    if h < crop or w < crop:
        pad = [0, 0, max(0, crop - w), max(0, crop - h)]
        image = TF.pad(image, pad, fill=0)
        mask = TF.pad(mask, pad, fill=IGNORE_INDEX)
        h, w = image.shape[-2:]

    def window():
        y, x = rng.randint(0, h - crop), rng.randint(0, w - crop)
        return y, x

    y, x = window()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            labels, counts = torch.unique(mask[..., y:y + crop, x:x + crop], return_counts=True)
            counts = counts[labels != IGNORE_INDEX]
            if len(counts) > 1 and counts.max().item() / counts.sum().item() < cat_max_ratio:
                break
            y, x = window()
    return image[..., y:y + crop, x:x + crop], mask[..., y:y + crop, x:x + crop]


def photometric_distortion(image: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """mmseg's PhotoMetricDistortion on a uint8 image: brightness, contrast, saturation, hue (each p=0.5)."""
    img = image.float()
    if rng.random() < 0.5:
        img = img + rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5

    def contrast(x):
        return x * rng.uniform(0.5, 1.5) if rng.random() < 0.5 else x

    img = contrast(img).clamp(0, 255) if contrast_first else img.clamp(0, 255)
    out = img.round().to(torch.uint8)
    if rng.random() < 0.5:
        out = TF.adjust_saturation(out, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        out = TF.adjust_hue(out, rng.uniform(-18, 18) / 360)
    if not contrast_first:
        out = contrast(out.float()).clamp(0, 255).round().to(torch.uint8)
    return out


def to_model_range(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> float in [-1, 1]."""
    return image.float() / 127.5 - 1


class SegTrainTransform:
    def __init__(self, crop: int, scale=(2048, 512), ratio_range=(0.5, 2.0), cat_max_ratio: float = 0.75):
        self.crop, self.scale, self.ratio_range, self.cat_max_ratio = crop, scale, ratio_range, cat_max_ratio

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, rng: random.Random):
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        image, mask = resize_pair(image, mask, rescale_size(*image.shape[-2:], target))
        image, mask = random_crop(image, mask, self.crop, self.cat_max_ratio, rng)
        if rng.random() < 0.5:
            image, mask = TF.horizontal_flip(image), TF.horizontal_flip(mask)
        image = photometric_distortion(image, rng)
        return to_model_range(image), mask.long()

    def __repr__(self) -> str:
        return f"SegTrainTransform(crop={self.crop}, scale={self.scale}, ratio={self.ratio_range}, cat={self.cat_max_ratio})"


class SegEvalTransform:
    def __init__(self, scale=(2048, 512)):
        self.scale = scale

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, rng=None):
        image, _ = resize_pair(image, None, rescale_size(*image.shape[-2:], self.scale))
        return to_model_range(image), mask.long()

    def __repr__(self) -> str:
        return f"SegEvalTransform(scale={self.scale})"
