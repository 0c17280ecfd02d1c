"""The PixArt-α / PixArt-Σ family (diffusers ``PixArtTransformer2DModel``): cross-attention DiT blocks run one by one.

Each block (a ``BasicTransformerBlock`` with ``ada_norm_single``) is computed from its diffusers sub-modules as in
its ``forward``: the shared timestep modulation (``adaln_single``) plus the block's ``scale_shift_table`` give
shift/scale/gate; ``norm1`` = the modulated input of self-attention; ``query``/``key``/``value`` =
``attn1.to_q/k/v`` of it; ``attn`` = the self-attention output after ``to_out``; ``attn_gated`` = gate x attn;
``cross`` = the cross-attention output (``attn2`` over the caption, added ungated); ``mlp`` = the ``ff`` output of
the modulated ``norm2``; ``mlp_gated``; ``out`` = the block output.

Noise: DDPM (:class:`~aselect_bench.backbones.noise.DDPMNoise`) with the folder's scheduler betas (PixArt ships
a DPM-Solver config with DiT's linear betas 1e-4..0.02 over 1000 steps, also the default without one); the
transformer's timestep input is ``t``. Latents: the VAE posterior mean times its ``scaling_factor`` (PixArt-α:
SD's VAE, 0.18215; PixArt-Σ: SDXL's, 0.13025).

Conditioning: the empty prompt as ``PixArtAlphaPipeline.encode_prompt`` / ``PixArtSigmaPipeline`` encode the
negative prompt ``""``: T5 (``text_encoder/``, ``tokenizer/``) over ``""`` padded to 120 tokens (α) or 300 (Σ,
by the folder's ``model_index.json``) with its attention mask, which the cross-attention also uses
(``[1, S, caption_channels]``, cached on disk). Without a text encoder: zeros of that shape, all tokens kept
(one-line warning). PixArt-α at 1024 px (``use_additional_conditions``) also gets the image's resolution
``[H, W]`` and aspect ratio ``H / W`` in pixels, as its pipeline passes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from aselect_bench.backbones.attention import attend, pick, split_heads
from aselect_bench.backbones.conditioning import (
    Conditioning,
    attention_bias,
    cached_conditioning,
    encode_masked,
    load_text_model,
    load_tokenizer,
    parts_present,
    zeros_with_warning,
)
from aselect_bench.backbones.family import TextFamily, random_modules, weights_with_text
from aselect_bench.backbones.taps import ATTN, CROSS, CROSS_COMPONENTS, NORM, QKV, stage_of
from aselect_bench.errors import UserError

PIXART_CLASS = "PixArtTransformer2DModel"
#: The text-side parts of a PixArt (or Sana) pipeline folder.
TEXT_PARTS = ("tokenizer", "text_encoder")
#: T5 caption length (the pipelines' ``max_sequence_length``) by pipeline class; α's when unknown.
CAPTION_TOKENS = {"PixArtAlphaPipeline": 120, "PixArtSigmaPipeline": 300}


@dataclass
class CrossState:
    """Between blocks: image tokens ``[B, N, D]``, the adaLN-single modulation ``[B, 6D]``, the projected caption
    ``[B, S, D]`` and its attention bias ``[B, 1, S]``, and the token grid ``(h, w)``."""

    hidden: torch.Tensor
    modulation: torch.Tensor
    context: torch.Tensor
    bias: torch.Tensor
    grid: tuple[int, int]


class PixArtFamily(TextFamily):
    """Adapter from :class:`Backbone` to a diffusers ``PixArtTransformer2DModel`` (Sana's adapter extends it).

    ``conditioning`` holds ``embeds [1, S, caption_channels]`` and ``mask [1, S]``; ``vae_scale`` (input pixels per
    latent pixel) turns the latent size into the pixel resolution condition of PixArt-α 1024.
    """

    components = CROSS_COMPONENTS
    label = "PixArt"

    def __init__(self, transformer, conditioning: Conditioning, vae_scale: int = 1):
        super().__init__(conditioning)
        self.transformer, self.vae_scale = transformer, vae_scale
        cfg = transformer.config
        self.num_blocks = cfg.num_layers
        self.patch_size = cfg.patch_size
        self.sample_size = cfg.sample_size
        self.hidden_size = cfg.num_attention_heads * cfg.attention_head_dim
        self.check_blocks()

    def check_blocks(self) -> None:
        if self.transformer.config.caption_channels is None:
            raise UserError("this PixArt transformer has no caption projection (caption_channels is null); only "
                            "text-conditioned PixArt models are supported")
        for block in self.transformer.transformer_blocks:
            attn = block.attn1
            if (block.norm_type != "ada_norm_single" or block.pos_embed is not None or attn.norm_q is not None
                    or attn.residual_connection or attn.rescale_output_factor != 1.0 or attn.group_norm is not None):
                raise ValueError("only ada_norm_single PixArt blocks with plain self-attention are supported")

    def start(self, x_t: torch.Tensor, timestep: torch.Tensor, class_labels=None) -> CrossState:
        """Patch + position embedding of ``x_t [B, C, H, W]``, the timestep modulation ``[B, 6D]`` and the caption."""
        self.refuse_class_labels(class_labels)
        tr, b = self.transformer, x_t.shape[0]
        hidden = tr.pos_embed(x_t)
        added = None
        if tr.use_additional_conditions:  # PixArt-α 1024: the image's size in pixels, as the pipeline passes it
            h, w = (s * self.vae_scale for s in x_t.shape[-2:])
            added = {"resolution": torch.tensor([[h, w]], device=x_t.device, dtype=x_t.dtype).expand(b, -1),
                     "aspect_ratio": torch.tensor([[h / w]], device=x_t.device, dtype=x_t.dtype).expand(b, -1)}
        modulation, _ = tr.adaln_single(timestep, added, batch_size=b, hidden_dtype=hidden.dtype)
        return self._state(hidden, modulation, x_t)

    def _state(self, hidden, modulation, x_t) -> CrossState:
        cond = self.conditioning.on(x_t.device, x_t.dtype)
        b, p = x_t.shape[0], self.transformer.config.patch_size
        context = self.embed_caption(cond["embeds"]).expand(b, -1, -1)  # the same for every image: embedded once
        bias = attention_bias(cond["mask"]).expand(b, -1, -1)
        return CrossState(hidden, modulation, context, bias, (x_t.shape[-2] // p, x_t.shape[-1] // p))

    def embed_caption(self, embeds: torch.Tensor) -> torch.Tensor:
        """``[1, S, caption_channels] -> [1, S, D]``."""
        return self.transformer.caption_projection(embeds)

    def self_attention(self, attn, q, k, v) -> torch.Tensor:
        """Softmax attention of ``q, k, v [B, N, D]``, after ``to_out``."""
        h = attn.heads
        return attn.to_out[1](attn.to_out[0](attend(split_heads(q, h), split_heads(k, h), split_heads(v, h))))

    def mlp(self, block, x: torch.Tensor, grid) -> torch.Tensor:
        """The block's feed-forward of the modulated tokens ``x [B, N, D]``."""
        return block.ff(x)

    def run_block(self, index: int, state: CrossState, wanted: set[str]):
        """Run block ``index``; returns (next state or None, {component: [B, N, D]}); stops after the last stage
        ``wanted`` needs (then the state is ``None``)."""
        block = self.transformer.transformer_blocks[index]
        last, hidden, b = stage_of(wanted), state.hidden, state.hidden.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            block.scale_shift_table[None] + state.modulation.reshape(b, 6, -1)).chunk(6, dim=1)
        out = {"norm1": (block.norm1(hidden) * (1 + scale_msa) + shift_msa).to(hidden.dtype)}
        if last == NORM:
            return None, pick(out, wanted)
        attn = block.attn1
        q, k, v = attn.to_q(out["norm1"]), attn.to_k(out["norm1"]), attn.to_v(out["norm1"])
        out.update(query=q, key=k, value=v)
        if last == QKV:
            return None, pick(out, wanted)
        out["attn"] = self.self_attention(attn, q, k, v)
        out["attn_gated"] = gate_msa * out["attn"]
        hidden = hidden + out["attn_gated"]
        if last == ATTN:
            return None, pick(out, wanted)
        out["cross"] = block.attn2(hidden, encoder_hidden_states=state.context, attention_mask=state.bias)
        hidden = hidden + out["cross"]
        if last == CROSS:
            return None, pick(out, wanted)
        out["mlp"] = self.mlp(block, block.norm2(hidden) * (1 + scale_mlp) + shift_mlp, state.grid)
        out["mlp_gated"] = gate_mlp * out["mlp"]
        out["out"] = hidden + out["mlp_gated"]
        return CrossState(out["out"], state.modulation, state.context, state.bias, state.grid), pick(out, wanted)


