"""``aselect-bench components``: which block and component of a DiT block gives the best features."""

from __future__ import annotations

import argparse

from aselect_bench.argtypes import non_negative_int
from aselect_bench.commands.options import add_preset_arguments, block_list, fgvc_dataset


def add_parser(sub) -> None:
    p = sub.add_parser("components", help="probe every (block, component) tap of a grid in one fused run",
                       description="One backbone pass per batch serves every tap; one head per tap trains in the "
                                   "same loop (features cached when views are fixed). Writes "
                                   "results/components/<preset>-<dataset>[-t<timestep>].json/.md/.png.")
    add_preset_arguments(p)
    p.add_argument("--dataset", default="cub", type=fgvc_dataset, help="FGVC dataset (default cub)")
    p.add_argument("--blocks", type=block_list, help="comma-separated blocks (default: all of a small model, a spread of a deep one)")
    p.add_argument("--timestep", type=non_negative_int, help="a fixed timestep for every tap (default: each tap's HFR argmax)")
    p.add_argument("--no-separate", action="store_true", help="skip measuring one separate probe run for the cost")
    p.add_argument("--out", default="results/components")
    p.add_argument("--runs", default="runs", help="TensorBoard log folder: the report in RUNS/reports, the "
                   "trainings in RUNS/trainings")
    p.set_defaults(run=run, resumable=False)


def run(args: argparse.Namespace) -> dict:
    from aselect_bench.analyses.components import run_components, write_components
    from aselect_bench.commands.options import check_output_folders, preset_from_args
    from aselect_bench.experiments import build_experiment, preset_backbone
    from aselect_bench.reports import report_logdir

    preset = preset_from_args(args, "fgvc")
    check_output_folders(args, "out", "runs")
    backbone = preset_backbone(preset, "fgvc")
    if args.blocks:  # before any data is read or written (without --blocks: the model's own, always valid)
        backbone.check_taps([f"blocks.{b}.out" for b in args.blocks])
    exp = build_experiment("fgvc", args.dataset, preset, backbone)
    result = run_components(exp, args.blocks, timestep=args.timestep, runs_dir=args.runs,
                            measure_separate=not args.no_separate)
    suffix = "" if args.timestep is None else f"-t{args.timestep}"
    stem = write_components(result, args.out, report_logdir(args.runs, f"components-{preset.name}-{args.dataset}{suffix}"))
    print(f"best tap {result['best_tap']} ({result['grid'][result['best_tap']]['val_top1']:.1f}% val); "
          f"Spearman(HFR, val) {result['spearman_hfr_val']}; {result['forwards']} forwards -> {stem}.md")
    return result
