"""The demo DiT: the shipped weights, rebuilding them (file lock, temp folder + rename), checks, the CLI command.

The pretrained weights ship inside the package (``aselect_bench/pretrain/demo_dit/``, the registry's
``demo`` model names that folder). ``aselect-bench pretrain`` reproduces them: into
``cache_dir()/demo-dit/<recipe fingerprint>/`` by default, into the package folder with ``--ship``; the
checkpoints kept along the way (the recipe's fractions of the steps) go to
``cache_dir()/demo-dit-checkpoints/<recipe fingerprint>/``. A folder
holds ``transformer/``, ``scheduler/`` and ``card.json``; one whose card is missing or unreadable, whose
weights do not match the card's sha256, or that does not load is rebuilt with a warning.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from aselect_bench.argtypes import non_negative_int, positive_int
from aselect_bench.backbones.registry import DEMO_FOLDER
from aselect_bench.cache import cache_dir
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_folder
from aselect_bench.precision import PRECISIONS
from aselect_bench.pretrain.training import Recipe, train, weights_digest

OUR_ENTRIES = {"transformer", "scheduler", "card.json"}


def demo_folder(recipe: Recipe | None = None) -> Path:
    """``cache_dir()/demo-dit/<fingerprint>``: where ``recipe`` (default: the demo recipe) is cached."""
    return cache_dir() / "demo-dit" / (recipe or Recipe()).fingerprint()


def checkpoint_folder(fingerprint: str | None = None) -> Path:
    """``cache_dir()/demo-dit-checkpoints/<fingerprint>`` (default: the demo recipe's): where training that
    recipe keeps its checkpoints (``step-NNNNN/`` folders, loadable with ``--backbone``); never shipped."""
    return cache_dir() / "demo-dit-checkpoints" / (fingerprint or Recipe().fingerprint())


def check_folder(folder: Path, recipe: Recipe | None = None) -> str | None:
    """Why ``folder`` is not a complete pretrained demo model for ``recipe`` (``None``: it is)."""
    from aselect_bench.backbones.loading import load_backbone

    try:
        card = json.loads((folder / "card.json").read_text())
    except (OSError, ValueError):
        return "it has no readable card.json (an interrupted or partial build)"
    if recipe is not None and card.get("recipe_fingerprint") != recipe.fingerprint():
        return f"its card is for recipe {card.get('recipe_fingerprint')}, not {recipe.fingerprint()}"
    if "weights_sha256" in card and card["weights_sha256"] != weights_digest(folder):
        return "its weights do not match the card (truncated or modified)"
    try:
        load_backbone(str(folder))
    except (UserError, OSError, RuntimeError) as err:
        return f"its weights do not load ({err})"
    return None


@contextmanager
def _locked(folder: Path):
    """An exclusive ``fcntl`` lock next to ``folder``: one process builds, the others wait, then reuse."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pretrain_demo(out_dir=None, steps: int | None = None, batch_size: int | None = None, seed: int = 0,
                  progress: bool = True, force: bool = False, recipe: Recipe | None = None,
                  ship: bool = False) -> Path:
    """Pretrain the demo DiT (or reuse a complete earlier build) and return its diffusers folder.

    ``out_dir``: default ``cache_dir()/demo-dit/<recipe fingerprint>``; ``ship``: the package folder
    (``DEMO_FOLDER``, only with the unchanged demo recipe); ``steps``/``batch_size``/``seed`` override
    ``recipe`` (default: the demo :class:`Recipe`); ``force`` retrains anyway. The model is trained in a
    temporary folder and renamed into place, under a file lock.
    """
    sizes = {k: v for k, v in dict(steps=steps, batch_size=batch_size).items() if v is not None}
    recipe = replace(recipe or Recipe(), seed=seed, **sizes)
    if ship and (out_dir is not None or recipe != Recipe()):
        raise UserError("--ship writes the package's demo weights, which must come from the unchanged demo "
                        "recipe: drop --out, --steps, --batch-size and --seed (or drop --ship)")
    folder = DEMO_FOLDER if ship else Path(out_dir).expanduser() if out_dir is not None else demo_folder(recipe)
    with _locked(folder):
        problem = "--force was given" if force else check_folder(folder, recipe) if folder.exists() else "missing"
        if problem is None:
            return folder
        if folder.exists():
            foreign = {p.name for p in folder.iterdir()} - OUR_ENTRIES
            if foreign:
                raise UserError(f"{folder} holds other files ({', '.join(sorted(foreign))}); refusing to replace "
                                f"it with the demo DiT: choose an empty or new --out folder")
            if not force:
                warnings.warn(f"rebuilding the cached demo DiT in {folder}: {problem}", stacklevel=2)
        print(f"pretraining the demo DiT into {folder}", flush=True)
        with atomic_folder(folder) as tmp:
            train(recipe, tmp, progress, checkpoint_dir=checkpoint_folder(recipe.fingerprint()))
    return folder


