"""Classification probes on a feature grid ``[B, C, h, w]``: linear and attentive (CLS + transformer)."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Mean-pooled tokens -> LayerNorm -> Linear. ``[B, C, h, w] -> logits [B, K]``."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(feats.mean(dim=(-2, -1))))


class AttentiveHead(nn.Module):
    """The DifFormer / A-SelecT head: a learnable CLS token + ``depth`` transformer blocks over the tokens.

    ``[B, C, h, w]`` -> project to ``width`` -> prepend CLS -> blocks -> LayerNorm(CLS) -> Linear -> ``[B, K]``.
    Defaults follow the authors' code: width 800, depth 2, 8 heads.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 800, depth: int = 2, heads: int = 8,
                 dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(in_channels, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(feats.flatten(2).transpose(1, 2))  # [B, N, width]
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.fc(self.norm(self.blocks(tokens)[:, 0]))


HEADS = {"linear": LinearHead, "attentive": AttentiveHead}


def build_head(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a probe by name (``linear`` or ``attentive``); extra kwargs go to the attentive head."""
    from aselect_bench.errors import UserError

    if name not in HEADS:
        raise UserError(f"unknown head {name!r}; use one of {', '.join(HEADS)}")
    if name == "linear":
        return LinearHead(in_channels, num_classes)
    return HEADS[name](in_channels, num_classes, **kwargs)
