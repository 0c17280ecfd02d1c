"""A dry run of a preset's recipe at real size on the machine at hand: shapes, memory, step time, projected cost.

For each task (``fgvc``, ``ade20k``): the preset's backbone at its real size (its weights when the Hugging Face
cache or a ``--backbone`` folder has them, else the real architecture with random weights), the real head, and
real input shapes (the dataset when the data root holds it, else a synthetic batch at the true resolution and
class count). Timed after a warm-up:

- ``fgvc``: ``probe_train`` (training steps: fresh noise, backward through the head only), ``evaluate`` (one
  evaluation batch), ``hfr_scan`` (one calibration batch at two candidates);
- ``ade20k``: ``upernet_train`` (training steps at the real crop), ``inference`` (one evaluation image, sliding
  window where the preset slides), ``hfr_scan``.

The warm-up is one training step (at the measured batch on CUDA; on a CPU at the head's smallest batch, which
also measures memory); the evaluation and scan stages run the backbone and head paths it warmed. Seconds per
image are projected to the recipe's batch, epochs and split sizes (:mod:`aselect_bench.analyses.projection`).
"""

from __future__ import annotations

import gc
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from aselect_bench.analyses.projection import epoch_iterations, scan_seconds, strategy_hours
from aselect_bench.analyses.resources import (
    EncodeTime,
    available_memory_bytes,
    current_memory_bytes,
    largest_that_runs,
    optimizer_step,
    peak_memory_bytes,
    predict_fit,
    reset_peak_memory,
    timed,
    timing_encode,
)
from aselect_bench.data.calibration import calibration_images
from aselect_bench.errors import UserError
from aselect_bench.reports import markdown_table, run_header, run_record, write_report

TASKS = ("fgvc", "ade20k")
#: The smallest training batch of each task's head: UperNet's pooling branch (BatchNorm on a 1x1 map) needs two.
MIN_BATCH = {"fgvc": 1, "ade20k": 2}
TRAIN_STAGE = {"fgvc": "probe_train", "ade20k": "upernet_train"}
#: A CPU's default measured batch keeps one backbone pass within this many FLOPs (a few seconds there).
CPU_STEP_FLOPS = 250e9
GIB = 2**30


# ---------------------------------------------------------------- the backbone, and where its weights came from
@dataclass
class Loaded:
    """A backbone built for the estimate: ``weights`` is ``"pretrained"`` or ``"random"``, ``note`` says why."""

    source: str
    backbone: object
    weights: str
    note: str
    seconds: float
    peak_memory_bytes: int


def cached_weights(source: str) -> tuple[bool, str]:
    """Whether ``source`` has weights on this machine (no network), and a line saying where they were looked for.

    A registered model with a hub id counts when the Hugging Face cache holds it; a folder or hub id given by the
    user is always loaded as given (its errors are the user's to fix)."""
    from aselect_bench.backbones.registry import MODELS

    spec = MODELS.get(source)
    if spec is None:
        return True, f"{source} as given"
    if spec.folder is not None:
        return True, f"shipped in {spec.folder}"
    if spec.hub_id is None:
        return False, f"{source} is a test architecture without published weights"
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(spec.hub_id, local_files_only=True, allow_patterns=["transformer/config.json"])
        return True, f"{spec.hub_id} from the Hugging Face cache"
    except Exception:  # noqa: BLE001 - any miss means: not cached
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        return False, (f"{spec.hub_id} is not in the Hugging Face cache ({home}): the real architecture with "
                       f"random weights (speed and memory do not depend on them; pass --backbone FOLDER for real ones)")


def load(source: str, device, precision: str, say: Callable = print) -> Loaded:
    """Build ``source`` on ``device`` (pretrained when :func:`cached_weights`, else random) at ``precision``."""
    from aselect_bench.backbones import load_backbone
    from aselect_bench.precision import describe_precision

    pretrained, note = cached_weights(source)
    say(f"backbone {source}: {'pretrained' if pretrained else 'random'} weights ({note}); building it ...")
    reset_peak_memory(device)
    start = time.perf_counter()
    backbone = load_backbone(source, device=device, pretrained=pretrained)
    seconds = time.perf_counter() - start
    backbone.set_precision(describe_precision(precision, device)["precision"])
    say(f"built in {seconds:.0f} s: {parameters(backbone.transformer):,} transformer parameters")
    return Loaded(source, backbone, "pretrained" if pretrained else "random", note, seconds, peak_memory_bytes(device))


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


