"""The demo DiT: a small pixel-space ``DiTTransformer2DModel`` the suite pretrains itself and caches.

Real DDPM training: epsilon prediction, 1000 steps, linear betas 1e-4..0.02, uniform timesteps, MSE;
unconditional (every sample carries the null label). Data: the synthetic fine-grained and scene images
(other seeds than the benchmark data), 32x32 in [-1, 1], random horizontal flips. The model is saved in
diffusers layout under ``$ASELECT_CACHE/demo-dit/<recipe fingerprint>/`` with a ``card.json``; a
folder without a complete card, or whose weights fail to load, is rebuilt.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from aselect_bench.backbones.presets import DEMO_TRANSFORMER
from aselect_bench.io import atomic_write_json, cache_dir


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the demo weights (its hash names the cache folder)."""

    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 40
    fgvc_images: int = 2400
    scene_images: int = 1200
    image_size: int = 32
    seed: int = 0
    precision: str = "bf16-mixed"
    transformer: tuple = tuple(sorted(DEMO_TRANSFORMER.items()))
    data_version: str = field(default_factory=lambda: _generator_versions())

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:12]


def _generator_versions() -> str:
    """The synthetic generators' versions: new images mean new demo weights."""
    from aselect_bench.data import synth_ade20k, synth_fgvc

    return f"birds-v{synth_fgvc.GENERATOR_VERSION}-scenes-v{synth_ade20k.GENERATOR_VERSION}"


def pretraining_images(recipe: Recipe) -> torch.Tensor:
    """``[N, 3, S, S]`` in [-1, 1]: synthetic birds and scenes, seeds disjoint from the benchmark data."""
    from aselect_bench.data.synth_ade20k import render_scenes
    from aselect_bench.data.synth_fgvc import render_samples

    birds, _ = render_samples(recipe.fgvc_images // 12, 12, 64, seed=10_000 + recipe.seed)
    scenes, _ = render_scenes(recipe.scene_images, 64, seed=20_000 + recipe.seed)
    images = torch.from_numpy(np.concatenate([birds, scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
    return F.interpolate(images, size=recipe.image_size, mode="bilinear", antialias=True, align_corners=False)


class DiffusionPretrainer(L.LightningModule):
    """Trains ``transformer`` to predict the noise of ``x_t`` (DDPM objective)."""

    def __init__(self, transformer, recipe: Recipe):
        super().__init__()
        from aselect_bench.backbones.noise import DDPMNoise

        self.transformer, self.recipe = transformer, recipe
        self.register_buffer("alphas_cumprod", DDPMNoise.from_config().alphas_cumprod.float())
        self.null_class = transformer.config.num_embeds_ada_norm
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        (x0,) = batch
        x0 = torch.where(torch.rand(len(x0), 1, 1, 1, device=x0.device) < 0.5, x0, x0.flip(-1))
        t = torch.randint(0, len(self.alphas_cumprod), (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        labels = torch.full((len(x0),), self.null_class, device=x0.device, dtype=torch.long)
        pred = self.transformer(x_t, timestep=t, class_labels=labels).sample[:, : x0.shape[1]]
        loss = F.mse_loss(pred.float(), eps)
        self.losses.append(loss.item())
        self.log("pretrain/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        r = self.recipe
        opt = torch.optim.AdamW(self.transformer.parameters(), lr=r.lr, weight_decay=0.0)

        def factor(step):
            if step < r.warmup:
                return (step + 1) / r.warmup
            return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - r.warmup) / max(1, r.steps - r.warmup))))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                                   "interval": "step"}}


def train(recipe: Recipe, out_dir: Path, progress: bool = True, log_dir="runs/pretrain") -> dict:
    """Train with ``recipe`` and save ``transformer/``, ``scheduler/`` and ``card.json`` in ``out_dir``."""
    from diffusers import DDPMScheduler, DiTTransformer2DModel
    from lightning.pytorch.loggers import TensorBoardLogger

    start = time.perf_counter()
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    images = pretraining_images(recipe)
    transformer = DiTTransformer2DModel(**dict(recipe.transformer))
    module = DiffusionPretrainer(transformer, recipe)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=recipe.batch_size,
                                         shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(recipe.seed))
    trainer = L.Trainer(max_steps=recipe.steps, accelerator="auto", devices=1, precision=recipe.precision,
                        logger=TensorBoardLogger(str(log_dir), name="demo-dit"), enable_checkpointing=False,
                        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, loader)
    transformer.save_pretrained(out_dir / "transformer")
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                  beta_schedule="linear").save_pretrained(out_dir / "scheduler")
    losses = module.losses
    card = {
        "model": "DiTTransformer2DModel (pixel space)", "recipe": asdict(recipe),
        "recipe_fingerprint": recipe.fingerprint(),
        "data": f"{len(images)} synthetic images ({recipe.fgvc_images} fine-grained birds, {recipe.scene_images} "
                f"scenes) at {recipe.image_size}x{recipe.image_size}, seeds disjoint from the benchmark data",
        "steps": recipe.steps, "batch_size": recipe.batch_size,
        "initial_loss": float(np.mean(losses[:10])), "final_loss": float(np.mean(losses[-20:])),
        "seconds": time.perf_counter() - start, "torch": torch.__version__,
    }
    atomic_write_json(out_dir / "card.json", card)
    return card


