"""What each timestep selector adds to the scan it reads (demo preset, cub and ADE20K stand-ins by default).

The scan (calibration images x candidates, one noise draw) is what A-SelecT pays for; a selector that only
reads it (the HFR family at one draw, rankme, alpha-req) adds its own computation, which should stay a small
share of the scan (the target: under 5%). Selectors that need more backbone work (K noise draws, labelled
images) are listed with that extra work too. Every selector runs in the same scan, ``--repeats`` times; the
median of each share is reported. Writes results/perf/selectors.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from aselect_bench.commands.options import parse_candidates
from aselect_bench.experiments import build_experiment, preset_backbone
from aselect_bench.reports import markdown_table, run_header, run_record, write_report
from aselect_bench.selectors import build_selector, labelled_set, run_selectors, selector_names
from aselect_bench.settings import load_bench_preset

TARGET = 0.05  # a scan-only selector should add less than this share of the scan's time


def scan_only(selector) -> bool:
    """Reads only the scan's own features: the calibration images at one noise draw."""
    return selector.images == "calibration" and selector.noise_draws == 1


def measure(exp, repeats: int, candidates) -> dict:
    """Each selector's extra seconds and forwards over ``repeats`` scans of ``exp``'s calibration images."""
    preset = exp.preset
    selectors = [build_selector(n, preset.hfr) for n in selector_names(exp.task)]
    labelled, labels = labelled_set(exp.datamodule, preset.hfr.label_images, preset.seed)
    images = exp.calibration_images()
    runs = [run_selectors(exp.backbone, selectors, candidates, exp.hfr_tap, images, labelled, labels,
                          seed=preset.seed) for _ in range(repeats)]
    scan = statistics.median(r.scan.seconds for r in runs)
    rows = {}
    for s in selectors:
        shares = [r.choices[s.name].extra_seconds / r.scan.seconds for r in runs]
        rows[s.name] = {"scan_only": scan_only(s), "uses_labels": s.uses_labels, "needs_scan": s.needs_scan,
                        "extra_seconds": statistics.median(r.choices[s.name].extra_seconds for r in runs),
                        "extra_forwards": runs[0].choices[s.name].extra_forwards, "share_of_scan": statistics.median(shares)}
    worst = max((r["share_of_scan"] for r in rows.values() if r["scan_only"]), default=0.0)
    return {"task": exp.task, "dataset": exp.dataset, "tap": exp.hfr_tap, "candidates": list(candidates),
            "num_images": runs[0].num_images, "num_labelled": runs[0].num_labelled, "scan_seconds": scan,
            "scan_forwards": runs[0].scan.forwards, "selectors": rows, "worst_scan_only_share": worst,
            "scan_only_under_target": worst < TARGET}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", type=parse_candidates, help="default: the preset's grid")
    parser.add_argument("--out", default="results/perf/selectors")
    args = parser.parse_args(argv)
    preset = load_bench_preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        if preset.synthetic:
            preset = preset.override(data_root=f"{tmp}/data", num_workers=0)
        cases = []
        for task, dataset in (("fgvc", "cub"), ("ade20k", "ade20k")):
            backbone = preset_backbone(preset, task)
            exp = build_experiment(task, dataset, preset, backbone)
            cases.append(measure(exp, args.repeats, args.candidates or preset.hfr.candidates))
    result = {"preset": preset.name, "target_share": TARGET, "cases": cases, "run": run_record(preset, backbone)}
    md = ["# What each selector adds to the scan\n", run_header(result["run"]),
          f"One scan of the calibration images at every candidate (one noise draw) serves every selector; the "
          f"share is the selector's extra wall time over the scan's (median of {args.repeats} scans). Scan-only "
          f"selectors read nothing but the scan: target under {100 * TARGET:.0f}%. The others pay for more "
          f"backbone work (noise draws, labelled held-out images), counted as their extra forwards.\n"]
    for case in cases:
        md += [f"## {case['task']} / {case['dataset']}: tap `{case['tap']}`, {case['num_images']} calibration "
               f"images, {case['num_labelled']} labelled, {len(case['candidates'])} candidates\n",
               f"Scan: {case['scan_seconds']:.2f}s, {case['scan_forwards']} forwards. Worst scan-only share: "
               f"**{100 * case['worst_scan_only_share']:.2f}%** "
               f"({'under' if case['scan_only_under_target'] else 'NOT under'} the {100 * TARGET:.0f}% target).\n",
               markdown_table(["selector", "scan only", "labels", "extra seconds", "share of scan", "extra forwards"],
                              [[n, "yes" if r["scan_only"] else "no", "yes" if r["uses_labels"] else "no",
                                r["extra_seconds"], f"{100 * r['share_of_scan']:.2f}%", r["extra_forwards"]]
                               for n, r in case["selectors"].items()], floatfmt="{:.3f}"), ""]
    write_report(Path(args.out).parent, Path(args.out).name, result, "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    from aselect_bench.cli import run_guarded

    run_guarded(main)
