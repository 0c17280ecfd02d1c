"""The Flux.1 family (diffusers ``FluxTransformer2DModel``, schnell and dev): double- then single-stream blocks.

The input is packed as ``FluxPipeline`` packs latents: 2x2 patches of ``x_t [B, C, H, W]`` become the tokens
``[B, (H/2)(W/2), 4C]`` (row-major), with image position ids ``(0, row, col)`` and text ids ``0`` for the rotary
embedding. Blocks are computed from their diffusers sub-modules as in their ``forward``:

- ``blocks.{i}.*`` (``FluxTransformerBlock``, MMDiT joint blocks) with SD3's image-stream meanings: ``norm1`` =
  the modulated image tokens, ``query``/``key``/``value`` = ``attn.to_q/k/v`` of them (before the RMS q/k norm and
  the rotary embedding), ``attn`` = the image part of the joint attention after ``to_out``, ``attn_gated``,
  ``mlp`` = ``ff`` output, ``mlp_gated``, ``out`` = the block's image output; the text stream runs alongside.
- ``single_blocks.{j}.*`` (``FluxSingleTransformerBlock``, run after all double blocks on text + image tokens;
  taps read the image tokens): ``norm1`` = the modulated tokens, ``query``/``key``/``value`` = ``attn.to_q/k/v``;
  the block's fused output projection ``proj_out(cat(a, m)) = W_a a + W_m m + b`` is split by its input:
  ``attn`` = ``W_a a`` (the attention's share; ``a`` is the attention output), ``mlp`` = ``W_m m`` (``m`` =
  ``act_mlp(proj_mlp(norm1))``), ``attn_gated``/``mlp_gated`` = gate x each, ``out`` = input + gate x
  (attn + mlp + b) (the bias ``b`` belongs to neither part).

Noise: rectified flow in SD3's convention with the folder's scheduler and ``FluxPipeline``'s timesteps (base sigmas
``linspace(1, 1/1000, 1000)``); Flux.1-dev's scheduler shifts with the image's token count ``n``
(``use_dynamic_shifting``: ``mu = calculate_shift(n, ...)``, 1.15 at 1024 px); schnell's does not (shift 1).
The transformer gets ``timesteps[1000 - t] / 1000`` (it multiplies by 1000), and a guidance-distilled model
(``guidance_embeds``, dev) guidance 3.5, both in float32 also under bf16 autocast (diffusers casts them to the
model's dtype first, which in bf16 rounds the timestep 749 to 750 and the guidance 3500 to 3504). Latents:
``(posterior mean - shift_factor) * scaling_factor``.

Conditioning: the empty prompt as ``FluxPipeline.encode_prompt("")``: T5 (``text_encoder_2/``, ``tokenizer_2/``)
over ``""`` padded to 512 tokens (256 for schnell, as its model card runs it; no mask) and CLIP's pooled output
(``text_encoder/``, ``tokenizer/``); without them zeros ``[1, 512 | 256, joint_attention_dim]`` and
``[1, pooled_projection_dim]`` with a one-line warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from aselect_bench.backbones.attention import pick, self_attention
from aselect_bench.backbones.conditioning import (
    Conditioning,
    cached_conditioning,
    load_text_model,
    load_tokenizer,
    parts_present,
    zeros_with_warning,
)
from aselect_bench.backbones.family import TextFamily, random_modules, weights_with_text
from aselect_bench.backbones.sd3 import joint_block
from aselect_bench.backbones.taps import ATTN, BLOCKS, NORM, QKV, stage_of
from aselect_bench.errors import UserError

FLUX_CLASS = "FluxTransformer2DModel"
#: The text-side parts of a Flux pipeline folder: CLIP (pooled) and T5.
TEXT_PARTS = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
SINGLE_BLOCKS = "single_blocks"
#: ``FluxPipeline``'s guidance for guidance-distilled models (dev), its ``default_sample_size`` (latent pixels).
GUIDANCE, DEFAULT_SAMPLE_SIZE = 3.5, 128
#: T5 length: the pipeline's ``max_sequence_length`` 512 (dev); 256 for schnell (timestep-distilled, no guidance).
T5_TOKENS = {True: 512, False: 256}
#: The released schedulers (``black-forest-labs/FLUX.1-dev`` / ``-schnell``), used when a folder has none.
DEV_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256,
                     max_image_seq_len=4096, base_shift=0.5, max_shift=1.15)
SCHNELL_SCHEDULER = {**DEV_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": False}


@dataclass
class FluxState:
    """Between blocks: image tokens ``[B, N, D]``, text tokens ``[B, S, D]``, ``temb [B, D]``, and the rotary
    embedding ``(cos, sin) [S + N, head_dim]`` of the text then image positions."""

    hidden: torch.Tensor
    context: torch.Tensor
    temb: torch.Tensor
    rotary: tuple[torch.Tensor, torch.Tensor]

    def rotary_parts(self):
        """The rotary embedding of the image and of the text positions."""
        s = self.context.shape[1]
        return tuple(r[s:] for r in self.rotary), tuple(r[:s] for r in self.rotary)


class FluxFamily(TextFamily):
    """Adapter from :class:`Backbone` to a diffusers ``FluxTransformer2DModel``.

    ``conditioning`` holds ``embeds [1, S, joint_attention_dim]`` and ``pooled [1, pooled_projection_dim]``;
    ``sample_size`` is the native input size in latent pixels (the config has none; ``FluxPipeline`` uses 128).
    """

    label = "Flux"

    def __init__(self, transformer, conditioning: Conditioning, sample_size: int = DEFAULT_SAMPLE_SIZE,
                 guidance: float = GUIDANCE):
        super().__init__(conditioning)
        self.transformer = transformer
        cfg = transformer.config
        self.num_blocks, self.num_single_blocks = cfg.num_layers, cfg.num_single_layers
        self.patch_size = 2 * cfg.patch_size  # latent pixels per token side: the 2x2 packing
        self.sample_size = sample_size
        self.hidden_size = cfg.num_attention_heads * cfg.attention_head_dim
        self.guidance = guidance if cfg.guidance_embeds else None

    def stacks(self) -> dict:
        return {BLOCKS: (self.num_blocks, self.run_block),
                SINGLE_BLOCKS: (self.num_single_blocks, self.run_single_block)}

    def identity(self) -> dict:
        return {**super().identity(), "guidance": self.guidance}

    def start(self, x_t: torch.Tensor, timestep: torch.Tensor, class_labels=None) -> FluxState:
        """Pack and embed ``x_t [B, C, H, W]``; embed the timestep ``[B]`` (+ guidance) with the pooled text, the
        text tokens, and the rotary embedding of their positions."""
        self.refuse_class_labels(class_labels)
        tr, (b, c, h, w) = self.transformer, x_t.shape
        packed = x_t.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
        hidden = tr.x_embedder(packed)
        cond = self.conditioning.on(x_t.device, x_t.dtype)
        # The pipeline passes t / 1000 and the model multiplies by 1000 (guidance too), after casting to the model's
        # dtype; here both stay float32 (in bf16, 749 would become 750 and guidance 3500 become 3504).
        t = (timestep.float() / 1000) * 1000
        pooled = cond["pooled"].expand(b, -1)
        if self.guidance is None:
            temb = tr.time_text_embed(t, pooled)
        else:
            temb = tr.time_text_embed(t, torch.full((b,), self.guidance, device=x_t.device) * 1000, pooled)
        context = tr.context_embedder(cond["embeds"]).expand(b, -1, -1)
        image_ids = torch.zeros(h // 2, w // 2, 3, device=x_t.device)
        image_ids[..., 1] += torch.arange(h // 2, device=x_t.device)[:, None]
        image_ids[..., 2] += torch.arange(w // 2, device=x_t.device)[None, :]
        ids = torch.cat([torch.zeros(context.shape[1], 3, device=x_t.device), image_ids.reshape(-1, 3)])
        return FluxState(hidden, context, temb, tr.pos_embed(ids))

    def run_block(self, index: int, state: FluxState, wanted: set[str]):
        """Run double-stream block ``index`` (an MMDiT joint block, :func:`~aselect_bench.backbones.sd3.joint_block`);
        returns (next state or None, {component: image tokens [B, N, D]})."""
        image_rotary, text_rotary = state.rotary_parts()
        streams, out = joint_block(self.transformer.transformer_blocks[index], state.hidden, state.context,
                                   state.temb, wanted, image_rotary, text_rotary, clip_context=True)
        return (None if streams is None else FluxState(*streams, state.temb, state.rotary)), out

    def run_single_block(self, index: int, state: FluxState, wanted: set[str]):
        """Run single-stream block ``index`` on text + image tokens; returns (next state or None, {component:
        image tokens [B, N, D]})."""
        block = self.transformer.single_transformer_blocks[index]
        last, s, d = stage_of(wanted), state.context.shape[1], self.hidden_size
        tokens = torch.cat([state.context, state.hidden], dim=1)
        normed, gate = block.norm(tokens, emb=state.temb)
        out = {"norm1": normed[:, s:]}
        if last == NORM:
            return None, pick(out, wanted)
        attn = block.attn
        q, k, v = attn.to_q(normed), attn.to_k(normed), attn.to_v(normed)
        out.update(query=q[:, s:], key=k[:, s:], value=v[:, s:])
        if last == QKV:
            return None, pick(out, wanted)
        a = self_attention(attn, q, k, v, state.rotary)  # [B, S + N, D]; the output projection is proj_out's share
        gate, weight = gate.unsqueeze(1), block.proj_out.weight
        if wanted & {"attn", "attn_gated"}:
            out["attn"] = F.linear(a[:, s:], weight[:, :d])
            out["attn_gated"] = gate * out["attn"]
        if last == ATTN:
            return None, pick(out, wanted)
        m = block.act_mlp(block.proj_mlp(normed))
        if wanted & {"mlp", "mlp_gated"}:
            out["mlp"] = F.linear(m[:, s:], weight[:, d:])
            out["mlp_gated"] = gate * out["mlp"]
        tokens = _clip(tokens + gate * block.proj_out(torch.cat([a, m], dim=2)))
        out["out"] = tokens[:, s:]
        return FluxState(tokens[:, s:], tokens[:, :s], state.temb, state.rotary), pick(out, wanted)


def _clip(x: torch.Tensor) -> torch.Tensor:
    """diffusers' float16 guard on the residual streams."""
    return x.clip(-65504, 65504) if x.dtype == torch.float16 else x


