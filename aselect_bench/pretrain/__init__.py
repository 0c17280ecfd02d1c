"""The demo DiT, pretrained by the suite itself (DDPM objective on synthetic images) and cached.

:mod:`~aselect_bench.pretrain.training` holds the recipe, the data and the LightningModule;
:mod:`~aselect_bench.pretrain.demo` the cache (build once, check, rebuild), loading and the CLI command.
"""

from aselect_bench.pretrain.demo import (
    add_parser,
    add_pretrain_arguments,
    check_folder,
    demo_folder,
    load_demo_backbone,
    pretrain_demo,
    run,
    run_pretrain,
)
from aselect_bench.pretrain.training import SCHEDULER, DiffusionPretrainer, Recipe, pretraining_images, train

__all__ = [
    "SCHEDULER", "DiffusionPretrainer", "Recipe", "add_parser", "add_pretrain_arguments", "check_folder",
    "demo_folder", "load_demo_backbone", "pretrain_demo", "pretraining_images", "run", "run_pretrain", "train",
]
