"""Pretraining the demo DiT, a small pixel-space ``DiTTransformer2DModel``: recipe, data, LightningModule.

The real DDPM objective: epsilon prediction, 1000 steps, linear betas 1e-4..0.02 (diffusers'
``DDPMScheduler.add_noise``), uniform timesteps, MSE on the 3 output channels. Unconditional: every
sample carries the null label, because ``Backbone.extract`` feeds the null label, and the architecture's
only real class (0) would carry no information. Data: synthetic fine-grained birds and scene crops (seeds
disjoint from the benchmark data), resized as the benchmarks resize them (short side 36 px), random 32 px
crops and horizontal flips. :func:`train` saves ``transformer/`` (diffusers layout, float16 weights: they load
as float32), ``scheduler/`` and ``card.json`` (recipe, data seeds, losses, sha256, torch, hardware, precision).
The recipe's precision is ``auto`` (bf16 only where the hardware runs it natively, see
:mod:`aselect_bench.precision`), so the recipe is the same on every machine; the card records what was used. No EMA: with a few hundred steps and a
cosine decay to zero, an EMA would mostly average in the undertrained early weights.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from aselect_bench.backbones.noise import (
    DIT_SCHEDULER as SCHEDULER,  # the DiT-XL/2 process, saved as scheduler/
)
from aselect_bench.backbones.registry import DEMO_TRANSFORMER
from aselect_bench.io import atomic_folder, atomic_write_json
from aselect_bench.precision import LIGHTNING_PRECISION, describe_precision, training_device
from aselect_bench.progress import StepProgress, format_duration, quiet_lightning


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the demo weights (its hash names the cache folder)."""

    steps: int = 2400
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 120
    fgvc_images: int = 9600  # a multiple of 12 (classes)
    scene_images: int = 4800
    checkpoints: tuple = (0.125, 0.25, 0.5)  # fractions of ``steps`` kept besides the end (checkpoint study)
    image_size: int = 32
    seed: int = 0
    precision: str = "auto"  # "auto" | "32" | "bf16" | "16" (aselect_bench.precision)
    transformer: tuple = tuple(sorted(DEMO_TRANSFORMER.items()))
    data_version: str = field(default_factory=lambda: _generator_versions())

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def checkpoint_steps(self) -> list[int]:
        """The optimizer steps after which :func:`train` keeps a checkpoint (the end is the model itself)."""
        return sorted({round(f * self.steps) for f in self.checkpoints} - {0, self.steps})


def _generator_versions() -> str:
    """The synthetic generators' versions: new images mean new demo weights."""
    from aselect_bench.data import synth_ade20k, synth_fgvc

    return f"birds-v{synth_fgvc.GENERATOR_VERSION}-scenes-v{synth_ade20k.GENERATOR_VERSION}"


def data_seeds(recipe: Recipe) -> dict:
    """The synthetic generators' seeds (disjoint from the benchmark data's)."""
    return {"birds": 10_000 + recipe.seed, "scenes": 20_000 + recipe.seed}