# ----------------------------------------------------------------------------------------- conditioning


def zero_conditioning(config) -> dict[str, torch.Tensor]:
    """Zeros ``[1, 512 | 256, joint_attention_dim]`` and ``[1, pooled_projection_dim]``: no text encoders."""
    return {"embeds": torch.zeros(1, T5_TOKENS[bool(config.guidance_embeds)], config.joint_attention_dim),
            "pooled": torch.zeros(1, config.pooled_projection_dim)}


@torch.inference_mode()
def encode_empty_prompt(clip_tokenizer, clip, t5_tokenizer, t5, length: int) -> dict[str, torch.Tensor]:
    """``FluxPipeline.encode_prompt("")``: CLIP's ``pooler_output`` of ``""`` padded to the tokenizer's
    ``model_max_length`` -> ``pooled [1, P]``; T5's last hidden states of ``""`` padded to ``length`` tokens
    (no attention mask) -> ``embeds [1, length, C]``."""
    ids = clip_tokenizer([""], padding="max_length", max_length=clip_tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids
    pooled = clip(ids, output_hidden_states=False).pooler_output
    ids = t5_tokenizer([""], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    return {"embeds": t5(ids, output_hidden_states=False)[0].float(), "pooled": pooled.float()}


def empty_prompt(folder: Path, config) -> Conditioning:
    """The empty-prompt conditioning of a Flux pipeline ``folder``, cached; zeros with a warning without encoders."""
    present = parts_present(folder, TEXT_PARTS)
    if len(present) < len(TEXT_PARTS):
        return zeros_with_warning("Flux", folder, [p for p in TEXT_PARTS if p not in present],
                                  zero_conditioning(config))
    length = T5_TOKENS[bool(config.guidance_embeds)]

    def compute():
        from transformers import CLIPTextModel, T5EncoderModel

        fix = "re-save them with transformers' save_pretrained, or remove text_encoder*/ to condition on zeros"
        cond = encode_empty_prompt(
            load_tokenizer(folder / "tokenizer", "Flux", fix), load_text_model(CLIPTextModel, folder / "text_encoder",
                                                                                "Flux", fix),
            load_tokenizer(folder / "tokenizer_2", "Flux", fix),
            load_text_model(T5EncoderModel, folder / "text_encoder_2", "Flux", fix), length)
        expected = {"embeds": config.joint_attention_dim, "pooled": config.pooled_projection_dim}
        for name, channels in expected.items():
            if cond[name].shape[-1] != channels:
                raise UserError(f"the text encoders in {folder} give {name} of {cond[name].shape[-1]} channels but the "
                                f"transformer expects {channels}: use the pipeline's own text encoders")
        return cond

    return cached_conditioning("flux", folder, TEXT_PARTS, [length, config.joint_attention_dim,
                                                            config.pooled_projection_dim], compute)


# ----------------------------------------------------------------------------------------- building


def _noise(config, transformer_config):
    from aselect_bench.backbones.noise import RectifiedFlowNoise

    defaults = DEV_SCHEDULER if transformer_config.guidance_embeds else SCHNELL_SCHEDULER
    return RectifiedFlowNoise.from_config(config, defaults, pipeline_sigmas=True)


def backbone_from_parts(parts):
    """A Flux :class:`Backbone` from a split diffusers folder: a ``FluxPipeline`` folder (``transformer/``,
    ``vae/``, ``scheduler/``, CLIP + T5 text encoders) or a bare ``FluxTransformer2DModel`` folder (pixel space:
    ``in_channels`` = 4 x 3 packed RGB, zero conditioning), strictly. A registered model runs at its own size, a folder at
    ``FluxPipeline``'s default (1024 px with a VAE)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from aselect_bench.backbones.backbone import Backbone
    from aselect_bench.backbones.checkpoints import load_strict

    transformer = load_strict(FluxTransformer2DModel, parts.transformer)
    vae = load_strict(AutoencoderKL, parts.vae) if parts.vae else None
    size = parts.spec.sample_size if parts.spec is not None else DEFAULT_SAMPLE_SIZE
    family = FluxFamily(transformer, empty_prompt(parts.root, transformer.config), size)
    return Backbone(family, _noise(parts.scheduler, transformer.config), vae, name=parts.name,
                    weights_id=weights_with_text(parts, TEXT_PARTS))


def random_backbone(spec, seed: int):
    """A registered model's Flux architecture with random weights (seeded), zero conditioning, its scheduler's noise."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from aselect_bench.backbones.backbone import Backbone

    transformer, vae = random_modules(spec, seed, FluxTransformer2DModel, AutoencoderKL)
    family = FluxFamily(transformer, Conditioning(zero_conditioning(transformer.config), "zeros"), spec.sample_size)
    return Backbone(family, _noise(spec.scheduler, transformer.config), vae, name=spec.name,
                    weights_id=f"random-init-seed{seed}")