def load_demo_backbone(pretrained: bool = True, seed: int = 0):
    """The registered ``demo`` model as a frozen ``Backbone`` named ``demo``.

    ``pretrained=False``: the architecture with random weights (``seed``); ``True`` with ``seed=0``: the
    shipped weights (no training); another ``seed``: that seed's model, pretrained into the cache on first use.
    """
    from aselect_bench.backbones.loading import load_backbone

    if not pretrained or seed == 0:
        return load_backbone("demo", pretrained=pretrained, seed=seed)
    backbone = load_backbone(str(pretrain_demo(seed=seed)))
    backbone.name = "demo"
    return backbone


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``aselect-bench pretrain`` options: ``--steps --batch-size --out --seed --force --precision --ship``."""
    r = Recipe()
    parser.add_argument("--steps", type=positive_int, default=r.steps,
                        help=f"optimizer steps (default {r.steps}; the time is estimated from a measured step)")
    parser.add_argument("--batch-size", type=positive_int, default=r.batch_size,
                        help=f"images per step (default {r.batch_size})")
    parser.add_argument("--out", default=None, help="folder to write the diffusers-layout model to (default: the "
                        "cache, $ASELECT_CACHE/demo-dit/<recipe fingerprint>/; --ship writes the package's copy)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the data, the initialisation and the training (default 0)")
    parser.add_argument("--force", action="store_true", help="retrain even when a complete model is already there")
    parser.add_argument("--precision", choices=PRECISIONS, default=r.precision,
                        help=f"training precision (default {r.precision}: bf16 only where the hardware runs it "
                             f"natively, else float32)")
    parser.add_argument("--ship", action="store_true", help=f"write the package's shipped demo weights ({DEMO_FOLDER}) "
                        "with the unchanged recipe: what the registered 'demo' model loads")
    return parser


def run_pretrain(args: argparse.Namespace) -> Path:
    """Run ``aselect-bench pretrain``: build (or reuse) the model, print where it is and its loss."""
    recipe = replace(Recipe(), precision=args.precision)
    folder = pretrain_demo(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed, force=args.force,
                           recipe=recipe, ship=args.ship)
    card = json.loads((folder / "card.json").read_text())
    if card.get("checkpoints"):
        print(f"checkpoints ({', '.join(card['checkpoints'])}) in {checkpoint_folder(card['recipe_fingerprint'])}")
    print(f"demo DiT in {folder}: loss {card['initial_loss']:.3f} -> {card['final_loss']:.3f} "
          f"({card['steps']} steps at batch {card['batch_size']}, precision {card['precision']}, "
          f"{card['seconds']:.0f} s)")
    return folder


def add_parser(sub) -> None:
    """Register ``pretrain`` on the ``aselect-bench`` subparsers (what ``aselect_bench.commands`` expects)."""
    parser = sub.add_parser("pretrain", help="reproduce the demo DiT (DDPM objective) into the cache",
                            description="Train the demo model's small pixel-space DiT with the DDPM objective on "
                                        "synthetic images and save it in diffusers layout with a card.json.")
    add_pretrain_arguments(parser).set_defaults(run=run_pretrain, resumable=False)


run = run_pretrain
