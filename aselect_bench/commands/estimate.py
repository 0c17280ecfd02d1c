"""``aselect-bench estimate``: the preset's recipe at real size on this machine, before anyone spends GPU-days."""

from __future__ import annotations

import argparse
from argparse import ArgumentTypeError

from aselect_bench.argtypes import positive_float, positive_int
from aselect_bench.commands.options import add_preset_arguments, fgvc_dataset


def add_parser(sub) -> None:
    p = sub.add_parser(
        "estimate", help="a dry run at real size: shapes, memory, seconds per step, projected hours",
        description="Build the preset's backbone at its real size (its weights when the Hugging Face cache or a "
                    "--backbone folder has them, else the real architecture with random weights), its real head "
                    "and real input shapes (the dataset under --data-root, else a synthetic batch at the true "
                    "resolution and class count); time the training steps, an evaluation and the HFR scan after a "
                    "warm-up; record peak memory; project the hours of A-SelecT and of the exhaustive sweep at "
                    "real size on this device. Writes <out>/<preset>-<task>-<device>.json/.md per task. A batch "
                    "that cannot fit is refused, naming the largest that does. With --gpus, also a projection "
                    "from FLOPs (not a measurement) of GPU-hours and wall-clock on that many GPUs; with "
                    "--flops-only (or a model too large for this machine) that projection alone, written to "
                    "<out>/<preset>-<task>-flops.json/.md.")
    add_preset_arguments(p, epochs=False)
    p.add_argument("--task", choices=("fgvc", "ade20k", "all"), default="all")
    p.add_argument("--dataset", default="cub", type=fgvc_dataset, help="the FGVC dataset whose classes and split sizes are used")
    p.add_argument("--steps", type=positive_int, default=3, help="timed training steps after the warm-up step (default 3)")
    p.add_argument("--batch-size", type=positive_int,
                   help="the measured batch (default: the recipe's on a GPU; on a CPU the head's smallest, 1 for "
                        "FGVC and 2 for ADE20K); the projection scales time per image to the recipe's batch")
    p.add_argument("--gpus", type=positive_int,
                   help="also project, from FLOPs (not a measurement), the GPU-hours and the wall-clock of A-SelecT "
                        "and of the exhaustive sweep on this many GPUs (default with --flops-only: 1)")
    p.add_argument("--gpu", choices=("h100", "h200", "a100", "l40s"), default="h100",
                   help="the GPU kind of --gpus, by its published dense bf16 peak (default h100)")
    p.add_argument("--mfu", type=fraction, default=0.4,
                   help="the share of that peak the recipe is assumed to use, in (0, 1] (default 0.4)")
    p.add_argument("--flops-only", action="store_true",
                   help="build nothing at real size and time nothing: the FLOP projection alone (seconds, not "
                        "the real-size dry run's minutes); a registered model too large for this machine's memory "
                        "gets it without this switch")
    p.add_argument("--out", default="results/estimate", help="results folder")
    p.set_defaults(run=run, resumable=False)


def fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise ArgumentTypeError(f"{text} is above 1: give the share of the peak, e.g. 0.4")
    return value


def cache_note(projection: dict) -> str:
    """What the console line adds when the recipe caches features: the projection runs the backbone at every
    step, so it is an upper bound (the .md says the same)."""
    if projection.get("fresh_features", True):
        return ""
    return ("; an upper bound: the recipe caches features (no augmentation), so every epoch after the first costs "
            "less than projected (the projection runs the backbone at every step)")


def run(args: argparse.Namespace) -> list[dict]:
    from aselect_bench.analyses.estimate import TASKS, Plan, fmt_hours, gpu_line, run_estimate
    from aselect_bench.commands.options import preset_from_args

    tasks = TASKS if args.task == "all" else (args.task,)
    preset = preset_from_args(args)
    if args.backbone is not None:  # --backbone replaces every task's own backbone override too
        preset = preset.override(**{f"{t}.backbone": args.backbone for t in tasks
                                    if getattr(preset, t) is not None and getattr(preset, t).backbone is not None})
    plan = None if args.gpus is None else Plan(args.gpu, args.gpus, args.mfu)
    if plan is None and args.flops_only:
        plan = Plan(args.gpu, 1, args.mfu)
    results = run_estimate(preset, tasks, dataset=args.dataset, steps=args.steps, batch_size=args.batch_size,
                           out=args.out, plan=plan, flops_only=args.flops_only)
    for r in results:
        p = r["projection"]
        if r["measured"]:
            print(f"{r['preset']} {r['task']} on {r['device']} ({r['weights']} weights, {r['backbone_params']:,} "
                  f"parameters): A-SelecT {fmt_hours(p['aselect_hours'])} h vs exhaustive "
                  f"{fmt_hours(p['exhaustive_hours'])} h ({p['saving']:.2f}x); peak memory "
                  f"{r['peak_memory_bytes'] / 2**30:.1f} GiB{cache_note(p)}")
        else:
            print(f"{r['preset']} {r['task']} ({r['backbone']}, {r['backbone_params']:,} parameters): not measured "
                  f"({r['flops_only']})")
        if r.get("gpu_projection"):
            print(gpu_line(r))
    return results
