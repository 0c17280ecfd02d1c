"""``aselect-bench estimate``: the preset's recipe at real size on this machine, before anyone spends GPU-days."""

from __future__ import annotations

import argparse

from aselect_bench.argtypes import positive_int
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
                    "that cannot fit is refused, naming the largest that does.")
    add_preset_arguments(p, epochs=False)
    p.add_argument("--task", choices=("fgvc", "ade20k", "all"), default="all")
    p.add_argument("--dataset", default="cub", type=fgvc_dataset, help="the FGVC dataset whose classes and split sizes are used")
    p.add_argument("--steps", type=positive_int, default=3, help="timed training steps after the warm-up step (default 3)")
    p.add_argument("--batch-size", type=positive_int,
                   help="the measured batch (default: the recipe's on a GPU; on a CPU the head's smallest, 1 for "
                        "FGVC and 2 for ADE20K); the projection scales time per image to the recipe's batch")
    p.add_argument("--out", default="results/estimate", help="results folder")
    p.set_defaults(run=run, resumable=False)


def run(args: argparse.Namespace) -> list[dict]:
    from aselect_bench.analyses.estimate import TASKS, fmt_hours, run_estimate
    from aselect_bench.commands.options import preset_from_args

    tasks = TASKS if args.task == "all" else (args.task,)
    preset = preset_from_args(args)
    if args.backbone is not None:  # --backbone replaces every task's own backbone override too
        preset = preset.override(**{f"{t}.backbone": args.backbone for t in tasks
                                    if getattr(preset, t) is not None and getattr(preset, t).backbone is not None})
    results = run_estimate(preset, tasks, dataset=args.dataset, steps=args.steps, batch_size=args.batch_size,
                           out=args.out)
    for r in results:
        p = r["projection"]
        print(f"{r['preset']} {r['task']} on {r['device']} ({r['weights']} weights, {r['backbone_params']:,} "
              f"parameters): A-SelecT {fmt_hours(p['aselect_hours'])} h vs exhaustive {fmt_hours(p['exhaustive_hours'])} h "
              f"({p['saving']:.2f}x); peak memory {r['peak_memory_bytes'] / 2**30:.1f} GiB")
    return results
