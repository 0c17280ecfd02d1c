"""The ``aselect-bench`` command.

Subcommands: ``fit``/``validate``/``test`` (LightningCLI with YAML configs), ``select`` (the one-pass
A-SelecT scan), ``compare`` (exhaustive search vs A-SelecT), ``components`` (block x component map),
``synth`` (synthetic datasets in the original layouts), ``pretrain`` (the demo DiT), ``estimate`` (a dry
run at real size: memory, step time, projected hours), ``ladder`` (one comparison per corruption level: does
each selector follow the best?).
User mistakes print one line (what is wrong and how to fix it) and exit with status 2; SIGINT/SIGTERM exit
with status 130/143 and one line saying what was kept.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager

from aselect_bench.errors import UserError

LIGHTNING_COMMANDS = ("fit", "validate", "test")
#: Modules of ``aselect_bench.commands`` that each add one subcommand.
COMMANDS = ("select", "synth", "compare", "ladder", "pretrain", "components", "estimate")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (``signum``). Not a ``KeyboardInterrupt``: Lightning turns that into exit
    status 1, and its own SIGTERM handling into status 0; this one passes through ``Trainer.fit`` unchanged
    (after Lightning's teardown), so ``finally`` blocks remove half-written files on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):  # noqa: ARG001 - the signal handler signature
    raise Interrupted(signum)


@contextmanager
def interrupts_raise():
    """While inside, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, _raise_interrupted)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_status(signum: int) -> int:
    """The shell's convention: 128 + the signal number (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


#: What an interrupted command says it kept, and how to go on: resumable commands (the default) pick up their
#: finished pieces when rerun; the others start again.
RESUME = "finished results and caches are kept, the unfinished step left nothing half-written; rerun the same " \
         "command to resume"
RESTART = "nothing half-written was left (this command keeps no partial state); rerun the same command to start again"


def run_guarded(fn, *args, on_stop: str = RESUME, **kwargs):
    """Run ``fn``; a :class:`UserError` becomes one line on stderr and exit status 2 (no traceback).

    SIGINT/SIGTERM (also a ``KeyboardInterrupt``, or Lightning's ``SIGTERMException``) stop it with status
    130/143 and one line saying what was kept (``on_stop``: :data:`RESUME` or :data:`RESTART`), never a
    half-written file.
    """
    try:
        with interrupts_raise():
            return fn(*args, **kwargs)
    except UserError as err:
        sys.stderr.write("\r")  # a progress bar may have left the cursor mid-line
        print(f"aselect-bench: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except (Interrupted, KeyboardInterrupt) as err:
        _stopped(getattr(err, "signum", signal.SIGINT), on_stop)
    except SystemExit as err:
        if type(err).__name__ != "SIGTERMException":  # Lightning's, whose exit status would be 0
            raise
        _stopped(signal.SIGTERM, on_stop)


def _stopped(signum: int, what: str):
    name = signal.Signals(signum).name
    sys.stderr.write("\r")
    print(f"aselect-bench: stopped by {name}: {what}", file=sys.stderr, flush=True)
    raise SystemExit(exit_status(signum)) from None


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
    from aselect_bench.commands.options import normalize_argv

    argv = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from aselect_bench.lightning_cli import run_lightning_cli

        run_guarded(run_lightning_cli, argv, on_stop="the checkpoints written so far are kept; add --resume to the same "
                                                     "command to continue from the last one")
        return
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        raise SystemExit(1)
    run_command(args)


def run_command(args: argparse.Namespace):
    """Run a parsed subcommand under :func:`run_guarded`, saying on a signal whether it resumes."""
    return run_guarded(args.run, args, on_stop=RESUME if getattr(args, "resumable", True) else RESTART)


if __name__ == "__main__":
    main()
