"""``aselect-bench select``: the one-pass A-SelecT scan on its own."""

from __future__ import annotations

import argparse

from aselect_bench.commands.options import add_precision_argument, parse_candidates
from aselect_bench.hfr import DEFAULTS, MODES


def add_parser(sub) -> None:
    p = sub.add_parser("select", help="scan candidate timesteps by HFR and print the chosen one",
                       description="A-SelecT: mean HFR of a tap's features at each candidate timestep over "
                                   "calibration images; the argmax is chosen. Images are resized to the "
                                   "backbone's native input size.")
    p.add_argument("--backbone", required=True, help="preset (demo, dit-xl-2-256, ...), hub id or diffusers folder")
    p.add_argument("--dataset", required=True, help="cub, nabirds, flowers, dogs, cars, aircraft or ade20k")
    p.add_argument("--data-root", required=True, help="the folder holding the dataset's files as distributed")
    p.add_argument("--tap", default=None, help="feature tap 'blocks.<i>.<component>' (default: the preset's)")
    p.add_argument("--candidates", type=parse_candidates, default=list(DEFAULTS.candidates),
                   help="comma-separated timesteps or a:b:step ranges (default: 0,50,...,950,999)")
    p.add_argument("--num-images", type=int, default=DEFAULTS.num_images,
                   help=f"calibration images (default {DEFAULTS.num_images})")
    p.add_argument("--cutoff", type=float, default=DEFAULTS.cutoff,
                   help=f"low-band edge in cycles/token (default {DEFAULTS.cutoff})")
    p.add_argument("--mode", choices=MODES, default=DEFAULTS.mode,
                   help=f"low band shape (default {DEFAULTS.mode}: a 1-D FFT over the token sequence, the authors' "
                        f"LOW_FREQ_1D)")
    p.add_argument("--remove-mean", action="store_true", help="subtract each channel's spatial mean first")
    p.add_argument("--noise-draws", type=int, default=1, help="average features over K noise draws (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    add_precision_argument(p, default="auto")
    p.add_argument("--out", help="write the selection as JSON here")
    p.set_defaults(run=run)


def calibration_images(dataset: str, root, image_size: int, num_images: int, seed: int):
    """``[N, 3, S, S]`` evaluation-view images from the train split of ``dataset``."""
    if dataset == "ade20k":
        from aselect_bench.data.ade20k_datamodule import ADE20KDataModule

        datamodule = ADE20KDataModule(root, crop_size=image_size, seed=seed)
    else:
        from aselect_bench.data.fgvc_datamodule import FGVCDataModule

        datamodule = FGVCDataModule(dataset, root, image_size=image_size, seed=seed, num_workers=0)
    datamodule.setup("fit")
    return datamodule.calibration_images(num_images, seed=seed)


def run(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from aselect_bench.backbones import load_backbone, parse_tap
    from aselect_bench.backbones.registry import default_tap
    from aselect_bench.hfr import HFRSettings, check_candidates, select_timestep
    from aselect_bench.io import atomic_write_json, check_writable
    from aselect_bench.precision import describe_precision
    from aselect_bench.reports import markdown_table, run_record

    HFRSettings(candidates=args.candidates, num_images=args.num_images, cutoff=args.cutoff, mode=args.mode,
                remove_mean=args.remove_mean, noise_draws=args.noise_draws)  # every check before the long work
    if args.out:
        check_writable(Path(args.out).parent, "the --out folder")
    backbone = load_backbone(args.backbone)
    used = describe_precision(args.precision, backbone.device)
    backbone.set_precision(used["precision"])
    tap = args.tap or default_tap(args.backbone)
    parse_tap(tap, backbone.num_blocks, backbone.family.components)  # every check before the long work
    check_candidates(args.candidates, backbone.num_train_timesteps)
    images = calibration_images(args.dataset, args.data_root, backbone.image_size, args.num_images, args.seed)
    result = select_timestep(backbone, images, args.candidates, tap, cutoff=args.cutoff, mode=args.mode,
                             remove_mean=args.remove_mean, noise_draws=args.noise_draws, seed=args.seed,
                             batch_size=args.batch_size, progress=True)
    rows = [[t, v, result.spread[t], "<- chosen" if t == result.timestep else ""] for t, v in result.curve.items()]
    print(markdown_table(["timestep", "mean HFR", "std", ""], rows, floatfmt="{:.4f}"))
    print(f"chosen timestep: {result.timestep}  (tap {tap}, {len(images)} images, "
          f"{result.forwards} forwards, {result.seconds:.1f}s)")
    print(f"how firm: {result.firmness()} over 1000 bootstrap resamples of the images")
    warning = result.weak_choice_warning()
    if warning:
        print(f"warning: {warning}")
    record = {**result.to_json(), "run": run_record(None, backbone)}
    if args.out:
        atomic_write_json(args.out, record)
    return record
