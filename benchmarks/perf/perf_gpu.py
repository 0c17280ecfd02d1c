"""Paper-scale speed on one GPU, measured side by side in one run, and what A-SelecT saves in GPU-hours (issue #21).

Full-size architectures with random weights (``load_backbone(..., pretrained=False)``: weights do not change the
speed): DiT-XL/2 at 256 and 512 px, SD3-medium at 512 px when the registry has it. Per model and precision
(float32, bf16 autocast, and fp16 where the model's own recipe uses it): extraction images/s to the paper's tap
block and to full depth (the early-exit ratio against its ideal), the VAE encode, peak GPU memory, achieved
TFLOP/s against the bf16 (and float32) matrix-product peak measured in the same run. Then, at bf16: the HFR scan
(21 candidates x 64 images), one training step of the model's paper recipe (``paper`` for SD3, ``paper-dit`` for
DiT-XL/2: the attentive probe; fresh noise: the backbone runs every step) at batch 8 and at the recipe's batch, the same step from cached features (the head
alone), and one UperNet step at 512 px crop (batch 16) for the 512 px models.

From those: projected GPU-hours of A-SelecT (scan + one training) and of the exhaustive sweep (one training per
candidate) for the six FGVC datasets at their training-set sizes and for ADE20K (160k iterations at batch 16),
with fresh noise (the authors' way) and with cached features where the recipe allows (never for ADE20K's random
crops; the paper FGVC recipes augment, so their cached column is what turning augmentation off would give).
Evaluation passes are left out of both sides. Writes results/perf/gpu.json and gpu.md.

``--dry-run``: the CPU, tiny models, a few images (seconds): proves the script, not the GPU.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from perf_extract import best_time, best_times, matmul_peak

from aselect_bench.analyses.projection import epoch_iterations, scan_seconds, strategy_hours
from aselect_bench.analyses.resources import optimizer_step, peak_memory_bytes, reset_peak_memory, synced
from aselect_bench.backbones import load_backbone
from aselect_bench.backbones.flops import flops_per_image
from aselect_bench.backbones.registry import MODELS, default_tap
from aselect_bench.data.fgvc import PUBLISHED_SIZES
from aselect_bench.experiments.fgvc import fgvc_probe
from aselect_bench.hfr import HFRSettings
from aselect_bench.reports import markdown_table, write_report
from aselect_bench.selectors import select_timestep
from aselect_bench.settings import load_bench_preset

#: Training-set images of the six FGVC datasets (the official train splits; VPT trains on them after tuning on
#: a held-out 10%, and Flowers and Aircraft have their own val splits of 1020 and 3333 beside these).
FGVC_TRAIN_IMAGES = {name: sizes[0] for name, sizes in PUBLISHED_SIZES.items()}
#: mmseg's ADE20K schedule (UperNet, 160k iterations at batch 16: 8 GPUs x 2 in the original).
ADE20K_SCHEDULE = {"iterations": 160_000, "batch": 16}
FGVC_CLASSES, ADE20K_CLASSES = 200, 150
TIMESTEP = 500  # any timestep costs the same


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (``FULL`` on a GPU, ``DRY`` for the CPU dry run)."""

    models: tuple[str, ...]
    batch: int  # extraction batch
    scan_images: int
    scan_candidates: tuple[int, ...]
    train_batches: tuple[int, ...] | None  # probe steps (None: the 8 and the recipe's own batch)
    seg_batch: int
    seg_channels: tuple[int, int]  # UperNet (channels, aux channels)
    repeats: int
    matmul_n: int
    probe_overrides: tuple = ()  # changes to the recipe's probe (the dry run's small head)


