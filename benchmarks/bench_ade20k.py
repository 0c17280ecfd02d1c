"""`make bench-ade20k`: scene parsing with an UperNet head on DiT features at the HFR-chosen timestep.

Writes results/ade20k/<preset>/summary.json and summary.md (per-class IoU with class names), and
TensorBoard logs (mIoU/aAcc curves, overlays image | ground truth | prediction) under runs/ade20k/<preset>/.
With no arguments: the demo preset end to end (synthetic scenes in the ADEChallengeData2016 layout).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from aselect_bench.backbones import load_backbone
from aselect_bench.config import load_preset
from aselect_bench.experiments import build_experiment, hfr_selector
from aselect_bench.io import atomic_write_json, atomic_write_text
from aselect_bench.plots import hfr_curve_figure, save_figure
from aselect_bench.reports import hfr_row, markdown_table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", help="benchmark preset: demo, paper, or a YAML path")
    parser.add_argument("--data-root", help="folder holding ADEChallengeData2016/ (default: the preset's)")
    parser.add_argument("--backbone", help="override the preset's backbone")
    parser.add_argument("--results", default="results")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image (default: skip it with a warning and count it)")
    return parser.parse_args(argv)


def constant_predictor_miou(exp) -> float:
    """mIoU (%) of predicting the most frequent training class at every pixel of the validation masks."""
    import numpy as np
    import torch

    from aselect_bench.data.ade20k import load_mask
    from aselect_bench.metrics import SegmentationMetrics

    k = exp.cfg["num_classes"]
    counts = np.zeros(k, np.int64)
    for _, mask_path in exp.datamodule.sets["train"].pairs:
        m = load_mask(mask_path, 150)
        counts += np.bincount(m[m < k], minlength=k)
    metric = SegmentationMetrics(k)
    for _, mask_path in exp.datamodule.sets["val"].pairs:
        target = torch.from_numpy(load_mask(mask_path, 150))[None]
        metric.update(torch.full_like(target, int(counts.argmax())), target)
    return metric.compute()["mIoU"].item()


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = load_preset(args.preset)
    if args.strict:
        preset["strict"] = True
    backbone = load_backbone(args.backbone or preset["ade20k"].get("backbone") or preset["backbone"])
    exp = build_experiment("ade20k", "ade20k", preset, backbone, args.data_root)
    run = exp.fit(None, Path(args.runs) / "ade20k" / preset["name"], "ade20k", selector=hfr_selector(preset))
    names = exp.class_names()
    per_class = exp.last_task.test_results["per_class_iou"]
    summary = {
        "preset": preset["name"], "backbone": backbone.name, "taps": exp.last_task.taps, "hfr_tap": exp.hfr_tap,
        "candidates": preset["hfr"]["candidates"], "timestep": run.timestep, "hfr": run.hfr,
        "val_miou": run.test, "val_aacc": exp.last_task.test_results["aAcc"],
        "best_val_epoch_miou": run.val,
        "per_class_iou": {names[k]: (None if math.isnan(v) else v) for k, v in enumerate(per_class)},
        "seconds": run.seconds, "forwards": run.forwards, "scan_seconds": run.scan_seconds,
        "scan_forwards": run.scan_forwards, "log_dir": run.log_dir,
        "skipped_images": exp.datamodule.bad_files(),
    }
    summary["constant_predictor_miou"] = constant_predictor_miou(exp)
    out = Path(args.results) / "ade20k" / preset["name"]
    atomic_write_json(out / "summary.json", summary)
    rows = [[name, iou] for name, iou in summary["per_class_iou"].items()]
    md = [f"# ADE20K, preset `{preset['name']}`\n",
          f"Backbone `{backbone.name}`, taps {', '.join(f'`{t}`' for t in summary['taps'])}, UperNet + FCN auxiliary "
          f"head. Timestep {run.timestep} chosen by the HFR of `{exp.hfr_tap}` over {len(summary['candidates'])} "
          f"candidates.\n",
          f"- **mIoU {summary['val_miou']:.2f}**, aAcc {summary['val_aacc']:.2f} (validation split, best epoch)",
          f"- a constant predictor (the most frequent training class everywhere) scores mIoU "
          f"{summary['constant_predictor_miou']:.2f}",
          f"- {summary['seconds']:.0f}s in all, HFR scan {summary['scan_seconds']:.1f}s",
          f"- unreadable images skipped: {len(summary['skipped_images'])}\n",
          f"HFR curve (chosen in bold): {hfr_row(run.hfr, run.timestep)}\n",
          "## Per-class IoU\n", markdown_table(["class", "IoU"], rows)]
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    save_figure(hfr_curve_figure({int(t): v for t, v in run.hfr.items()}, run.timestep,
                                 title=f"HFR of {exp.hfr_tap} ({backbone.name})"), out / "hfr_curve.png")
    print(f"mIoU {summary['val_miou']:.2f} at t={run.timestep} -> {out / 'summary.md'}")
    return summary


if __name__ == "__main__":
    from aselect_bench.cli import run_guarded

    run_guarded(main)