def demo_folder(recipe: Recipe | None = None) -> Path:
    return cache_dir() / "demo-dit" / (recipe or Recipe()).fingerprint()


def _loadable(folder: Path) -> bool:
    """A complete card and weights that load (a partial or corrupt folder is not)."""
    from aselect_bench.backbones.loading import load_backbone
    from aselect_bench.errors import UserError

    if not (folder / "card.json").exists():
        return False
    try:
        json.loads((folder / "card.json").read_text())
        load_backbone(str(folder))
        return True
    except (UserError, ValueError, OSError, RuntimeError):
        return False


def ensure_demo(recipe: Recipe | None = None, progress: bool = True, force: bool = False) -> Path:
    """The cached demo model folder, pretraining it first if it is missing, partial or corrupt."""
    recipe = recipe or Recipe()
    folder = demo_folder(recipe)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process pretrains, the others wait and then load
        if not force and _loadable(folder):
            return folder
        if folder.exists():
            warnings.warn(f"the cached demo DiT in {folder} is incomplete or corrupt; rebuilding it", stacklevel=2)
            shutil.rmtree(folder)
        print(f"pretraining the demo DiT once ({recipe.steps} steps, a few minutes on a CPU) into {folder}")
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        train(recipe, tmp, progress)
        tmp.rename(folder)
    return folder


def load_demo_backbone(pretrained: bool = True, seed: int = 0):
    """The ``demo`` preset: the cached pretrained demo DiT (built on first use), named ``demo``."""
    from aselect_bench.backbones.loading import load_backbone

    if not pretrained:
        return load_backbone("demo", pretrained=False, seed=seed)
    backbone = load_backbone(str(ensure_demo()))
    backbone.name = "demo"
    return backbone


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain the demo DiT (DDPM objective) into the cache",
                       description="Train the demo preset's small pixel-space DiT with the DDPM objective on the "
                                   "synthetic images and cache it in diffusers layout ($ASELECT_CACHE/demo-dit/).")
    p.add_argument("--steps", type=int, default=Recipe.steps, help=f"optimizer steps (default {Recipe.steps})")
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="retrain even if a valid cached model exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> Path:
    recipe = Recipe(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    folder = ensure_demo(recipe, force=args.force)
    card = json.loads((folder / "card.json").read_text())
    print(f"demo DiT in {folder}: loss {card['initial_loss']:.3f} -> {card['final_loss']:.3f} "
          f"in {card['seconds']:.0f}s")
    return folder
