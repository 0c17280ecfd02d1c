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

    def for_tokens(self, tokens: int) -> NoiseProcess:
        """The process for an image of ``tokens`` image tokens (itself, unless the shift depends on resolution)."""
        return self

    def noise_to_signal(self) -> torch.Tensor:
        """``[num_train_timesteps]`` float64: at each ``t``, the noise's std over the clean input's scale in ``x_t``
        (``x_t / scale = x0 + ratio * noise``)."""
        raise NotImplementedError


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
        with torch.device("cpu"), invalid_scheduler_config(config):  # the tables live on the CPU (meta-device models)
            return cls(DDPMScheduler(**{**DIT_SCHEDULER, **config}).alphas_cumprod)

    def noise_to_signal(self) -> torch.Tensor:
        """``sqrt((1 - abar_t) / abar_t)`` ``[T]``."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

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
    def from_config(cls, scheduler_config: dict | None = None, defaults: dict = SD3_SCHEDULER,
                    pipeline_sigmas: bool = False) -> NoiseProcess:
        """Build from a folder's flow scheduler config (``defaults`` where it has none, SD3's by default).

        The scheduler is the config's class (``FlowMatchEulerDiscreteScheduler``, or a DPM-Solver with
        ``use_flow_sigmas`` as Sana ships); ``set_timesteps(1000)`` gives its tables. ``pipeline_sigmas`` passes
        the base sigmas ``linspace(1, 1/1000, 1000)`` explicitly, as ``FluxPipeline`` does. A scheduler with
        ``use_dynamic_shifting`` (Flux.1-dev) gives a :class:`DynamicShiftFlowNoise`: its sigmas depend on the
        image's token count.
        """
        with invalid_scheduler_config(scheduler_config or {}):
            scheduler = flow_scheduler(scheduler_config or {}, defaults)
            if scheduler.config.get("use_dynamic_shifting"):
                return DynamicShiftFlowNoise(scheduler, pipeline_sigmas)
            return cls.from_scheduler(scheduler, pipeline_sigmas)

    @classmethod
    def from_scheduler(cls, scheduler, pipeline_sigmas: bool = False, mu: float | None = None) -> RectifiedFlowNoise:
        """The tables of ``scheduler.set_timesteps(1000)`` (with the pipeline's base sigmas and shift ``mu``)."""
        kwargs = {"mu": mu} if mu is not None else {}
        if pipeline_sigmas:
            kwargs["sigmas"] = np.linspace(1.0, 1 / cls.steps, cls.steps)
        with torch.device("cpu"):
            scheduler.set_timesteps(None if pipeline_sigmas else cls.steps, **kwargs)
        return cls(scheduler.sigmas, scheduler.timesteps)

    def sigma(self, timestep: int) -> float:
        return 0.0 if timestep == 0 else float(self.sigmas[self.steps - timestep])

    def model_timestep(self, timestep: int) -> float:
        return 0.0 if timestep == 0 else float(self.timesteps[self.steps - timestep])

    def noise_to_signal(self) -> torch.Tensor:
        """``s_t / (1 - s_t)`` ``[T]`` (``inf`` where ``s_t = 1``)."""
        s = torch.tensor([self.sigma(t) for t in range(self.num_train_timesteps)], dtype=torch.float64)
        return s / (1 - s)

    def identity(self) -> dict:
        import hashlib

        return {"sigmas": hashlib.sha256(self.sigmas.numpy().tobytes()).hexdigest()[:16]}

    def add_noise(self, x0, timestep, noise):
        s = self.sigma(timestep)
        return ((1 - s) * x0.double() + s * noise.double()).to(x0.dtype)


def flow_scheduler(config: dict, defaults: dict = SD3_SCHEDULER):
    """A fresh diffusers scheduler for a flow-matching config: its ``_class_name`` (default
    ``FlowMatchEulerDiscreteScheduler``), with ``defaults`` under the config's keys where both name the same class
    (only ``defaults`` when the config is empty); schedulers that are not rectified flow are refused."""
    import diffusers

    def name_of(c: dict) -> str:
        return c.get("_class_name", "FlowMatchEulerDiscreteScheduler")

    config = {**defaults, **config} if not config or name_of(config) == name_of(defaults) else config
    name = name_of(config)
    cls = getattr(diffusers, name, None)
    flow = name.startswith("FlowMatch") or config.get("use_flow_sigmas") or config.get("prediction_type") == (
        "flow_prediction")
    if cls is None or not flow:
        raise UserError(f"the scheduler config names {name}, which is not a rectified-flow scheduler this suite can "
                        f"read; use the model's own scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler, "
                        f"or a DPM-Solver with use_flow_sigmas)")
    with torch.device("cpu"):  # the tables live on the CPU, also when a model is built on the meta device
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


class DynamicShiftFlowNoise(NoiseProcess):
    """Rectified flow whose shift depends on the image's token count (``use_dynamic_shifting``, Flux.1-dev).

    For an image of ``n`` tokens, ``mu = calculate_shift(n, base_image_seq_len, max_image_seq_len, base_shift,
    max_shift)`` with the scheduler config's values (diffusers' defaults 256, 4096, 0.5, 1.15 where absent), as
    ``FluxPipeline`` computes it, and the tables are those of ``set_timesteps(1000, mu=mu)``
    (:class:`RectifiedFlowNoise` at that shift; one per token count, kept).
    """

    def __init__(self, scheduler, pipeline_sigmas: bool = False):
        self.scheduler, self.pipeline_sigmas = scheduler, pipeline_sigmas
        self.num_train_timesteps = RectifiedFlowNoise.steps
        self._sized: dict[int, RectifiedFlowNoise] = {}

    def mu(self, tokens: int) -> float:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        cfg = self.scheduler.config
        return calculate_shift(tokens, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                               cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))

    def for_tokens(self, tokens: int) -> RectifiedFlowNoise:
        if tokens not in self._sized:
            self._sized[tokens] = RectifiedFlowNoise.from_scheduler(self.scheduler, self.pipeline_sigmas,
                                                                    self.mu(tokens))
        return self._sized[tokens]

    def add_noise(self, x0, timestep, noise):
        raise TypeError("the shift depends on the image size: use for_tokens(n).add_noise(...)")

    def model_timestep(self, timestep: int) -> float:
        raise TypeError("the shift depends on the image size: use for_tokens(n).model_timestep(...)")

    def identity(self) -> dict:
        import hashlib
        import json

        public = {k: v for k, v in self.scheduler.config.items() if not k.startswith("_")}
        blob = json.dumps([public, self.pipeline_sigmas], sort_keys=True, default=str)
        return {"flow": hashlib.sha256(blob.encode()).hexdigest()[:16]}


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


def matched_timestep(process: NoiseProcess, pixel_sigma: float) -> int:
    """The timestep whose own noise matches Gaussian noise of std ``pixel_sigma`` on ``[0, 1]`` pixels, i.e.
    ``2 * pixel_sigma`` on ``[-1, 1]`` inputs: the ``t`` of ``process`` (a pixel-space model's own schedule) whose
    :meth:`~NoiseProcess.noise_to_signal` is nearest ``2 * pixel_sigma`` (the first on ties). DDPM: ``sqrt((1 -
    abar_t) / abar_t) = 2 sigma``; rectified flow: ``s_t / (1 - s_t) = 2 sigma``."""
    ratio = process.noise_to_signal()
    return int(torch.argmin((ratio - 2 * float(pixel_sigma)).abs()))
