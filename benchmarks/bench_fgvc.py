"""`make bench-fgvc`: A-SelecT on the FGVC datasets: HFR picks the timestep, the probe trains, test is scored.

Writes results/fgvc/<preset>/summary.json, summary.md and hfr_curves.png, and TensorBoard logs under
runs/fgvc/<preset>/. With no arguments: the demo preset end to end (synthetic data generated on first use,
the shipped demo DiT). Every choice (timestep, best epoch) is made on held-out data; test is only reported.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aselect_bench.analyses.compare_report import with_ci
from aselect_bench.commands.options import add_preset_arguments, check_output_folders, preset_from_args
from aselect_bench.data.fgvc import DATASETS
from aselect_bench.experiments import build_experiment, hfr_selector, preset_backbone
from aselect_bench.plots import hfr_curves_figure
from aselect_bench.reports import hfr_row, markdown_table, run_header, run_record, write_report
from aselect_bench.uncertainty import mean_interval, metric_interval


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_preset_arguments(parser)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), help="subset of datasets (default: all six)")
    parser.add_argument("--results", default="results", help="results folder")
    parser.add_argument("--runs", default="runs", help="TensorBoard log folder")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = preset_from_args(args, "fgvc").override(fgvc__datasets=args.datasets)
    check_output_folders(args, "results", "runs")
    backbone = preset_backbone(preset, "fgvc")
    out_dir = Path(args.results) / "fgvc" / preset.name
    summary = {"preset": preset.name, "backbone": backbone.name, "tap": preset.fgvc.tap, "selector": preset.hfr.selector,
               "candidates": list(preset.hfr.candidates), "hfr_settings": preset.hfr.to_json(), "datasets": {},
               "mean_test_top1": None, "run": run_record(preset, backbone)}
    print(f"backbone {backbone.name}, precision {summary['run']['precision']}, {len(preset.fgvc.datasets)} datasets")
    start, outcomes, datamodules = time.perf_counter(), {}, []
    for index, name in enumerate(preset.fgvc.datasets):
        print(f"[{index + 1}/{len(preset.fgvc.datasets)}] {name}")
        exp = build_experiment("fgvc", name, preset, backbone)
        datamodules.append(exp.datamodule)
        summary["run"] = run_record(preset, backbone, datamodules)  # its unreadable images counted too
        selector = hfr_selector(preset)
        run = exp.fit(None, Path(args.runs) / "fgvc" / preset.name, name, selector=selector)
        choice = selector.choice
        summary["datasets"][name] = {
            "num_classes": exp.datamodule.num_classes, "timestep": run.timestep, "hfr": run.hfr,
            "scores": choice.scores, "val_top1": run.val, "test_top1": run.test,
            "chance_top1": 100 / exp.datamodule.num_classes, "seconds": run.seconds, "forwards": run.forwards,
            "scan_seconds": run.scan_seconds, "scan_forwards": run.scan_forwards,
            "support": choice.support, "runner_up": choice.runner_up, "margin": choice.margin,
            "skipped_images": exp.datamodule.bad_files(),
            "val_ci": metric_interval(run.outcomes["val"])["ci"], "test_ci": metric_interval(run.outcomes["test"])["ci"],
        }
        outcomes[name] = run.outcomes["test"]
        mean = mean_interval(list(outcomes.values()))
        summary["mean_test_top1"], summary["mean_test_ci"] = mean["value"], mean["ci"]
        summary["total_seconds"] = time.perf_counter() - start
        write_summary(out_dir, summary)
        print(f"    t={run.timestep}  val={run.val:.1f}%  test={with_ci(run.test, summary['datasets'][name]['test_ci'])}% "
              f" ({run.seconds:.0f}s)")
    print(f"mean test top-1: {with_ci(summary['mean_test_top1'], summary['mean_test_ci'])}%  -> {out_dir / 'summary.md'}")
    return summary


def write_summary(out_dir: Path, summary: dict) -> None:
    """summary.json, summary.md and the HFR curves figure, each written atomically."""
    rows = [[name, d["num_classes"], d["timestep"],
             None if d.get("support") is None else f"{100 * d['support']:.0f}%", with_ci(d["val_top1"], d["val_ci"]),
             with_ci(d["test_top1"], d["test_ci"]), d["chance_top1"], d["seconds"]]
            for name, d in summary["datasets"].items()]
    chance = [d["chance_top1"] for d in summary["datasets"].values()]
    rows.append(["**mean**", None, None, None, None, with_ci(summary["mean_test_top1"], summary["mean_test_ci"]),
                 sum(chance) / len(chance), None])
    selector = summary["selector"]
    how = (f"the HFR argmax over {len(summary['candidates'])} candidates (A-SelecT, {summary['hfr_settings']['mode']} "
           f"low band, cutoff {summary['hfr_settings']['cutoff']})" if selector == "hfr" else
           f"chosen by the `{selector}` selector over {len(summary['candidates'])} candidates (the HFR curves below "
           f"are shown for reference)")
    md = [f"# FGVC, preset `{summary['preset']}`\n", run_header(summary["run"]),
          f"Backbone `{summary['backbone']}`, tap `{summary['tap']}`; the timestep is {how}; support = share of "
          f"bootstrap resamples of the calibration images that pick the same timestep. Top-1 in percent with its 95% "
          f"bootstrap interval over the images (the mean's: each dataset's images resampled on their own); the best "
          f"epoch is chosen on val, test only reported; chance = 100 / classes.\n",
          markdown_table(["dataset", "classes", "timestep", "support", "val top-1", "test top-1", "chance",
                          "seconds"], rows),
          "\n## HFR curves (chosen timestep in bold)\n"]
    md += [f"- **{name}**: {hfr_row(d['hfr'], d['timestep'])}" for name, d in summary["datasets"].items()]
    md.append("\n## Unreadable images skipped\n")
    md += [f"- **{name}**: {len(d['skipped_images'])}" +
           (f" ({', '.join(d['skipped_images'][:5])}{' ...' if len(d['skipped_images']) > 5 else ''})"
            if d["skipped_images"] else "") for name, d in summary["datasets"].items()]
    curves = {name: (d["hfr"], d["timestep"]) for name, d in summary["datasets"].items()}
    write_report(out_dir, "summary", summary, "\n".join(md) + "\n",
                 {"hfr_curves.png": hfr_curves_figure(curves, f"HFR curves, {summary['backbone']} {summary['tap']}")})


if __name__ == "__main__":
    from aselect_bench.cli import run_guarded

    run_guarded(main)
