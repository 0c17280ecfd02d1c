"""``aselect-bench select``: the one-pass timestep selection on its own (A-SelecT's HFR by default)."""

from __future__ import annotations

import argparse

from aselect_bench.argtypes import non_negative_int, positive_float, positive_int
from aselect_bench.commands.options import add_precision_argument, any_dataset, parse_candidates
from aselect_bench.hfr import DEFAULTS, MODES


def add_parser(sub) -> None:
    from aselect_bench.selectors import selector_names

    p = sub.add_parser("select", help="scan candidate timesteps and print the chosen one (HFR by default)",
                       description="A-SelecT: mean HFR of a tap's features at each candidate timestep over "
                                   "calibration images; the argmax is chosen. --selector picks another rule "
                                   "reading the same scan (label-using ones read labelled held-out images: "
                                   "the val split, or ADE20K's selection split; never the reported split). "
                                   "Images are resized to the backbone's native input size.")
    p.add_argument("--backbone", required=True, help="registered model (demo, dit-xl-2-256, ...), hub id or diffusers folder")
    p.add_argument("--dataset", required=True, type=any_dataset, help="cub, nabirds, flowers, dogs, cars, aircraft or ade20k")
    p.add_argument("--data-root", required=True, help="the folder holding the dataset's files as distributed")
    p.add_argument("--tap", default=None, help="feature tap 'blocks.<i>.<component>' (default: the preset's)")
    p.add_argument("--selector", default=DEFAULTS.selector, choices=selector_names(), metavar="NAME",
                   help=f"the timestep selector (default {DEFAULTS.selector}, the paper's single pass): "
                        f"{', '.join(selector_names())}")
    p.add_argument("--candidates", type=parse_candidates, default=list(DEFAULTS.candidates),
                   help="comma-separated timesteps or a:b:step ranges (default: 0,50,...,950,999)")
    p.add_argument("--num-images", type=positive_int, default=DEFAULTS.num_images,
                   help=f"calibration images (default {DEFAULTS.num_images})")
    p.add_argument("--label-images", type=positive_int, default=DEFAULTS.label_images,
                   help=f"at most this many labelled held-out images for label-using selectors "
                        f"(default {DEFAULTS.label_images})")
    p.add_argument("--cutoff", type=positive_float, default=DEFAULTS.cutoff,
                   help=f"low-band edge in cycles/token (default {DEFAULTS.cutoff})")
    p.add_argument("--mode", choices=MODES, default=DEFAULTS.mode,
                   help=f"low band shape (default {DEFAULTS.mode}: a 1-D FFT over the token sequence, the authors' "
                        f"LOW_FREQ_1D)")
    p.add_argument("--remove-mean", action="store_true", help="subtract each channel's spatial mean first")
    p.add_argument("--noise-draws", type=positive_int, default=1, help="average features over K noise draws (default 1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the calibration images and noise")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per backbone forward (default 32)")
    p.add_argument("--strict", action="store_true",
                   help="stop at an unreadable image (default: leave it out, count it and name it in the output)")
    add_precision_argument(p, default="auto")
    p.add_argument("--out", help="write the selection as JSON here")
    p.set_defaults(run=run, resumable=False)


def datamodule_for(dataset: str, root, image_size: int, seed: int, strict: bool = False):
    """The dataset's datamodule at the backbone's size, set up (calibration and selection images come from it;
    unreadable images left out and counted, or with ``strict`` the first one stops the run)."""
    if dataset == "ade20k":
        from aselect_bench.data.ade20k_datamodule import ADE20KDataModule

        datamodule = ADE20KDataModule(root, crop_size=image_size, seed=seed, strict=strict)
    else:
        from aselect_bench.data.fgvc_datamodule import FGVCDataModule

        datamodule = FGVCDataModule(dataset, root, image_size=image_size, seed=seed, num_workers=0, strict=strict)
    datamodule.setup("fit")
    return datamodule


