"""``Backbone``: a frozen diffusion transformer used as a feature extractor.

``extract(images, t, taps)`` encodes ((VAE posterior mean - shift factor) x scaling factor, or pixels), noises to
timestep ``t`` with the backbone's own process, runs the transformer only up to the deepest tap, and
returns ``{tap: [B, C, h, w]}`` grids (tokens reshaped row-major to the patch grid).
"""

from __future__ import annotations

import torch
from torch import nn

from aselect_bench.backbones.noise import NoiseProcess
from aselect_bench.backbones.taps import Tap, parse_taps
from aselect_bench.errors import UserError


def vae_scale_factor(vae) -> int:
    """Input pixels per latent pixel: 8 for the SD/SD3/Flux VAEs, 32 for Sana's DC-AE (``AutoencoderDC``)."""
    if vae is None:
        return 1
    channels = getattr(vae.config, "block_out_channels", None) or vae.config.encoder_block_out_channels
    return 2 ** (len(channels) - 1)


class Backbone(nn.Module):
    """A frozen diffusion transformer (a family adapter: DiT, SD3, PixArt, Flux, Sana) with its VAE and noise process.

    Attributes: ``image_size`` (native input size in pixels), ``num_blocks``, ``hidden_size``,
    ``patch_size`` (pixels per token side), ``num_train_timesteps``, ``forwards`` (images passed through
    the transformer so far), ``name`` and ``fingerprint`` (identifies weights + preprocessing).
    """

    def __init__(self, family, noise: NoiseProcess, vae=None, name: str = "backbone", weights_id: str = ""):
        super().__init__()
        self.family = family
        self.transformer = family.transformer
        self.vae = vae
        self.noise = noise
        self.name = name
        self.weights_id = weights_id
        self.vae_scale = vae_scale_factor(vae)
        self.image_size = family.sample_size * self.vae_scale
        self.patch_size = family.patch_size * self.vae_scale
        self.num_blocks = family.num_blocks
        self.hidden_size = family.hidden_size
        self.num_train_timesteps = noise.num_train_timesteps
        self.forwards = 0
        self.autocast_dtype = None  # e.g. torch.bfloat16: compute in bf16, weights and outputs stay as they are
        self.latent_cache = None  # an aselect_bench.cache.LatentCache: reuse VAE encodings of repeated images
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # noqa: ARG002 - always frozen: label dropout etc. stay off
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        import hashlib
        import json

        def public(config) -> dict:  # diffusers' private keys (e.g. ``_use_default_values``, a list built
            return {k: v for k, v in config.items() if not k.startswith("_")}  # from a set) vary per process

        cfg = {"transformer": public(self.transformer.config), "vae": public(self.vae.config) if self.vae else None}
        parts = [self.name, self.weights_id, cfg, str(self.dtype)]
        extra = {**self.family.identity(), **self.noise.identity()}  # e.g. SD3's conditioning and sigmas
        blob = json.dumps(parts + [extra] if extra else parts, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise UserError(f"images must be a float tensor [B, 3, H, W] in [-1, 1]; got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise UserError(
                f"image size {h}x{w} is not a multiple of the backbone's patch size {self.patch_size} px; "
                f"resize images to the native {self.image_size}x{self.image_size}"
            )

    def set_precision(self, precision: str) -> Backbone:
        """``"32"`` (default), ``"bf16"``, ``"16"`` or ``"auto"`` (bf16 only where this device runs it natively,
        see :mod:`aselect_bench.precision`): autocast the forward passes (weights are untouched)."""
        from aselect_bench.precision import resolve_precision

        choices = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
        self.autocast_dtype = choices[resolve_precision(precision, self.device)]
        return self

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` in [-1, 1] -> clean input ``x0`` (shifted, scaled VAE latent mean, or the pixels)."""
        self.check_images(images)
        images = images.to(self.device, self.dtype)
        if self.vae is None:
            return images
        if self.latent_cache is not None:
            return self.latent_cache.encode(self, images, self._encode_latents)
        return self._encode_latents(images)

    def _encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """``(posterior mean - shift_factor) * scaling_factor``; VAEs without a shift factor (DiT's) skip it; a
        deterministic autoencoder (Sana's DC-AE) gives its latent itself."""
        with self._autocast():
            encoded = self.vae.encode(images)
            latent = (encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latent).to(self.dtype)
        shift = getattr(self.vae.config, "shift_factor", None)
        if shift is not None:
            latent = latent - shift
        return latent * self.vae.config.scaling_factor

    def extract(self, images, timestep, taps, noise=None, generator=None, class_labels=None) -> dict:
        """Features ``{tap: [B, C, h, w]}`` of ``images [B, 3, H, W]`` at ``timestep``."""
        return self.extract_x0(self.encode(images), timestep, taps, noise, generator, class_labels)

    def check_taps(self, taps) -> list[Tap]:
        """Parse and validate tap names against this model (its stacks of blocks and its components)."""
        return parse_taps(taps, self.family.block_counts(), self.family.components)

    def extract_x0(self, x0, timestep, taps, noise=None, generator=None, class_labels=None) -> dict:
        """Like :meth:`extract` but from a clean input ``x0`` already encoded (for latent caches)."""
        timestep = self.noise.check_timestep(timestep)
        parsed = self.check_taps(taps)
        names = taps if not isinstance(taps, str) else [taps]
        grid_h, grid_w = x0.shape[-2] // self.family.patch_size, x0.shape[-1] // self.family.patch_size
        process = self.noise.for_tokens(grid_h * grid_w)  # Flux: the shift depends on the image's token count
        with torch.inference_mode():
            x0 = x0.to(self.device, self.dtype)
            if noise is None:
                noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32,
                                    device=generator.device if generator is not None else "cpu")
            if noise.shape != x0.shape:
                raise UserError(f"noise has shape {tuple(noise.shape)} but the clean input has {tuple(x0.shape)}")
            x_t = process.add_noise(x0, timestep, noise.to(x0.device, x0.dtype))
            with self._autocast():
                tokens = self._run(x_t, process.model_timestep(timestep), parsed, class_labels)
        self.forwards += x0.shape[0]
        # Outside inference mode: the copy is a normal tensor, usable by a trainable head.
        return {
            name: tokens[tap].transpose(1, 2).reshape(x0.shape[0], -1, grid_h, grid_w).to(self.dtype, copy=True)
            for name, tap in zip(names, parsed)
        }

    def _run(self, x_t, model_timestep: float, taps: list[Tap], class_labels) -> dict:
        """Run the family's stacks of blocks in order up to the deepest tap; returns ``{Tap: tokens [B, N, C]}``.

        The family adapter owns what flows between blocks (:mod:`~aselect_bench.backbones.family`):
        ``family.start(x_t, t [B], class_labels)`` gives a state, each stack's runner ``(i, state, wanted)`` the
        next state and ``{component: [B, N, C]}``; the deepest tap's block stops after the tap's stage.
        """
        t = torch.full((x_t.shape[0],), model_timestep, device=x_t.device)
        state = self.family.start(x_t, t, class_labels)
        order = [(stack, i, run) for stack, (count, run) in self.family.stacks().items() for i in range(count)]
        position = {(stack, i): k for k, (stack, i, _) in enumerate(order)}
        deepest = max(position[tap.stack, tap.block] for tap in taps)
        found = {}
        for k, (stack, i, run) in enumerate(order[:deepest + 1]):
            here = [tap for tap in taps if (tap.stack, tap.block) == (stack, i)]
            wanted = {tap.component for tap in here}
            state, comps = run(i, state, wanted if k == deepest else wanted | {"out"})
            for tap in here:
                found[tap] = comps[tap.component]
        return found
