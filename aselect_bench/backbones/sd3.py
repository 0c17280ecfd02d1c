"""The SD3 / SD3.5 family (diffusers ``SD3Transformer2DModel``, MMDiT): joint blocks run one by one.

Each ``JointTransformerBlock`` is computed explicitly from its diffusers sub-modules (as in
``JointTransformerBlock.forward`` + ``JointAttnProcessor2_0``), so taps need no hooks and the forward stops
after the deepest tap. Taps read the **image stream** with the components' DiT meanings: ``norm1`` = image
tokens after ``norm1`` (modulated); ``query``/``key``/``value`` = ``attn.to_q/to_k/to_v`` of those, before any
q/k norm; ``attn`` = the image part of the joint attention after ``to_out``; ``attn_gated`` = gate_msa x attn;
``mlp`` = ``ff`` output; ``mlp_gated`` = gate_mlp x mlp; ``out`` = the block's image output (in an SD3.5
dual-attention block it includes the second attention's gated term). The context stream runs alongside (it
feeds the joint attention); it is not a tap.

Noise (:class:`~aselect_bench.backbones.noise.RectifiedFlowNoise`, the authors' convention): for ``t >= 1``,
after ``FlowMatchEulerDiscreteScheduler.set_timesteps(1000)``, ``sigma = sigmas[1000 - t]``, the timestep input
is ``timesteps[1000 - t]`` and ``x_t = (1 - sigma) x0 + sigma noise``; ``t = 0`` is clean (timestep input 0).
Latents: ``x0 = (posterior mean - shift_factor) * scaling_factor``.

Conditioning: the empty prompt, as ``StableDiffusion3Pipeline.encode_prompt("")`` computes it with the CLIP
text encoders 1 and 2 and no T5 (its part zeros): ``prompt_embeds [1, 77 + 256, joint_attention_dim]`` and
``pooled [1, pooled_projection_dim]``, computed once per set of text encoders, cached on disk, broadcast over the
batch. Without text encoders the conditioning is zeros of those shapes (with a one-line warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from aselect_bench.backbones.attention import joint_attention, pick, self_attention
from aselect_bench.backbones.conditioning import (
    ZEROS,
    Conditioning,
    cached_conditioning,
    load_text_model,
    load_tokenizer,
    parts_present,
    zeros_with_warning,
)
from aselect_bench.backbones.family import TextFamily, random_modules, weights_with_text
from aselect_bench.backbones.taps import ATTN, NORM, QKV, stage_of

#: diffusers' class name of the transformer this family runs (the folder's ``_class_name``; loading dispatches on it).
SD3_CLASS = "SD3Transformer2DModel"
#: The pipeline's CLIP token length (``tokenizer.model_max_length``) and T5 length (``max_sequence_length``).
CLIP_TOKENS, T5_TOKENS = 77, 256
#: The text-side parts of an SD3 pipeline folder, in the order the pipeline uses them.
TEXT_PARTS = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")


@dataclass
class SD3State:
    """What flows between joint blocks: image tokens ``[B, N, D]``, context tokens ``[B, S, D]``, temb ``[B, D]``."""

    hidden: torch.Tensor
    context: torch.Tensor | None
    temb: torch.Tensor


class SD3Family(TextFamily):
    """Adapter from the generic :class:`Backbone` to a diffusers ``SD3Transformer2DModel``.

    ``prompt_embeds [1, S, joint_attention_dim]`` and ``pooled [1, pooled_projection_dim]`` are the conditioning;
    ``conditioning_id`` names where they came from (it enters the backbone's fingerprint); ``sample_size``
    overrides the config's latent size (the native input size; registered models use 512 px).
    """

    label = "SD3"

    def __init__(self, transformer, prompt_embeds: torch.Tensor, pooled: torch.Tensor, conditioning_id: str,
                 sample_size: int | None = None):
        super().__init__(Conditioning({"embeds": prompt_embeds, "pooled": pooled}, conditioning_id))
        self.transformer = transformer
        cfg = transformer.config
        self.num_blocks = cfg.num_layers
        self.patch_size = cfg.patch_size
        self.in_channels = cfg.in_channels
        self.sample_size = sample_size or cfg.sample_size
        self.hidden_size = cfg.num_attention_heads * cfg.attention_head_dim
        if tuple(prompt_embeds.shape[::2]) != (1, cfg.joint_attention_dim) or tuple(pooled.shape) != (
                1, cfg.pooled_projection_dim):
            raise ValueError(f"conditioning shapes {tuple(prompt_embeds.shape)}, {tuple(pooled.shape)} do not fit "
                             f"joint_attention_dim {cfg.joint_attention_dim}, pooled {cfg.pooled_projection_dim}")

    @property
    def prompt_embeds(self) -> torch.Tensor:
        return self.conditioning["embeds"]

    @property
    def pooled(self) -> torch.Tensor:
        return self.conditioning["pooled"]

    @property
    def conditioning_id(self) -> str:
        return self.conditioning.source

    def start(self, x_t: torch.Tensor, timestep: torch.Tensor, class_labels=None) -> SD3State:
        """Embed ``x_t [B, C, H, W]`` (patches + positions), the timestep ``[B]`` + pooled text, and the context."""
        self.refuse_class_labels(class_labels)
        tr, b = self.transformer, x_t.shape[0]
        cond = self.conditioning.on(x_t.device, x_t.dtype)
        pooled = cond["pooled"].expand(b, -1)
        hidden = tr.pos_embed(x_t)
        temb = tr.time_text_embed(timestep, pooled)
        context = tr.context_embedder(cond["embeds"]).expand(b, -1, -1)  # the same for every image: embedded once
        return SD3State(hidden, context, temb)

    def run_block(self, index: int, state: SD3State, wanted: set[str]):
        """Run joint block ``index``; returns (next state or None, {component: image tokens [B, N, C]}).

        If ``wanted`` only needs an early stage, the block stops there and returns ``None`` as the state. The
        context stream is updated with the image stream's last stage (the last block has none to update).
        """
        streams, out = joint_block(self.transformer.transformer_blocks[index], state.hidden, state.context,
                                   state.temb, wanted)
        return (None if streams is None else SD3State(*streams, state.temb)), out


def joint_block(block, hidden, context, temb, wanted: set[str], rotary=None, context_rotary=None,
                clip_context: bool = False):
    """One MMDiT joint block (SD3's ``JointTransformerBlock``, also SD3.5's dual-attention one and Flux's
    ``FluxTransformerBlock``) on image tokens ``hidden [B, N, D]``, text tokens ``context [B, S, D]`` and
    ``temb [B, D]``, computed as its ``forward`` up to the last stage ``wanted`` needs; ``rotary`` /
    ``context_rotary`` are Flux's position embeddings, ``clip_context`` its float16 guard on the text stream.

    Returns ``((image [B, N, D], context [B, S, D] or None after a "pre only" block), {component: image tokens})``,
    or ``(None, {...})`` when it stopped early.
    """
    last_stage = stage_of(wanted)
    dual = getattr(block, "use_dual_attention", False)
    pre_only = getattr(block, "context_pre_only", False)
    out = {}
    if dual:
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp, normed2, gate_msa2 = block.norm1(hidden, emb=temb)
    else:
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(hidden, emb=temb)
    out["norm1"] = normed
    if last_stage == NORM:
        return None, pick(out, wanted)
    attn = block.attn
    q, k, v = attn.to_q(normed), attn.to_k(normed), attn.to_v(normed)
    out.update(query=q, key=k, value=v)
    if last_stage == QKV:
        return None, pick(out, wanted)
    if pre_only:
        context_normed = block.norm1_context(context, temb)
    else:
        context_normed, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = block.norm1_context(context, emb=temb)
    image_a, context_a = joint_attention(attn, q, k, v, context_normed, rotary, context_rotary)
    out["attn"] = attn.to_out[1](attn.to_out[0](image_a))
    out["attn_gated"] = gate_msa.unsqueeze(1) * out["attn"]
    hidden = hidden + out["attn_gated"]
    if last_stage == ATTN:
        return None, pick(out, wanted)
    if dual:
        a2 = block.attn2
        a2 = a2.to_out[1](a2.to_out[0](self_attention(a2, a2.to_q(normed2), a2.to_k(normed2), a2.to_v(normed2))))
        hidden = hidden + gate_msa2.unsqueeze(1) * a2
    x = block.norm2(hidden) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
    out["mlp"] = block.ff(x)
    out["mlp_gated"] = gate_mlp.unsqueeze(1) * out["mlp"]
    hidden = hidden + out["mlp_gated"]
    out["out"] = hidden
    if pre_only:
        return (hidden, None), pick(out, wanted)
    context = context + c_gate_msa.unsqueeze(1) * attn.to_add_out(context_a)
    c = block.norm2_context(context) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
    context = context + c_gate_mlp.unsqueeze(1) * block.ff_context(c)
    if clip_context and context.dtype == torch.float16:
        context = context.clip(-65504, 65504)
    return (hidden, context), pick(out, wanted)


# ----------------------------------------------------------------------------------------- conditioning


def zero_conditioning(config) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeros ``[1, 333, joint_attention_dim]`` and ``[1, pooled_projection_dim]``: no text encoders."""
    return (torch.zeros(1, CLIP_TOKENS + T5_TOKENS, config.joint_attention_dim),
            torch.zeros(1, config.pooled_projection_dim))


@torch.inference_mode()
def encode_empty_prompt(tokenizers, text_encoders, joint_attention_dim: int,
                        max_sequence_length: int = T5_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """``StableDiffusion3Pipeline.encode_prompt("")`` with CLIP encoders 1 and 2 and no T5.

    Each CLIP gets ``""`` padded to the first tokenizer's ``model_max_length``; its penultimate hidden states
    are concatenated over channels and zero-padded to ``joint_attention_dim``; T5's part is zeros
    ``[1, max_sequence_length, joint_attention_dim]``; the pooled projections are concatenated.
    Returns ``prompt_embeds [1, L + max_sequence_length, joint_attention_dim]`` and ``pooled [1, P]`` (float32).
    """
    length = tokenizers[0].model_max_length
    embeds, pooled = [], []
    for tokenizer, encoder in zip(tokenizers, text_encoders):
        ids = tokenizer([""], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        result = encoder(ids.to(encoder.device), output_hidden_states=True)
        pooled.append(result[0].float())
        embeds.append(result.hidden_states[-2].float())
    clip = torch.cat(embeds, dim=-1)
    clip = torch.nn.functional.pad(clip, (0, joint_attention_dim - clip.shape[-1]))
    t5 = torch.zeros(1, max_sequence_length, joint_attention_dim)
    return torch.cat([clip.cpu(), t5], dim=-2), torch.cat(pooled, dim=-1).cpu()


def text_parts_present(folder: Path) -> list[str]:
    """Which of :data:`TEXT_PARTS` the pipeline folder holds."""
    return parts_present(folder, TEXT_PARTS)


def empty_prompt_conditioning(folder: Path, config) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The empty-prompt conditioning of the SD3 pipeline ``folder`` (zeros + one warning line without encoders).

    Cached under ``cache_dir()/sd3-empty-prompt/<key>.pt`` (:func:`~aselect_bench.backbones.conditioning.
    cached_conditioning`), so the text encoders are loaded once and then dropped.
    Returns ``(prompt_embeds [1, 333, J], pooled [1, P], conditioning_id)``.
    """
    present = text_parts_present(folder)
    if len(present) < len(TEXT_PARTS):
        prompt, pooled = zero_conditioning(config)
        zeros_with_warning("SD3", folder, [p for p in TEXT_PARTS if p not in present], {})
        return prompt, pooled, ZEROS

    def compute():
        embeds, pooled = encode_empty_prompt(*_load_text_encoders(folder), config.joint_attention_dim)
        return {"prompt_embeds": embeds, "pooled": pooled}

    cond = cached_conditioning("sd3", folder, TEXT_PARTS, [config.joint_attention_dim, config.pooled_projection_dim,
                                                           T5_TOKENS], compute)
    return cond["prompt_embeds"], cond["pooled"], cond.source


def _load_text_encoders(folder: Path):
    """The two CLIP tokenizers and text encoders (with projection) of a pipeline folder, on the CPU in float32."""
    from transformers import CLIPTextModelWithProjection

    fix = "re-save them with transformers' save_pretrained, or remove text_encoder*/ to condition on zeros"
    tokenizers = [load_tokenizer(folder / p, "SD3", fix) for p in ("tokenizer", "tokenizer_2")]
    encoders = [load_text_model(CLIPTextModelWithProjection, folder / p, "SD3", fix)
                for p in ("text_encoder", "text_encoder_2")]
    return tokenizers, encoders


# ----------------------------------------------------------------------------------------- building


def backbone_from_parts(parts):
    """An SD3 :class:`Backbone` from a split diffusers folder (:class:`~aselect_bench.backbones.checkpoints.FolderParts`):
    a pipeline folder (``transformer/``, ``vae/``, ``scheduler/``, CLIP text encoders) or a bare
    ``SD3Transformer2DModel`` folder (pixel space, zero conditioning). Weights load strictly.

    A registered model runs at its own size (``sample_size`` 64: 512 px); a folder on its own runs at its config's size
    (1024 px for SD3-medium).
    """
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    from aselect_bench.backbones.backbone import Backbone
    from aselect_bench.backbones.checkpoints import load_strict
    from aselect_bench.backbones.noise import RectifiedFlowNoise

    transformer = load_strict(SD3Transformer2DModel, parts.transformer)
    vae = load_strict(AutoencoderKL, parts.vae) if parts.vae else None
    prompt, pooled, cond_id = empty_prompt_conditioning(parts.root, transformer.config)
    size = parts.spec.transformer.get("sample_size") if parts.spec is not None else None
    return Backbone(SD3Family(transformer, prompt, pooled, cond_id, size), RectifiedFlowNoise.from_config(
        parts.scheduler), vae, name=parts.name, weights_id=weights_with_text(parts, TEXT_PARTS))


def random_backbone(spec, seed: int):
    """A registered model's SD3 architecture with random weights (seeded), zero conditioning, its scheduler's noise."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    from aselect_bench.backbones.backbone import Backbone
    from aselect_bench.backbones.noise import RectifiedFlowNoise

    transformer, vae = random_modules(spec, seed, SD3Transformer2DModel, AutoencoderKL)
    family = SD3Family(transformer, *zero_conditioning(transformer.config), "zeros")
    return Backbone(family, RectifiedFlowNoise.from_config(spec.scheduler), vae,
                    name=spec.name, weights_id=f"random-init-seed{seed}")
