"""A pyramid neck and an UperNet head on DiT token grids, numerically equal to mmsegmentation's.

``Feature2Pyramid`` turns four same-stride grids into strides 4/8/16/32 (relative to the tokens: x4,
x2, x1, x0.5); ``UPerHead`` fuses them (pyramid pooling on the coarsest + FPN); ``FCNHead`` is the
auxiliary head. Module and parameter names follow mmseg, so state dicts map one to one (the parity
tests load our weights into mmseg's modules). No mmseg import here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU, named like mmcv's ``ConvModule`` (``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def resize(x: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class Feature2Pyramid(nn.Module):
    """Four grids ``[B, C, h, w]`` -> ``[B, C, 4h, 4w]``, ``[B, C, 2h, 2w]``, ``[B, C, h, w]``, ``[B, C, h/2, w/2]``."""

    def __init__(self, embed_dim: int, rescales=(4, 2, 1, 0.5)):
        super().__init__()
        if tuple(rescales) != (4, 2, 1, 0.5):
            raise ValueError("only rescales (4, 2, 1, 0.5) are supported")
        self.rescales = tuple(rescales)
        self.upsample_4x = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2), nn.BatchNorm2d(embed_dim), nn.GELU(),
            nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
        self.upsample_2x = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
        self.identity = nn.Identity()
        self.downsample_2x = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, inputs):
        ops = (self.upsample_4x, self.upsample_2x, self.identity, self.downsample_2x)
        if len(inputs) != len(ops):
            raise ValueError(f"Feature2Pyramid takes 4 grids, got {len(inputs)}")
        return tuple(op(x) for op, x in zip(ops, inputs))


class ClassifierMixin:
    """mmseg's ``cls_seg``: Dropout2d then a 1x1 conv (``conv_seg``)."""

    def _init_classifier(self, channels: int, num_classes: int, dropout_ratio: float) -> None:
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)


class UPerHead(ClassifierMixin, nn.Module):
    """UperNet: PPM (pool scales 1/2/3/6) on the last level + FPN fusion of all levels.

    ``inputs``: list of ``[B, C_i, H_i, W_i]`` (fine to coarse) -> logits ``[B, K, H_0, W_0]``.
    """

    def __init__(self, in_channels: list[int], channels: int, num_classes: int, pool_scales=(1, 2, 3, 6),
                 dropout_ratio: float = 0.1, align_corners: bool = False):
        super().__init__()
        self.in_channels, self.channels, self.align_corners = list(in_channels), channels, align_corners
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(self.in_channels[-1], channels, 1)) for s in pool_scales)
        self.bottleneck = ConvModule(self.in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)
        self._init_classifier(channels, num_classes, dropout_ratio)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [resize(m(x), x.shape[2:], self.align_corners) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, inputs) -> torch.Tensor:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], self.align_corners)
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [resize(o, outs[0].shape[2:], self.align_corners) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(ClassifierMixin, nn.Module):
    """The auxiliary FCN head on ``inputs[in_index]``: ``num_convs`` 3x3 ConvModules, then the classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, in_index: int = 2, num_convs: int = 1,
                 kernel_size: int = 3, dropout_ratio: float = 0.1):
        super().__init__()
        self.in_index = in_index
        convs = [ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding=kernel_size // 2)
                 for i in range(num_convs)]
        self.convs = nn.Sequential(*convs)
        self._init_classifier(channels, num_classes, dropout_ratio)

    def forward(self, inputs) -> torch.Tensor:
        return self.cls_seg(self.convs(inputs[self.in_index]))
