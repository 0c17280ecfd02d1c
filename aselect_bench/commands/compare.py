"""``aselect-bench compare``: exhaustive search vs A-SelecT on one dataset, resumable."""

from __future__ import annotations

import argparse

from aselect_bench.commands.options import add_preset_arguments, parse_candidates


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="exhaustive search vs A-SelecT: cost, regret, HFR-metric correlation",
        description="Train a head at every candidate timestep (exhaustive) and once at the HFR choice "
                    "(A-SelecT), on the same data, seeds, head and schedule; write "
                    "results/compare/<task>-<dataset>-<preset>.json/.md/.png. Each finished candidate is "
                    "saved at once: rerun the same command after an interruption to resume. With no "
                    "arguments: the FGVC demo (cub layout) end to end.")
    p.add_argument("--task", choices=("fgvc", "ade20k"), default="fgvc")
    p.add_argument("--dataset", default="cub", help="FGVC dataset name (ignored for ade20k)")
    add_preset_arguments(p)
    p.add_argument("--only", type=parse_candidates,
                   help="train only these candidates of the exhaustive sweep and stop (one job of a split sweep; "
                        "a later run without --only merges)")
    p.add_argument("--fused", action="store_true", help="also run the fused exhaustive baseline (classification)")
    p.add_argument("--no-variants", action="store_true", help="skip the HFR-variant ablation scans")
    p.add_argument("--out", default="results/compare", help="results folder")
    p.add_argument("--state", default="runs/compare", help="where finished pieces are kept for resuming")
    p.add_argument("--runs", default="runs", help="TensorBoard log folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace):
    from pathlib import Path

    from aselect_bench.analyses.compare import check_candidates_to_compare, run_comparison, write_comparison
    from aselect_bench.commands.options import check_output_folders, preset_from_args
    from aselect_bench.experiments import build_experiment, preset_backbone

    preset = preset_from_args(args, args.task)
    check_candidates_to_compare(preset.hfr.candidates)
    check_output_folders(args, "out", "state", "runs")
    dataset = "ade20k" if args.task == "ade20k" else args.dataset
    exp = build_experiment(args.task, dataset, preset, preset_backbone(preset, args.task))
    result = run_comparison(exp, state_root=args.state, runs_dir=args.runs, variants=not args.no_variants,
                            fused=args.fused, only=args.only)
    if result is None:
        return None
    stem = write_comparison(result, args.out, tensorboard_dir=Path(args.runs) / "compare" /
                            f"{args.task}-{dataset}-{preset.name}")
    print(f"saving {result['saving_seconds']:.2f}x time / {result['saving_forwards']:.2f}x forwards "
          f"(ideal {result['ideal_saving']}x), regret {result['regret']:.2f}, "
          f"Spearman(HFR, val) {result['spearman_hfr_val']}  -> {stem}.md")
    return result
