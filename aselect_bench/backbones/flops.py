"""FLOPs per image of a backbone's forward up to a tap, counted from its real architecture (configs only).

Convention: 2 FLOPs per multiply-add of the matrix products (linear layers, the patch-embedding convolution,
attention's ``Q K^T`` and ``A V``); element-wise work (norms, activations, softmax, modulation, residuals) and
the VAE encoder are left out. The count follows what :class:`~aselect_bench.backbones.backbone.Backbone` runs:
the embeddings, every block before the tap's block, and the tap's block up to the tap's stage (``taps.py``:
0 norm1, 1 q/k/v, 2 attention, 3 MLP and the block output). For SD3 the context stream is counted too:
its embedding, its q/k/v in the joint attention and, in a block run to its end, its output projection and MLP.
"""

from __future__ import annotations

from aselect_bench.backbones.dit import DiTFamily
from aselect_bench.backbones.taps import COMPONENT_STAGE, Tap, parse_tap

#: Width of diffusers' sinusoidal timestep projection (``Timesteps(256)``) feeding the timestep MLPs.
TIME_PROJ = 256


def linear(tokens: int, d_in: int, d_out: int) -> int:
    """FLOPs of a linear layer applied to ``tokens`` tokens."""
    return 2 * tokens * d_in * d_out


def attention(queries: int, keys: int, width: int) -> int:
    """FLOPs of ``Q K^T`` and ``A V`` for ``queries`` x ``keys`` tokens of total head width ``width``."""
    return 2 * 2 * queries * keys * width


def flops_per_image(backbone, tap: str, image_size: int | None = None) -> int:
    """FLOPs per image of ``backbone`` run up to ``tap`` at ``image_size`` px (default: the native size)."""
    size = image_size or backbone.image_size
    tokens = (size // backbone.patch_size) ** 2
    parsed = parse_tap(tap, backbone.num_blocks, backbone.family.components)
    config = backbone.transformer.config
    if isinstance(backbone.family, DiTFamily):
        return dit_flops(config, tokens, parsed)
    return sd3_flops(config, tokens, parsed, context_tokens=backbone.family.prompt_embeds.shape[1])


def dit_flops(config, tokens: int, tap: Tap) -> int:
    """A diffusers ``DiTTransformer2DModel``: each block's adaLN has its own timestep MLP (D -> 6D modulation)."""
    d, n = config.num_attention_heads * config.attention_head_dim, tokens
    total = linear(n, config.in_channels * config.patch_size ** 2, d)  # patch embedding
    stage = COMPONENT_STAGE[tap.component]
    for block in range(tap.block + 1):
        last = stage if block == tap.block else 3
        total += linear(1, TIME_PROJ, d) + linear(1, d, d) + linear(1, d, 6 * d)  # adaLN (norm1)
        if last >= 1:
            total += 3 * linear(n, d, d)  # q, k, v
        if last >= 2:
            total += attention(n, n, d) + linear(n, d, d)  # attention + to_out
        if last >= 3:
            total += linear(n, d, 4 * d) + linear(n, 4 * d, d)  # MLP
    return total


def sd3_flops(config, tokens: int, tap: Tap, context_tokens: int = 333) -> int:
    """A diffusers ``SD3Transformer2DModel`` (joint blocks; SD3.5 dual attention) with ``context_tokens`` text tokens."""
    d, n, s = config.num_attention_heads * config.attention_head_dim, tokens, context_tokens
    total = linear(n, config.in_channels * config.patch_size ** 2, d)  # patch embedding
    total += linear(1, TIME_PROJ, d) + linear(1, d, d)  # timestep MLP
    total += linear(1, config.pooled_projection_dim, d) + linear(1, d, d)  # pooled-text MLP
    total += linear(s, config.joint_attention_dim, d)  # context embedder
    stage = COMPONENT_STAGE[tap.component]
    dual = set(config.dual_attention_layers or ())
    for block in range(tap.block + 1):
        last = stage if block == tap.block else 3
        final = block == config.num_layers - 1  # the last block's context stream is "pre only"
        total += linear(1, d, (9 if block in dual else 6) * d)  # image adaLN
        if last >= 1:
            total += 3 * linear(n, d, d)  # image q, k, v
        if last >= 2:
            total += linear(1, d, (2 if final else 6) * d)  # context adaLN
            total += 3 * linear(s, d, d) + attention(n + s, n + s, d) + linear(n, d, d)  # joint attention, to_out
        if last >= 3:
            if block in dual:
                total += 4 * linear(n, d, d) + attention(n, n, d)  # second, image-only attention
            total += linear(n, d, 4 * d) + linear(n, 4 * d, d)  # image MLP
            if not final:
                total += linear(s, d, d) + linear(s, d, 4 * d) + linear(s, 4 * d, d)  # context to_add_out + MLP
    return total