# ----------------------------------------------------------------------------------------- conditioning


def caption_tokens(parts) -> int:
    """T5 caption length of a folder or registered model: 300 for a ``PixArtSigmaPipeline``, else 120 (α)."""
    return CAPTION_TOKENS.get(pipeline_class(parts), CAPTION_TOKENS["PixArtAlphaPipeline"])


def pipeline_class(parts) -> str | None:
    """The diffusers pipeline class of a registered model, or of a folder's ``model_index.json`` (``None`` when absent)."""
    from aselect_bench.backbones.checkpoints import read_config

    if parts.spec is not None:
        return parts.spec.pipeline
    index = Path(parts.root) / "model_index.json"
    return read_config(index).get("_class_name") if index.exists() else None


def zero_caption(length: int, channels: int) -> dict[str, torch.Tensor]:
    """Zeros ``[1, length, channels]`` with every token kept: no text encoder."""
    return {"embeds": torch.zeros(1, length, channels), "mask": torch.ones(1, length)}


def masked_empty_prompt(family: str, folder: Path, encoder_cls: str, length: int, channels: int,
                        padding_side: str | None = None) -> Conditioning:
    """The empty prompt through a folder's masked text encoder (T5 for PixArt, Gemma for Sana), cached; zeros of
    ``[1, length, channels]`` with a one-line warning when the folder has no ``tokenizer/`` + ``text_encoder/``."""
    present = parts_present(folder, TEXT_PARTS)
    if len(present) < len(TEXT_PARTS):
        return zeros_with_warning(family, folder, [p for p in TEXT_PARTS if p not in present],
                                  zero_caption(length, channels))

    def compute():
        import transformers

        fix = "re-save it with transformers' save_pretrained, or remove text_encoder/ to condition on zeros"
        tokenizer = load_tokenizer(folder / "tokenizer", family, fix)
        encoder = load_text_model(getattr(transformers, encoder_cls), folder / "text_encoder", family, fix)
        cond = encode_masked(tokenizer, encoder, length, padding_side)
        if cond["embeds"].shape[-1] != channels:
            raise UserError(f"the text encoder in {folder} gives {cond['embeds'].shape[-1]} channels but the "
                            f"transformer's caption_channels is {channels}: use the pipeline's own text encoder")
        return cond

    return cached_conditioning(family.lower(), folder, TEXT_PARTS, [encoder_cls, length, channels, padding_side],
                               compute)


