"""A pyramid neck and an UperNet head on DiT token grids, numerically equal to mmsegmentation's.

``Feature2Pyramid`` turns four same-stride grids into a 4-level pyramid (x4, x2, x1, x0.5 of the token
grid, i.e. strides 4/8/16/32 for a stride-16 backbone); ``UPerHead`` fuses it (pyramid pooling on the
coarsest level + FPN); ``FCNHead`` is the auxiliary head. Module and parameter names follow mmseg's
(``ConvModule`` = ``conv`` without bias + ``bn`` + ReLU), so state dicts map one to one onto
``mmseg.models.necks.Feature2Pyramid`` and ``mmseg.models.decode_heads.{UPerHead, FCNHead}`` built with
``norm_cfg=dict(type="BN")``. Plain torch only: mmseg is never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aselect_bench.errors import UserError

#: Feature2Pyramid's levels: one tapped block each (shallow to deep), rescaled x4, x2, x1, x0.5.
PYRAMID_LEVELS = 4


def check_pyramid_blocks(blocks) -> None:
    """Refuse a tapped-block list that is not one block per pyramid level."""
    if len(blocks) != PYRAMID_LEVELS:
        raise UserError(f"UperNet takes {PYRAMID_LEVELS} tapped blocks (one per pyramid level, shallow to deep), got "
                        f"{len(blocks)} ({list(blocks)}); list four, e.g. [6, 13, 20, 27], or null for the backbone's "
                        f"default")


class ConvModule(nn.Module):
    """mmcv ``ConvModule`` with BN and ReLU: ``[B, C_in, H, W] -> [B, C_out, H', W']``.

    Initialised as mmcv does: Kaiming-normal conv (fan_out, ReLU), BN weight 1 and bias 0.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def resize(x: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    """Bilinear resize of ``[B, C, H, W]`` to ``size = (h, w)``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class Feature2Pyramid(nn.Module):
    """Four same-size grids -> a pyramid, one op per input (mmseg's ``Feature2Pyramid``, BN norm).

    ``rescales=(4, 2, 1, 0.5)``: ``[B, C, h, w]`` x4 -> ``[B, C, 4h, 4w]``, ``[B, C, 2h, 2w]``,
    ``[B, C, h, w]``, ``[B, C, h//2, w//2]``. x4 is ConvTranspose(2, 2) + BN + GELU + ConvTranspose(2, 2),
    x2 one ConvTranspose(2, 2), x0.5 MaxPool(2). ``rescales=(2, 1, 0.5, 0.25)`` (mmseg's other layout)
    gives x2, x1, x0.5 and x0.25 (MaxPool(4)).
    """

    def __init__(self, embed_dim: int, rescales: Sequence[float] = (4, 2, 1, 0.5)):
        super().__init__()
        self.rescales = tuple(rescales)
        if self.rescales not in ((4, 2, 1, 0.5), (2, 1, 0.5, 0.25)):
            raise ValueError(f"Feature2Pyramid rescales must be (4, 2, 1, 0.5) or (2, 1, 0.5, 0.25), got {rescales}")
        self.upsample_4x = None
        if 4 in self.rescales:
            self.upsample_4x = nn.Sequential(
                nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2), nn.BatchNorm2d(embed_dim),
                nn.GELU(), nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
        self.upsample_2x = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
        self.identity = nn.Identity()
        self.downsample_2x = nn.MaxPool2d(kernel_size=2, stride=2)
        if 0.25 in self.rescales:
            self.downsample_4x = nn.MaxPool2d(kernel_size=4, stride=4)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``inputs``: 4 tensors ``[B, C, h, w]`` (fine-to-coarse order of the output) -> 4 pyramid levels."""
        if self.upsample_4x is not None:
            ops = (self.upsample_4x, self.upsample_2x, self.identity, self.downsample_2x)
        else:
            ops = (self.upsample_2x, self.identity, self.downsample_2x, self.downsample_4x)
        if len(inputs) != len(ops):
            raise ValueError(f"Feature2Pyramid takes {len(ops)} grids, got {len(inputs)}")
        return tuple(op(x) for op, x in zip(ops, inputs))


class DecodeHead(nn.Module):
    """mmseg's ``BaseDecodeHead`` classifier: ``cls_seg`` = Dropout2d + 1x1 ``conv_seg`` (init N(0, 0.01), bias 0)."""

    def __init__(self, channels: int, num_classes: int, dropout_ratio: float = 0.1, align_corners: bool = False):
        super().__init__()
        self.channels, self.num_classes, self.align_corners = channels, num_classes, align_corners
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """``[B, channels, H, W] -> [B, num_classes, H, W]``."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)


class UPerHead(DecodeHead):
    """UperNet (mmseg's ``UPerHead``): PPM on the last level + FPN fusion of all levels.

    Args:
        in_channels: channels of each input level, fine to coarse (e.g. ``[C] * 4`` after Feature2Pyramid).
        channels: the head's width (512 in mmseg's UperNet configs).
        num_classes: output classes.
        pool_scales: PPM adaptive-pool output sizes.
        dropout_ratio: Dropout2d before ``conv_seg``.
        align_corners: of every bilinear resize.
    ``forward(inputs)``: list of ``[B, C_i, H_i, W_i]`` -> logits ``[B, num_classes, H_0, W_0]`` (the
    finest level's size; the caller upsamples to the image).
    """

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout_ratio: float = 0.1, align_corners: bool = False):
        super().__init__(channels, num_classes, dropout_ratio, align_corners)
        self.in_channels, self.pool_scales = list(in_channels), tuple(pool_scales)
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(self.in_channels[-1], channels, 1)) for s in pool_scales)
        self.bottleneck = ConvModule(self.in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_last, h, w] -> [B, channels, h, w]``: pooled branches upsampled, concatenated, 3x3 conv."""
        outs = [x] + [resize(m(x), x.shape[2:], self.align_corners) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"UPerHead takes {len(self.in_channels)} levels, got {len(inputs)}")
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], self.align_corners)
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [resize(o, outs[0].shape[2:], self.align_corners) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(DecodeHead):
    """The auxiliary FCN head (mmseg's ``FCNHead`` with the UperNet configs' settings as defaults).

    Args:
        in_channels: channels of ``inputs[in_index]``.
        channels: width (256 in mmseg's UperNet auxiliary head).
        num_classes: output classes.
        in_index: which pyramid level it reads (2: the x1 level).
        num_convs: 3x3 ConvModules (0: identity, needs ``in_channels == channels``).
        concat_input: concatenate the input to the convs' output, then one more ConvModule (``conv_cat``).
    ``forward(inputs)``: list of levels -> logits ``[B, num_classes, H_in, W_in]`` at the chosen level's size.
    """

    def __init__(self, in_channels: int, channels: int = 256, num_classes: int = 150, in_index: int = 2,
                 num_convs: int = 1, concat_input: bool = False, kernel_size: int = 3, dilation: int = 1,
                 dropout_ratio: float = 0.1, align_corners: bool = False):
        super().__init__(channels, num_classes, dropout_ratio, align_corners)
        if num_convs == 0 and in_channels != channels:
            raise ValueError("FCNHead with num_convs=0 needs in_channels == channels")
        self.in_index, self.concat_input = in_index, concat_input
        padding = (kernel_size // 2) * dilation
        convs = [ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding, dilation)
                 for i in range(num_convs)]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        if concat_input:
            self.conv_cat = ConvModule(in_channels + channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = inputs[self.in_index]
        feat = self.convs(x)
        if self.concat_input:
            feat = self.conv_cat(torch.cat([x, feat], dim=1))
        return self.cls_seg(feat)
