"""Whole-image and sliding-window inference (mmsegmentation's ``slide_inference`` semantics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def whole_inference(predict, images: torch.Tensor, multiple: int = 1) -> torch.Tensor:
    """``predict(images [B, 3, H', W']) -> logits [B, K, H', W']`` on the whole image (zero-padded to a
    multiple of ``multiple``, then cropped back): returns ``[B, K, H, W]``."""
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    logits = predict(F.pad(images, (0, pad_w, 0, pad_h)))
    return logits[..., :h, :w]


def slide_inference(predict, images: torch.Tensor, crop: int, stride: int, num_classes: int,
                    multiple: int = 1) -> torch.Tensor:
    """Average the logits of overlapping ``crop`` windows taken every ``stride`` pixels: ``[B, K, H, W]``."""
    b, _, h, w = images.shape
    h_grids = max(h - crop + stride - 1, 0) // stride + 1
    w_grids = max(w - crop + stride - 1, 0) // stride + 1
    logits = images.new_zeros((b, num_classes, h, w))
    count = images.new_zeros((b, 1, h, w))
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            logits[..., y1:y2, x1:x2] += whole_inference(predict, images[..., y1:y2, x1:x2], multiple)
            count[..., y1:y2, x1:x2] += 1
    return logits / count
