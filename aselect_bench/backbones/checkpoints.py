"""Strict loading of diffusers model folders: the right class, every tensor from the checkpoint, or one clear error.

A folder's ``config.json`` names its class (``_class_name``); ``folder_class`` reads it. ``load_strict``
compares the checkpoint's tensor names and shapes (read from the file headers, no data) with the model the
config describes, refuses any missing, unexpected or wrongly shaped tensor, then loads with
``low_cpu_mem_usage=True`` (``accelerate``: the weights are materialised once) and checks diffusers' own
loading report as well. No model with a newly initialised tensor leaves this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from aselect_bench.errors import UserError
from aselect_bench.io import display_path, file_identity

WEIGHTS_STEM = "diffusion_pytorch_model"  # diffusers' file name, in the order it looks for them
WEIGHTS_FILES = (f"{WEIGHTS_STEM}.safetensors.index.json", f"{WEIGHTS_STEM}.safetensors",
                 f"{WEIGHTS_STEM}.bin.index.json", f"{WEIGHTS_STEM}.bin")
EXAMPLES = 3  # keys named in an error message


@dataclass(frozen=True)
class FolderParts:
    """A diffusers folder split into what a backbone family needs.

    ``root``: the pipeline folder (or the bare transformer folder); ``transformer``: its ``transformer/``
    (or ``root``); ``vae``: ``vae/`` or ``None`` (pixel space); ``scheduler``: the scheduler config (``{}``
    when absent); ``class_name``: the transformer's ``_class_name``; ``source``: the hub id or folder as given;
    ``name``: the backbone's name; ``spec``: the registry's ``ModelSpec`` when the source is a registered model
    (its sizes, e.g. the resolution to run at), else ``None``.
    """

    root: Path
    transformer: Path
    vae: Path | None
    scheduler: dict
    class_name: str
    source: str
    name: str
    spec: object | None = None

    @property
    def weights_id(self) -> str:
        """``<source>@<digest>``: the hub id or folder (:func:`~aselect_bench.io.display_path`), and a digest of
        its model files' identities; a demo DiT of this suite (a ``card.json`` with the weights' sha256) is named
        by its content instead: ``<name>@sha256:<12 hex digits>``, the same on every machine."""
        card = self.root / "card.json"
        sha = read_config(card).get("weights_sha256") if card.is_file() else None
        if sha:
            return f"{self.name if self.name != self.source else self.root.name}@sha256:{sha[:12]}"
        return f"{display_path(self.source)}@{folder_digest(self.transformer, self.vae)}"


#: Folders saved before diffusers had per-model classes name the generic ``Transformer2DModel`` (the released
#: DiT-XL/2 checkpoints do); diffusers itself loads them as the class their ``norm_type`` stands for.
LEGACY_CLASSES = {"Transformer2DModel": {"ada_norm_zero": "DiTTransformer2DModel",
                                         "ada_norm_single": "PixArtTransformer2DModel"}}


def read_config(config_file: Path) -> dict:
    """A diffusers JSON config (``config.json``, ``scheduler_config.json``) as a dict, or one clear error."""
    try:
        config = json.loads(Path(config_file).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the model config {config_file}: {err}; restore it, or re-save the model with "
                        f"diffusers' save_pretrained") from None
    if not isinstance(config, dict):
        raise UserError(f"the model config {config_file} holds a JSON {type(config).__name__}, not an object of "
                        f"settings; restore it, or re-save the model with diffusers' save_pretrained")
    return config


def folder_class(config_file: Path) -> str:
    """The model class a diffusers ``config.json`` declares (``_class_name``; a legacy ``Transformer2DModel`` as
    the class its ``norm_type`` stands for), or a one-line error when it names none."""
    config = read_config(config_file)
    name = config.get("_class_name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{config_file} names no diffusers model class (_class_name); use a folder written by "
                        f"diffusers' save_pretrained")
    return LEGACY_CLASSES.get(name, {}).get(config.get("norm_type"), name)


def folder_digest(*folders: Path | None) -> str:
    """A short digest (12 hex digits) of the identities (path, size, mtime) of every file in ``folders``."""
    h = hashlib.blake2b(digest_size=6)
    for folder in folders:
        if folder is not None:
            for f in sorted(Path(folder).iterdir()):
                if f.is_file():
                    h.update(f"{file_identity(f.resolve())}\n".encode())
    return h.hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint file(s) diffusers reads in ``folder`` (safetensors first; shards through their index)."""
    for name in WEIGHTS_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".index.json"):
                shards = read_config(path).get("weight_map")
                if not isinstance(shards, dict):
                    raise UserError(f"the shard index {path} has no 'weight_map' object; restore it, or re-save the "
                                    f"model with diffusers' save_pretrained")
                return [folder / s for s in sorted(set(shards.values()))]
            return [path]
    raise UserError(f"no weights in {folder}: expected {WEIGHTS_FILES[1]} (or {WEIGHTS_FILES[3]}); save the model "
                    f"with diffusers' save_pretrained, or use pretrained=False for random weights")


