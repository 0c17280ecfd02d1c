"""mmsegmentation's ADE20K pipeline with torchvision v2 functional ops: image and mask move together.

train (mmseg ``RandomResize`` -> ``RandomCrop`` -> ``RandomFlip`` -> ``PhotoMetricDistortion`` -> pad):
  resize to ``scale * r`` with ``r`` uniform in ``ratio_range``, keeping the aspect ratio (mmcv
  ``rescale``); a ``crop`` window, re-drawn up to 10 times until no class covers ``cat_max_ratio`` or more
  of its labelled pixels; horizontal flip with p=0.5; brightness/contrast/saturation/hue each with
  p=0.5 (contrast first or last); windows smaller than the crop are padded bottom/right (image 0 in
  model range = mmseg's normalised 0, mask 255), as mmseg's data preprocessor does.
eval (mmseg ``Resize(keep_ratio=True)``): the image is resized into ``scale``; the mask keeps its
  original size (mmseg scores predictions resized back to the original image).

Images come out as float ``[3, H, W]`` in [-1, 1] (the DiT convention; mmseg normalises by mean/std
instead), masks as int64 ``[H, W]`` with 255 = ignore. Resizing is bilinear without antialiasing (cv2's
``INTER_LINEAR``, as mmcv) unless ``antialias=True``; masks use nearest (cv2's ``INTER_NEAREST``).
All randomness comes from the ``random.Random`` passed in, so a view is reproducible.
"""

from __future__ import annotations

import random

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from aselect_bench.data.ade20k import IGNORE_INDEX


