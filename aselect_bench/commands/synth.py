"""``aselect-bench synth``: procedurally generated datasets written in the original on-disk layouts."""

from __future__ import annotations

import argparse

from aselect_bench.argtypes import non_negative_float, non_negative_int, positive_int

LAYOUTS = ("cub", "nabirds", "flowers", "dogs", "cars", "aircraft")


def add_parser(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic fine-grained or scene-parsing dataset in an original layout",
                       description="Generate a deterministic synthetic dataset in exactly the files a real "
                                   "dataset ships (CUB's images.txt, Flowers' .mat files, ADEChallengeData2016/...), "
                                   "so the real readers load it.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    f = kinds.add_parser("fgvc", help="a fine-grained classification set in one FGVC layout")
    f.add_argument("--layout", choices=LAYOUTS, required=True, help="which dataset's layout to write")
    f.add_argument("--out", required=True, help="output folder (the dataset root)")
    f.add_argument("--num-classes", type=positive_int, default=12)
    f.add_argument("--train-per-class", type=positive_int, default=40)
    f.add_argument("--test-per-class", type=positive_int, default=20)
    f.add_argument("--image-size", type=positive_int, default=64)
    f.add_argument("--seed", type=non_negative_int, default=0)
    _add_shared_options(f)
    a = kinds.add_parser("ade20k", help="a scene-parsing set in the ADEChallengeData2016 layout")
    a.add_argument("--out", required=True, help="output folder (ADEChallengeData2016/ is written inside)")
    a.add_argument("--num-train", type=positive_int, default=200)
    a.add_argument("--num-val", type=positive_int, default=40)
    a.add_argument("--num-classes", type=positive_int, default=10)
    a.add_argument("--image-size", type=positive_int, default=64)
    a.add_argument("--seed", type=non_negative_int, default=0)
    _add_shared_options(a)
    p.set_defaults(run=run, resumable=False)


def _add_shared_options(parser: argparse.ArgumentParser) -> None:
    from aselect_bench.data.synth_fgvc import GRAIN

    parser.add_argument("--force", action="store_true",
                        help="replace a synthetic dataset this suite wrote into --out before (a folder holding "
                             "anything else is refused even so)")
    parser.add_argument("--grain", type=non_negative_float, default=GRAIN,
                        help=f"sensor-grain strength: each image's noise std is uniform in base + [0, grain], pixel "
                             f"range 0-1 (default {GRAIN}, the demo's; 0: almost clean)")


def run(args: argparse.Namespace) -> None:
    if args.kind == "fgvc":
        from aselect_bench.data.synth_fgvc import write_layout

        write_layout(args.layout, args.out, num_classes=args.num_classes, train_per_class=args.train_per_class,
                     test_per_class=args.test_per_class, image_size=args.image_size, seed=args.seed,
                     grain=args.grain, force=args.force)
    else:
        from aselect_bench.data.synth_ade20k import write_ade20k

        write_ade20k(args.out, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
                     num_classes=args.num_classes, seed=args.seed, grain=args.grain, force=args.force)
    print(f"wrote a synthetic {args.kind} dataset to {args.out}")
