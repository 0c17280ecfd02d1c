"""``load_backbone(source)``: a registered model's name, a Hugging Face hub id, or a local diffusers folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from aselect_bench.backbones import flux, pixart, sana, sd3
from aselect_bench.backbones.backbone import Backbone
from aselect_bench.backbones.checkpoints import FolderParts, folder_class, load_strict, read_config
from aselect_bench.backbones.dit import DiTFamily
from aselect_bench.backbones.family import random_modules
from aselect_bench.backbones.noise import DDPMNoise
from aselect_bench.backbones.registry import MODELS, ModelSpec
from aselect_bench.errors import UserError
from aselect_bench.io import display_path, hf_offline


def load_backbone(source: str, device="cpu", dtype=torch.float32, pretrained: bool = True, seed: int = 0) -> Backbone:
    """Build a frozen :class:`Backbone` from ``source``.

    ``source``: a registered model's name (:data:`~aselect_bench.backbones.registry.MODELS`: ``dit-xl-2-256``,
    ``sd3-medium``, ``pixart-sigma-1024``, ``flux.1-dev``, ``sana-1600m-1024``, ``tiny-*``, ``demo``, ...), a
    hub id in diffusers layout, or a local folder (a pipeline folder of DiT, SD3, PixArt, Flux or Sana with
    ``transformer/`` and optionally ``vae/``, ``scheduler/``, text encoders; or a bare transformer folder: pixel
    space). A folder's transformer class picks the family (:data:`FOLDER_FAMILIES`; any other class is refused)
    and its weights load strictly (every tensor from the checkpoint). ``pretrained=False`` builds a registered
    model's architecture with random weights (seeded by ``seed``, ``weights_id == "random-init-seed<seed>"``);
    the test models (``tiny-*``) have no weights.
    """
    source = str(source)
    spec = MODELS.get(source)
    if spec is not None and pretrained and spec.folder is not None:
        backbone = _from_diffusers(str(_shipped(spec)), name=spec.name)
    elif spec is not None and (not pretrained or spec.hub_id is None):
        backbone = _random_backbone(spec, seed)
    elif spec is not None:
        backbone = _from_diffusers(spec.hub_id, name=spec.name, spec=spec)
    elif Path(source).expanduser().exists():
        backbone = _from_diffusers(str(Path(source).expanduser().resolve()), name=display_path(source))
    elif _looks_like_hub_id(source):
        backbone = _from_diffusers(source, name=source)
    else:
        check_source(source)
    return backbone.to(device=device, dtype=dtype)


def check_source(source: str) -> None:
    """``source`` names a backbone :func:`load_backbone` can look for (a registered model, an existing folder, a hub
    id), or one :class:`UserError` saying what it accepts; nothing is loaded."""
    if source in MODELS or Path(source).expanduser().exists() or _looks_like_hub_id(source):
        return
    raise UserError(
        f"unknown backbone {source!r}: use a registered model ({', '.join(MODELS)}), a Hugging Face hub id "
        f"(owner/name), or an existing local folder in diffusers layout"
    )


def _shipped(spec: ModelSpec) -> Path:
    """The registered model's folder inside the package, or one clear error when the install lacks it."""
    if not (spec.folder / "transformer" / "config.json").exists():
        raise UserError(f"the {spec.name!r} model's weights are missing from {spec.folder}: reinstall the "
                        f"package, or rebuild them with 'aselect-bench pretrain --ship'")
    return spec.folder


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def _random_backbone(spec: ModelSpec, seed: int) -> Backbone:
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    if spec.family in RANDOM_FAMILIES:
        return RANDOM_FAMILIES[spec.family](spec, seed)
    transformer, vae = random_modules(spec, seed, DiTTransformer2DModel, AutoencoderKL)
    return Backbone(DiTFamily(transformer), DDPMNoise.from_config(spec.scheduler), vae,
                    name=spec.name, weights_id=f"random-init-seed{seed}")