def sizes(dry_run: bool) -> Sizes:
    if dry_run:
        tiny = ("tiny-dit-latent",) + (("tiny-sd3",) if "tiny-sd3" in MODELS else ())
        return Sizes(tiny, 2, 4, (0, 500, 999), (2, 4), 2, (32, 16), 1, 256, (("fgvc.head_width", 32),))
    full = ("dit-xl-2-256", "dit-xl-2-512") + (("sd3-medium",) if "sd3-medium" in MODELS else ())
    ade20k = load_bench_preset("paper-dit").ade20k
    return Sizes(full, 32, HFRSettings().num_images, HFRSettings().candidates, None, ADE20K_SCHEDULE["batch"],
                 (ade20k.channels, ade20k.aux_channels), 5, 8192)


def recipe(model: str):
    """The paper recipe of the registered model ``model``: ``paper`` (SD3-medium, the authors' main model) or ``paper-dit``."""
    return load_bench_preset("paper" if "sd3" in model else "paper-dit")


def train_batches(model: str, size: Sizes) -> list[int]:
    return list(size.train_batches or dict.fromkeys([8, recipe(model).fgvc.batch_size]))


def device_info() -> dict:
    """The device's name, torch, CUDA and driver versions (``driver`` from nvidia-smi, ``None`` without one)."""
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        driver = None
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda, "driver": driver}


def precisions(model: str, device: torch.device) -> list[str]:
    """float32 and bf16 on a GPU, plus fp16 for the SD3 family (its released weights and recipe are fp16);
    float32 alone on a CPU (bf16 is never assumed there)."""
    if device.type != "cuda":
        return ["32"]
    return ["32", "bf16"] + (["16"] if "sd3" in model else [])


def peak_memory_mib(device: torch.device) -> float | None:
    return peak_memory_bytes(device) / 2**20 if device.type == "cuda" else None


def measure_extraction(backbone, tap_block: int, size: Sizes, device, peaks: dict) -> dict:
    """Images/s to the tap block and to full depth, the VAE encode, peak memory, TFLOP/s, per precision."""
    images = torch.rand(size.batch, 3, backbone.image_size, backbone.image_size, device=device) * 2 - 1
    x0 = backbone.encode(images)
    noise = torch.randn_like(x0)
    last = backbone.num_blocks - 1
    out = {}
    for precision in precisions(backbone.name, device):
        backbone.set_precision(precision)
        reset_peak_memory(device)
        seconds = best_times({
            "tap": synced(lambda: backbone.extract_x0(x0, TIMESTEP, [f"blocks.{tap_block}.out"], noise=noise), device),
            "full": synced(lambda: backbone.extract_x0(x0, TIMESTEP, [f"blocks.{last}.out"], noise=noise), device),
            "encode": synced(lambda: backbone.encode(images), device),
        }, size.repeats)
        flops = flops_per_image(backbone, f"blocks.{last}.out") * size.batch
        peak = peaks[precision]
        out[precision] = {
            "tap_images_per_s": size.batch / seconds["tap"], "full_images_per_s": size.batch / seconds["full"],
            "encode_images_per_s": size.batch / seconds["encode"],
            "early_exit_speedup": seconds["full"] / seconds["tap"], "early_exit_ideal": backbone.num_blocks / (tap_block + 1),
            "tflops": flops / seconds["full"] / 1e12, "share_of_matmul_peak": flops / seconds["full"] / peak,
            "peak_memory_mib": peak_memory_mib(device),
        }
    backbone.set_precision(fast_precision(device))
    return out


def fast_precision(device: torch.device) -> str:
    """The precision the scan and the training steps run at: bf16 on a GPU, float32 on a CPU."""
    return "bf16" if device.type == "cuda" else "32"


def measure_scan(backbone, tap: str, size: Sizes, device) -> dict:
    """The HFR scan over ``scan_candidates`` x ``scan_images`` (after a warm-up on one candidate)."""
    images = torch.rand(size.scan_images, 3, backbone.image_size, backbone.image_size, device=device) * 2 - 1
    select_timestep(backbone, images[:2], size.scan_candidates[:1], tap)
    seconds = best_time(synced(lambda: select_timestep(backbone, images, size.scan_candidates, tap), device),
                        repeats=1, warm_up=False)
    forwards = size.scan_images * len(size.scan_candidates)
    return {"candidates": len(size.scan_candidates), "images": size.scan_images, "seconds": seconds,
            "seconds_per_forward": seconds / forwards}


