"""Command-line options shared by every command that runs a benchmark preset, how they become overrides, and the
parse-time checks of every numeric option (a bad value is argparse's one usage line, before any work)."""

from __future__ import annotations

import argparse
import re
from argparse import ArgumentTypeError

from aselect_bench.argtypes import integer, non_negative_int, positive_int
from aselect_bench.precision import PRECISIONS

#: Options whose value is a candidate list; ``--candidates -50,0`` is read as that option's value
#: (argparse alone takes ``-50,0`` for an option and says "expected one argument").
LIST_OPTIONS = ("--candidates", "--only")
_NUMBER_LIST = re.compile(r"^-\d[\d,:\s-]*$")


def normalize_argv(argv: list[str]) -> list[str]:
    """Two spellings argparse alone cannot read: ``--candidates -50,0`` -> ``--candidates=-50,0`` (a list that
    starts with a negative number reaches :func:`parse_candidates`, which says what is wrong with it), and
    ``--slurm.KEY VALUE`` / ``--slurm.KEY=VALUE`` (an extra sbatch option) -> ``--slurm KEY=VALUE``."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in LIST_OPTIONS and i + 1 < len(argv) and _NUMBER_LIST.match(argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
        elif arg.startswith("--slurm.") and "=" in arg:
            out += ["--slurm", arg[len("--slurm."):]]
            i += 1
        elif arg.startswith("--slurm.") and i + 1 < len(argv):
            out += ["--slurm", f"{arg[len('--slurm.'):]}={argv[i + 1]}"]
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


def block_list(text: str) -> list[int]:
    """An argparse type: comma-separated block indices ``0,3,5`` (0-based, each once)."""
    blocks = [non_negative_int(part.strip()) for part in text.split(",") if part.strip()]
    if not blocks:
        raise ArgumentTypeError("the block list is empty: give block indices such as 0,3,5")
    if len(set(blocks)) < len(blocks):
        raise ArgumentTypeError(f"a block is listed twice in {text!r}: give each once")
    return blocks


def parse_candidates(text: str) -> list[int]:
    """``"0,50,...,950"`` style lists; ``a:b:s`` ranges are accepted too (``0:1000:50``). Every timestep must be
    non-negative (t = 0 is the clean image) and listed once; a range's step is not zero. The upper end depends
    on the backbone and is checked once it is loaded, before any work."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            bounds = part.split(":")
            if len(bounds) not in (2, 3):
                raise ArgumentTypeError(f"bad range {part!r}: write start:stop or start:stop:step, e.g. 0:1000:50")
            numbers = [integer(b, f"an integer in the range {part!r}") for b in bounds]
            if len(numbers) == 3 and numbers[2] == 0:
                raise ArgumentTypeError(f"the range {part!r} has step 0: give a positive step, e.g. 0:1000:50")
            out.extend(range(*numbers))
        else:
            out.append(integer(part, "an integer: give timesteps separated by commas (0,50,100) or ranges "
                                      "(0:1000:50)"))
    if not out:
        raise ArgumentTypeError("the candidate list is empty: give timesteps such as 0,50,...,950 or 0:1000:50")
    negative = [t for t in out if t < 0]
    if negative:
        raise ArgumentTypeError(f"timestep {negative[0]} is negative: t = 0 is the clean image and larger t is "
                                f"noisier, so give timesteps from 0 up")
    repeated = sorted({t for t in out if out.count(t) > 1})
    if repeated:
        raise ArgumentTypeError(f"timestep {repeated[0]} is listed more than once: give each candidate once (a "
                                f"repeated one would be trained and counted twice)")
    return out


def corruption_option(text: str) -> dict:
    """An argparse type: ``KIND:LEVEL`` (``gauss:0.1``; ``KIND:LEVEL:SEED`` for another draw) -> the preset's
    ``corruption`` section, checked as the preset checks it."""
    from aselect_bench.data.corruption import KINDS, Corruption
    from aselect_bench.errors import UserError

    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ArgumentTypeError(f"{text!r}: write KIND:LEVEL, e.g. gauss:0.1 (kinds: {', '.join(KINDS)})")
    try:
        section = {"kind": parts[0], "level": float(parts[1]), **({"seed": int(parts[2])} if len(parts) == 3 else {})}
    except ValueError:
        raise ArgumentTypeError(f"{text!r}: the level (and seed) must be numbers, e.g. gauss:0.1") from None
    try:
        Corruption(**section)
    except UserError as err:
        raise ArgumentTypeError(str(err)) from None
    return section


def dataset_name(text: str, extra: tuple[str, ...] = ()) -> str:
    """An argparse type: one of the six FGVC dataset names (or one of ``extra``: ``all``, ``ade20k``)."""
    from aselect_bench.data.fgvc import DATASETS

    if text in DATASETS or text in extra:
        return text
    raise ArgumentTypeError(f"unknown dataset {text!r}: use one of {', '.join([*DATASETS, *extra])}")


def fgvc_dataset(text: str) -> str:
    return dataset_name(text)


def fgvc_dataset_or_all(text: str) -> str:
    return dataset_name(text, ("all",))


def any_dataset(text: str) -> str:
    return dataset_name(text, ("ade20k",))


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
        parser.add_argument("--max-epochs", type=positive_int, help="override the preset's training epochs")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first unreadable image (default: skip it with a warning and count it)")
    parser.add_argument("--corruption", type=corruption_option, metavar="KIND:LEVEL",
                        help="corrupt every image of every split, seeded per image, e.g. gauss:0.1 (kinds gauss, "
                             "shot, jpeg, blur; docs/ladder.md; default: the preset's, none)")


def preset_from_args(args: argparse.Namespace, task: str | None = None):
    """The preset named by ``args.preset`` with every option the user gave applied as a recorded override.

    ``task`` (``fgvc``/``ade20k``) is the section ``--max-epochs`` and ``--backbone`` apply to (``--backbone``
    replaces the task's own backbone override too)."""
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset(args.preset)
    changes = {"data_root": args.data_root, "precision": args.precision, "strict": args.strict,
               "backbone": args.backbone, "hfr.candidates": args.candidates,
               "hfr.selector": getattr(args, "selector", None), "corruption": getattr(args, "corruption", None)}
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


def check_output_file(path, option: str = "--out") -> None:
    """Before the work: ``path`` names a file (not an existing folder) in a folder that can be written."""
    from pathlib import Path

    from aselect_bench.errors import UserError
    from aselect_bench.io import check_writable

    if Path(path).is_dir():
        raise UserError(f"{option} {path} is a folder: give the path of the file to write, e.g. "
                        f"{Path(path) / 'selection.json'}")
    check_writable(Path(path).parent, f"the {option} folder")
