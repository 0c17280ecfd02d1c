"""`make bench-fgvc`: A-SelecT on the FGVC datasets: HFR picks the timestep, the probe trains, test is scored.

Writes results/fgvc/<preset>/summary.json and summary.md, and TensorBoard logs under runs/fgvc/<preset>/.
With no arguments: the demo preset end to end (synthetic data generated, the demo DiT pretrained once).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aselect_bench.backbones import load_backbone
from aselect_bench.config import load_preset
from aselect_bench.data.fgvc import DATASETS
from aselect_bench.experiments import build_experiment, hfr_selector
from aselect_bench.io import atomic_write_json, atomic_write_text
from aselect_bench.plots import hfr_curves_figure, save_figure
from aselect_bench.reports import hfr_row, markdown_table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", help="benchmark preset: demo, paper, or a YAML path")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), help="subset of datasets (default: all six)")
    parser.add_argument("--data-root", help="folder with one sub-folder per dataset (default: the preset's)")
    parser.add_argument("--backbone", help="override the preset's backbone (preset, hub id or local folder)")
    parser.add_argument("--results", default="results", help="results folder")
    parser.add_argument("--runs", default="runs", help="TensorBoard log folder")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image (default: skip it with a warning and count it)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = load_preset(args.preset)
    if args.strict:
        preset["strict"] = True
    cfg = preset["fgvc"]
    datasets = args.datasets or cfg["datasets"]
    backbone = load_backbone(args.backbone or preset["backbone"])
    out_dir = Path(args.results) / "fgvc" / preset["name"]
    summary = {"preset": preset["name"], "backbone": backbone.name, "tap": cfg["tap"],
               "candidates": preset["hfr"]["candidates"], "datasets": {}, "mean_test_top1": None}
    start = time.perf_counter()
    for index, name in enumerate(datasets):
        print(f"[{index + 1}/{len(datasets)}] {name}")
        exp = build_experiment("fgvc", name, preset, backbone, args.data_root)
        run = exp.fit(None, Path(args.runs) / "fgvc" / preset["name"], name, selector=hfr_selector(preset))
        summary["datasets"][name] = {
            "num_classes": exp.datamodule.num_classes, "timestep": run.timestep, "hfr": run.hfr,
            "val_top1": run.val, "test_top1": run.test, "seconds": run.seconds, "forwards": run.forwards,
            "scan_seconds": run.scan_seconds, "scan_forwards": run.scan_forwards,
            "skipped_images": exp.datamodule.bad_files(),
        }
        tests = [d["test_top1"] for d in summary["datasets"].values()]
        summary["mean_test_top1"] = sum(tests) / len(tests)
        summary["total_seconds"] = time.perf_counter() - start
        write_summary(out_dir, summary)
        print(f"    t={run.timestep}  val={run.val:.1f}%  test={run.test:.1f}%  ({run.seconds:.0f}s)")
    print(f"mean test top-1: {summary['mean_test_top1']:.2f}%  -> {out_dir / 'summary.md'}")
    return summary


def write_summary(out_dir: Path, summary: dict) -> None:
    """summary.json, summary.md and the HFR curves figure, each written atomically."""
    atomic_write_json(out_dir / "summary.json", summary)
    rows = [[name, d["num_classes"], d["timestep"], d["val_top1"], d["test_top1"], d["seconds"]]
            for name, d in summary["datasets"].items()]
    rows.append(["**mean**", None, None, None, summary["mean_test_top1"], None])
    md = [f"# FGVC, preset `{summary['preset']}`\n",
          f"Backbone `{summary['backbone']}`, tap `{summary['tap']}`; the timestep is the HFR argmax over "
          f"{len(summary['candidates'])} candidates (A-SelecT). Top-1 in percent.\n",
          markdown_table(["dataset", "classes", "timestep", "val top-1", "test top-1", "seconds"], rows),
          "\n## HFR curves (chosen timestep in bold)\n"]
    md += [f"- **{name}**: {hfr_row(d['hfr'], d['timestep'])}" for name, d in summary["datasets"].items()]
    skipped = {name: d.get("skipped_images", []) for name, d in summary["datasets"].items()}
    md.append("\n## Unreadable images skipped\n")
    md += [f"- **{name}**: {len(files)}" + (f" ({', '.join(files[:5])}{' ...' if len(files) > 5 else ''})"
                                            if files else "") for name, files in skipped.items()]
    atomic_write_text(out_dir / "summary.md", "\n".join(md) + "\n")
    curves = {name: (d["hfr"], d["timestep"]) for name, d in summary["datasets"].items()}
    save_figure(hfr_curves_figure(curves, f"HFR curves, {summary['backbone']} {summary['tap']}"),
                out_dir / "hfr_curves.png")


if __name__ == "__main__":
    from aselect_bench.cli import run_guarded

    run_guarded(main)
