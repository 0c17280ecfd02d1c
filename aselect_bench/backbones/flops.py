"""FLOPs per image of a backbone's forward up to a tap, counted from its real architecture (configs only).

Convention: 2 FLOPs per multiply-add of the matrix products (linear layers, the patch-embedding and Sana's MLP
convolutions, attention's ``Q K^T`` and ``A V``, Sana's linear attention); element-wise work (norms, activations,
softmax, modulation, residuals, rotary embeddings) and the VAE encoder are left out. The count follows what
:class:`~aselect_bench.backbones.backbone.Backbone` runs: the embeddings, every block before the tap's block (Flux:
all double-stream blocks before a single-stream tap), and the tap's block up to the tap's stage (``taps.py``:
norm1, q/k/v, attention, cross-attention, MLP and the block output). Text tokens are counted per image: for SD3
and Flux the context stream (its embedding, q/k/v in the joint attention and, in a block run to its end, its output
projection and MLP); for PixArt and Sana the caption projection and the cross-attention's keys and values.
"""

from __future__ import annotations

from aselect_bench.backbones.dit import DiTFamily
from aselect_bench.backbones.flux import SINGLE_BLOCKS, FluxFamily
from aselect_bench.backbones.pixart import PixArtFamily
from aselect_bench.backbones.sana import SanaFamily
from aselect_bench.backbones.sd3 import SD3Family
from aselect_bench.backbones.taps import ATTN, COMPONENT_STAGE, CROSS, MLP, QKV, Tap, parse_tap

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
    family = backbone.family
    parsed = parse_tap(tap, family.block_counts(), family.components)
    config = backbone.transformer.config
    if type(family) is DiTFamily:
        return dit_flops(config, tokens, parsed)
    context = family.conditioning["embeds"].shape[1]
    count = {SD3Family: sd3_flops, PixArtFamily: pixart_flops, SanaFamily: sana_flops, FluxFamily: flux_flops}
    return count[type(family)](config, tokens, parsed, context)


def _stages(tap: Tap, blocks: int):
    """``(block, last stage run)`` for each block run up to ``tap`` (earlier blocks run to their end)."""
    return [(block, COMPONENT_STAGE[tap.component] if block == tap.block else MLP) for block in range(blocks)]


def dit_flops(config, tokens: int, tap: Tap) -> int:
    """A diffusers ``DiTTransformer2DModel``: each block's adaLN has its own timestep MLP (D -> 6D modulation)."""
    d, n = config.num_attention_heads * config.attention_head_dim, tokens
    total = linear(n, config.in_channels * config.patch_size ** 2, d)  # patch embedding
    for _, last in _stages(tap, tap.block + 1):
        total += linear(1, TIME_PROJ, d) + linear(1, d, d) + linear(1, d, 6 * d)  # adaLN (norm1)
        if last >= QKV:
            total += 3 * linear(n, d, d)  # q, k, v
        if last >= ATTN:
            total += attention(n, n, d) + linear(n, d, d)  # attention + to_out
        if last >= MLP:
            total += linear(n, d, 4 * d) + linear(n, 4 * d, d)  # MLP
    return total


def sd3_flops(config, tokens: int, tap: Tap, context_tokens: int = 333) -> int:
    """A diffusers ``SD3Transformer2DModel`` (joint blocks; SD3.5 dual attention) with ``context_tokens`` text tokens."""
    d, n, s = config.num_attention_heads * config.attention_head_dim, tokens, context_tokens
    total = linear(n, config.in_channels * config.patch_size ** 2, d)  # patch embedding
    total += linear(1, TIME_PROJ, d) + linear(1, d, d)  # timestep MLP
    total += linear(1, config.pooled_projection_dim, d) + linear(1, d, d)  # pooled-text MLP
    total += linear(s, config.joint_attention_dim, d)  # context embedder
    dual = set(config.dual_attention_layers or ())
    for block, last in _stages(tap, tap.block + 1):
        final = block == config.num_layers - 1  # the last block's context stream is "pre only"
        total += linear(1, d, (9 if block in dual else 6) * d)  # image adaLN
        if last >= QKV:
            total += 3 * linear(n, d, d)  # image q, k, v
        if last >= ATTN:
            total += linear(1, d, (2 if final else 6) * d)  # context adaLN
            total += 3 * linear(s, d, d) + attention(n + s, n + s, d) + linear(n, d, d)  # joint attention, to_out
        if last >= MLP:
            if block in dual:
                total += 4 * linear(n, d, d) + attention(n, n, d)  # second, image-only attention
            total += linear(n, d, 4 * d) + linear(n, 4 * d, d)  # image MLP
            if not final:
                total += linear(s, d, d) + linear(s, d, 4 * d) + linear(s, 4 * d, d)  # context to_add_out + MLP
    return total