def _dit_from_folder(parts: FolderParts) -> Backbone:
    """A DiT (``DiTTransformer2DModel``, optionally with its VAE) from a diffusers folder, strictly."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    transformer = load_strict(DiTTransformer2DModel, parts.transformer)
    vae = load_strict(AutoencoderKL, parts.vae) if parts.vae else None
    return Backbone(DiTFamily(transformer), DDPMNoise.from_config(parts.scheduler), vae,
                    name=parts.name, weights_id=parts.weights_id)


#: The one table of transformer classes a folder may hold: ``_class_name`` -> builder of its Backbone.
FOLDER_FAMILIES: dict[str, Callable[[FolderParts], Backbone]] = {
    "DiTTransformer2DModel": _dit_from_folder,
    sd3.SD3_CLASS: sd3.backbone_from_parts,
    pixart.PIXART_CLASS: pixart.backbone_from_parts,
    flux.FLUX_CLASS: flux.backbone_from_parts,
    sana.SANA_CLASS: sana.backbone_from_parts,
}
#: Builders of a registered model's architecture with random weights, by ``ModelSpec.family`` (DiT's is
#: :func:`_random_backbone`).
RANDOM_FAMILIES = {"sd3": sd3.random_backbone, "pixart": pixart.random_backbone, "flux": flux.random_backbone,
                   "sana": sana.random_backbone}


def _from_diffusers(where: str, name: str, spec: ModelSpec | None = None) -> Backbone:
    """A Backbone from a local diffusers folder or a hub id (offline-safe), dispatched on its transformer class."""
    parts = _folder_parts(_resolve_folder(where), source=where, name=name, spec=spec)
    build = FOLDER_FAMILIES.get(parts.class_name)
    if build is None:
        raise UserError(
            f"{parts.transformer / 'config.json'} holds a {parts.class_name}, which this suite cannot use as a "
            f"backbone; supported transformer classes: {', '.join(FOLDER_FAMILIES)}"
        )
    return build(parts)


def _folder_parts(folder: Path, source: str, name: str, spec: ModelSpec | None = None) -> FolderParts:
    """Split a pipeline folder (``transformer/``, ``vae/``, ``scheduler/``) or a bare transformer folder."""
    if (folder / "config.json").exists() and not (folder / "transformer").exists():
        transformer_dir, vae_dir, sched = folder, None, {}  # a bare transformer folder: pixel space
    elif (folder / "transformer" / "config.json").exists():
        transformer_dir = folder / "transformer"
        vae_dir = folder / "vae" if (folder / "vae" / "config.json").exists() else None
        sched_file = folder / "scheduler" / "scheduler_config.json"
        sched = read_config(sched_file) if sched_file.exists() else {}
    else:
        raise UserError(
            f"{folder} is not a diffusers model folder: expected transformer/config.json (a pipeline folder) or "
            f"config.json (a bare transformer folder) of one of: {', '.join(FOLDER_FAMILIES)}"
        )
    class_name = folder_class(transformer_dir / "config.json")
    if vae_dir is None:
        _check_pixel_space(folder, transformer_dir, class_name)
    return FolderParts(root=folder, transformer=transformer_dir, vae=vae_dir, scheduler=sched,
                       class_name=class_name, source=source, name=name, spec=spec)


#: Input channels of a transformer that reads pixels: RGB, or Flux's 2x2-packed RGB.
PIXEL_CHANNELS = {flux.FLUX_CLASS: 12}


def _check_pixel_space(folder: Path, transformer_dir: Path, class_name: str) -> None:
    """Without a VAE the model sees pixels: its transformer must take RGB (:data:`PIXEL_CHANNELS`), else one line on
    the missing VAE."""
    channels = read_config(transformer_dir / "config.json").get("in_channels")
    if channels in (None, PIXEL_CHANNELS.get(class_name, 3)):
        return
    if transformer_dir == folder:
        where = (f"{folder} is a bare transformer folder, which runs in pixel space (RGB); pass the pipeline folder "
                 f"that holds it with its vae/")
    elif (folder / "vae").is_dir():
        where = (f"{folder / 'vae'} is empty or has no config.json; restore the VAE (its config.json and weights, "
                 f"as the model's repository ships them)")
    else:
        where = f"{folder} has no vae/; add the VAE folder (config.json and weights, as the model's repository ships them)"
    raise UserError(f"the transformer in {transformer_dir} takes {channels}-channel latents, so it needs its VAE: {where}")


def _resolve_folder(where: str) -> Path:
    """A local folder as is; a hub id through the Hugging Face cache (then the hub unless offline)."""
    path = Path(where).expanduser()
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "transformer/*", "vae/*", "scheduler/*", *(f"{p}/*" for p in sd3.TEXT_PARTS)]
    try:
        return Path(snapshot_download(where, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: try the hub below
        pass
    offline = hf_offline()
    if not offline:
        try:
            return Path(snapshot_download(where, allow_patterns=patterns, etag_timeout=10))
        except Exception:  # noqa: BLE001 - reported as one clear message below
            pass
    hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    raise UserError(
        f"no weights for {where!r}: looked in the Hugging Face cache ({hf_home}/hub) and "
        f"{'not online (HF_HUB_OFFLINE is set)' if offline else 'on the hub (unreachable)'}. Provide a local "
        f"folder in diffusers layout (with transformer/ and vae/, e.g. a DiTPipeline.save_pretrained folder) "
        f"as the backbone source, or set HF_HOME to a cache that holds {where} (gated repositories such as "
        f"Stability's: accept the licence on huggingface.co, `hf auth login` and download on a machine online)"
    )