# ---------------------------------------------------------------- inputs at the real shapes
class Inputs:
    """Batches at the real shapes. ``sizes``: ``{"train", "val", "test"}`` images per stage; ``source``: one line."""

    def __init__(self, sizes: dict, num_classes: int, source: str, seed: int):
        self.sizes, self.num_classes, self.source, self.seed = sizes, num_classes, source, seed

    def train(self, batch: int, step: int) -> tuple:
        """``(images, targets, indices)`` of training step ``step`` (new images, hence fresh noise, each step)."""
        raise NotImplementedError

    def evaluation(self, batch: int) -> tuple:
        raise NotImplementedError

    def calibration(self, batch: int) -> torch.Tensor:
        raise NotImplementedError


class DatasetInputs(Inputs):
    """Batches from a set-up datamodule's splits (the real dataset, or the synthetic stand-in of a demo preset)."""

    def __init__(self, datamodule, num_classes: int, source: str, seed: int, eval_batch: int | None = None):
        sizes = {stage: len(datamodule.sets[stage]) for stage in ("train", "val", "test")}
        super().__init__(sizes, num_classes, source, seed)
        self.datamodule, self.eval_batch, self._train = datamodule, eval_batch, {}

    def train(self, batch, step):
        from torch.utils.data import DataLoader

        if batch not in self._train:
            self._train[batch] = iter(DataLoader(self.datamodule.sets["train"], batch_size=batch, shuffle=True,
                                                 generator=torch.Generator().manual_seed(self.seed)))
        return next(self._train[batch])

    def evaluation(self, batch):
        from torch.utils.data import DataLoader

        data = self.datamodule.sets["test" if self.eval_batch else "val"]
        return next(iter(DataLoader(data, batch_size=self.eval_batch or batch)))

    def calibration(self, batch):
        return calibration_images(self.datamodule, batch, self.seed)


class SyntheticInputs(Inputs):
    """Random images at the true resolution, labels over the true class count (per-pixel for segmentation)."""

    def __init__(self, sizes: dict, num_classes: int, source: str, seed: int, image_size: int,
                 segmentation: bool = False, eval_shape: tuple[int, int] | None = None):
        super().__init__(sizes, num_classes, source, seed)
        self.size, self.segmentation, self.eval_shape = image_size, segmentation, eval_shape

    def _batch(self, batch: int, shape: tuple[int, int], first: int) -> tuple:
        gen = torch.Generator().manual_seed(self.seed + first)
        images = torch.rand(batch, 3, *shape, generator=gen) * 2 - 1
        targets = torch.randint(0, self.num_classes, (batch, *shape) if self.segmentation else (batch,), generator=gen)
        return images, targets, torch.arange(first, first + batch)

    def train(self, batch, step):
        return self._batch(batch, (self.size, self.size), step * batch)

    def evaluation(self, batch):
        return self._batch(1, self.eval_shape, 0) if self.eval_shape else self._batch(batch, (self.size,) * 2, 0)

    def calibration(self, batch):
        return self._batch(batch, (self.size, self.size), 10**6)[0]


def ade20k_eval_shape(scale) -> tuple[int, int]:
    """``(H, W)`` of a typical ADE20K image (4:3 landscape) after mmseg's keep-ratio resize into ``scale``."""
    long, short = max(scale), min(scale)
    return short, min(long, round(short * 4 / 3))


