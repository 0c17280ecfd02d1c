"""`make bench-ade20k`: scene parsing with an UperNet head on DiT features at the HFR-chosen timestep.

Writes results/ade20k/<preset>/summary.json, summary.md (per-class IoU with class names) and hfr_curve.png,
and TensorBoard logs (mIoU/aAcc curves, overlays image | ground truth | prediction) under
runs/ade20k/<preset>/. The timestep is chosen by HFR on training images; the head is scored on the official
validation split at the last iteration (mmseg's protocol); the selection split (held-out training images)
is reported beside it. With no arguments: the demo preset end to end (synthetic scenes in the
ADEChallengeData2016 layout).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from aselect_bench.analyses.compare_report import with_ci
from aselect_bench.commands.options import add_preset_arguments, check_output_folders, preset_from_args
from aselect_bench.experiments import build_experiment, hfr_selector, preset_backbone
from aselect_bench.plots import hfr_curve_figure
from aselect_bench.reports import hfr_row, markdown_table, run_header, run_record, write_report
from aselect_bench.uncertainty import metric_interval


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_preset_arguments(parser)
    parser.add_argument("--results", default="results")
    parser.add_argument("--runs", default="runs")
    return parser.parse_args(argv)


def constant_predictor_miou(exp) -> float:
    """mIoU (%) of predicting the most frequent training class at every pixel of the reported split's masks."""
    import numpy as np
    import torch

    from aselect_bench.data.ade20k import load_mask
    from aselect_bench.metrics import SegmentationMetrics

    k = exp.cfg.num_classes
    counts = np.zeros(k, np.int64)
    for _, mask_path in exp.datamodule.sets["train"].pairs:
        m = load_mask(mask_path, 150)
        counts += np.bincount(m[m < k], minlength=k)
    metric = SegmentationMetrics(k)
    for _, mask_path in exp.datamodule.sets["test"].pairs:
        target = torch.from_numpy(load_mask(mask_path, 150))[None]
        metric.update(torch.full_like(target, int(counts.argmax())), target)
    return metric.compute()["mIoU"].item()


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = preset_from_args(args, "ade20k")
    check_output_folders(args, "results", "runs")
    backbone = preset_backbone(preset, "ade20k")
    exp = build_experiment("ade20k", "ade20k", preset, backbone)
    selector = hfr_selector(preset)
    run = exp.fit(None, Path(args.runs) / "ade20k" / preset.name, "ade20k", selector=selector)
    names = exp.class_names()
    results = exp.last_task.test_results
    splits = exp.split_names()
    summary = {
        "preset": preset.name, "backbone": backbone.name, "taps": exp.last_task.taps, "hfr_tap": exp.hfr_tap,
        "candidates": list(preset.hfr.candidates), "hfr_settings": preset.hfr.to_json(), "timestep": run.timestep,
        "selector": preset.hfr.selector, "hfr": run.hfr, "scores": selector.choice.scores,
        **{k: getattr(selector.choice, k) for k in ("support", "runner_up", "margin")},
        "splits": splits, "val_miou": run.test, "val_miou_ci": metric_interval(run.outcomes["test"])["ci"],
        "val_aacc": results["aAcc"], "selection_miou": run.val,
        "selection_miou_ci": metric_interval(run.outcomes["val"])["ci"],
        "per_class_iou": {names[k]: (None if math.isnan(v) else v) for k, v in enumerate(results["per_class_iou"])},
        "seconds": run.seconds, "forwards": run.forwards, "scan_seconds": run.scan_seconds,
        "scan_forwards": run.scan_forwards, "log_dir": run.log_dir, "skipped_images": exp.datamodule.bad_files(),
        "constant_predictor_miou": constant_predictor_miou(exp), "run": run_record(preset, backbone, [exp.datamodule]),
    }
    support = f", bootstrap support {100 * summary['support']:.0f}%" if summary["support"] is not None else ""
    md = [f"# ADE20K, preset `{preset.name}`\n", run_header(summary["run"]),
          f"Backbone `{backbone.name}`, taps {', '.join(f'`{t}`' for t in summary['taps'])}, UperNet + FCN auxiliary "
          f"head. Timestep {run.timestep} chosen by the `{summary['selector']}` selector over {len(summary['candidates'])} "
          f"candidates (`hfr`: the HFR of `{exp.hfr_tap}`){support}.\n",
          f"- **mIoU {with_ci(summary['val_miou'], summary['val_miou_ci'])}** (95% bootstrap interval over the "
          f"images; a constant predictor: {summary['constant_predictor_miou']:.2f}), "
          f"aAcc {summary['val_aacc']:.2f} ({splits['test']} split, {len(exp.datamodule.sets['test'])} images, "
          f"last iteration)",
          f"- {splits['val']} split ({len(exp.datamodule.sets['val'])} held-out training images): mIoU "
          f"{with_ci(summary['selection_miou'], summary['selection_miou_ci'])}",
          f"- a constant predictor (the most frequent training class everywhere) scores mIoU "
          f"{summary['constant_predictor_miou']:.2f} on the {splits['test']} split",
          f"- {summary['seconds']:.0f}s in all, HFR scan {summary['scan_seconds']:.1f}s",
          f"- unreadable images skipped: {len(summary['skipped_images'])}\n",
          f"HFR curve (chosen in bold): {hfr_row(run.hfr, run.timestep)}\n",
          "## Per-class IoU\n", markdown_table(["class", "IoU"], [[n, v] for n, v in summary["per_class_iou"].items()])]
    out = Path(args.results) / "ade20k" / preset.name
    write_report(out, "summary", summary, "\n".join(md) + "\n",
                 {"hfr_curve.png": hfr_curve_figure({int(t): v for t, v in run.hfr.items()}, run.timestep,
                                                    title=f"HFR of {exp.hfr_tap} ({backbone.name})")})
    print(f"mIoU {summary['val_miou']:.2f} at t={run.timestep} -> {out / 'summary.md'}")
    return summary


if __name__ == "__main__":
    from aselect_bench.cli import run_guarded

    run_guarded(main)
