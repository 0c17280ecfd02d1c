"""Registered backbone models: a name -> architecture registry (in the spirit of DiT's ``DiT_models``).

An entry is a :class:`ModelSpec`; "preset" in this suite always means a *benchmark* preset
(:mod:`aselect_bench.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aselect_bench.backbones.noise import SD3_SCHEDULER


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model's name stands for.

    ``hub_id``: where pretrained weights live (diffusers layout); ``transformer``/``vae``: configs used
    to build the architecture with random weights; ``default_tap``: the probe's default feature;
    ``seg_blocks``: the default segmentation taps' blocks; ``folder``: a diffusers folder shipped inside the
    package (the demo model), loaded like any local folder; ``family``: the transformer family of the
    random architecture (``"dit"``, ``"sd3"``, ``"pixart"``, ``"flux"``, ``"sana"``: diffusers' ``DiT``, ``SD3``,
    ``PixArt``, ``Flux``, ``SanaTransformer2DModel``);
    ``pipeline``: the diffusers pipeline class of the hub folder (PixArt-α and -Σ differ in caption length);
    ``sample_size``: the latent size to run at where the transformer config has none (Flux).
    """

    name: str
    transformer: dict
    vae: dict | None = None
    hub_id: str | None = None
    default_tap: str = "blocks.0.out"
    seg_blocks: tuple[int, ...] = ()
    scheduler: dict = field(default_factory=dict)
    folder: Path | None = None
    family: str = "dit"
    pipeline: str | None = None
    sample_size: int | None = None


def dit_config(depth=28, heads=16, head_dim=72, sample_size=32, patch_size=2, in_channels=4,
               out_channels=None, num_classes=1000) -> dict:
    """A diffusers ``DiTTransformer2DModel`` config (defaults: DiT-XL/2 at 256 px)."""
    return dict(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=in_channels,
        out_channels=out_channels if out_channels is not None else 2 * in_channels, num_layers=depth,
        sample_size=sample_size, patch_size=patch_size, num_embeds_ada_norm=num_classes,
        norm_type="ada_norm_zero", activation_fn="gelu-approximate", attention_bias=True,
        norm_elementwise_affine=False, norm_eps=1e-5, dropout=0.0,
    )


def sd_vae_config(sample_size=256) -> dict:
    """The Stable Diffusion VAE (``stabilityai/sd-vae-ft-ema``) that DiT-XL/2 uses."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=sample_size,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512], layers_per_block=2, act_fn="silu",
        norm_num_groups=32, scaling_factor=0.18215,
    )


def tiny_vae_config() -> dict:
    """A two-level VAE (downsampling 2x), for testing the latent path quickly."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[8, 16], layers_per_block=1, act_fn="silu", norm_num_groups=8,
        scaling_factor=0.18215,
    )


def sd3_config(depth=24, heads=24, head_dim=64, sample_size=64, patch_size=2, in_channels=16, out_channels=None,
               joint_attention_dim=4096, pooled_projection_dim=2048, pos_embed_max_size=192,
               dual_attention_layers=(), qk_norm=None) -> dict:
    """A diffusers ``SD3Transformer2DModel`` config (defaults: SD3-medium, whose published config is this with
    ``sample_size=128``; the registered models use 64, i.e. the A-SelecT authors' 512 px input).

    The caption projection equals the width (heads x head_dim): the joint blocks need it.
    """
    return dict(
        sample_size=sample_size, patch_size=patch_size, in_channels=in_channels, num_layers=depth,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=joint_attention_dim,
        caption_projection_dim=heads * head_dim, pooled_projection_dim=pooled_projection_dim,
        out_channels=out_channels if out_channels is not None else in_channels,
        pos_embed_max_size=pos_embed_max_size, dual_attention_layers=tuple(dual_attention_layers), qk_norm=qk_norm,
    )


