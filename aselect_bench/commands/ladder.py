"""``aselect-bench ladder``: the known-answer ladder, one full comparison per level of one corruption kind, and how
each selector's pick tracks the exhaustive best and the matched timestep (docs/ladder.md)."""

from __future__ import annotations

import argparse
import math

from aselect_bench.commands.compare import LAUNCHER_FLAGS, add_sweep_arguments
from aselect_bench.commands.options import add_preset_arguments, fgvc_dataset


def level_list(text: str) -> list[float]:
    """An argparse type: ``0,0.05,0.1`` -> ascending distinct non-negative levels (at least two)."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give levels as numbers separated by commas, e.g. "
                                         f"0,0.05,0.1,0.2,0.3") from None
    bad = [v for v in levels if not math.isfinite(v) or v < 0]
    if bad:
        raise argparse.ArgumentTypeError(f"level {bad[0]} is not a level: give numbers from 0 up (0 = clean)")
    if len(set(levels)) < 2 or len(set(levels)) < len(levels):
        raise argparse.ArgumentTypeError(f"{text!r}: a ladder needs at least 2 distinct levels, each listed once "
                                         f"(3 or more for its Spearman tracking)")
    return sorted(levels)


def add_parser(sub) -> None:
    from aselect_bench.data.corruption import KINDS

    p = sub.add_parser(
        "ladder", help="known-answer ladder: one comparison per corruption level; does each selector follow the best?",
        description="Corrupt every image (all splits and the calibration images, seeded per image, never on disk) at "
                    "each level of one kind, run a full comparison at each level (exhaustive sweep, A-SelecT, every "
                    "selector, seeds, intervals; resumable, jobs of one sweep with --launcher) and write "
                    "results/ladder/<task>-<dataset>-<preset>-<kind>.json/.md/.png: per level the exhaustive best "
                    "with its ties, the matched timestep (gauss on a pixel-space backbone) and every pick with its "
                    "regret interval; per selector its tracking (Spearman of its pick with the best over the "
                    "levels, tied share, mean regret). docs/ladder.md.")
    p.add_argument("--task", choices=("fgvc", "ade20k"), default="fgvc")
    p.add_argument("--dataset", default="cub", type=fgvc_dataset, help="FGVC dataset name (ignored for ade20k)")
    add_preset_arguments(p)
    p.add_argument("--kind", choices=tuple(KINDS), default="gauss",
                   help="; ".join(f"{k}: level = {v}" for k, v in KINDS.items()) + " (default gauss)")
    p.add_argument("--levels", type=level_list, default=[0.0, 0.05, 0.1, 0.2, 0.3],
                   help="corruption levels, e.g. 0,0.05,0.1,0.2,0.3 (the default)")
    add_sweep_arguments(p, "results/ladder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace):
    from aselect_bench.analyses.compare import Comparison, check_candidates_to_compare, run_comparison
    from aselect_bench.analyses.ladder import ladder_name, ladder_result, level_preset, write_ladder
    from aselect_bench.commands.options import check_output_folders, preset_from_args
    from aselect_bench.errors import UserError
    from aselect_bench.experiments import build_experiment, preset_backbone
    from aselect_bench.launch import check_launcher_options, launch
    from aselect_bench.reports import report_logdir
    from aselect_bench.selectors import build_selector, check_candidates

    preset = preset_from_args(args, args.task).override(
        seeds=args.seeds, **{f"launcher.{key}": getattr(args, flag) for flag, key in LAUNCHER_FLAGS.items()},
        **({"launcher.slurm": {**dict(args.slurm)}} if args.slurm else {}))
    check_candidates_to_compare(preset.hfr.candidates)
    check_launcher_options(args.launcher, not args.no_wait, False, None, args.dry_run)
    check_output_folders(args, "out", "state", "runs")
    for name in args.selectors or []:  # an unknown or inapplicable name stops here, before any training
        if not build_selector(name).applies_to(args.task):
            raise UserError(f"selector {name!r} does not apply to the {args.task} task; leave it out of --selectors")
    presets = [level_preset(preset, args.kind, level) for level in args.levels]  # a bad level stops here
    dataset = "ade20k" if args.task == "ade20k" else args.dataset
    backbone = preset_backbone(preset, args.task)
    check_candidates(preset.hfr.candidates, backbone.num_train_timesteps)
    experiments = [build_experiment(args.task, dataset, p, backbone) for p in presets]
    selectors = args.selectors or True
    launched = None
    if args.launcher:
        comparisons = [Comparison(exp, args.state, args.runs, selectors) for exp in experiments]
        launched = launch(comparisons, args.launcher, args.state, args.runs, selectors, jobs=args.jobs,
                          wait=not args.no_wait, dry_run=args.dry_run)
        if launched is None:
            return None
    results = []
    for index, (level, exp) in enumerate(zip(args.levels, experiments)):
        print(f"[{index + 1}/{len(experiments)}] {args.kind} level {level:g}", flush=True)
        results.append(run_comparison(exp, state_root=args.state, runs_dir=args.runs, selectors=selectors))
    ladder = ladder_result(args.task, dataset, preset, args.kind, args.levels, results, backbone)
    if launched is not None:
        ladder["launcher"] = {k: launched[k] for k in ("kind", "jobs", "settings")}
        ladder["wall_seconds"] = launched["wall_seconds"]
    name = ladder_name(ladder)
    stem = write_ladder(ladder, args.out, tensorboard_dir=report_logdir(args.runs, name))
    for name, t in ladder["tracking"].items():
        rho = "undefined (fewer than 3 levels, or a constant series)" if t["spearman"] is None else \
            f"{t['spearman']:.2f}"
        scored = "no pick" if t["mean_regret"] is None else \
            f"tied {100 * t['tied_share']:.0f}%, mean regret {t['mean_regret']:.2f}"
        print(f"{name}: picks {t['picks']}, Spearman(pick, best) {rho}, {scored}")
    print(f"best per level {[lv['exhaustive']['best_timestep'] for lv in ladder['levels']]}, matched "
          f"{[lv['matched_timestep'] for lv in ladder['levels']]}  -> {stem}.md")
    return ladder
