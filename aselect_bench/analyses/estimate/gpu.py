"""The recipe's cost on G GPUs of a kind, projected from FLOPs: a projection, not a measurement.

FLOPs per image of each part, counted on the architecture (its configs; nothing is trained):

- the backbone up to the deepest tap the recipe reads (FGVC: its tap; ADE20K: the deepest segmentation block) and
  up to the HFR tap: :func:`aselect_bench.backbones.flops.flops_per_image`;
- the VAE encoder, which every training view passes through: torch's ``FlopCounterMode`` on one ``encode`` of a
  copy of the VAE built on PyTorch's meta device (shapes only, no memory);
- the head: ``FlopCounterMode`` on one forward of the recipe's real head (built on the meta device) over features
  of their real shape. A training step is ``TRAIN_FACTOR`` = 3 x that forward (forward + backward through the head;
  the frozen backbone and the VAE run forward only).

Seconds per image = FLOPs / (peak x mfu) (:func:`~aselect_bench.analyses.projection.flop_seconds`), projected to the
recipe's images, epochs and candidates by the measured projection's own functions (:func:`fgvc_projection`,
:func:`ade20k_projection`): the backbone runs at every training step, as there. A-SelecT (scan + one training) runs
on one GPU; the exhaustive sweep's trainings are one-GPU jobs, ``ceil(candidates / G)`` rounds of one training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aselect_bench.analyses.estimate.inputs import ade20k_inputs, fgvc_inputs, parameters
from aselect_bench.analyses.estimate.report import GIB, ade20k_projection, fgvc_by_dataset, fgvc_projection
from aselect_bench.analyses.estimate.stages import EVAL_STAGE, TRAIN_STAGE, deepest_tap, middle
from aselect_bench.analyses.projection import flop_seconds, sweep_wall_hours
from aselect_bench.errors import UserError


@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float  # dense bf16 tensor-core peak, FLOP/s (no sparsity)


#: Published dense bf16 peaks (the datasheets quote twice these "with sparsity").
GPUS = {
    "h100": GPU("NVIDIA H100 SXM", 989e12),  # NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 TFLOPS sparse (SXM5)
    "h200": GPU("NVIDIA H200 SXM", 989e12),  # NVIDIA H200 datasheet: BF16 1,979 TFLOPS sparse, H100 SXM's compute
    "a100": GPU("NVIDIA A100 SXM", 312e12),  # NVIDIA A100 datasheet: BF16 312 TFLOPS dense (624 sparse)
    "l40s": GPU("NVIDIA L40S", 362e12),  # NVIDIA L40S datasheet: BF16 362.05 TFLOPS dense (733 sparse)
}
#: A training step of the head: forward + backward ~ 3 forwards.
TRAIN_FACTOR = 3
BASIS = "projection from FLOPs, not a measurement"
HEAD_COUNT = (f"torch FlopCounterMode on one forward of the real head at the real feature shape; a training step "
              f"= {TRAIN_FACTOR} x forward")
#: Before building a model at real size: its float32 weights, this share more for activations, the head and the
#: optimizer at the smallest batch, and the process itself.
ACTIVATION_SHARE, PROCESS_BYTES = 0.5, 1 * GIB


@dataclass(frozen=True)
class Plan:
    """``gpus`` GPUs of kind ``gpu`` (a key of :data:`GPUS`), used at the fraction ``mfu`` of their peak."""

    gpu: str = "h100"
    gpus: int = 1
    mfu: float = 0.4

    def __post_init__(self):
        if self.gpu not in GPUS:
            raise UserError(f"unknown GPU {self.gpu!r}: use one of {', '.join(GPUS)}")
        if self.gpus < 1 or not 0 < self.mfu <= 1:
            raise UserError(f"--gpus must be at least 1 and --mfu in (0, 1] (got {self.gpus}, {self.mfu})")

    @property
    def peak_flops(self) -> float:
        return GPUS[self.gpu].peak_flops

    def seconds(self, flops: float) -> float:
        return flop_seconds(flops, self.peak_flops, self.mfu)


@dataclass(frozen=True)
class FlopCounts:
    """FLOPs per image: ``features`` (backbone to the deepest tap), ``hfr_scan`` (to the HFR tap), ``encode`` (VAE,
    0 in pixel space), ``head_forward``, ``evaluation`` (one evaluation image, all its windows), ``windows``."""

    tap: str
    hfr_tap: str
    features: int
    hfr_scan: int
    encode: int
    head_forward: int
    evaluation: int
    windows: int = 1

    @property
    def training(self) -> int:
        """One training image: encoded, run to the tap, the head trained."""
        return self.encode + self.features + TRAIN_FACTOR * self.head_forward

    def stages(self, task: str, plan: Plan) -> dict:
        """Seconds per image in the measured stages' shape (what :func:`fgvc_projection` and
        :func:`ade20k_projection` read)."""
        return {TRAIN_STAGE[task]: {"seconds_per_image": plan.seconds(self.training)},
                EVAL_STAGE[task]: {"seconds_per_image": plan.seconds(self.evaluation)},
                "hfr_scan": {"encode_seconds_per_image": plan.seconds(self.encode),
                             "seconds_per_backbone_forward": plan.seconds(self.hfr_scan)}}


# ---------------------------------------------------------------- the architecture, and whether it fits here
@functools.lru_cache(maxsize=4)
def architecture(source: str):
    """A registered model's architecture on PyTorch's meta device (configs and shapes, no memory), or ``None`` for
    a folder or hub id (its configs come with its weights)."""
    from aselect_bench.backbones import MODELS, load_backbone

    if source not in MODELS:
        return None
    with torch.device("meta"):
        return load_backbone(source, pretrained=False, device="meta")


def memory_shortfall(source: str, device) -> str | None:
    """Why ``source`` cannot be built on ``device`` (its float32 weights + :data:`ACTIVATION_SHARE` +
    :data:`PROCESS_BYTES` above the memory available), or ``None`` (it fits, or is not a registered model)."""
    from aselect_bench.analyses.resources import available_memory_bytes

    arch, available = architecture(source), available_memory_bytes(device)
    if arch is None or available is None:
        return None
    params = parameters(arch.transformer) + parameters(arch.vae)
    needed = params * 4 * (1 + ACTIVATION_SHARE) + PROCESS_BYTES
    if needed <= available:
        return None
    return (f"{source} does not fit this machine's memory: {params:,} parameters x 4 bytes (float32, as built) + "
            f"{ACTIVATION_SHARE:.0%} for activations + {PROCESS_BYTES / GIB:.0f} GiB ~ {needed / GIB:.0f} GiB, "
            f"{available / GIB:.0f} GiB available: projected from FLOPs alone, nothing timed")


# ---------------------------------------------------------------- counting
def encode_flops(backbone, size: int) -> int:
    """FLOPs of the VAE encoder on one ``size`` px image (0 in pixel space), on a meta copy of the VAE."""
    if backbone.vae is None:
        return 0
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        vae = type(backbone.vae).from_config(backbone.vae.config)
    with FlopCounterMode(display=False) as counter:
        vae.encode(torch.zeros(1, 3, size, size, device="meta"))
    return counter.get_total_flops()


def head_flops(model, backbone, shape: tuple[int, int], call: Callable) -> tuple[int, int]:
    """FLOPs of ``call(image)`` on one meta image of ``shape`` ``(H, W)`` with ``model``'s backbone features replaced
    by zeros of their real shape (``[1, D, H/p, W/p]`` at each tap): the head's share alone. Also the number of
    feature calls (sliding windows)."""
    from torch.utils.flop_counter import FlopCounterMode

    p, calls = backbone.patch_size, []

    def features(images, *args, **kwargs):
        calls.append(images.shape)
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        return {tap: torch.zeros(len(images), backbone.hidden_size, *grid, device="meta") for tap in model.taps}

    model.features = features
    with FlopCounterMode(display=False) as counter:
        call(torch.zeros(1, 3, *shape, device="meta"))
    return counter.get_total_flops(), len(calls)


def count_fgvc(preset, backbone, num_classes: int) -> FlopCounts:
    """The probe: training and evaluation images at the backbone's size, the scan at the probe's tap."""
    from aselect_bench.backbones.flops import flops_per_image
    from aselect_bench.experiments import fgvc_probe

    tap, size = preset.fgvc.tap, backbone.image_size
    with torch.device("meta"):
        model = fgvc_probe(preset, backbone, num_classes, timestep=middle(preset), tap=tap).eval()
    head, _ = head_flops(model, backbone, (size, size), lambda x: model(model.features(x)[model.tap]))
    features, encode = flops_per_image(backbone, tap), encode_flops(backbone, size)
    return FlopCounts(tap, tap, features, features, encode, head, encode + features + head)


def count_ade20k(preset, backbone, eval_image: tuple[int, int]) -> FlopCounts:
    """The UperNet: training at the crop, the scan at its HFR tap, evaluation of one ``eval_image`` ``(H, W)``
    image as the recipe infers it (each window encoded, run to the deepest block, decoded)."""
    from aselect_bench.backbones.flops import flops_per_image
    from aselect_bench.experiments import segmentation_task

    crop = preset.ade20k.crop_size or backbone.image_size
    with torch.device("meta"):
        model = segmentation_task(preset, backbone, middle(preset), crop).eval()
    tap = deepest_tap(model.taps)
    features, encode = flops_per_image(backbone, tap, crop), encode_flops(backbone, crop)
    head, _ = head_flops(model, backbone, (crop, crop), model)
    head_eval, windows = head_flops(model, backbone, tuple(eval_image), model.predict_logits)
    return FlopCounts(tap, model.hfr_tap, features, flops_per_image(backbone, model.hfr_tap, crop), encode, head,
                      windows * (encode + features) + head_eval, windows)


def recipe_shapes(preset, task: str, dataset: str, backbone, say: Callable) -> dict:
    """Without a timed run: the split sizes and classes (the dataset under the data root, else as published) and,
    for ADE20K, the evaluation image's size, as the measured run would take them."""
    if task == "fgvc":
        inputs = fgvc_inputs(preset, dataset, backbone, say)
        return {"sizes": inputs.sizes, "num_classes": inputs.num_classes, "data": inputs.source}
    inputs = ade20k_inputs(preset, backbone, preset.ade20k.crop_size or backbone.image_size, say)
    return {"sizes": inputs.sizes, "num_classes": inputs.num_classes, "data": inputs.source,
            "eval_image": list(inputs.evaluation(1)[0].shape[-2:])}


