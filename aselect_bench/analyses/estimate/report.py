"""The estimate's report: the projection of measured seconds per image to the recipe's full cost (A-SelecT vs
the exhaustive sweep, on the primitives of :mod:`aselect_bench.analyses.projection`), and the JSON + Markdown
files (``<out>/<preset>-<task>-<device>.{json,md}``)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from aselect_bench.analyses.projection import epoch_iterations, scan_seconds, strategy_hours
from aselect_bench.reports import markdown_table, run_header, write_report

GIB = 2**30


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


def fgvc_by_dataset(preset, stages: dict) -> dict:
    """:func:`fgvc_projection` of each of the six FGVC datasets at its published sizes (none for a synthetic
    preset, whose data is its own)."""
    if preset.synthetic:
        return {}
    from aselect_bench.data.fgvc import DATASETS, protocol_sizes

    return {name: fgvc_projection(preset, stages, protocol_sizes(name)) for name in DATASETS}


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


# ---------------------------------------------------------------- the files
def device_name(device) -> str:
    from aselect_bench.reports import hardware_summary

    return hardware_summary(device)["device"]


def device_slug(device) -> str:
    """``cpu`` or the GPU's name as a file-name part (``nvidia-h200``)."""
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def write_estimate(result: dict, out, slug: str, say: Callable = print) -> Path:
    """``<out>/<preset>-<task>-<slug>.{json,md}`` (``slug``: :func:`device_slug`, or ``flops`` for FLOPs only)."""
    stem = write_report(out, f"{result['preset']}-{result['task']}-{slug}", result, render(result))
    say(f"-> {stem}.md")
    return stem


# ---------------------------------------------------------------- the report
def _g(n: float) -> str:
    return f"{n / 1e9:,.0f} G"


def fmt_hours(h: float) -> str:
    """Hours: whole numbers with thousands separators from 100 up, else three significant digits."""
    return f"{h:,.0f}" if h >= 100 else f"{h:.3g}"


def render(r: dict) -> str:
    lines = render_measured(r) if r.get("measured", True) else render_flops_only(r)
    if r.get("gpu_projection"):
        lines += render_gpu(r["gpu_projection"])
    return "\n".join(lines) + "\n"


def render_flops_only(r: dict) -> list[str]:
    return [f"# Estimate: preset `{r['preset']}`, {r['task']}, projected from FLOPs (not measured)\n",
            run_header(r["run"]),
            f"- Not measured: {r['flops_only']}.",
            f"- Backbone `{r['backbone']}` (its architecture on PyTorch's meta device: configs and shapes, no "
            f"weights): {r['backbone_params']:,} transformer parameters, VAE {r['vae_params']:,}, "
            f"{r['image_size']} px; {r['num_classes']} classes. Data: {r['data']}."]


def render_gpu(g: dict) -> list[str]:
    """The ``gpu_projection`` section: FLOPs per image, the formula, GPU-hours and wall-clock, the assumptions."""
    rate = g["peak_flops"] * g["mfu"]
    windows = f" ({g['windows']} windows)" if g["windows"] > 1 else ""
    lines = [f"\n## Projected on {g['gpus']} x {g['gpu_name']}: a {g['basis']}\n",
             f"FLOPs per image: the backbone to `{g['tap']}` {_g(g['flops_per_image'])}, to the HFR tap "
             f"`{g['hfr_tap']}` {_g(g['hfr_flops_per_image'])} (`aselect_bench.backbones.flops`); the VAE encoder "
             f"{_g(g['encode_flops_per_image'])}; the head's forward {_g(g['head_forward_flops_per_image'])} "
             f"({g['head_count']}). A training image {_g(g['training_flops_per_image'])}, an evaluation image"
             f"{windows} {_g(g['evaluation_flops_per_image'])}. Seconds = FLOPs x images x epochs / (peak x mfu), "
             f"with the bf16 dense peak {g['peak_flops'] / 1e12:,.0f} TFLOP/s x MFU {g['mfu']:.2f} = "
             f"{rate / 1e12:,.0f} TFLOP/s and the measured projection's counts: {g['iterations']:,} steps at batch "
             f"{g['batch']}, {g['evaluated_images']:,} evaluated images, a scan of {g['scan_images']} images x "
             f"{g['candidates']} candidates.\n",
             markdown_table(["", "GPU-hours", f"wall-clock hours on {g['gpus']} GPUs"], [
                 ["HFR scan", fmt_hours(g["scan_gpu_hours"]), ""],
                 ["one training", fmt_hours(g["training_gpu_hours"]), ""],
                 ["A-SelecT (scan + one training, one GPU)", fmt_hours(g["aselect_gpu_hours"]),
                  fmt_hours(g["aselect_wall_hours"])],
                 [f"exhaustive ({g['candidates']} one-GPU jobs, {g['rounds']} round(s))",
                  fmt_hours(g["exhaustive_gpu_hours"]), fmt_hours(g["exhaustive_wall_hours"])],
                 ["saving (exhaustive / A-SelecT)", f"{g['saving']:.2f}x", f"{g['wall_saving']:.2f}x"]]),
             "Assumptions: A-SelecT's scan and training run on one GPU (a training could also use DDP; not assumed "
             "here); the exhaustive sweep's trainings run as parallel one-GPU jobs, ceil(candidates / GPUs) rounds of "
             "one training; per task and dataset, nothing shared across them; the backbone and the VAE run at every "
             "training step (fresh views, no feature cache), as in the measured projection; element-wise work, data "
             "loading and the optimizer are not counted, and the MFU stands for all of it."]
    if g["by_dataset"]:
        rows = [[name, f"{d['sizes']['train']:,}", fmt_hours(d["aselect_gpu_hours"]),
                 fmt_hours(d["exhaustive_gpu_hours"]), fmt_hours(d["exhaustive_wall_hours"]), f"{d['saving']:.2f}x"]
                for name, d in g["by_dataset"].items()]
        lines += ["\nThe six FGVC datasets at their published sizes, each its own sweep:\n",
                  markdown_table(["dataset", "train images", "A-SelecT GPU-h", "exhaustive GPU-h",
                                  f"exhaustive wall h ({g['gpus']} GPUs)", "saving"], rows)]
    return lines


def gpu_line(r: dict) -> str:
    """One printed line: the GPU projection of a result, labelled as such."""
    g = r["gpu_projection"]
    return (f"{r['preset']} {r['task']} ({r['dataset']}) projected from FLOPs, not measured, on {g['gpus']} x "
            f"{g['gpu_name']} (bf16 {g['peak_flops'] / 1e12:,.0f} TFLOP/s, MFU {g['mfu']:.2f}): A-SelecT "
            f"{fmt_hours(g['aselect_gpu_hours'])} GPU-h, {fmt_hours(g['aselect_wall_hours'])} h wall-clock (one GPU); "
            f"exhaustive {fmt_hours(g['exhaustive_gpu_hours'])} GPU-h, {fmt_hours(g['exhaustive_wall_hours'])} h "
            f"wall-clock ({g['candidates']} jobs in {g['rounds']} round(s)); saving {g['saving']:.2f}x GPU-hours, "
            f"{g['wall_saving']:.2f}x wall-clock")


def render_measured(r: dict) -> list[str]:
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
    return lines
