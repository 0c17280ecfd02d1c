"""The DiT family (diffusers ``DiTTransformer2DModel``): runs blocks one by one and reads components.

Each block is computed explicitly from the diffusers sub-modules, so every component of
:data:`~aselect_bench.backbones.taps.COMPONENTS` is available without hooks, and a block can stop
as soon as the requested components exist (e.g. ``query`` needs no attention or MLP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aselect_bench.backbones.attention import attend, pick, split_heads
from aselect_bench.backbones.family import Family
from aselect_bench.backbones.taps import ATTN, NORM, QKV, stage_of


@dataclass
class DiTState:
    """What flows between DiT blocks: tokens ``[B, N, D]``, timestep input ``[B]``, class labels ``[B]``."""

    hidden: torch.Tensor
    timestep: torch.Tensor
    class_labels: torch.Tensor


class DiTFamily(Family):
    """Adapter from the generic :class:`Backbone` to a diffusers ``DiTTransformer2DModel``."""

    def __init__(self, transformer):
        self.transformer = transformer
        cfg = transformer.config
        self.num_blocks = cfg.num_layers
        self.patch_size = cfg.patch_size
        self.in_channels = cfg.in_channels
        self.sample_size = cfg.sample_size
        self.hidden_size = cfg.num_attention_heads * cfg.attention_head_dim
        self.null_class = cfg.num_embeds_ada_norm  # the CFG "unconditional" label (1000 for DiT-XL/2)
        for block in transformer.transformer_blocks:
            attn = block.attn1
            if block.norm_type != "ada_norm_zero" or attn.residual_connection or attn.rescale_output_factor != 1.0:
                raise ValueError("only ada_norm_zero DiT blocks with plain attention are supported")

    def start(self, x_t: torch.Tensor, timestep: torch.Tensor, class_labels=None) -> DiTState:
        """Patchify + position embedding of ``x_t [B, C, H, W]``; the null class unless ``class_labels`` given."""
        b = x_t.shape[0]
        if class_labels is None:
            labels = torch.full((b,), self.null_class, dtype=torch.long, device=x_t.device)
        else:
            labels = torch.as_tensor(class_labels, device=x_t.device).long().expand(b)
        return DiTState(self.transformer.pos_embed(x_t), timestep, labels)

    def run_block(self, index: int, state: DiTState, wanted: set[str]):
        """Run block ``index``; returns (next state or None, {component: [B, N, C]}).

        If ``wanted`` only needs an early stage, the block stops there and returns ``None`` as the state.
        """
        hidden, timestep, class_labels = state.hidden, state.timestep, state.class_labels
        block = self.transformer.transformer_blocks[index]
        last_stage = stage_of(wanted)
        out = {}
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(
            hidden, timestep, class_labels, hidden_dtype=hidden.dtype
        )
        out["norm1"] = normed
        if last_stage == NORM:
            return None, pick(out, wanted)
        attn = block.attn1
        q, k, v = attn.to_q(normed), attn.to_k(normed), attn.to_v(normed)
        out.update(query=q, key=k, value=v)
        if last_stage == QKV:
            return None, pick(out, wanted)
        if attn.norm_q is not None or attn.norm_k is not None:
            raise ValueError("q/k normalisation is not used by DiT and not supported here")
        heads = attn.heads
        a = attend(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads))
        a = attn.to_out[1](attn.to_out[0](a))
        out["attn"] = a
        out["attn_gated"] = gate_msa.unsqueeze(1) * a
        hidden = hidden + out["attn_gated"]
        if last_stage == ATTN:
            return None, pick(out, wanted)
        x = block.norm3(hidden) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        out["mlp"] = block.ff(x)
        out["mlp_gated"] = gate_mlp.unsqueeze(1) * out["mlp"]
        hidden = hidden + out["mlp_gated"]
        out["out"] = hidden
        return DiTState(hidden, timestep, class_labels), pick(out, wanted)