def measure_probe_steps(backbone, tap: str, size: Sizes, device) -> dict:
    """ms per step of the paper recipe's probe: fresh noise (backbone + head) and from cached features."""
    preset = recipe(backbone.name).override(**dict(size.probe_overrides))
    task = fgvc_probe(preset, backbone, FGVC_CLASSES, timestep=TIMESTEP, tap=tap).to(device)
    task.log = lambda *args, **kwargs: None  # no Trainer here: the step's logging has nowhere to go
    out = {}
    for batch in train_batches(backbone.name, size):
        images = torch.rand(batch, 3, backbone.image_size, backbone.image_size, device=device) * 2 - 1
        labels = torch.randint(0, FGVC_CLASSES, (batch,), device=device)
        indices = torch.arange(batch, device=device)
        feats = task.features(images, indices, "train")[tap]
        batch_ = (images, labels, indices)
        fresh = optimizer_step(task, lambda b=batch_: task.training_step(b, 0), device)
        cached = optimizer_step(task, lambda f=feats, y=labels: F.cross_entropy(task(f), y), device)
        seconds = best_times({"fresh": fresh, "cached": cached}, size.repeats)
        out[str(batch)] = {"fresh_noise_ms": 1e3 * seconds["fresh"], "cached_features_ms": 1e3 * seconds["cached"]}
    return out


def measure_upernet_step(backbone, size: Sizes, device) -> dict:
    """ms per UperNet step (4 taps, aux head) at the backbone's own size as the crop, batch ``seg_batch``."""
    from aselect_bench.tasks.segmentation import SegmentationTask

    cfg = recipe(backbone.name).ade20k
    task = SegmentationTask(backbone, num_classes=ADE20K_CLASSES, blocks=cfg.blocks, component=cfg.component,
                            timestep=TIMESTEP, channels=size.seg_channels[0], aux_channels=size.seg_channels[1]).to(device)
    task.log_dict = lambda *args, **kwargs: None
    s = backbone.image_size
    images = torch.rand(size.seg_batch, 3, s, s, device=device) * 2 - 1
    masks = torch.randint(0, ADE20K_CLASSES, (size.seg_batch, s, s), device=device)
    indices = torch.arange(size.seg_batch, device=device)
    reset_peak_memory(device)
    seconds = best_time(optimizer_step(task, lambda: task.training_step((images, masks, indices), 0), device),
                        size.repeats)
    return {"crop": s, "batch": size.seg_batch, "ms": 1e3 * seconds, "peak_memory_mib": peak_memory_mib(device)}


