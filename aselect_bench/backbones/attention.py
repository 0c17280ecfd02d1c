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


def qk_norm(attn, q: torch.Tensor, k: torch.Tensor, added: bool = False):
    """Apply the attention's q/k norms (RMS; ``norm_added_*`` for the context) to split heads ``[B, H, N, d]``,
    where it has them."""
    norm_q, norm_k = (attn.norm_added_q, attn.norm_added_k) if added else (attn.norm_q, attn.norm_k)
    return (norm_q(q) if norm_q is not None else q), (norm_k(k) if norm_k is not None else k)


def rotate(x: torch.Tensor, rotary) -> torch.Tensor:
    """Rotary position embedding ``rotary = (cos, sin) [N, d]`` (Flux's) of split heads ``x [B, H, N, d]``."""
    from diffusers.models.embeddings import apply_rotary_emb

    return x if rotary is None else apply_rotary_emb(x, rotary, sequence_dim=2)


def self_attention(attn, q, k, v, rotary=None) -> torch.Tensor:
    """Attention of ``q, k, v [B, N, D]`` with the attention's q/k norms and an optional rotary embedding;
    returns the merged heads ``[B, N, D]`` before any output projection."""
    h = attn.heads
    q, k = qk_norm(attn, split_heads(q, h), split_heads(k, h))
    return attend(rotate(q, rotary), rotate(k, rotary), split_heads(v, h))


def joint_attention(attn, q, k, v, context, rotary=None, context_rotary=None):
    """Joint (MMDiT) attention over image ``q, k, v [B, N, D]`` and ``context [B, S, D]`` (projected by the
    attention's ``add_q/k/v_proj``), with q/k norms and, for Flux, rotary embeddings of the image and context
    positions. Returns the raw image ``[B, N, D]`` and context ``[B, S, D]`` parts, before ``to_out``/``to_add_out``."""
    h = attn.heads
    q, k = qk_norm(attn, split_heads(q, h), split_heads(k, h))
    cq, ck, cv = (split_heads(proj(context), h) for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
    cq, ck = qk_norm(attn, cq, ck, added=True)
    q, k, cq, ck = rotate(q, rotary), rotate(k, rotary), rotate(cq, context_rotary), rotate(ck, context_rotary)
    a = attend(torch.cat([q, cq], dim=2), torch.cat([k, ck], dim=2), torch.cat([split_heads(v, h), cv], dim=2))
    n = q.shape[2]
    return a[:, :n], a[:, n:]
