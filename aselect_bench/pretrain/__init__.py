"""The demo DiT, pretrained by the suite itself (DDPM objective on synthetic images) and shipped in ``demo_dit/``.

:mod:`~aselect_bench.pretrain.training` holds the recipe, the data, the LightningModule and the card;
:mod:`~aselect_bench.pretrain.demo` rebuilding (cache or ``--ship``), checks and the CLI command;
:mod:`~aselect_bench.pretrain.progress` the steps/ETA/loss line.
"""

from aselect_bench.pretrain.demo import (
    add_parser,
    add_pretrain_arguments,
    check_folder,
    checkpoint_folder,
    demo_folder,
    load_demo_backbone,
    pretrain_demo,
    run,
    run_pretrain,
)
from aselect_bench.pretrain.training import SCHEDULER, DiffusionPretrainer, Recipe, pretraining_images, train

__all__ = [
    "SCHEDULER", "DiffusionPretrainer", "Recipe", "add_parser", "add_pretrain_arguments", "check_folder", "checkpoint_folder", "checkpoint_folder",
    "demo_folder", "load_demo_backbone", "pretrain_demo", "pretraining_images", "run", "run_pretrain", "train",
]