def measure_model(model: str, size: Sizes, device, peaks: dict) -> dict:
    backbone = load_backbone(model, pretrained=False, device=device)
    tap = default_tap(model)
    tap_block = int(tap.split(".")[1])
    result = {"preset": model, "image_size": backbone.image_size, "num_blocks": backbone.num_blocks,
              "hidden_size": backbone.hidden_size, "tap": tap, "batch": size.batch,
              "tokens": (backbone.image_size // backbone.patch_size) ** 2,
              "extraction": measure_extraction(backbone, tap_block, size, device, peaks),
              "step_precision": fast_precision(device), "recipe": recipe(model).name}
    result["scan"] = measure_scan(backbone, tap, size, device)
    result["probe_steps"] = measure_probe_steps(backbone, tap, size, device)
    if backbone.image_size >= 512 or device.type != "cuda":
        result["upernet_step"] = measure_upernet_step(backbone, size, device)
    del backbone
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def project(model: dict, candidates: int, scan_images: int, recipe_batch: int, epochs: int, cache_allowed: bool) -> dict:
    """Projected GPU-hours, A-SelecT vs exhaustive, per FGVC dataset and for ADE20K, from ``model``'s figures."""
    scan_s = scan_seconds(scan_images, candidates, 1, 0.0, model["scan"]["seconds_per_forward"])  # encodes inside
    steps = model["probe_steps"][str(recipe_batch)]
    tap_rate = model["extraction"][model["step_precision"]]["tap_images_per_s"]
    encode_rate = model["extraction"][model["step_precision"]]["encode_images_per_s"]
    out = {"recipe": model["recipe"], "epochs": epochs, "recipe_batch": recipe_batch, "fgvc": {},
           "fgvc_cache_allowed": cache_allowed}
    for name, n in FGVC_TRAIN_IMAGES.items():
        iters = epoch_iterations(n, epochs, recipe_batch)
        fresh = iters * steps["fresh_noise_ms"] / 1e3
        cached = n / encode_rate + n / tap_rate + iters * steps["cached_features_ms"] / 1e3  # one pass, then heads
        out["fgvc"][name] = {"train_images": n, "iterations": iters, "fresh_noise": hours(scan_s, fresh, candidates),
                             "cached_features": hours(scan_s, cached, candidates)}
    if "upernet_step" in model:
        train = ADE20K_SCHEDULE["iterations"] * model["upernet_step"]["ms"] / 1e3 * (
            ADE20K_SCHEDULE["batch"] / model["upernet_step"]["batch"])
        out["ade20k"] = {"iterations": ADE20K_SCHEDULE["iterations"], "batch": ADE20K_SCHEDULE["batch"],
                         "fresh_noise": hours(scan_s, train, candidates),
                         "cached_features": None}  # random crops and flips every iteration: nothing to cache
    return out


def hours(scan_s: float, training_s: float, candidates: int) -> dict:
    """``{"aselect", "exhaustive"}`` GPU-hours (:func:`aselect_bench.analyses.projection.strategy_hours`)."""
    cost = strategy_hours(scan_s, training_s, candidates)
    return {"aselect": cost["aselect_hours"], "exhaustive": cost["exhaustive_hours"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, a few images (seconds)")
    parser.add_argument("--out", default="results/perf/gpu", help="output path without suffix (.json and .md)")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.dry_run else "cuda")
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("perf_gpu.py: no CUDA device here; use --dry-run on a CPU machine")
    torch.manual_seed(0)
    size = sizes(args.dry_run)
    peaks = {p: matmul_peak(dtype, size.matmul_n, size.repeats, device=device) if p == "32" or device.type == "cuda"
             else None for p, dtype in (("32", torch.float32), ("bf16", torch.bfloat16), ("16", torch.float16))}
    models = {model: measure_model(model, size, device, peaks) for model in size.models}
    candidates, scan_images = len(HFRSettings().candidates), HFRSettings().num_images
    result = {
        "dry_run": args.dry_run, **device_info(), "sizes": asdict(size), "matmul_peak_tflops":
        {k: v / 1e12 if v else None for k, v in peaks.items()}, "models": models,
        "projection": {
            "candidates": candidates, "scan_images": scan_images, "per_model": {
                model: project(m, candidates, scan_images, train_batches(model, size)[-1],
                                recipe(model).fgvc.max_epochs, not recipe(model).fgvc.train_augment)
                for model, m in models.items()}},
    }
    write_report(Path(args.out).parent, Path(args.out).name, result, render(result))
    print(render(result))
    return result


def render(r: dict) -> str:
    peaks = ", ".join(f"{k} {v:.3g}" for k, v in r["matmul_peak_tflops"].items() if v)
    lines = [f"# GPU performance{' (DRY RUN: tiny models on the CPU, not a measurement)' if r['dry_run'] else ''}\n",
             f"Device {r['device']}, torch {r['torch']} (CUDA {r['cuda']}, driver {r['driver']}). Random weights "
             f"(speed does not depend on them). Matrix-product peak measured in this run (TFLOP/s): {peaks}. "
             f"TFLOP/s count the matrix products of the real architecture (aselect_bench.backbones.flops: "
             f"for SD3 both streams of the joint blocks).\n"]
    for model, m in r["models"].items():
        lines.append(f"## {model}: {m['image_size']} px, {m['num_blocks']} blocks, width {m['hidden_size']}, "
                     f"{m['tokens']} tokens, tap {m['tap']}, batch {m['batch']}\n")
        rows = [[p, e["tap_images_per_s"], e["full_images_per_s"], e["early_exit_speedup"], e["early_exit_ideal"],
                 e["encode_images_per_s"], e["tflops"], 100 * e["share_of_matmul_peak"], e["peak_memory_mib"]]
                for p, e in m["extraction"].items()]
        lines.append(markdown_table(["precision", "images/s to the tap", "images/s full depth", "early-exit speed-up",
                                     "ideal", "VAE encode images/s", "TFLOP/s (full)", "% of matmul peak",
                                     "peak memory (MiB)"], rows))
        s = m["scan"]
        lines.append(f"\n- HFR scan ({m['step_precision']}): {s['candidates']} candidates x {s['images']} images in "
                     f"{s['seconds']:.2f} s")
        for batch, st in m["probe_steps"].items():
            lines.append(f"- `{m['recipe']}` probe step, batch {batch}: {st['fresh_noise_ms']:.1f} ms with fresh noise "
                         f"(backbone + head), {st['cached_features_ms']:.1f} ms from cached features (head only)")
        if "upernet_step" in m:
            u = m["upernet_step"]
            lines.append(f"- UperNet step (4 taps + aux head), crop {u['crop']}, batch {u['batch']}: {u['ms']:.1f} ms")
        lines.append("")
    p = r["projection"]
    lines.append(f"## Projected GPU-hours on this device: A-SelecT (scan of {p['scan_images']} images at "
                 f"{p['candidates']} candidates + one training) vs exhaustive ({p['candidates']} trainings)\n")
    lines.append(f"FGVC: each model's paper recipe (epochs and batch in its heading); ADE20K: "
                 f"{ADE20K_SCHEDULE['iterations']} iterations at batch {ADE20K_SCHEDULE['batch']}. Training steps and "
                 f"the scan only (evaluation passes left out of both; ADE20K's scan is costed at the FGVC tap, a "
                 f"rounding error beside 160k iterations). Cached features: one extraction pass, then the "
                 f"head alone" + ("" if any(v["fgvc_cache_allowed"] for v in p["per_model"].values()) else
                                  " (the paper recipes augment their training images, so they cannot cache them: the "
                                  "cached columns show what turning augmentation off would give)") + ".\n")
    for model, proj in p["per_model"].items():
        rows = []
        for name, d in proj["fgvc"].items():
            f, c = d["fresh_noise"], d["cached_features"]
            rows.append([name, d["train_images"], f["aselect"], f["exhaustive"], f["exhaustive"] / f["aselect"],
                         c["aselect"], c["exhaustive"], c["exhaustive"] / c["aselect"]])
        if "ade20k" in proj:
            f = proj["ade20k"]["fresh_noise"]
            rows.append(["ade20k", "-", f["aselect"], f["exhaustive"], f["exhaustive"] / f["aselect"], None, None, None])
        lines += [f"### {model} (`{proj['recipe']}`: {proj['epochs']} epochs at batch {proj['recipe_batch']})\n",
                  markdown_table(
            ["dataset", "train images", "A-SelecT h (fresh)", "exhaustive h (fresh)", "saving x", "A-SelecT h (cached)",
             "exhaustive h (cached)", "saving x (cached)"], rows, "{:.3g}"), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
