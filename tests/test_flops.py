"""FLOPs per image from the architecture: a hand count, and torch's own FLOP counter on the real forward."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from aselect_bench import load_backbone
from aselect_bench.backbones.flops import flops_per_image


def test_hand_count_for_tiny_sd3_to_the_first_query():
    # tiny-sd3: 8x8 = 64 image tokens of width 32, 3 px channels, patch 2; 333 context tokens of 32; pooled 16
    n, s, d = 64, 333, 32
    patch = 2 * n * (3 * 2 * 2) * d
    timestep = 2 * 256 * d + 2 * d * d
    pooled = 2 * 16 * d + 2 * d * d
    context = 2 * s * 32 * d
    adaln = 2 * d * 6 * d
    qkv = 3 * 2 * n * d * d
    backbone = load_backbone("tiny-sd3", pretrained=False)
    assert flops_per_image(backbone, "blocks.0.query") == patch + timestep + pooled + context + adaln + qkv


@pytest.mark.parametrize("preset", ["tiny-dit", "tiny-sd3", "sd35-style"])
@pytest.mark.parametrize("tap", ["blocks.0.norm1", "blocks.1.key", "blocks.1.attn_gated", "blocks.2.out",
                                 "blocks.3.mlp"])
def test_matches_torch_flop_counter_on_the_early_exit_forward(preset, tap):
    if preset == "sd35-style":
        from diffusers import SD3Transformer2DModel

        from aselect_bench.backbones.registry import MODELS

        backbone = load_backbone("tiny-sd3", pretrained=False)
        config = {**MODELS["tiny-sd3"].transformer, "dual_attention_layers": (0, 1), "qk_norm": "rms_norm"}
        backbone.family.transformer = backbone.transformer = SD3Transformer2DModel(**config)
    else:
        backbone = load_backbone(preset, pretrained=False)
    assert flops_per_image(backbone, tap) == counted_flops(backbone, tap)


def counted_flops(backbone, tap: str) -> int:
    """torch's FLOP counter on the early-exit forward of one 16x16 image to ``tap`` (MATH: attention as bmm)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        backbone.extract_x0(torch.zeros(1, 3, 16, 16), 10, [tap])
    return counter.get_total_flops()


def test_paper_scale_counts():
    with torch.device("meta"):
        dit = load_backbone("dit-xl-2-256", pretrained=False, device="meta")
        sd3 = load_backbone("sd3-medium", pretrained=False, device="meta")
    # DiT's paper reports 118.6 G multiply-adds ("Gflops") for a full DiT-XL/2 forward at 256 px
    assert flops_per_image(dit, "blocks.27.out") / 2e9 == pytest.approx(118.6, abs=0.1)
    assert flops_per_image(dit, "blocks.9.query") < flops_per_image(dit, "blocks.9.out")
    assert sd3.image_size == 512 and flops_per_image(sd3, "blocks.9.query") > 5 * flops_per_image(dit, "blocks.9.query")


FAMILY_TAPS = {
    "tiny-pixart": ["blocks.0.norm1", "blocks.1.key", "blocks.1.attn_gated", "blocks.2.cross", "blocks.3.mlp"],
    "tiny-sana": ["blocks.0.norm1", "blocks.1.value", "blocks.1.attn", "blocks.2.cross", "blocks.3.out"],
    "tiny-flux": ["blocks.0.norm1", "blocks.1.key", "blocks.1.attn_gated", "blocks.1.out", "single_blocks.0.query",
                  "single_blocks.0.attn", "single_blocks.1.attn_gated", "single_blocks.1.mlp", "single_blocks.1.out"],
    "pixart-alpha-1024-style": ["blocks.0.norm1", "blocks.2.cross"],
}


@pytest.mark.parametrize("preset, tap", [(p, t) for p, taps in FAMILY_TAPS.items() for t in taps])
def test_new_families_match_torch_flop_counter_on_the_early_exit_forward(preset, tap):
    if preset == "pixart-alpha-1024-style":  # the resolution and aspect-ratio embeddings (width divisible by 3)
        from diffusers import PixArtTransformer2DModel

        from aselect_bench.backbones.registry import MODELS

        backbone = load_backbone("tiny-pixart", pretrained=False)
        config = {**MODELS["tiny-pixart"].transformer, "num_attention_heads": 3, "cross_attention_dim": 48,
                  "use_additional_conditions": True}
        backbone.family.transformer = backbone.transformer = PixArtTransformer2DModel(**config)
        backbone.family.hidden_size = 48
    else:
        backbone = load_backbone(preset, pretrained=False)
    assert flops_per_image(backbone, tap) == counted_flops(backbone, tap)


def test_new_families_at_paper_scale():
    with torch.device("meta"):
        pixart = load_backbone("pixart-sigma-1024", pretrained=False, device="meta")
        flux = load_backbone("flux.1-dev", pretrained=False, device="meta")
        sana = load_backbone("sana-1600m-1024", pretrained=False, device="meta")
    # 1024 px: PixArt 64x64 = 4096 tokens of 1152; Flux 4096 tokens of 3072 (+512 text); Sana 32x32 = 1024 of 2240
    assert flops_per_image(flux, "single_blocks.37.out") > flops_per_image(flux, "blocks.18.out")
    assert flops_per_image(flux, "blocks.9.query") > flops_per_image(pixart, "blocks.9.query")
    assert flops_per_image(sana, "blocks.19.out") < flops_per_image(pixart, "blocks.27.out")
