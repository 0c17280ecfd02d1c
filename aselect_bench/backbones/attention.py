"""Small pieces shared by the family adapters: head splitting, attention over split heads, picking components."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, H*d] -> [B, H, N, d]``."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention over split heads ``[B, H, N, d]``; returns merged tokens ``[B, N, H*d]``."""
    a = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = a.shape
    return a.transpose(1, 2).reshape(b, n, h * d).to(q.dtype)


def pick(out: dict, wanted: set[str]) -> dict:
    """The ``wanted`` components of a block's ``out`` dictionary."""
    return {c: out[c] for c in wanted}
