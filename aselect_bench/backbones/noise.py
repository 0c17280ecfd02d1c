"""Forward noise processes. ``t = 0`` is the clean input and larger ``t`` is noisier, for every family."""

from __future__ import annotations

import numpy as np
import torch

from aselect_bench.errors import UserError

#: DiT's training process (diffusers ``DDPMScheduler`` config): 1000 steps, linear betas 1e-4..0.02.
DIT_SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


class NoiseProcess:
    """Maps a clean input ``x0`` to ``x_t``; subclasses define the schedule."""

    num_train_timesteps: int = 1000

    def check_timestep(self, timestep) -> int:
        if isinstance(timestep, bool) or not isinstance(timestep, int):
            try:
                as_int = int(timestep)
            except (TypeError, ValueError):
                as_int = None
            if as_int is None or as_int != timestep:
                raise UserError(f"timestep {timestep!r} is not an integer; use an int in [0, {self.num_train_timesteps})")
            timestep = as_int
        if not 0 <= timestep < self.num_train_timesteps:
            raise UserError(
                f"timestep {timestep} is outside the schedule: allowed are integers in "
                f"[0, {self.num_train_timesteps}) (0 = clean image)"
            )
        return timestep

    def add_noise(self, x0: torch.Tensor, timestep: int, noise: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def model_timestep(self, timestep: int) -> float:
        """The value fed to the transformer's timestep embedding."""
        return float(timestep)


class DDPMNoise(NoiseProcess):
    """Variance-preserving DDPM: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        self.alphas_cumprod = alphas_cumprod.double()
        self.num_train_timesteps = len(alphas_cumprod)

    @classmethod
    def from_config(cls, scheduler_config: dict | None = None) -> DDPMNoise:
        """Build from a diffusers scheduler config; missing keys default to :data:`DIT_SCHEDULER`."""
        from diffusers import DDPMScheduler

        keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        config = {k: v for k, v in (scheduler_config or {}).items() if k in keys and v is not None}
        return cls(DDPMScheduler(**{**DIT_SCHEDULER, **config}).alphas_cumprod)

    def add_noise(self, x0, timestep, noise):
        abar = self.alphas_cumprod[timestep]
        return (abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()).to(x0.dtype)


class FlowMatchingNoise(NoiseProcess):
    """Rectified flow (SD3): ``x_t = (1 - s) x0 + s noise`` with ``s = t / num_train_timesteps``."""

    def __init__(self, num_train_timesteps: int = 1000):
        self.num_train_timesteps = num_train_timesteps

    def add_noise(self, x0, timestep, noise):
        s = timestep / self.num_train_timesteps
        return (1 - s) * x0 + s * noise


def image_noise(shape, seed: int, timestep: int, index: int, draw: int = 0) -> torch.Tensor:
    """Standard normal noise ``[*shape]`` for one image, fixed by (seed, timestep, image index, draw).

    Seeding per image makes results independent of batching, shuffling and sharding over ranks.
    """
    key = np.random.SeedSequence([seed, timestep, int(index), draw]).generate_state(1, np.uint64)[0]
    gen = torch.Generator().manual_seed(int(key))  # a hash of the four: no two (index, draw) pairs collide
    return torch.randn(tuple(shape), generator=gen)


def batch_noise(shape, seed: int, timestep: int, indices, draw: int = 0) -> torch.Tensor:
    """``[len(indices), *shape]``: :func:`image_noise` for each image index."""
    return torch.stack([image_noise(shape, seed, timestep, int(i), draw) for i in indices])
