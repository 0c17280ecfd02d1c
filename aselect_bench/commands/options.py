"""Command-line options shared by every command that runs a benchmark preset, and how they become overrides."""

from __future__ import annotations

import argparse

from aselect_bench.precision import PRECISIONS


def parse_candidates(text: str) -> list[int]:
    """``"0,50,...,950"`` style lists; ``a:b:s`` ranges are accepted too (``0:1000:50``)."""
    from argparse import ArgumentTypeError as UserError  # argparse prints it as one usage error

    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                out.extend(range(*[int(x) for x in part.split(":")]))
            else:
                out.append(int(part))
        except ValueError:
            raise UserError(f"bad candidate {part!r}: give integers separated by commas, e.g. 0,50,100") from None
    if not out:
        raise UserError("the candidate list is empty: give timesteps such as 0,50,...,950")
    return out


def add_precision_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--precision {auto,32,bf16,16}``; ``default=None`` keeps the preset's (``auto`` in every shipped one)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help="backbone compute precision: auto (bf16 only where it is native: a CUDA device with "
                             "bf16, or a CPU whose bf16 kernels are fast; else float32), 32, bf16 or 16 "
                             f"(default: {default or 'the preset’s, auto'})")


def add_preset_arguments(parser: argparse.ArgumentParser, epochs: bool = True) -> None:
    """``--preset --data-root --backbone --precision --candidates --strict`` (and ``--max-epochs``)."""
    parser.add_argument("--preset", default="demo", help="benchmark preset: demo, paper, paper-dit, or a YAML path")
    parser.add_argument("--data-root", help="folder with one sub-folder per dataset (default: the preset's)")
    parser.add_argument("--backbone", help="override the preset's backbone (registered model, hub id or local diffusers folder)")
    add_precision_argument(parser)
    parser.add_argument("--candidates", type=parse_candidates,
                        help="candidate timesteps, e.g. 0,50,100 or 0:1000:50 (default: the preset's 21)")
    parser.add_argument("--selector", metavar="NAME",
                        help="the timestep selector that picks the training timestep (default: the preset's, hfr; "
                             "see 'aselect-bench select --help' for the list)")
    if epochs:
        parser.add_argument("--max-epochs", type=int, help="override the preset's training epochs")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first unreadable image (default: skip it with a warning and count it)")


def preset_from_args(args: argparse.Namespace, task: str | None = None):
    """The preset named by ``args.preset`` with every option the user gave applied as a recorded override.

    ``task`` (``fgvc``/``ade20k``) is the section ``--max-epochs`` and ``--backbone`` apply to (``--backbone``
    replaces the task's own backbone override too)."""
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset(args.preset)
    changes = {"data_root": args.data_root, "precision": args.precision, "strict": args.strict,
               "backbone": args.backbone, "hfr.candidates": args.candidates,
               "hfr.selector": getattr(args, "selector", None)}
    if task is not None:
        changes[f"{task}.max_epochs"] = getattr(args, "max_epochs", None)
        if args.backbone is not None and getattr(preset, task).backbone is not None:
            changes[f"{task}.backbone"] = args.backbone
    return preset.override(**changes)


def check_output_folders(args: argparse.Namespace, *options: str) -> None:
    """Before the work: each folder option (``"out"`` for ``--out``...) can be created and written, or one line."""
    from aselect_bench.io import check_writable

    for option in options:
        check_writable(getattr(args, option), f"the --{option} folder")
