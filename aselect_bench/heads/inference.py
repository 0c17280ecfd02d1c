"""Whole-image and sliding-window inference (mmsegmentation's ``whole_inference``/``slide_inference``).

``predict(images [B, 3, h, w]) -> logits [B, K, h, w]`` is any function returning logits at its input's
size (the segmentation task upsamples its head's output before returning).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from aselect_bench.data.seg_transforms import as_pair

Predict = Callable[[torch.Tensor], torch.Tensor]


def whole_inference(predict: Predict, images: torch.Tensor, multiple: int = 1) -> torch.Tensor:
    """Logits ``[B, K, H, W]`` of ``images [B, 3, H, W]`` in one call.

    The input is zero-padded bottom/right to a multiple of ``multiple`` (a patch size) and the logits are
    cropped back to ``H x W``.
    """
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    return predict(images)[..., :h, :w]


def slide_inference(predict: Predict, images: torch.Tensor, crop, stride, num_classes: int, multiple: int = 1,
                    pad_to_crop: bool = True) -> torch.Tensor:
    """Average logits of overlapping windows: ``images [B, 3, H, W]`` -> ``[B, num_classes, H, W]``.

    Windows of ``crop`` (int or ``(h, w)``) start every ``stride`` pixels; the last row and column of
    windows are shifted back to end at the image border; a count matrix averages the overlaps (mmseg's
    ``EncoderDecoder.slide_inference``). Where the image is smaller than the crop, the window is the whole
    image: with ``pad_to_crop`` it is zero-padded bottom/right to the crop (a fixed-size backbone always
    sees its input size) and the logits cropped back; ``pad_to_crop=False`` decodes the small window as
    is, exactly as mmseg 1.x. ``multiple`` pads each window to a multiple of it (see :func:`whole_inference`).
    """
    (h_crop, w_crop), (h_stride, w_stride) = as_pair(crop), as_pair(stride)
    b, _, h, w = images.shape
    h_grids = max(h - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w - w_crop + w_stride - 1, 0) // w_stride + 1
    logits = images.new_zeros((b, num_classes, h, w))
    count = images.new_zeros((b, 1, h, w))
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * h_stride, wi * w_stride
            y2, x2 = min(y1 + h_crop, h), min(x1 + w_crop, w)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            window = images[..., y1:y2, x1:x2]
            wh, ww = window.shape[-2:]
            if pad_to_crop and (wh < h_crop or ww < w_crop):
                window = F.pad(window, (0, w_crop - ww, 0, h_crop - wh))
            logits[..., y1:y2, x1:x2] += whole_inference(predict, window, multiple)[..., :wh, :ww]
            count[..., y1:y2, x1:x2] += 1
    return logits / count