def run(args: argparse.Namespace) -> dict:

    from aselect_bench.backbones import load_backbone
    from aselect_bench.backbones.registry import default_tap
    from aselect_bench.commands.options import check_output_file
    from aselect_bench.data.calibration import calibration_images
    from aselect_bench.errors import UserError
    from aselect_bench.hfr import HFRSettings
    from aselect_bench.io import atomic_write_json
    from aselect_bench.precision import describe_precision
    from aselect_bench.reports import markdown_table, run_record, unreadable_line
    from aselect_bench.selectors import (
        build_selector,
        check_candidates,
        check_enough_images,
        labelled_set,
        run_selectors,
        selector_names,
        training_selector,
    )

    settings = HFRSettings(num_images=args.num_images, cutoff=args.cutoff, mode=args.mode,
                           remove_mean=args.remove_mean, noise_draws=args.noise_draws, selector=args.selector,
                           label_images=args.label_images)
    chosen = training_selector(args.selector, settings)
    task = "ade20k" if args.dataset == "ade20k" else "fgvc"
    if not chosen.applies_to(task):
        raise UserError(f"selector {args.selector!r} does not apply to {args.dataset}; choose one of "
                        f"{', '.join(selector_names(task))}")
    if args.out:
        check_output_file(args.out)
    backbone = load_backbone(args.backbone)
    used = describe_precision(args.precision, backbone.device)
    backbone.set_precision(used["precision"])
    tap = args.tap or default_tap(args.backbone)
    backbone.check_taps([tap])  # every check before the long work
    check_candidates(args.candidates, backbone.num_train_timesteps)
    datamodule = datamodule_for(args.dataset, args.data_root, backbone.image_size, args.seed, args.strict)
    images = calibration_images(datamodule, args.num_images, args.seed)
    check_enough_images(chosen, len(images), "--num-images")
    labelled = labels = None
    if chosen.uses_labels:
        labelled, labels = labelled_set(datamodule, args.label_images, args.seed)
    selectors = [chosen] + ([build_selector("hfr", settings)] if args.selector != "hfr" else [])
    selection = run_selectors(backbone, selectors, args.candidates, tap, images, labelled, labels, seed=args.seed,
                              batch_size=args.batch_size, progress=True)
    choice, hfr = selection.choices[args.selector], selection.choices["hfr"]
    choice.refuse_if_no_pick("use more --num-images or another --selector")
    rows = [[t, hfr.scores[t], hfr.spread[t], *([] if chosen.name == "hfr" else [(choice.scores or {}).get(t)]),
             "<- chosen" if t == choice.timestep else ""] for t in selection.candidates]
    extra = [] if chosen.name == "hfr" else [f"{chosen.name} score"]
    print(markdown_table(["timestep", "mean HFR", "std", *extra, ""], rows, floatfmt="{:.4f}"))
    undefined = [t for t in selection.candidates if choice.scores is not None and choice.scores[t] is None]
    if undefined:
        print(f"note: the {chosen.name} score is undefined (-) at t={', '.join(map(str, undefined))} "
              f"({chosen.why_undefined(len(images))}); the choice is among the other candidates")
    cost = selection.cost_of(args.selector)
    print(f"chosen timestep: {choice.timestep}  (selector {args.selector}, tap {tap}, {len(images)} images"
          f"{f', {selection.num_labelled} labelled' if choice.uses_labels else ''}, {cost.forwards} forwards, "
          f"{cost.seconds:.1f}s)")
    if choice.support is not None:
        print(f"how firm: {choice.firmness()} over 1000 bootstrap resamples of the images")
    warning = choice.weak_choice_warning()
    if warning:
        print(f"warning: {warning}")
    record = {**selection.record(args.selector), "run": run_record(None, backbone, [datamodule])}
    if unreadable_line(record["run"]):
        print(f"note: {unreadable_line(record['run'])}")
    if args.out:
        atomic_write_json(args.out, record)
    return record