def _caption_and_blocks(config, tokens: int, tap: Tap, s: int, self_attention, cross_width: int, mlp) -> int:
    """PixArt and Sana: the adaLN-single timestep MLP, the caption projection, then each block's q/k/v,
    ``self_attention(n)`` (+ ``to_out``), cross-attention over ``s`` caption tokens and ``mlp(n)``."""
    d, n = config.num_attention_heads * config.attention_head_dim, tokens
    total = linear(n, config.in_channels * config.patch_size ** 2, d)  # patch embedding
    total += linear(1, TIME_PROJ, d) + linear(1, d, d) + linear(1, d, 6 * d)  # timestep MLP + adaLN-single
    total += linear(s, config.caption_channels, d) + linear(s, d, d)  # caption projection
    for _, last in _stages(tap, tap.block + 1):
        if last >= QKV:
            total += 3 * linear(n, d, d)
        if last >= ATTN:
            total += self_attention(n) + linear(n, d, d)
        if last >= CROSS:  # q of the image, k and v of the caption, attention, to_out
            total += linear(n, d, cross_width) + 2 * linear(s, config.cross_attention_dim, cross_width)
            total += attention(n, s, cross_width) + linear(n, cross_width, d)
        if last >= MLP:
            total += mlp(n)
    return total


def pixart_flops(config, tokens: int, tap: Tap, context_tokens: int = 120) -> int:
    """A diffusers ``PixArtTransformer2DModel`` (softmax self-attention, GELU MLP of 4x width); PixArt-α 1024's
    resolution and aspect-ratio embeddings (three ``256 -> D/3 -> D/3`` MLPs) where it has them."""
    d = config.num_attention_heads * config.attention_head_dim
    total = _caption_and_blocks(config, tokens, tap, context_tokens, lambda n: attention(n, n, d), d,
                                lambda n: linear(n, d, 4 * d) + linear(n, 4 * d, d))
    use_sizes = config.use_additional_conditions
    if use_sizes or (use_sizes is None and config.sample_size == 128):
        total += 3 * (linear(1, TIME_PROJ, d // 3) + linear(1, d // 3, d // 3))
    return total


def sana_flops(config, tokens: int, tap: Tap, context_tokens: int = 300) -> int:
    """A diffusers ``SanaTransformer2DModel``: ReLU linear attention (``V K^T`` then ``(V K^T) Q`` per head, with
    the normaliser row: ``4 N (d_h + 1) D``) and the ``GLUMBConv`` MLP (1x1 conv to 2h, depth-wise 3x3, 1x1 conv
    from h; ``h = mlp_ratio x D``)."""
    d, dh = config.num_attention_heads * config.attention_head_dim, config.attention_head_dim
    h = int(config.mlp_ratio * d)
    return _caption_and_blocks(config, tokens, tap, context_tokens, lambda n: 4 * n * (dh + 1) * d,
                               config.num_cross_attention_heads * config.cross_attention_head_dim,
                               lambda n: linear(n, d, 2 * h) + 2 * n * 2 * h * 9 + linear(n, h, d))


def flux_flops(config, tokens: int, tap: Tap, context_tokens: int = 512) -> int:
    """A diffusers ``FluxTransformer2DModel``: double-stream blocks (joint attention as SD3's, the text stream
    never "pre only"), then single-stream blocks over text + image tokens (q/k/v and ``proj_mlp`` (4D), attention,
    ``proj_out`` from 5D). A single-stream tap on ``attn`` or ``mlp`` adds its share of ``proj_out`` (image tokens)."""
    d, n, s = config.num_attention_heads * config.attention_head_dim, tokens, context_tokens
    total = linear(n, config.in_channels, d) + linear(s, config.joint_attention_dim, d)  # image and text embeddings
    total += (2 if config.guidance_embeds else 1) * (linear(1, TIME_PROJ, d) + linear(1, d, d))  # timestep, guidance
    total += linear(1, config.pooled_projection_dim, d) + linear(1, d, d)  # pooled text
    single = tap.stack == SINGLE_BLOCKS
    double = Tap(config.num_layers - 1, "out") if single else tap
    for _, last in _stages(double, double.block + 1):
        total += linear(1, d, 6 * d)  # image adaLN
        if last >= QKV:
            total += 3 * linear(n, d, d)
        if last >= ATTN:
            total += linear(1, d, 6 * d) + 3 * linear(s, d, d) + attention(n + s, n + s, d) + linear(n, d, d)
        if last >= MLP:
            total += linear(n, d, 4 * d) + linear(n, 4 * d, d) + linear(s, d, d)  # image MLP, context to_add_out
            total += linear(s, d, 4 * d) + linear(s, 4 * d, d)  # context MLP
    if not single:
        return total
    m = n + s
    for _, last in _stages(tap, tap.block + 1):
        total += linear(1, d, 3 * d)  # adaLN
        if last >= QKV:
            total += 3 * linear(m, d, d)
        if last >= ATTN:
            total += attention(m, m, d)
        if last >= MLP:
            total += linear(m, d, 4 * d) + linear(m, 5 * d, d)  # proj_mlp, proj_out
    part = {"attn": linear(n, d, d), "attn_gated": linear(n, d, d), "mlp": linear(n, 4 * d, d),
            "mlp_gated": linear(n, 4 * d, d)}
    return total + part.get(tap.component, 0)