def fgvc_inputs(preset, dataset: str, backbone, say: Callable) -> Inputs:
    from aselect_bench.data.fgvc import DATASETS, protocol_sizes
    from aselect_bench.experiments import dataset_path, fgvc_datamodule, prepare_dataset

    root = dataset_path(preset, "fgvc", dataset)
    if preset.synthetic or root.exists():
        root = prepare_dataset(preset, "fgvc", dataset)
        dm = fgvc_datamodule(preset.override(num_workers=0), dataset, backbone, root)
        return DatasetInputs(dm, dm.num_classes, f"{dataset} from {root}", preset.seed)
    if dataset not in DATASETS:
        raise UserError(f"unknown FGVC dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    classes = DATASETS[dataset].num_classes
    say(f"no {dataset} under {root}: a synthetic batch at {backbone.image_size} px and {classes} classes stands in")
    return SyntheticInputs(protocol_sizes(dataset), classes, f"synthetic {backbone.image_size} px images, "
                           f"{classes} classes (no {dataset} under {root}); split sizes as published", preset.seed,
                           backbone.image_size)


def ade20k_inputs(preset, backbone, crop: int, say: Callable) -> Inputs:
    from aselect_bench.data.ade20k_datamodule import protocol_sizes
    from aselect_bench.experiments import ade20k_datamodule, dataset_path, prepare_dataset

    cfg, root = preset.ade20k, dataset_path(preset, "ade20k", "ade20k")
    if preset.synthetic or root.exists():
        root = prepare_dataset(preset, "ade20k", "ade20k")
        dm = ade20k_datamodule(preset.override(**{"ade20k.num_workers": 0}), backbone, root)
        return DatasetInputs(dm, cfg.num_classes, f"ade20k from {root}", preset.seed, eval_batch=1)
    shape = ade20k_eval_shape(cfg.scale)
    say(f"no ADE20K under {root}: synthetic {crop} px crops, a {shape[0]}x{shape[1]} evaluation image and "
        f"{cfg.num_classes} classes stand in")
    return SyntheticInputs(protocol_sizes(), cfg.num_classes, f"synthetic {crop} px crops and a {shape[0]}x{shape[1]} "
                           f"evaluation image (ADE20K's typical 4:3 after the resize), {cfg.num_classes} classes (no "
                           f"ADE20K under {root}); split sizes as published", preset.seed, crop, segmentation=True,
                           eval_shape=shape)


# ---------------------------------------------------------------- measuring the stages
@dataclass
class Stage:
    """A measured stage: ``steps`` timed calls of ``images`` images each, ``encode`` their VAE share."""

    batch: int
    steps: int
    images: int
    seconds: float
    encode: EncodeTime
    forwards: int
    peak_memory_bytes: int
    cpu_seconds: float  # this process's CPU time (all threads) during the timed steps

    def to_json(self) -> dict:
        per_step = self.seconds / self.steps
        encode = self.encode.seconds / self.encode.images if self.encode.images else 0.0
        forward = (self.seconds - self.encode.seconds) / self.forwards if self.forwards else None
        return {"batch": self.batch, "steps": self.steps, "images_per_step": self.images, "seconds": self.seconds,
                "seconds_per_step": per_step, "seconds_per_image": per_step / self.images,
                "encode_seconds_per_image": encode, "seconds_per_backbone_forward": forward,
                "backbone_forwards": self.forwards, "peak_memory_bytes": self.peak_memory_bytes,
                "cpu_seconds": self.cpu_seconds, "cpu_share": cpu_share(self.cpu_seconds, self.seconds)}


def cpu_share(cpu_seconds: float, seconds: float) -> float:
    """The share of its threads' time the process got: CPU seconds / (wall seconds x torch threads). Well below 1
    on a CPU run, other load on the machine took the rest, and the wall times are inflated by it."""
    return cpu_seconds / (seconds * torch.get_num_threads()) if seconds > 0 else 0.0


def measure(fn: Callable, backbone, device, batch: int, steps: int, images: int, warm: Callable | None = None) -> Stage:
    """Run ``warm()`` untimed (when given), then time ``fn(k)()`` for ``k = 1..steps``: seconds, VAE share,
    backbone forwards and peak memory. ``fn(k)`` prepares step ``k``'s inputs (untimed) and returns the step."""
    if warm is not None:
        timed(warm, device)
    reset_peak_memory(device)
    forwards, seconds, cpu = backbone.forwards, 0.0, 0.0
    with timing_encode(backbone, device) as encode:
        for k in range(1, steps + 1):
            call, start = fn(k), time.process_time()
            seconds += timed(call, device)
            cpu += time.process_time() - start
    return Stage(batch, steps, images, seconds, encode, backbone.forwards - forwards, peak_memory_bytes(device), cpu)


def warm_up(step: Callable, stage: str, batch: int, smallest: int, device, say: Callable) -> int:
    """Run one untimed training step; refuse a ``batch`` that cannot fit, naming the largest that does (by halving).

    ``step(b, k)`` returns the function running step ``k`` at batch ``b``. On CUDA the warm-up runs at ``batch``,
    halving after an out-of-memory error. On a CPU, where an out-of-memory kill cannot be caught, it runs at
    ``smallest`` and the memory of ``batch`` is predicted from it against the available RAM (with a second point at
    ``2 x smallest`` when the proportional bound does not fit). Returns the peak memory (bytes)."""
    device = torch.device(device)
    if device.type == "cuda":
        def run(b):
            say(f"{stage}: warm-up step at batch {b} (untimed) ...")
            reset_peak_memory(device)
            timed(step(b, 0), device)

        tried = largest_that_runs(run, batch, smallest, cleanup=lambda: (gc.collect(), torch.cuda.empty_cache()))
        if tried is None:
            raise UserError(f"{stage}: not even batch {smallest} fits in the memory of "
                            f"{torch.cuda.get_device_name(device)}: free the GPU or use one with more memory")
        if tried < batch:
            total = torch.cuda.get_device_properties(device).total_memory / GIB
            raise UserError(f"{stage}: batch {batch} does not fit in the memory of {torch.cuda.get_device_name(device)} "
                            f"({total:.0f} GiB); the largest batch that fits, found by halving, is {tried}: rerun "
                            f"with --batch-size {tried}")
        return peak_memory_bytes(device)
    available, base, measured, peaks = available_memory_bytes(device), current_memory_bytes(device), {}, []

    def probe(b: int) -> None:
        say(f"{stage}: warm-up step at batch {b} (untimed; measures memory) ...")
        reset_peak_memory(device)
        step(b, 0)()
        peaks.append(peak_memory_bytes(device))
        measured[b] = peaks[-1] - base

    probe(smallest)
    if batch > smallest and available is not None:
        fit = predict_fit(batch, measured, available, smallest)
        if fit != batch and batch >= 2 * smallest and predict_fit(2 * smallest, measured, available) == 2 * smallest:
            probe(2 * smallest)  # a second point: the line through two batches, not the proportional bound
            fit = predict_fit(batch, measured, available, smallest)
        if fit != batch:
            gib = ", ".join(f"{m / GIB:.2f} GiB at batch {b}" for b, m in measured.items())
            largest = (f"the largest batch that fits, found by halving, is {fit}: rerun with --batch-size {fit}"
                       if fit else f"not even batch {smallest} fits: free memory or use a machine with more")
            raise UserError(f"{stage}: batch {batch} would not fit in the {available / GIB:.1f} GiB of RAM "
                            f"available (measured above the loaded model: {gib}); {largest}")
    return max(peaks)


def check_batch(task: str, batch: int) -> None:
    if batch < MIN_BATCH[task]:
        raise UserError(f"--batch-size {batch} is too small for {task}: its head trains at a batch of at least "
                        f"{MIN_BATCH[task]} (UperNet's pooling branch normalises over the batch); use --batch-size "
                        f"{MIN_BATCH[task]} or more")


def default_batch(flops_per_image: int, smallest: int, recipe_batch: int, device) -> int:
    """The measured batch when none is given: the recipe's on CUDA; on a CPU the largest up to the recipe's whose
    backbone pass stays within :data:`CPU_STEP_FLOPS`, at least ``smallest`` (time per image is what the projection
    needs, and a CPU's throughput hardly grows with the batch once the model is large)."""
    if torch.device(device).type == "cuda":
        return recipe_batch
    return max(smallest, min(recipe_batch, int(CPU_STEP_FLOPS // max(1, flops_per_image))))


def quiet(model):
    """A task outside a Trainer: its logging calls have nowhere to go."""
    model.log = model.log_dict = lambda *args, **kwargs: None
    return model


def two_candidates(candidates) -> list[int]:
    """The scan's two timesteps: the grid's ends (the cost does not depend on which)."""
    return list(dict.fromkeys([candidates[0], candidates[-1]]))


def scan_stage(backbone, inputs: Inputs, preset, tap: str, batch: int, device, say: Callable) -> Stage:
    """The HFR scan (the preset's settings) of one calibration batch at two candidates, after a one-candidate
    warm-up on the same images."""
    from aselect_bench.selectors import scan_hfr

    images, cands, hfr = inputs.calibration(batch), two_candidates(preset.hfr.candidates), preset.hfr

    def scan(timesteps):
        return lambda: scan_hfr(backbone, images, timesteps, [tap], noise_draws=hfr.noise_draws, seed=preset.seed,
                                batch_size=batch, **hfr.band())

    say(f"hfr_scan: {len(images)} calibration image(s) at {len(cands)} candidates, tap {tap} ...")
    stage = measure(lambda k: scan(cands), backbone, device, len(images), 1, len(images), warm=scan(cands[:1]))
    stage.steps = len(cands)  # the one call made a pass over the batch per candidate
    return stage


# ---------------------------------------------------------------- the two tasks
def train_stage(model, inputs: Inputs, task: str, batch: int, steps: int, device, say: Callable) -> Stage:
    """The warm-up step (with the memory check), then ``steps`` timed training steps of ``model`` at ``batch``:
    new images (fresh noise) each step, backward through the head, AdamW with the model's own settings. Its
    ``peak_memory_bytes`` covers the warm-up too."""
    name = TRAIN_STAGE[task]
    model.train()
    opt = torch.optim.AdamW(model.head_parameters(), lr=model.lr, weight_decay=model.weight_decay)

    def step(b, k):
        images, targets, indices = inputs.train(b, k)
        data = (images.to(device), targets.to(device), indices)
        return optimizer_step(model, lambda: model.training_step(data, k), device, optimizer=opt)

    warm_peak = warm_up(step, name, batch, MIN_BATCH[task], device, say)
    say(f"{name}: {steps} timed steps at batch {batch} ...")
    stage = measure(lambda k: step(batch, k), model.backbone, device, batch, steps, batch)
    stage.peak_memory_bytes = max(stage.peak_memory_bytes, warm_peak)
    return stage


def estimate_fgvc(preset, dataset: str, loaded: Loaded, device, batch: int | None, steps: int,
                  say: Callable) -> dict:
    """Stages ``probe_train``, ``evaluate``, ``hfr_scan`` of the preset's probe, and its projection."""
    from aselect_bench.backbones.flops import flops_per_image
    from aselect_bench.experiments import fgvc_probe

    backbone, cfg = loaded.backbone, preset.fgvc
    flops = flops_per_image(backbone, cfg.tap)
    batch = batch or default_batch(flops, MIN_BATCH["fgvc"], cfg.batch_size, device)
    say(f"{preset.name} fgvc: batch {batch} (the recipe's: {cfg.batch_size}), {steps} timed steps")
    inputs = fgvc_inputs(preset, dataset, backbone, say)
    model = quiet(fgvc_probe(preset, backbone, inputs.num_classes, timestep=middle(preset), tap=cfg.tap).to(device))
    stages = {"probe_train": train_stage(model, inputs, "fgvc", batch, steps, device, say)}
    model.eval()
    images, labels, indices = inputs.evaluation(batch)
    data = (images.to(device), labels.to(device), indices)
    say(f"evaluate: one batch of {len(images)} (after an untimed one) ...")
    with torch.no_grad():
        evaluate = lambda: model.validation_step(data, 0)  # noqa: E731 - the same call, warm-up and timed
        stages["evaluate"] = measure(lambda k: evaluate, backbone, device, len(images), 1, len(images), warm=evaluate)
    stages["hfr_scan"] = scan_stage(backbone, inputs, preset, cfg.tap, batch, device, say)
    measured = {k: v.to_json() for k, v in stages.items()}
    by_dataset = {}
    if not preset.synthetic:
        from aselect_bench.data.fgvc import DATASETS, protocol_sizes

        by_dataset = {name: fgvc_projection(preset, measured, protocol_sizes(name)) for name in DATASETS}
    return {"dataset": dataset, "tap": cfg.tap, "hfr_tap": cfg.tap, "flops_per_image": {"features": flops,
            "hfr_scan": flops}, "head": cfg.head,
            "head_params": parameters(model.head), "num_classes": inputs.num_classes, "data": inputs.source,
            "recipe_batch": cfg.batch_size, "stages": measured,
            "projection": fgvc_projection(preset, measured, inputs.sizes), "projection_by_dataset": by_dataset}


def estimate_ade20k(preset, loaded: Loaded, device, batch: int | None, steps: int, say: Callable) -> dict:
    """Stages ``upernet_train``, ``inference``, ``hfr_scan`` of the preset's UperNet, and its projection."""
    from aselect_bench.backbones.flops import flops_per_image
    from aselect_bench.experiments import segmentation_task

    backbone, cfg = loaded.backbone, preset.ade20k
    crop = cfg.crop_size or backbone.image_size
    model = quiet(segmentation_task(preset, backbone, middle(preset), crop).to(device))
    deepest = max(model.taps, key=lambda tap: int(tap.split(".")[1]))  # what training and inference run to
    flops = {tap: flops_per_image(backbone, tap, crop) for tap in (deepest, model.hfr_tap)}
    train_batch = batch or default_batch(flops[deepest], MIN_BATCH["ade20k"], cfg.batch_size, device)
    scan_batch = batch or default_batch(flops[model.hfr_tap], 1, cfg.batch_size, device)
    say(f"{preset.name} ade20k: batch {train_batch} (the recipe's: {cfg.batch_size}), {steps} timed steps, "
        f"{crop} px crops")
    inputs = ade20k_inputs(preset, backbone, crop, say)
    stages = {"upernet_train": train_stage(model, inputs, "ade20k", train_batch, steps, device, say)}
    model.eval()
    image, _, index = inputs.evaluation(1)
    image = image.to(device)
    say(f"inference: one {image.shape[-2]}x{image.shape[-1]} image, {cfg.inference} (after an untimed window) ...")
    with torch.no_grad():
        window = image[..., :crop, :crop]  # one window: the per-window shapes of the timed call
        stages["inference"] = measure(lambda k: lambda: model.predict_logits(image, index, "test"), backbone, device,
                                      1, 1, 1, warm=lambda: model.predict_logits(window, index, "test"))
    stages["hfr_scan"] = scan_stage(backbone, inputs, preset, model.hfr_tap, scan_batch, device, say)
    measured = {k: v.to_json() for k, v in stages.items()}
    return {"dataset": "ade20k", "tap": deepest, "taps": model.taps, "hfr_tap": model.hfr_tap,
            "flops_per_image": {"features": flops[deepest], "hfr_scan": flops[model.hfr_tap]},
            "head": "upernet", "head_params": parameters(model) - parameters(backbone), "crop": crop,
            "num_classes": cfg.num_classes, "data": inputs.source, "inference": cfg.inference,
            "eval_image": list(image.shape[-2:]), "windows": stages["inference"].forwards,
            "recipe_batch": cfg.batch_size, "stages": measured,
            "projection": ade20k_projection(preset, measured, inputs.sizes), "projection_by_dataset": {}}


def middle(preset) -> int:
    """A fixed timestep for the heads (the grid's middle; the cost does not depend on it)."""
    grid = preset.hfr.candidates
    return grid[len(grid) // 2]


# ---------------------------------------------------------------- projection
def scan_projection(preset, stages: dict) -> float:
    """Seconds of the preset's full scan (its images x candidates x draws) from the measured scan stage."""
    scan, hfr = stages["hfr_scan"], preset.hfr
    return scan_seconds(hfr.num_images, len(hfr.candidates), hfr.noise_draws, scan["encode_seconds_per_image"],
                        scan["seconds_per_backbone_forward"])


def fgvc_projection(preset, stages: dict, sizes: dict) -> dict:
    """One training = epochs x steps at the recipe's batch + a validation pass per epoch + one test pass."""
    cfg = preset.fgvc
    iterations = epoch_iterations(sizes["train"], cfg.max_epochs, cfg.batch_size)
    step = stages["probe_train"]["seconds_per_image"] * cfg.batch_size
    evaluated = cfg.max_epochs * sizes["val"] + sizes["test"]
    evaluation = evaluated * stages["evaluate"]["seconds_per_image"]
    return {"sizes": sizes, "epochs": cfg.max_epochs, "batch": cfg.batch_size, "iterations": iterations,
            "step_seconds": step, "evaluated_images": evaluated, "evaluation_seconds": evaluation,
            "candidates": len(preset.hfr.candidates), "scan_images": preset.hfr.num_images,
            "fresh_features": cfg.train_augment,
            **strategy_hours(scan_projection(preset, stages), iterations * step + evaluation, len(preset.hfr.candidates))}


def ade20k_projection(preset, stages: dict, sizes: dict) -> dict:
    """One training = the schedule's iterations at the recipe's batch + its selection-split evaluations + one
    pass over the validation split (each image at the measured inference seconds)."""
    cfg = preset.ade20k
    per_epoch = max(1, sizes["train"] // cfg.batch_size)  # the loader drops the last short batch
    iterations = cfg.max_iters or epoch_iterations(sizes["train"], cfg.max_epochs, cfg.batch_size, drop_last=True)
    evaluations = iterations // cfg.val_every_iters if cfg.val_every_iters else math.ceil(iterations / per_epoch)
    step = stages["upernet_train"]["seconds_per_image"] * cfg.batch_size
    evaluated = evaluations * sizes["val"] + sizes["test"]
    evaluation = evaluated * stages["inference"]["seconds_per_image"]
    return {"sizes": sizes, "iterations": iterations, "batch": cfg.batch_size, "evaluations": evaluations,
            "step_seconds": step, "evaluated_images": evaluated, "evaluation_seconds": evaluation,
            "candidates": len(preset.hfr.candidates), "scan_images": preset.hfr.num_images, "fresh_features": True,
            **strategy_hours(scan_projection(preset, stages), iterations * step + evaluation, len(preset.hfr.candidates))}


# ---------------------------------------------------------------- the whole run
def device_name(device) -> str:
    from aselect_bench.reports import hardware_summary

    return hardware_summary(device)["device"]


def device_slug(device) -> str:
    """``cpu`` or the GPU's name as a file-name part (``nvidia-h200``)."""
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def run_estimate(preset, tasks, dataset: str = "cub", steps: int = 3, batch_size: int | None = None,
                 out="results/estimate", say: Callable = print) -> list[dict]:
    """Estimate each of ``tasks`` under ``preset``; writes ``<out>/<preset>-<task>-<device>.{json,md}`` per task."""
    from aselect_bench.precision import training_device

    if steps < 1:
        raise UserError(f"--steps must be at least 1 (got {steps})")
    device = torch.device(training_device())
    for task in tasks:
        if getattr(preset, task) is None:
            raise UserError(f"preset {preset.name!r} has no {task} section: use --task "
                            f"{' or '.join(t for t in TASKS if getattr(preset, t) is not None)}")
        check_batch(task, batch_size if batch_size is not None else MIN_BATCH[task])
    results, loaded = [], None
    for task in tasks:
        source = getattr(preset, task).backbone or preset.backbone
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
        write_estimate(result, out, device, say)
        results.append(result)
    return results


def task_record(preset, task: str, loaded: Loaded, device, body: dict, steps: int, seconds: float) -> dict:
    """The result file's content: the contract's keys first, then the details of ``body`` (a task's estimate)."""
    backbone, stages = loaded.backbone, body.pop("stages")
    peaks = [loaded.peak_memory_bytes] + [s["peak_memory_bytes"] for s in stages.values()]
    return {
        "preset": preset.name, "task": task, "device": device_name(device), "weights": loaded.weights,
        "backbone_params": parameters(backbone.transformer), "peak_memory_bytes": max(peaks),
        "seconds_per_step": {k: s["seconds_per_step"] for k, s in stages.items()},
        "projection": body.pop("projection"), "run": run_record(preset, backbone),
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


def write_estimate(result: dict, out, device, say: Callable = print) -> Path:
    stem = write_report(out, f"{result['preset']}-{result['task']}-{device_slug(device)}", result, render(result))
    say(f"-> {stem}.md")
    return stem


# ---------------------------------------------------------------- the report
def _g(n: float) -> str:
    return f"{n / 1e9:,.0f} G"


def fmt_hours(h: float) -> str:
    """Hours: whole numbers with thousands separators from 100 up, else three significant digits."""
    return f"{h:,.0f}" if h >= 100 else f"{h:.3g}"


def render(r: dict) -> str:
    p = r["projection"]
    lines = [f"# Estimate: preset `{r['preset']}`, {r['task']}, measured on {r['device']}\n", run_header(r["run"]),
             f"- Backbone `{r['backbone']}` with **{r['weights']} weights** ({r['weights_note']}): "
             f"{r['backbone_params']:,} transformer parameters, VAE {r['vae_params']:,}, {r['image_size']} px; "
             f"FLOPs per image to `{r['tap']}` {_g(r['flops_per_image']['features'])}, to the HFR tap "
             f"`{r['hfr_tap']}` {_g(r['flops_per_image']['hfr_scan'])} (`aselect_bench.backbones.flops`).",
             f"- Head: {r['head']}, {r['head_params']:,} parameters, {r['num_classes']} classes. Data: {r['data']}.",
             f"- Measured at batch {r['batch']} (the recipe's: {r['recipe_batch']}); each stage timed after a warm-up "
             f"step; peak memory {r['peak_memory_bytes'] / GIB:.1f} GiB ({r['memory_measure']}); the backbone took "
             f"{r['load_seconds']:.0f} s to build, the stages {r['wall_seconds']:.0f} s."]
    if r["device"] == "cpu":
        lines.append(f"- During the timed steps this process got {100 * r['cpu_share']:.0f}% of its "
                     f"{r['torch_threads']} threads' time (CPU seconds / (wall seconds x threads))"
                     + (": other load on the machine took the rest, so these seconds are inflated; measure on a "
                        "quiet machine for the real figures." if r["cpu_share"] < 0.8 else "."))
    lines[-1] += "\n"
    rows = [[name, s["batch"], s["steps"], s["seconds_per_step"], s["seconds_per_image"],
             s["encode_seconds_per_image"], s["backbone_forwards"], s["peak_memory_bytes"] / GIB,
             f"{100 * s['cpu_share']:.0f}%"] for name, s in r["stages"].items()]
    lines.append(markdown_table(["stage", "batch", "timed steps", "s / step", "s / image", "VAE s / image",
                                 "backbone forwards", "peak memory (GiB)", "CPU share"], rows, "{:.3g}"))
    lines.append("A training step is one optimizer step; `hfr_scan`'s step is one candidate's pass over the calibration "
                 "batch (encoded once); the VAE column is the encoder's share, included in s / image.")
    if r["task"] == "fgvc":
        schedule = (f"{p['epochs']} epochs x {p['iterations'] // p['epochs']:,} steps at batch {p['batch']} "
                    f"({p['sizes']['train']:,} training images), a validation pass per epoch ({p['sizes']['val']:,}) "
                    f"and one test pass ({p['sizes']['test']:,})")
    else:
        schedule = (f"{p['iterations']:,} iterations at batch {p['batch']}, {p['evaluations']} evaluations of the "
                    f"selection split ({p['sizes']['val']:,} images) and one of the validation split "
                    f"({p['sizes']['test']:,}), each image as the measured {r['inference']} inference of one "
                    f"{r['eval_image'][0]}x{r['eval_image'][1]} image ({r['windows']} window(s))")
    lines += [f"\n## Projected cost on this device ({r['device']})\n",
              f"Seconds per image scaled to the recipe: one training = {schedule}; the scan = {p['scan_images']} "
              f"images encoded once and run at {p['candidates']} candidates. A-SelecT = scan + one training; "
              f"exhaustive = {p['candidates']} trainings."
              + ("" if p["fresh_features"] else " The recipe caches features (no augmentation), so every epoch after "
                 "the first costs less than projected here (the projection runs the backbone at every step).")
              + "\n",
              markdown_table(["", "hours"], [
                  ["HFR scan", fmt_hours(p["scan_hours"])], ["one training", fmt_hours(p["training_hours"])],
                  ["A-SelecT (scan + one training)", fmt_hours(p["aselect_hours"])],
                  [f"exhaustive ({p['candidates']} trainings)", fmt_hours(p["exhaustive_hours"])],
                  ["saving (exhaustive / A-SelecT)", f"{p['saving']:.2f}x"]])]
    if r["projection_by_dataset"]:
        rows = [[name, f"{d['sizes']['train']:,} / {d['sizes']['val']:,} / {d['sizes']['test']:,}",
                 fmt_hours(d["aselect_hours"]), fmt_hours(d["exhaustive_hours"]), f"{d['saving']:.2f}x"]
                for name, d in r["projection_by_dataset"].items()]
        lines += ["\nThe six FGVC datasets at their published sizes (train / val / test as this suite splits them: "
                  "the official val of Flowers and Aircraft, else 10% of the official train held out, VPT):\n",
                  markdown_table(["dataset", "train / val / test", "A-SelecT h", "exhaustive h", "saving"], rows)]
    return "\n".join(lines) + "\n"