def checkpoint_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of a checkpoint, read from the safetensors headers (``.bin``: memory-mapped)."""
    import torch
    from safetensors import safe_open

    shapes = {}
    for f in files:
        try:
            if f.suffix == ".safetensors":
                with safe_open(f, framework="pt") as table:
                    shapes.update({k: tuple(table.get_slice(k).get_shape()) for k in table.keys()})  # noqa: SIM118
            else:
                state = torch.load(f, map_location="cpu", mmap=True, weights_only=True)
                shapes.update({k: tuple(v.shape) for k, v in state.items()})
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file: one clear message
            raise UserError(f"cannot read the checkpoint {f} ({type(err).__name__}: {str(err)[:120]}); re-download "
                            f"it or re-save the model with diffusers' save_pretrained") from None
    return shapes


def meta_model(cls, folder: Path):
    """The model ``folder``'s config describes, built on the meta device (no memory, no initialisation)."""
    import torch

    with torch.device("meta"):
        return cls.from_config(cls.load_config(folder))


def weight_problems(model, found: dict, files: list[Path]) -> dict[str, list[str]]:
    """Missing, unexpected and wrongly shaped tensors (``name: checkpoint shape vs model shape``), sorted, of a
    checkpoint ``{name: shape}`` for ``model``. Legacy names are first renamed as diffusers renames them on load
    (an old VAE's ``query``/``key``/``value``/``proj_attn``; one-file checkpoints only, as diffusers does)."""
    found = dict(found)
    if len(files) == 1 and hasattr(model, "_fix_state_dict_keys_on_load"):
        model._fix_state_dict_keys_on_load(found)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mismatched = [f"{k} {list(found[k])} vs model {list(v)}" for k, v in expected.items()
                  if k in found and tuple(found[k]) != tuple(v)]
    return {"missing": sorted(set(expected) - set(found)), "unexpected": sorted(set(found) - set(expected)),
            "wrongly shaped": sorted(mismatched)}


def refuse_problems(problems: dict[str, list[str]], files: list[Path], cls_name: str) -> None:
    """Raise one line naming how many tensors are missing / unexpected / wrongly shaped, with examples."""
    parts = [f"{len(keys)} {kind} tensor{'s' if len(keys) > 1 else ''} (e.g. {', '.join(keys[:EXAMPLES])})"
             for kind, keys in problems.items() if keys]
    if parts:
        where = files[0] if len(files) == 1 else f"{files[0].parent} ({len(files)} shards)"
        raise UserError(f"the checkpoint {where} does not match its {cls_name} config: {'; '.join(parts)}; "
                        f"refusing a partial load. Use the checkpoint saved with this config (diffusers' "
                        f"save_pretrained), or pretrained=False for random weights")


def load_strict(cls, folder: Path):
    """``cls.from_pretrained(folder)`` (eval mode) with every tensor from the checkpoint, or a :class:`UserError`."""
    folder = Path(folder)
    files = weight_files(folder)
    refuse_problems(weight_problems(meta_model(cls, folder), checkpoint_shapes(files), files), files, cls.__name__)
    try:
        model, info = cls.from_pretrained(folder, low_cpu_mem_usage=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"could not load {cls.__name__} from {folder}: {first[:200]}; re-save the folder with "
                        f"diffusers' save_pretrained") from None
    mismatched = [f"{k} {list(a)} vs model {list(b)}" for k, a, b in info.get("mismatched_keys", [])]
    refuse_problems({"missing": sorted(info.get("missing_keys", [])),
                     "unexpected": sorted(info.get("unexpected_keys", [])),
                     "wrongly shaped": mismatched, "unloadable": list(info.get("error_msgs", []))},
                    files, cls.__name__)
    return model