# ----------------------------------------------------------------------------------------- building


def backbone_from_parts(parts):
    """A PixArt :class:`Backbone` from a split diffusers folder: a ``PixArtAlphaPipeline`` /
    ``PixArtSigmaPipeline`` folder (``transformer/``, ``vae/``, ``scheduler/``, T5 ``text_encoder/`` +
    ``tokenizer/``) or a bare ``PixArtTransformer2DModel`` folder (pixel space, zero conditioning), strictly."""
    from diffusers import AutoencoderKL, PixArtTransformer2DModel

    from aselect_bench.backbones.backbone import Backbone, vae_scale_factor
    from aselect_bench.backbones.checkpoints import load_strict
    from aselect_bench.backbones.noise import DDPMNoise

    transformer = load_strict(PixArtTransformer2DModel, parts.transformer)
    vae = load_strict(AutoencoderKL, parts.vae) if parts.vae else None
    conditioning = masked_empty_prompt("PixArt", parts.root, "T5EncoderModel", caption_tokens(parts),
                                       transformer.config.caption_channels)
    return Backbone(PixArtFamily(transformer, conditioning, vae_scale_factor(vae)), DDPMNoise.from_config(
        parts.scheduler), vae, name=parts.name, weights_id=weights_with_text(parts, TEXT_PARTS))


def random_backbone(spec, seed: int):
    """A registered model's PixArt architecture with random weights (seeded), zero conditioning, DDPM noise."""
    from diffusers import AutoencoderKL, PixArtTransformer2DModel

    from aselect_bench.backbones.backbone import Backbone, vae_scale_factor
    from aselect_bench.backbones.noise import DDPMNoise

    transformer, vae = random_modules(spec, seed, PixArtTransformer2DModel, AutoencoderKL)
    length = CAPTION_TOKENS.get(spec.pipeline, CAPTION_TOKENS["PixArtAlphaPipeline"])
    conditioning = Conditioning(zero_caption(length, transformer.config.caption_channels), "zeros")
    return Backbone(PixArtFamily(transformer, conditioning, vae_scale_factor(vae)),
                    DDPMNoise.from_config(spec.scheduler), vae, name=spec.name,
                    weights_id=f"random-init-seed{seed}")