def as_pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` (keep ratio): ``(h', w')`` with long side <= ``max(scale)``, short <= ``min(scale)``."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize_pair(image: torch.Tensor, mask: torch.Tensor | None, size: tuple[int, int], antialias: bool = False):
    """Image ``[3, H, W]`` bilinear, mask ``[1, H, W]`` nearest, both to ``size = (h, w)``."""
    image = TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=antialias)
    if mask is not None:
        mask = TF.resize(mask, list(size), interpolation=InterpolationMode.NEAREST)
    return image, mask


def random_crop(image: torch.Tensor, mask: torch.Tensor, crop, cat_max_ratio: float, rng: random.Random,
                ignore_index: int = IGNORE_INDEX):
    """mmseg ``RandomCrop``: a ``crop`` window (clipped to the image, never padded here).

    With ``cat_max_ratio < 1`` the window is re-drawn (at most 10 times) while one class holds
    ``cat_max_ratio`` or more of the window's non-ignored pixels or only one class is present.
    """
    ch, cw = as_pair(crop)
    h, w = image.shape[-2:]

    def window():
        return rng.randint(0, max(h - ch, 0)), rng.randint(0, max(w - cw, 0))

    y, x = window()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            labels, counts = torch.unique(mask[..., y:y + ch, x:x + cw], return_counts=True)
            counts = counts[labels != ignore_index]
            if len(counts) > 1 and counts.max().item() / counts.sum().item() < cat_max_ratio:
                break
            y, x = window()
    return image[..., y:y + ch, x:x + cw], mask[..., y:y + ch, x:x + cw]


def pad_pair(image: torch.Tensor, mask: torch.Tensor, size, image_fill: float = 0.0,
             mask_fill: int = IGNORE_INDEX):
    """Pad bottom/right to at least ``size``: image with ``image_fill``, mask with ``mask_fill``."""
    th, tw = as_pair(size)
    h, w = image.shape[-2:]
    pad = [0, 0, max(0, tw - w), max(0, th - h)]  # left, top, right, bottom
    if pad[2] or pad[3]:
        image, mask = TF.pad(image, pad, fill=image_fill), TF.pad(mask, pad, fill=mask_fill)
    return image, mask


def _convert(img: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """mmseg's ``convert``: ``img * alpha + beta``, clipped to [0, 255], truncated to integers (float)."""
    return (img * alpha + beta).clamp(0, 255).floor()


def adjust_saturation_hsv(img: torch.Tensor, alpha: float) -> torch.Tensor:
    """Scale HSV saturation by ``alpha`` (clipped to 1), hue and value kept: float ``[3, H, W]`` in [0, 255].

    In HSV each channel is ``V - (V - c)``, linear in S at fixed H and V, so
    ``c' = V - (V - c) * min(alpha, 1 / S)`` is the exact HSV round trip.
    """
    v = img.amax(0, keepdim=True)
    chroma = v - img.amin(0, keepdim=True)
    ratio = torch.minimum(torch.full_like(v, alpha), v / chroma.clamp_min(1e-6))
    return v - (v - img) * ratio


def sample_photometric(rng: random.Random, brightness_delta: int = 32, contrast_range=(0.5, 1.5),
                       saturation_range=(0.5, 1.5), hue_delta: int = 18) -> dict:
    """The random choices of one ``PhotoMetricDistortion`` in mmseg's order; ``None`` = step skipped."""
    p = {"brightness": rng.uniform(-brightness_delta, brightness_delta) if rng.randrange(2) else None}
    p["contrast_first"] = rng.randrange(2) == 1
    contrast = rng.uniform(*contrast_range) if p["contrast_first"] and rng.randrange(2) else None
    p["saturation"] = rng.uniform(*saturation_range) if rng.randrange(2) else None
    p["hue"] = rng.randint(-hue_delta, hue_delta - 1) if rng.randrange(2) else None  # numpy randint: high excluded
    if not p["contrast_first"] and rng.randrange(2):
        contrast = rng.uniform(*contrast_range)
    p["contrast"] = contrast
    return p


def photometric_distortion(image: torch.Tensor, params: dict) -> torch.Tensor:
    """mmseg ``PhotoMetricDistortion`` with given ``params`` (:func:`sample_photometric`).

    ``image``: ``[3, H, W]`` (uint8 or float) in [0, 255] -> float ``[3, H, W]`` of integers in [0, 255].
    Hue shifts are in OpenCV units (2 degrees: ``hue / 180`` of a turn), as mmseg's uint8 HSV.
    """
    img = image.float()
    if params["brightness"] is not None:
        img = _convert(img, beta=params["brightness"])
    if params["contrast_first"] and params["contrast"] is not None:
        img = _convert(img, alpha=params["contrast"])
    if params["saturation"] is not None:
        img = adjust_saturation_hsv(img, params["saturation"]).round().clamp(0, 255)
    if params["hue"] is not None:
        img = (TF.adjust_hue(img / 255, params["hue"] / 180) * 255).round().clamp(0, 255)
    if not params["contrast_first"] and params["contrast"] is not None:
        img = _convert(img, alpha=params["contrast"])
    return img


def to_model_range(image: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` in [0, 255] -> float in [-1, 1]."""
    return image.float() / 127.5 - 1


def _plain(image, mask):
    """tv_tensors -> plain tensors: image ``[3, H, W]`` float, mask ``[H, W]`` int64."""
    return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).reshape(mask.shape[-2:]).long()


class SegTrainTransform:
    """``(Image uint8 [3, H, W], Mask [1, H, W], rng) -> (float [3, c, c] in [-1, 1], int64 [c, c])``.

    Args:
        crop: crop size, int or ``(h, w)`` (512 in the paper; the backbone's input at the demo preset).
        scale: ``(long, short)`` resize scale before the random ratio (``(2048, 512)`` for ADE20K).
        ratio_range: the random ratio's range.
        cat_max_ratio: largest share one class may hold in a crop (1.0 disables the check).
        flip_prob: horizontal flip probability.
        photometric: apply ``PhotoMetricDistortion``.
        antialias: antialias bilinear downscaling (mmseg does not).
    """

    def __init__(self, crop, scale=(2048, 512), ratio_range=(0.5, 2.0), cat_max_ratio: float = 0.75,
                 flip_prob: float = 0.5, photometric: bool = True, antialias: bool = False):
        self.crop, self.scale, self.ratio_range = as_pair(crop), tuple(scale), tuple(ratio_range)
        self.cat_max_ratio, self.flip_prob, self.photometric, self.antialias = cat_max_ratio, flip_prob, photometric, antialias

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, rng: random.Random):
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        image, mask = resize_pair(image, mask, rescale_size(*image.shape[-2:], target), self.antialias)
        image, mask = random_crop(image, mask, self.crop, self.cat_max_ratio, rng)
        if rng.random() < self.flip_prob:
            image, mask = TF.horizontal_flip(image), TF.horizontal_flip(mask)
        if self.photometric:
            image = photometric_distortion(image, sample_photometric(rng))
        image, mask = pad_pair(tv_tensors.Image(to_model_range(image)), mask, self.crop)
        return _plain(image, mask)

    def __repr__(self) -> str:
        return (f"SegTrainTransform(crop={self.crop}, scale={self.scale}, ratio_range={self.ratio_range}, "
                f"cat_max_ratio={self.cat_max_ratio}, flip_prob={self.flip_prob}, "
                f"photometric={self.photometric}, antialias={self.antialias})")


class SegEvalTransform:
    """``(Image uint8 [3, H, W], Mask [1, H, W]) -> (float [3, h, w] in [-1, 1], int64 [H, W])``.

    The image is resized into ``scale`` keeping its aspect ratio; the mask keeps the original size.
    """

    def __init__(self, scale=(2048, 512), antialias: bool = False):
        self.scale, self.antialias = tuple(scale), antialias

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, rng: random.Random | None = None):
        image, _ = resize_pair(image, None, rescale_size(*image.shape[-2:], self.scale), self.antialias)
        return _plain(to_model_range(image), mask)

    def __repr__(self) -> str:
        return f"SegEvalTransform(scale={self.scale}, antialias={self.antialias})"