# ---------------------------------------------------------------- the projection
def gpu_hours(p: dict, gpus: int) -> dict:
    """GPU-hours and wall-clock of one projection (:func:`fgvc_projection`'s keys) on ``gpus`` GPUs."""
    exhaustive_wall = sweep_wall_hours(p["training_hours"], p["candidates"], gpus)
    return {"scan_gpu_hours": p["scan_hours"], "training_gpu_hours": p["training_hours"],
            "aselect_gpu_hours": p["aselect_hours"], "exhaustive_gpu_hours": p["exhaustive_hours"],
            "aselect_wall_hours": p["aselect_hours"], "exhaustive_wall_hours": exhaustive_wall,
            "rounds": -(-p["candidates"] // gpus), "saving": p["saving"],
            "wall_saving": exhaustive_wall / p["aselect_hours"]}


def project(preset, task: str, counts: FlopCounts, sizes: dict, plan: Plan) -> dict:
    """The ``gpu_projection`` record of ``counts`` under ``plan`` (FGVC: also the six datasets)."""
    stages = counts.stages(task, plan)
    p = (fgvc_projection if task == "fgvc" else ade20k_projection)(preset, stages, sizes)
    by_dataset = fgvc_by_dataset(preset, stages) if task == "fgvc" else {}
    return {"gpu": plan.gpu, "gpu_name": GPUS[plan.gpu].name, "gpus": plan.gpus, "mfu": plan.mfu,
            "peak_flops": plan.peak_flops, "tap": counts.tap, "hfr_tap": counts.hfr_tap,
            "flops_per_image": counts.features, "hfr_flops_per_image": counts.hfr_scan,
            "encode_flops_per_image": counts.encode, "head_forward_flops_per_image": counts.head_forward,
            "head_flops_per_step": TRAIN_FACTOR * counts.head_forward * p["batch"], "head_count": HEAD_COUNT,
            "training_flops_per_image": counts.training, "evaluation_flops_per_image": counts.evaluation,
            "windows": counts.windows, "batch": p["batch"], "iterations": p["iterations"],
            "evaluated_images": p["evaluated_images"], "candidates": p["candidates"], "scan_images": p["scan_images"],
            "sizes": sizes, **gpu_hours(p, plan.gpus),
            "by_dataset": {name: {"sizes": d["sizes"], **gpu_hours(d, plan.gpus)} for name, d in by_dataset.items()},
            "basis": BASIS}


def gpu_projection(preset, task: str, backbone, shapes: dict, plan: Plan) -> dict:
    """Count ``backbone``'s recipe (:func:`count_fgvc`, :func:`count_ade20k`) and :func:`project` it."""
    counts = (count_fgvc(preset, backbone, shapes["num_classes"]) if task == "fgvc"
              else count_ade20k(preset, backbone, shapes["eval_image"]))
    return project(preset, task, counts, shapes["sizes"], plan)
