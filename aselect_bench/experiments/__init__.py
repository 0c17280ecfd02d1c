"""Experiments: a benchmark preset + a task + a dataset -> ready parts (data, heads, HFR selector).

:func:`build_experiment` does the I/O (synthetic data written when missing, the datamodule set up); the
experiment classes only hold and use their parts.
"""

from __future__ import annotations

from aselect_bench.errors import UserError
from aselect_bench.experiments.ade20k import ADE20KExperiment, ade20k_datamodule, segmentation_task
from aselect_bench.experiments.base import (
    Experiment,
    claim_synthetic_root,
    dataset_path,
    ensure_synthetic_dataset,
    hfr_selector,
    prepare_dataset,
    preset_backbone,
)
from aselect_bench.experiments.fgvc import FGVCExperiment, fgvc_datamodule, fgvc_probe, fused_probe
from aselect_bench.settings import BenchPreset

__all__ = ["Experiment", "FGVCExperiment", "ADE20KExperiment", "build_experiment", "claim_synthetic_root", "dataset_path",
           "ensure_synthetic_dataset", "hfr_selector", "fgvc_datamodule", "fgvc_probe", "fused_probe", "ade20k_datamodule",
           "segmentation_task",
           "prepare_dataset", "preset_backbone"]


def build_experiment(task: str, dataset: str, preset: BenchPreset, backbone) -> Experiment:
    """The experiment for ``task`` (``fgvc`` or ``ade20k``) on ``dataset`` under ``preset``, its data ready
    (``preset.data_root``; synthetic data written first when the preset is synthetic)."""
    if task == "fgvc":
        root = prepare_dataset(preset, "fgvc", dataset)
        return FGVCExperiment(preset, dataset, backbone, fgvc_datamodule(preset, dataset, backbone, root))
    if task == "ade20k":
        root = prepare_dataset(preset, "ade20k", "ade20k")
        return ADE20KExperiment(preset, backbone, ade20k_datamodule(preset, backbone, root))
    raise UserError(f"unknown task {task!r}: use fgvc or ade20k")

