"""The whole estimate: each task's stages measured on one backbone (or, where nothing is timed, projected from its
FLOPs alone), recorded and written."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import torch

from aselect_bench.analyses.estimate.gpu import (
    Plan,
    architecture,
    gpu_projection,
    memory_shortfall,
    recipe_shapes,
)
from aselect_bench.analyses.estimate.inputs import Loaded, load, parameters
from aselect_bench.analyses.estimate.report import device_name, device_slug, write_estimate
from aselect_bench.analyses.estimate.stages import (
    MIN_BATCH,
    TASKS,
    TRAIN_STAGE,
    check_batch,
    cpu_share,
    estimate_ade20k,
    estimate_fgvc,
)
from aselect_bench.backbones.registry import MODELS
from aselect_bench.errors import UserError
from aselect_bench.reports import run_record


def run_estimate(preset, tasks, dataset: str = "cub", steps: int = 3, batch_size: int | None = None,
                 out="results/estimate", say: Callable = print, plan: Plan | None = None,
                 flops_only: bool = False) -> list[dict]:
    """Estimate each of ``tasks`` under ``preset``; writes ``<out>/<preset>-<task>-<device>.{json,md}`` per task.

    With ``plan`` each record also holds ``gpu_projection`` (:mod:`~aselect_bench.analyses.estimate.gpu`). A task
    whose registered model would not fit this machine's memory (:func:`memory_shortfall`), or every task with
    ``flops_only``, is not built nor timed: it is projected from FLOPs alone (``plan``, else one H100 at MFU 0.4)
    and written to ``<out>/<preset>-<task>-flops.{json,md}``."""
    from aselect_bench.precision import training_device

    if steps < 1:
        raise UserError(f"--steps must be at least 1 (got {steps})")
    device = torch.device(training_device())
    for task in tasks:
        if getattr(preset, task) is None:
            raise UserError(f"preset {preset.name!r} has no {task} section: use --task "
                            f"{' or '.join(t for t in TASKS if getattr(preset, t) is not None)}")
        check_batch(task, batch_size if batch_size is not None else MIN_BATCH[task])
        if flops_only and architecture(task_source(preset, task)) is None:
            raise UserError(f"--flops-only counts a registered model's architecture ({', '.join(MODELS)}); "
                            f"{task_source(preset, task)!r} is read with its weights: leave out --flops-only")
    results, loaded = [], None
    for task in tasks:
        source = task_source(preset, task)
        reason = "--flops-only, so nothing was built at real size or timed" if flops_only else \
            memory_shortfall(source, device)
        if reason:
            result = flops_only_record(preset, task, dataset, source, reason, plan or Plan(), say)
            write_estimate(result, out, "flops", say)
            results.append(result)
            continue
        if loaded is None or loaded.source != source:
            loaded = None  # free the previous backbone before building the next
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            loaded = load(source, device, preset.precision, say)
        start = time.perf_counter()
        if task == "fgvc":
            body = estimate_fgvc(preset, dataset, loaded, device, batch_size, steps, say)
        else:
            body = estimate_ade20k(preset, loaded, device, batch_size, steps, say)
        result = task_record(preset, task, loaded, device, body, steps, time.perf_counter() - start)
        if plan is not None:
            shapes = {"sizes": result["projection"]["sizes"], "num_classes": result["num_classes"],
                      "eval_image": result.get("eval_image")}
            result["gpu_projection"] = gpu_projection(preset, task, loaded.backbone, shapes, plan)
        write_estimate(result, out, device_slug(device), say)
        results.append(result)
    return results


def task_source(preset, task: str) -> str:
    """The backbone ``task`` runs on: its own section's, else the preset's."""
    return getattr(preset, task).backbone or preset.backbone


def flops_only_record(preset, task: str, dataset: str, source: str, reason: str, plan: Plan, say: Callable) -> dict:
    """The result file of a task projected from FLOPs alone (``reason``: why nothing was timed): the contract's
    keys (the measured ones empty), the architecture's size and ``gpu_projection``."""
    backbone = architecture(source)
    shapes = recipe_shapes(preset, task, dataset, backbone, say)
    run = {**run_record(preset, backbone), "precision": "bf16 (the projection's: the GPU's bf16 peak)"}
    return {"preset": preset.name, "task": task, "device": None, "weights": None,
            "backbone_params": parameters(backbone.transformer), "peak_memory_bytes": None, "seconds_per_step": {},
            "projection": None, "run": run, "measured": False, "flops_only": reason,
            "backbone": source, "vae_params": parameters(backbone.vae), "image_size": backbone.image_size,
            "dataset": dataset if task == "fgvc" else "ade20k", "num_classes": shapes["num_classes"],
            "data": shapes["data"], "gpu_projection": gpu_projection(preset, task, backbone, shapes, plan)}


def task_record(preset, task: str, loaded: Loaded, device, body: dict, steps: int, seconds: float) -> dict:
    """The result file's content: the contract's keys first, then the details of ``body`` (a task's estimate)."""
    backbone, stages = loaded.backbone, body.pop("stages")
    peaks = [loaded.peak_memory_bytes] + [s["peak_memory_bytes"] for s in stages.values()]
    return {
        "preset": preset.name, "task": task, "device": device_name(device), "weights": loaded.weights,
        "backbone_params": parameters(backbone.transformer), "peak_memory_bytes": max(peaks),
        "seconds_per_step": {k: s["seconds_per_step"] for k, s in stages.items()},
        "projection": body.pop("projection"), "run": run_record(preset, backbone), "measured": True,
        "weights_note": loaded.note, "backbone": loaded.source, "vae_params": parameters(backbone.vae),
        "image_size": backbone.image_size,
        "memory_measure": "CUDA max allocated" if torch.device(device).type == "cuda" else
        "peak resident memory of the process",
        "batch": stages[TRAIN_STAGE[task]]["batch"], "steps": steps, "torch_threads": torch.get_num_threads(),
        "cpu_share": cpu_share(sum(s["cpu_seconds"] for s in stages.values()),
                               sum(s["seconds"] for s in stages.values())),
        "seconds_per_image": {k: s["seconds_per_image"] for k, s in stages.items()},
        "stages": stages, **body, "load_seconds": loaded.seconds, "wall_seconds": seconds,
    }
