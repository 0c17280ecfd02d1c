"""The Sana family (diffusers ``SanaTransformer2DModel``): PixArt's block layout with linear attention and a
convolutional MLP, on the DC-AE autoencoder's 32x latents.

Blocks as in ``SanaTransformerBlock.forward``, taps with PixArt's meanings (:mod:`~aselect_bench.backbones.pixart`):
``attn`` = the ReLU linear self-attention (``SanaLinearAttnProcessor2_0``) after ``to_out``; ``cross`` = the
cross-attention over the caption; ``mlp`` = the ``GLUMBConv`` output (1x1 conv, depth-wise 3x3 conv on the token
grid, gated, 1x1 conv). ``query`` is ``attn1.to_q`` before any q/k norm.

Noise: rectified flow with the folder's scheduler (Sana ships ``DPMSolverMultistepScheduler`` with
``use_flow_sigmas`` and ``flow_shift`` 3.0, also the default without one) in SD3's convention: after
``set_timesteps(1000)``, ``sigma = sigmas[1000 - t]``, the timestep input is ``timesteps[1000 - t]`` times the
config's ``timestep_scale``, ``x_t = (1 - sigma) x0 + sigma noise``; ``t = 0`` is clean. Latents: the DC-AE
latent times its ``scaling_factor`` (0.41407).

Conditioning: the empty prompt as ``SanaPipeline.encode_prompt`` encodes the negative prompt ``""`` (no complex
human instruction): Gemma (``text_encoder/``, ``tokenizer/``, right padding) over ``""`` padded to 300 tokens
with its attention mask, used by the cross-attention; without a text encoder, zeros ``[1, 300,
caption_channels]`` with a one-line warning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aselect_bench.backbones.conditioning import Conditioning
from aselect_bench.backbones.family import random_modules, weights_with_text
from aselect_bench.backbones.pixart import (
    TEXT_PARTS,
    CrossState,
    PixArtFamily,
    masked_empty_prompt,
    zero_caption,
)
from aselect_bench.errors import UserError

SANA_CLASS = "SanaTransformer2DModel"
#: The pipeline's Gemma caption length (``max_sequence_length``).
CAPTION_TOKENS = 300
#: Sana's released scheduler (``Efficient-Large-Model/Sana_1600M_*_diffusers``), used when a folder has none.
SANA_SCHEDULER = {"_class_name": "DPMSolverMultistepScheduler", "num_train_timesteps": 1000, "use_flow_sigmas": True,
                  "flow_shift": 3.0, "prediction_type": "flow_prediction", "final_sigmas_type": "zero"}


class SanaFamily(PixArtFamily):
    """Adapter from :class:`Backbone` to a diffusers ``SanaTransformer2DModel`` (see :class:`PixArtFamily`)."""

    label = "Sana"

    def check_blocks(self) -> None:
        if self.transformer.config.guidance_embeds:
            raise UserError("this Sana transformer embeds guidance (Sana-Sprint), whose timestep convention this suite "
                            "does not model; use a Sana text-to-image model (SanaPipeline)")

    def start(self, x_t: torch.Tensor, timestep: torch.Tensor, class_labels=None) -> CrossState:
        """Patch embedding of ``x_t [B, C, H, W]``, the timestep modulation ``[B, 6D]`` and the caption."""
        self.refuse_class_labels(class_labels)
        tr, b = self.transformer, x_t.shape[0]
        hidden = tr.patch_embed(x_t)
        modulation, _ = tr.time_embed(timestep * tr.config.timestep_scale, batch_size=b, hidden_dtype=hidden.dtype)
        return self._state(hidden, modulation, x_t)

    def embed_caption(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.transformer.caption_norm(self.transformer.caption_projection(embeds))

    def self_attention(self, attn, q, k, v) -> torch.Tensor:
        """ReLU linear attention of ``q, k, v [B, N, D]`` (in float32, as ``SanaLinearAttnProcessor2_0``), after
        ``to_out``: ``out_i = sum_j (relu(k_j) . relu(q_i)) v_j / sum_j relu(k_j) . relu(q_i)`` per head."""
        dtype = q.dtype
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        q = F.relu(q.transpose(1, 2).unflatten(1, (attn.heads, -1))).float()  # [B, H, d, N]
        k = F.relu(k.transpose(1, 2).unflatten(1, (attn.heads, -1)).transpose(2, 3)).float()  # [B, H, N, d]
        v = F.pad(v.transpose(1, 2).unflatten(1, (attn.heads, -1)).float(), (0, 0, 0, 1), value=1.0)  # [B, H, d+1, N]
        a = torch.matmul(torch.matmul(v, k), q)  # [B, H, d + 1, N]: the last row is the normaliser
        a = (a[:, :, :-1] / (a[:, :, -1:] + 1e-15)).flatten(1, 2).transpose(1, 2).to(dtype)
        a = attn.to_out[1](attn.to_out[0](a))
        return a.clip(-65504, 65504) if dtype == torch.float16 else a

    def mlp(self, block, x: torch.Tensor, grid) -> torch.Tensor:
        """``GLUMBConv`` of the modulated tokens ``x [B, N, D]`` laid out on the token grid ``(h, w)``."""
        return block.ff(x.unflatten(1, grid).permute(0, 3, 1, 2)).flatten(2, 3).permute(0, 2, 1)


def backbone_from_parts(parts):
    """A Sana :class:`Backbone` from a split diffusers folder: a ``SanaPipeline`` folder (``transformer/``, DC-AE
    ``vae/``, ``scheduler/``, Gemma ``text_encoder/`` + ``tokenizer/``) or a bare ``SanaTransformer2DModel`` folder
    (pixel space, zero conditioning), strictly."""
    from diffusers import AutoencoderDC, SanaTransformer2DModel

    from aselect_bench.backbones.backbone import Backbone, vae_scale_factor
    from aselect_bench.backbones.checkpoints import load_strict
    from aselect_bench.backbones.noise import RectifiedFlowNoise

    transformer = load_strict(SanaTransformer2DModel, parts.transformer)
    vae = load_strict(AutoencoderDC, parts.vae) if parts.vae else None
    conditioning = masked_empty_prompt("Sana", parts.root, "Gemma2Model", CAPTION_TOKENS,
                                       transformer.config.caption_channels, padding_side="right")
    noise = RectifiedFlowNoise.from_config(parts.scheduler, SANA_SCHEDULER)
    return Backbone(SanaFamily(transformer, conditioning, vae_scale_factor(vae)), noise, vae, name=parts.name,
                    weights_id=weights_with_text(parts, TEXT_PARTS))


def random_backbone(spec, seed: int):
    """A registered model's Sana architecture (with its DC-AE) with random weights (seeded), zero conditioning."""
    from diffusers import AutoencoderDC, SanaTransformer2DModel

    from aselect_bench.backbones.backbone import Backbone, vae_scale_factor
    from aselect_bench.backbones.noise import RectifiedFlowNoise

    transformer, vae = random_modules(spec, seed, SanaTransformer2DModel, AutoencoderDC)
    conditioning = Conditioning(zero_caption(CAPTION_TOKENS, transformer.config.caption_channels), "zeros")
    return Backbone(SanaFamily(transformer, conditioning, vae_scale_factor(vae)),
                    RectifiedFlowNoise.from_config(spec.scheduler, SANA_SCHEDULER), vae, name=spec.name,
                    weights_id=f"random-init-seed{seed}")
