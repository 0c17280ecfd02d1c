"""The ``aselect-bench`` command.

Subcommands: ``fit``/``validate``/``test`` (LightningCLI with YAML configs), ``select`` (the one-pass
A-SelecT scan), ``compare`` (exhaustive search vs A-SelecT), ``components`` (block x component map),
``synth`` (synthetic datasets in the original layouts), ``pretrain`` (the demo DiT).
User mistakes print one line (what is wrong and how to fix it) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from aselect_bench.errors import UserError

LIGHTNING_COMMANDS = ("fit", "validate", "test")
#: Modules of ``aselect_bench.commands`` that each add one subcommand.
COMMANDS = ("select", "synth", "compare", "pretrain", "components")


def run_guarded(fn, *args, **kwargs):
    """Run ``fn``; a :class:`UserError` becomes one line on stderr and exit status 2 (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        sys.stderr.write("\r")  # a progress bar may have left the cursor mid-line
        print(f"aselect-bench: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("aselect-bench: interrupted; finished work is saved, rerun the same command to resume",
              file=sys.stderr)
        raise SystemExit(130) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aselect-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name}: train/evaluate a probe or segmentation head from YAML "
                                  f"configs (see 'aselect-bench {name} --help')", add_help=False)
    from importlib import import_module

    for name in COMMANDS:
        import_module(f"aselect_bench.commands.{name}").add_parser(sub)
    return parser


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from aselect_bench.lightning_cli import run_lightning_cli

        run_guarded(run_lightning_cli, argv)
        return
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        raise SystemExit(1)
    run_guarded(args.run, args)


if __name__ == "__main__":
    main()
