"""The DiT family (diffusers ``DiTTransformer2DModel``): runs blocks one by one and reads components.

Each block is computed explicitly from the diffusers sub-modules, so every component of
:data:`~aselect_bench.backbones.taps.COMPONENTS` is available without hooks, and a block can stop
as soon as the requested components exist (e.g. ``query`` needs no attention or MLP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aselect_bench.backbones.taps import COMPONENT_STAGE, COMPONENTS


class DiTFamily:
    """Adapter from the generic :class:`Backbone` to a diffusers ``DiTTransformer2DModel``."""

    components = COMPONENTS

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

    def embed(self, x_t: torch.Tensor) -> torch.Tensor:
        """Patchify + position embedding: ``[B, C, H, W] -> tokens [B, N, D]``."""
        return self.transformer.pos_embed(x_t)

    def run_block(self, index: int, hidden, timestep, class_labels, wanted: set[str]):
        """Run block ``index`` on ``hidden [B, N, D]``; returns (new hidden or None, {component: [B, N, C]}).

        If ``wanted`` only needs an early stage, the block stops there and returns ``None`` as hidden.
        """
        block = self.transformer.transformer_blocks[index]
        last_stage = max((COMPONENT_STAGE[c] for c in wanted), default=3)
        out = {}
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(
            hidden, timestep, class_labels, hidden_dtype=hidden.dtype
        )
        out["norm1"] = normed
        if last_stage == 0:
            return None, _pick(out, wanted)
        attn = block.attn1
        q, k, v = attn.to_q(normed), attn.to_k(normed), attn.to_v(normed)
        out.update(query=q, key=k, value=v)
        if last_stage == 1:
            return None, _pick(out, wanted)
        b, n, _ = q.shape
        heads = attn.heads

        def split(x):
            return x.view(b, n, heads, -1).transpose(1, 2)

        if attn.norm_q is not None or attn.norm_k is not None:
            raise ValueError("q/k normalisation is not used by DiT and not supported here")
        a = F.scaled_dot_product_attention(split(q), split(k), split(v))
        a = a.transpose(1, 2).reshape(b, n, -1).to(q.dtype)
        a = attn.to_out[1](attn.to_out[0](a))
        out["attn"] = a
        out["attn_gated"] = gate_msa.unsqueeze(1) * a
        hidden = hidden + out["attn_gated"]
        if last_stage == 2:
            return None, _pick(out, wanted)
        x = block.norm3(hidden) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        out["mlp"] = block.ff(x)
        out["mlp_gated"] = gate_mlp.unsqueeze(1) * out["mlp"]
        hidden = hidden + out["mlp_gated"]
        out["out"] = hidden
        return hidden, _pick(out, wanted)


def _pick(out: dict, wanted: set[str]) -> dict:
    return {c: out[c] for c in wanted}