def sd3_vae_config(sample_size=1024) -> dict:
    """SD3's 16-channel VAE (also SD3.5's): scaling 1.5305, shift 0.0609, no quant convs."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=16, sample_size=sample_size,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512], layers_per_block=2, act_fn="silu", norm_num_groups=32,
        scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
    )


def pixart_config(depth=28, heads=16, head_dim=72, sample_size=128, patch_size=2, in_channels=4, out_channels=None,
                  caption_channels=4096, interpolation_scale=None, use_additional_conditions=None) -> dict:
    """A diffusers ``PixArtTransformer2DModel`` config (defaults: PixArt-XL-2 at 1024 px; ``out_channels`` 2 x in:
    the learned variance). ``use_additional_conditions`` ``None`` means "at 1024 px" (``sample_size`` 128), as
    diffusers decides it; PixArt-Σ sets it false."""
    return dict(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=in_channels,
        out_channels=out_channels if out_channels is not None else 2 * in_channels, num_layers=depth,
        cross_attention_dim=heads * head_dim, attention_bias=True, sample_size=sample_size, patch_size=patch_size,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, interpolation_scale=interpolation_scale,
        use_additional_conditions=use_additional_conditions, caption_channels=caption_channels,
    )


def flux_config(depth=19, single_depth=38, heads=24, head_dim=128, in_channels=64, joint_attention_dim=4096,
                pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56)) -> dict:
    """A diffusers ``FluxTransformer2DModel`` config (defaults: Flux.1-dev; schnell has no guidance embedding)."""
    return dict(
        patch_size=1, in_channels=in_channels, num_layers=depth, num_single_layers=single_depth,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled_projection_dim, guidance_embeds=guidance_embeds,
        axes_dims_rope=tuple(axes_dims_rope),
    )


def sana_config(depth=20, heads=70, head_dim=32, cross_heads=20, cross_head_dim=112, in_channels=32, sample_size=32,
                patch_size=1, caption_channels=2304, mlp_ratio=2.5) -> dict:
    """A diffusers ``SanaTransformer2DModel`` config (defaults: Sana 1600M at 1024 px, no position embedding)."""
    return dict(
        in_channels=in_channels, out_channels=in_channels, num_attention_heads=heads, attention_head_dim=head_dim,
        num_layers=depth, num_cross_attention_heads=cross_heads, cross_attention_head_dim=cross_head_dim,
        cross_attention_dim=heads * head_dim, caption_channels=caption_channels, mlp_ratio=mlp_ratio, dropout=0.0,
        attention_bias=False, sample_size=sample_size, patch_size=patch_size, norm_elementwise_affine=False,
        norm_eps=1e-6, interpolation_scale=None,
    )


def flux_vae_config(sample_size=1024) -> dict:
    """Flux's 16-channel VAE: SD3's layout with scaling 0.3611 and shift 0.1159."""
    return {**sd3_vae_config(sample_size), "scaling_factor": 0.3611, "shift_factor": 0.1159}


def dc_ae_config() -> dict:
    """Sana's DC-AE (``mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers``): 32x downsampling to 32 channels."""
    blocks = ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3
    scales = ((), (), (), (5,), (5,), (5,))
    return dict(
        in_channels=3, latent_channels=32, attention_head_dim=32, encoder_block_types=blocks,
        decoder_block_types=blocks, encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
        decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024), encoder_layers_per_block=(2, 2, 2, 3, 3, 3),
        decoder_layers_per_block=(3, 3, 3, 3, 3, 3), encoder_qkv_multiscales=scales, decoder_qkv_multiscales=scales,
        upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=0.41407,
    )


def spread_blocks(depth: int, count: int = 4) -> tuple[int, ...]:
    """``count`` blocks spread over ``depth``, ending with the last (28 -> 6, 13, 20, 27; 24 -> 5, 11, 17, 23)."""
    return tuple(round((k + 1) * depth / count) - 1 for k in range(count))


#: The SD3.5 architectures. SD3.5-medium: 24 blocks of width 1536 (as SD3-medium; diffusers' single-file loader
#: tells the two apart by a 384x384 position table), dual attention in blocks 0-12 (diffusers' own comment in
#: ``SD3Transformer2DModel``), RMS q/k norm. SD3.5-large: 38 blocks (the loader's ``joint_blocks.37`` key), width
#: 38 x 64 = 2432, RMS q/k norm, no dual attention. These values come from diffusers' sources; the published
#: ``transformer/config.json`` files could not be read offline here, so a hub folder's own config always wins.
SD35_MEDIUM = sd3_config(pos_embed_max_size=384, dual_attention_layers=range(13), qk_norm="rms_norm")
SD35_LARGE = sd3_config(depth=38, heads=38, qk_norm="rms_norm")

#: ``tiny-sd3``: pixel space, 16x16 px, patch 2 (8x8 tokens), 4 joint blocks of width 32, small text dims.
TINY_SD3 = sd3_config(depth=4, heads=2, head_dim=16, sample_size=16, in_channels=3, joint_attention_dim=32,
                      pooled_projection_dim=16, pos_embed_max_size=16)


#: The published architectures of PixArt-Σ 1024 (position embedding interpolated 2x, no size conditions, SDXL's
#: VAE), PixArt-α 512 (SD's VAE), Flux.1 dev/schnell and Sana 1600M 1024: diffusers' classes with the values of
#: the published ``config.json`` files, checked offline against copies of them (not the repositories themselves).
PIXART_SIGMA_1024 = pixart_config(interpolation_scale=2, use_additional_conditions=False)
PIXART_ALPHA_512 = pixart_config(sample_size=64)
SDXL_VAE = {**sd_vae_config(1024), "scaling_factor": 0.13025}

#: Tiny random models for tests: pixel space, 16x16 px, 8x8 tokens, width 32, small text dims.
TINY_PIXART = pixart_config(depth=4, heads=2, head_dim=16, sample_size=16, in_channels=3, caption_channels=16)
TINY_FLUX = flux_config(depth=2, single_depth=2, heads=2, head_dim=16, in_channels=12, joint_attention_dim=32,
                        pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))
