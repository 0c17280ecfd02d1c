"""What the estimate builds and times: each stage's measurement (training steps, an evaluation, the HFR scan)
after a warm-up that also checks the batch fits, for the FGVC probe and the ADE20K UperNet."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aselect_bench.analyses.estimate.inputs import Inputs, Loaded, ade20k_inputs, fgvc_inputs, parameters
from aselect_bench.analyses.estimate.report import GIB, ade20k_projection, fgvc_by_dataset, fgvc_projection
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
from aselect_bench.errors import UserError

TASKS = ("fgvc", "ade20k")
#: The smallest training batch of each task's head: UperNet's pooling branch (BatchNorm on a 1x1 map) needs two.
MIN_BATCH = {"fgvc": 1, "ade20k": 2}
TRAIN_STAGE = {"fgvc": "probe_train", "ade20k": "upernet_train"}
EVAL_STAGE = {"fgvc": "evaluate", "ade20k": "inference"}
#: A CPU's default measured batch keeps one backbone pass within this many FLOPs (a few seconds there).
CPU_STEP_FLOPS = 250e9


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
    return {"dataset": dataset, "tap": cfg.tap, "hfr_tap": cfg.tap, "flops_per_image": {"features": flops,
            "hfr_scan": flops}, "head": cfg.head,
            "head_params": parameters(model.head), "num_classes": inputs.num_classes, "data": inputs.source,
            "recipe_batch": cfg.batch_size, "stages": measured,
            "projection": fgvc_projection(preset, measured, inputs.sizes),
            "projection_by_dataset": fgvc_by_dataset(preset, measured)}


def estimate_ade20k(preset, loaded: Loaded, device, batch: int | None, steps: int, say: Callable) -> dict:
    """Stages ``upernet_train``, ``inference``, ``hfr_scan`` of the preset's UperNet, and its projection."""
    from aselect_bench.backbones.flops import flops_per_image
    from aselect_bench.experiments import segmentation_task

    backbone, cfg = loaded.backbone, preset.ade20k
    crop = cfg.crop_size or backbone.image_size
    model = quiet(segmentation_task(preset, backbone, middle(preset), crop).to(device))
    deepest = deepest_tap(model.taps)  # what training and inference run to
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


def deepest_tap(taps) -> str:
    """The tap in the deepest block of ``taps`` (``blocks.{i}.{component}``): what a forward to all of them runs to."""
    return max(taps, key=lambda tap: int(tap.split(".")[1]))
