"""Forward noise processes. ``t = 0`` is the clean end of the schedule and larger ``t`` is noisier, for every
family: exactly clean for rectified flow (sigma 0); for DDPM the schedule's first step, ``sqrt(abar_0) x0 +
sqrt(1 - abar_0) noise`` (noise std 1% for DiT's ``beta_0 = 1e-4``), not exactly clean."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from aselect_bench.errors import UserError

#: DiT's training process (diffusers ``DDPMScheduler`` config): 1000 steps, linear betas 1e-4..0.02.
DIT_SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


@contextmanager
def invalid_scheduler_config(config: dict) -> Iterator[None]:
    """Turn diffusers' complaint about a scheduler setting (a wrong type, an unknown schedule) into one line."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - diffusers and torch raise many types for a bad value
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"the model's scheduler config is not valid ({reason}; its settings: {config}): fix "
                        f"scheduler/scheduler_config.json, or delete it to use the family's default schedule") from None


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
                f"[0, {self.num_train_timesteps}) (0 = the clean end)"
            )
        return timestep

    def add_noise(self, x0: torch.Tensor, timestep: int, noise: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def model_timestep(self, timestep: int) -> float:
        """The value fed to the transformer's timestep embedding."""
        return float(timestep)

    def identity(self) -> dict:
        """What identifies the schedule beyond the model's configs (empty: DDPM's is fixed by the family)."""
        return {}


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
        with invalid_scheduler_config(config):
            return cls(DDPMScheduler(**{**DIT_SCHEDULER, **config}).alphas_cumprod)

    def add_noise(self, x0, timestep, noise):
        abar = self.alphas_cumprod[timestep]
        return (abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()).to(x0.dtype)


#: SD3's training process when a folder has no scheduler config (``FlowMatchEulerDiscreteScheduler``, shift 3.0).
SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)


class RectifiedFlowNoise(NoiseProcess):
    """Rectified flow (SD3 / SD3.5): ``x_t = (1 - sigma) x0 + sigma noise``, sigmas from the model's scheduler.

    The t <-> sigma convention (the A-SelecT authors' code: their paper t = 1000 - scheduler index): after
    ``FlowMatchEulerDiscreteScheduler.set_timesteps(1000)``, for ``t >= 1`` ``sigma = scheduler.sigmas[1000 - t]``
    and the transformer's timestep input is ``scheduler.timesteps[1000 - t]`` (= 1000 sigma); ``t = 0`` is the
    clean input (sigma 0) with timestep input 0. So ``t = 0`` is clean and larger ``t`` noisier, as for DDPM, and
    with SD3's shift 3.0 sigma rises fast: t = 500 gives sigma 0.75.
    """

    steps = 1000

    def __init__(self, sigmas: torch.Tensor, timesteps: torch.Tensor):
        if len(sigmas) != self.steps + 1 or len(timesteps) != self.steps:
            raise ValueError(f"expected {self.steps + 1} sigmas and {self.steps} timesteps")
        self.sigmas = sigmas.double()
        self.timesteps = timesteps.double()
        self.num_train_timesteps = self.steps

    @classmethod
    def from_config(cls, scheduler_config: dict | None = None) -> RectifiedFlowNoise:
        """Build from a diffusers ``FlowMatchEulerDiscreteScheduler`` config (default :data:`SD3_SCHEDULER`)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        config = {k: v for k, v in (scheduler_config or {}).items() if not k.startswith("_")}
        with invalid_scheduler_config(config):
            scheduler = FlowMatchEulerDiscreteScheduler.from_config({**SD3_SCHEDULER, **config})
            if scheduler.config.use_dynamic_shifting:
                raise UserError("the scheduler config uses dynamic shifting (resolution-dependent sigmas), which this "
                                "suite does not model; set use_dynamic_shifting to false in scheduler_config.json")
            scheduler.set_timesteps(cls.steps)
            return cls(scheduler.sigmas, scheduler.timesteps)

    def sigma(self, timestep: int) -> float:
        return 0.0 if timestep == 0 else float(self.sigmas[self.steps - timestep])

    def model_timestep(self, timestep: int) -> float:
        return 0.0 if timestep == 0 else float(self.timesteps[self.steps - timestep])

    def identity(self) -> dict:
        import hashlib

        return {"sigmas": hashlib.sha256(self.sigmas.numpy().tobytes()).hexdigest()[:16]}

    def add_noise(self, x0, timestep, noise):
        s = self.sigma(timestep)
        return ((1 - s) * x0.double() + s * noise.double()).to(x0.dtype)


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