TINY_SANA = sana_config(depth=4, heads=2, head_dim=16, cross_heads=2, cross_head_dim=16, in_channels=3,
                        sample_size=16, patch_size=2, caption_channels=16)


#: The demo model's architecture: pixel space, 32x32 px, patch 2 (16x16 tokens), 6 blocks of width 128.
DEMO_TRANSFORMER = dit_config(depth=6, heads=4, head_dim=32, sample_size=32, patch_size=2,
                              in_channels=3, out_channels=3, num_classes=1)


#: The demo DiT's shipped weights (diffusers layout + card.json), rebuilt by ``aselect-bench pretrain --ship``.
DEMO_FOLDER = Path(__file__).resolve().parents[1] / "pretrain" / "demo_dit"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("dit-xl-2-256", dit_config(sample_size=32), sd_vae_config(256), hub_id="facebook/DiT-XL-2-256",
               default_tap="blocks.9.query", seg_blocks=(6, 13, 20, 27)),
        ModelSpec("dit-xl-2-512", dit_config(sample_size=64), sd_vae_config(512), hub_id="facebook/DiT-XL-2-512",
               default_tap="blocks.9.query", seg_blocks=(6, 13, 20, 27)),
        ModelSpec("tiny-dit", dit_config(depth=4, heads=2, head_dim=16, sample_size=16, patch_size=2, in_channels=3,
                                      out_channels=3, num_classes=10),
               default_tap="blocks.1.out", seg_blocks=(0, 1, 2, 3)),
        ModelSpec("tiny-dit-latent", dit_config(depth=4, heads=2, head_dim=16, sample_size=8, patch_size=2,
                                             num_classes=10), tiny_vae_config(),
               default_tap="blocks.1.out", seg_blocks=(0, 1, 2, 3)),
        ModelSpec("sd3-medium", sd3_config(), sd3_vae_config(), hub_id="stabilityai/stable-diffusion-3-medium-diffusers",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(24), scheduler=SD3_SCHEDULER,
               family="sd3"),
        ModelSpec("sd3.5-medium", SD35_MEDIUM, sd3_vae_config(), hub_id="stabilityai/stable-diffusion-3.5-medium",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(24), scheduler=SD3_SCHEDULER,
               family="sd3"),
        ModelSpec("sd3.5-large", SD35_LARGE, sd3_vae_config(), hub_id="stabilityai/stable-diffusion-3.5-large",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(38), scheduler=SD3_SCHEDULER,
               family="sd3"),
        ModelSpec("tiny-sd3", TINY_SD3, default_tap="blocks.1.out", seg_blocks=(0, 1, 2, 3), family="sd3"),
        ModelSpec("pixart-sigma-1024", PIXART_SIGMA_1024, SDXL_VAE, hub_id="PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(28), family="pixart",
               pipeline="PixArtSigmaPipeline"),
        ModelSpec("pixart-alpha-512", PIXART_ALPHA_512, sd_vae_config(512), hub_id="PixArt-alpha/PixArt-XL-2-512x512",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(28), family="pixart",
               pipeline="PixArtAlphaPipeline"),
        ModelSpec("flux.1-dev", flux_config(), flux_vae_config(), hub_id="black-forest-labs/FLUX.1-dev",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(19), family="flux", sample_size=128),
        ModelSpec("flux.1-schnell", flux_config(guidance_embeds=False), flux_vae_config(),
               hub_id="black-forest-labs/FLUX.1-schnell", default_tap="blocks.9.query", seg_blocks=spread_blocks(19),
               family="flux", sample_size=128),
        ModelSpec("sana-1600m-1024", sana_config(), dc_ae_config(), hub_id="Efficient-Large-Model/Sana_1600M_1024px_diffusers",
               default_tap="blocks.9.query", seg_blocks=spread_blocks(20), family="sana"),
        ModelSpec("tiny-pixart", TINY_PIXART, default_tap="blocks.1.out", seg_blocks=(0, 1, 2, 3), family="pixart"),
        ModelSpec("tiny-flux", TINY_FLUX, default_tap="blocks.1.out", seg_blocks=(0, 1), family="flux", sample_size=16),
        ModelSpec("tiny-sana", TINY_SANA, default_tap="blocks.1.out", seg_blocks=(0, 1, 2, 3), family="sana"),
        ModelSpec("demo", DEMO_TRANSFORMER, default_tap="blocks.5.mlp", seg_blocks=(1, 2, 4, 5), folder=DEMO_FOLDER),
    ]
}


def default_tap(name: str) -> str:
    """The probe's default tap for backbone ``name`` (a registered model's own; ``blocks.0.out`` for folders and
    hub ids)."""
    spec = MODELS.get(name)
    return spec.default_tap if spec is not None else "blocks.0.out"
