"""``aselect-bench compare``: exhaustive search vs A-SelecT and every timestep selector, on one dataset or all
six FGVC datasets, resumable; the selectors' leaderboard is rewritten after each comparison."""

from __future__ import annotations

import argparse

from aselect_bench.commands.options import add_preset_arguments, fgvc_dataset_or_all, parse_candidates


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="exhaustive search vs A-SelecT and the other timestep selectors: cost, regret, correlation",
        description="Train a head at every candidate timestep (exhaustive) and once at the preset selector's "
                    "choice (A-SelecT: the HFR scan by default), on the same data, seeds, head and schedule; score "
                    "every registered timestep selector on the same exhaustive curve; write "
                    "results/compare/<task>-<dataset>-<preset>.json/.md/.png and the leaderboard across the "
                    "comparisons in the folder (selectors.json/.md/.png). Each finished candidate is saved at "
                    "once: rerun the same command after an interruption to resume. With no arguments: the FGVC "
                    "demo (cub layout) end to end; --dataset all: the preset's six FGVC datasets in turn.")
    p.add_argument("--task", choices=("fgvc", "ade20k"), default="fgvc")
    p.add_argument("--dataset", default="cub", type=fgvc_dataset_or_all,
                   help="FGVC dataset name (cub, nabirds, flowers, dogs, cars, aircraft), or 'all' for every dataset "
                        "of the preset (ignored for ade20k)")
    add_preset_arguments(p)
    p.add_argument("--only", type=parse_candidates,
                   help="train only these candidates of the exhaustive sweep and stop (one job of a split sweep; "
                        "a later run without --only merges)")
    p.add_argument("--fused", action="store_true", help="also run the fused exhaustive baseline (classification)")
    p.add_argument("--selectors", type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
                   help="comma-separated selectors to score (default: every registered one that applies to the "
                        "task; see 'aselect-bench select --help')")
    p.add_argument("--no-selectors", action="store_true",
                   help="score only the preset's selector (hfr): no other selectors, no extra scans")
    p.add_argument("--out", default="results/compare", help="results folder")
    p.add_argument("--state", default="runs/compare", help="where finished pieces are kept for resuming")
    p.add_argument("--runs", default="runs", help="TensorBoard log folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace):
    from pathlib import Path

    from aselect_bench.analyses.compare import check_candidates_to_compare, run_comparison, write_comparison
    from aselect_bench.analyses.leaderboard import write_leaderboard
    from aselect_bench.commands.options import check_output_folders, preset_from_args
    from aselect_bench.errors import UserError
    from aselect_bench.experiments import build_experiment, preset_backbone
    from aselect_bench.selectors import build_selector, check_candidates

    preset = preset_from_args(args, args.task)
    check_candidates_to_compare(preset.hfr.candidates, args.only)
    check_output_folders(args, "out", "state", "runs")
    for name in args.selectors or []:  # an unknown or inapplicable name stops here, before any training
        if not build_selector(name).applies_to(args.task):
            raise UserError(f"selector {name!r} does not apply to the {args.task} task; leave it out of --selectors")
    datasets = ["ade20k"] if args.task == "ade20k" else (
        list(preset.fgvc.datasets) if args.dataset == "all" else [args.dataset])
    selectors = False if args.no_selectors else (args.selectors or True)
    backbone = preset_backbone(preset, args.task)
    check_candidates(preset.hfr.candidates, backbone.num_train_timesteps)
    # every dataset's folder and index files are read (and a synthetic one written) before the first training
    experiments = [build_experiment(args.task, dataset, preset, backbone) for dataset in datasets]
    results = []
    for index, (dataset, exp) in enumerate(zip(datasets, experiments)):
        if len(datasets) > 1:
            print(f"[{index + 1}/{len(datasets)}] {args.task} {dataset}")
        result = run_comparison(exp, state_root=args.state, runs_dir=args.runs, selectors=selectors,
                                fused=args.fused, only=args.only)
        if result is None:
            continue
        label = f"{args.task}-{dataset}-{preset.name}"
        stem = write_comparison(result, args.out, tensorboard_dir=Path(args.runs) / "compare" / label)
        print(f"{dataset}: saving {result['saving_seconds']:.2f}x time / {result['saving_forwards']:.2f}x forwards "
              f"(ideal {result['ideal_saving']}x), regret {result['regret']:.2f}, "
              f"Spearman(HFR, val) {result['spearman_hfr_val']}  -> {stem}.md")
        board = write_leaderboard(args.out, preset.name, tensorboard_dir=Path(args.runs) / "compare" / "leaderboard")
        if board is not None:
            print(f"selectors' leaderboard over the comparisons in {args.out} -> {board}.md")
        results.append(result)
    return results[0] if len(results) == 1 else results or None