def pretraining_images(recipe: Recipe) -> torch.Tensor:
    """``[N, 3, S', S']`` in [-1, 1] with ``S' = round(1.14 S)``: birds then scenes, rendered at 64 px and
    resized as the benchmarks resize (training takes random ``S x S`` crops)."""
    from aselect_bench.data.synth_ade20k import render_scenes
    from aselect_bench.data.synth_fgvc import render_samples
    from aselect_bench.data.transforms import RESIZE_RATIO

    seeds = data_seeds(recipe)
    birds, _ = render_samples(recipe.fgvc_images // 12, 12, 64, seed=seeds["birds"])  # clean renders: no grain
    scenes, _ = render_scenes(recipe.scene_images, 64, seed=seeds["scenes"])
    images = torch.from_numpy(np.concatenate([birds, scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
    size = round(recipe.image_size * RESIZE_RATIO)
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def augment(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 3, S', S']`` -> ``[B, 3, size, size]``: a random crop and a random horizontal flip per image."""
    offsets = torch.randint(0, x.shape[-1] - size + 1, (len(x), 2)).tolist()
    flips = (torch.rand(len(x)) < 0.5).tolist()
    crops = [img[:, i:i + size, j:j + size] for img, (i, j) in zip(x, offsets)]
    return torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flips)])


class DiffusionPretrainer(L.LightningModule):
    """Trains ``transformer`` to predict the noise ``eps`` of ``x_t`` (DDPM objective)."""

    def __init__(self, transformer, recipe: Recipe):
        super().__init__()
        from diffusers import DDPMScheduler

        self.transformer, self.recipe = transformer, recipe
        self.scheduler = DDPMScheduler(**SCHEDULER)
        self.null_class = transformer.config.num_embeds_ada_norm
        self.losses: list[float] = []

    def ddpm_loss(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """MSE between ``eps`` ``[B, 3, S, S]`` and the prediction from ``x_t`` at timesteps ``t`` ``[B]``."""
        x_t = self.scheduler.add_noise(x0, eps, t)
        labels = torch.full((len(x0),), self.null_class, device=x0.device, dtype=torch.long)
        pred = self.transformer(x_t, timestep=t, class_labels=labels).sample[:, : x0.shape[1]]
        return F.mse_loss(pred.float(), eps)

    def training_step(self, batch, batch_idx):
        x0 = augment(batch[0], self.recipe.image_size)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(x0),), device=x0.device)
        loss = self.ddpm_loss(x0, t, torch.randn_like(x0))
        self.losses.append(loss.item())
        self.log("pretrain/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        r = self.recipe
        opt = torch.optim.AdamW(self.transformer.parameters(), lr=r.lr, weight_decay=0.0)

        def factor(step):  # linear warm-up, then cosine decay to zero
            if step < r.warmup:
                return (step + 1) / r.warmup
            return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - r.warmup) / max(1, r.steps - r.warmup))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def fixed_draw_loss(module: DiffusionPretrainer, images: torch.Tensor, seed: int = 123) -> float:
    """The DDPM loss on 256 fixed centre crops, evenly spread timesteps and fixed noise (low variance:
    comparable before and after training and across recipes)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:256]
    size = module.recipe.image_size
    pad = (images.shape[-1] - size) // 2
    x0 = images[idx][..., pad:pad + size, pad:pad + size]
    t = torch.linspace(0, module.scheduler.config.num_train_timesteps - 1, len(x0)).long()
    eps = torch.randn(x0.shape, generator=gen)
    return float(module.ddpm_loss(x0.to(module.device), t.to(module.device), eps.to(module.device)))


def measure_step_seconds(module: DiffusionPretrainer, images: torch.Tensor, precision: str) -> float:
    """Seconds of one training step (forward + backward at the recipe's batch size), measured here after a
    small warm-up pass; the weights, gradients and random streams are left as found."""
    device = module.device
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)
    seconds = float("inf")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() outside a Trainer
        for batch in (min(8, module.recipe.batch_size), module.recipe.batch_size):  # warm-up, then timed
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = module.training_step((images[:batch].to(device),), 0)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
    module.zero_grad(set_to_none=True)
    module.losses.clear()
    return seconds


class KeepCheckpoints(L.Callback):
    """After each of ``recipe.checkpoint_steps()``, saves the model as a loadable diffusers folder
    ``root/step-NNNNN/`` (float16 ``transformer/``, ``scheduler/``, ``card.json``), written atomically
    (:func:`~aselect_bench.io.atomic_folder`)."""

    def __init__(self, root: Path, images: torch.Tensor):
        self.root, self.images = Path(root), images

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step, recipe = trainer.global_step, module.recipe
        if step not in recipe.checkpoint_steps():
            return
        with atomic_folder(self.root / f"step-{step:05d}") as tmp:
            save_model(module.transformer, tmp)
            was_training = module.training
            module.eval()
            card = {"checkpoint_of": recipe.fingerprint(), "step": step, "of_steps": recipe.steps,
                    "fraction": step / recipe.steps, "samples": step * recipe.batch_size,
                    "lr_now": trainer.optimizers[0].param_groups[0]["lr"],
                    "recent_loss": float(np.mean(module.losses[-max(1, recipe.steps // 10):])),
                    "fixed_draw_loss": fixed_draw_loss(module, self.images), "weights_dtype": "float16",
                    "weights_sha256": weights_digest(tmp), "recipe": asdict(recipe)}
            module.train(was_training)
            atomic_write_json(tmp / "card.json", card)


def hardware() -> dict:
    """The machine a model is trained on: device, CPU model, threads, GPU name."""
    from aselect_bench.precision import cpu_bf16_native, cpu_model

    info = {"device": training_device(), "cpu": cpu_model() or platform.processor(),
            "threads": torch.get_num_threads(), "cpu_bf16_native": cpu_bf16_native()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def train(recipe: Recipe, out_dir: Path, progress: bool = True, log_dir="runs/pretrain",
          checkpoint_dir: Path | None = None) -> dict:
    """Train with ``recipe``; save ``transformer/`` (float16), ``scheduler/`` and ``card.json`` in ``out_dir``
    (and, with ``checkpoint_dir``, the :class:`KeepCheckpoints` folders there).

    Prints the precision used and a duration estimate from one step measured on this machine; with
    ``progress``, a :class:`StepProgress` line (steps, ETA, loss). Raises if Lightning stopped on SIGTERM.
    """
    from diffusers import DiTTransformer2DModel
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    start = time.perf_counter()
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    images = pretraining_images(recipe)
    module = DiffusionPretrainer(DiTTransformer2DModel(**dict(recipe.transformer)), recipe)
    before = fixed_draw_loss(module, images)
    used = describe_precision(recipe.precision, training_device())
    module.to(training_device())
    step = measure_step_seconds(module, images, used["precision"])
    print(f"pretraining {recipe.steps} steps x {recipe.batch_size} images: ~{format_duration(step * recipe.steps)} "
          f"here (one step measured: {step:.2f} s)", flush=True)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=recipe.batch_size,
                                         shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(recipe.seed))
    quiet_lightning()
    callbacks = [LearningRateMonitor("step")] + ([StepProgress("pretraining")] if progress else [])
    if checkpoint_dir is not None and recipe.checkpoint_steps():
        callbacks.append(KeepCheckpoints(checkpoint_dir, images))
        print(f"keeping checkpoints after steps {recipe.checkpoint_steps()} in {checkpoint_dir}", flush=True)
    trainer = L.Trainer(max_steps=recipe.steps, accelerator="auto", devices=1,
                        precision=LIGHTNING_PRECISION[used["precision"]],
                        logger=TensorBoardLogger(str(log_dir), name=recipe.fingerprint()),
                        callbacks=callbacks, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=5)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, loader)
    if trainer.received_sigterm or trainer.global_step < recipe.steps:
        raise RuntimeError(f"pretraining stopped after {trainer.global_step} of {recipe.steps} steps"
                           + (" (SIGTERM)" if trainer.received_sigterm else ""))
    save_model(module.transformer, out_dir)
    losses, n_final = module.losses, max(1, recipe.steps // 10)
    card = {
        "model": "DiTTransformer2DModel (pixel space), unconditional (null label)",
        "data": f"{len(images)} synthetic images ({recipe.fgvc_images} fine-grained birds, {recipe.scene_images} "
                f"scenes), random {recipe.image_size}x{recipe.image_size} crops + flips, seeds disjoint from the "
                f"benchmark data",
        "data_seeds": data_seeds(recipe),
        "steps": recipe.steps, "batch_size": recipe.batch_size, "lr": recipe.lr,
        "checkpoints": {f"step-{n:05d}": n for n in recipe.checkpoint_steps()} if checkpoint_dir else {},
        "precision": used["precision"], "precision_requested": recipe.precision,
        "initial_loss": float(np.mean(losses[:10])), "final_loss": float(np.mean(losses[-n_final:])),
        "fixed_draw_loss": {"before": before, "after": fixed_draw_loss(module, images)},
        "losses": [round(v, 5) for v in losses],
        "seconds": time.perf_counter() - start, "measured_step_seconds": step,
        "recipe_fingerprint": recipe.fingerprint(), "recipe": asdict(recipe),
        "weights_dtype": "float16", "weights_sha256": weights_digest(out_dir), "torch": torch.__version__,
        "hardware": hardware(),
    }
    atomic_write_json(out_dir / "card.json", card)
    return card


def save_model(transformer, folder: Path) -> None:
    """``folder/transformer`` (float16 weights) and ``folder/scheduler`` (the DiT-XL/2 DDPM process)."""
    from diffusers import DDPMScheduler

    save_float16(transformer, folder / "transformer")
    DDPMScheduler(**SCHEDULER).save_pretrained(folder / "scheduler")


def save_float16(transformer, folder: Path) -> None:
    """``save_pretrained`` with float16 weights (diffusers loads them back as float32); ``transformer`` is left
    in float32."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "modules to keep in float32: []": there are none in a DiT
    try:
        transformer.to(torch.float16).save_pretrained(folder)
    finally:
        transformer.float()
        diffusers_logging.set_verbosity(level)


def weights_digest(folder: Path) -> str:
    """sha256 over the transformer's weight files (a truncated or flipped byte shows)."""
    digest = hashlib.sha256()
    for f in sorted((Path(folder) / "transformer").glob("*.safetensors")):
        digest.update(f.read_bytes())
    return digest.hexdigest()
