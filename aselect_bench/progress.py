"""What a run prints while it works: progress on a terminal or in a log file, without Lightning's tips.

Lightning's and tqdm's bars redraw one line with carriage returns, which a log file shows as a run of
overwritten lines. On a terminal they are kept; when the output is not a terminal, :class:`StepProgress`
(training) and :class:`LineProgress` (any counted loop, such as the HFR scan) print a full line every
``interval`` seconds and at the end. :func:`quiet_lightning` drops the advertising tips Lightning prints at
every ``Trainer`` (the ``litlogger``/``litmodels`` ones), 21 times in a comparison.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

import lightning as L

#: Seconds between progress lines in a log file.
INTERVAL = 30.0


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3700`` -> ``"1h01m"``."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def progress_line(label: str, done: int, total: int, elapsed: float, unit: str = "", loss: float | None = None) -> str:
    """``pretraining: step 34/400 (8%), 1m02s elapsed, ETA 11m08s, loss 0.2314`` (``unit="step"``)."""
    eta = elapsed / done * (total - done) if done and total > 0 else float("nan")
    count = f"{unit} {done}/{total}" if unit else f"{done}/{total}"
    parts = [f"{label}: {count}" + (f" ({100 * done / total:.0f}%)" if total > 0 else ""),
             f"{format_duration(elapsed)} elapsed"]
    if eta == eta:  # not NaN
        parts.append(f"ETA {format_duration(eta)}")
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    return ", ".join(parts)


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stdout``) is a terminal, where a redrawn bar is readable."""
    stream = sys.stdout if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class _Lines:
    """Prints a progress line on a terminal (redrawn with ``\\r``) or, elsewhere, every ``interval`` seconds."""

    def __init__(self, interval: float, stream, clock):
        self.interval, self.stream, self.clock = interval, stream, clock
        self.start = self.last_line = None

    def begin(self) -> None:
        self.start = self.last_line = self.clock()

    def show(self, line_for, done: int, total: int) -> None:
        """``line_for(elapsed)`` -> the line; shown now on a terminal, or if ``interval`` passed, or at the end."""
        if self.start is None:
            self.begin()
        now = self.clock()
        out = self.stream if self.stream is not None else sys.stdout
        last = total > 0 and done >= total
        if is_terminal(out):
            out.write("\r" + line_for(now - self.start) + ("\n" if last else ""))
            out.flush()
        elif now - self.last_line >= self.interval or last:
            self.last_line = now
            print(line_for(now - self.start), file=out, flush=True)


class StepProgress(L.Callback):
    """Reports ``step i/N``, the ETA from the mean step time so far, and the last loss.

    ``N`` is the Trainer's ``max_steps``, or its estimated stepping batches for an epoch-based run.
    ``stream``: default ``sys.stdout``; ``interval``: seconds between lines when it is not a terminal;
    ``clock``: a ``time.perf_counter``-like function (tests pass a fake one).
    """

    def __init__(self, label: str = "pretraining", interval: float = INTERVAL, stream=None, clock=time.perf_counter):
        self.label = label
        self.lines = _Lines(interval, stream, clock)

    def on_train_start(self, trainer, pl_module) -> None:
        self.lines.begin()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        done = trainer.global_step
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
        total = int(total) if total != float("inf") else -1
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = float(loss) if loss is not None else None
        self.lines.show(lambda elapsed: self.line(done, total, elapsed, loss), done, total)

    def line(self, done: int, total: int, elapsed: float, loss: float | None) -> str:
        """``pretraining: step 34/400 (8%), 1m02s elapsed, ETA 11m08s, loss 0.2314``."""
        return progress_line(self.label, done, total, elapsed, "step", loss)


class LineProgress:
    """A tqdm-like counter (``update``/``close``) for a log file: a full line every ``interval`` seconds and at
    the end (``HFR scan: 12/63 (19%), 0m30s elapsed, ETA 2m08s``)."""

    def __init__(self, total: int, desc: str, interval: float = INTERVAL, stream=None, clock=time.perf_counter):
        self.total, self.desc, self.done = total, desc, 0
        self.lines = _Lines(interval, sys.stderr if stream is None else stream, clock)
        self.lines.begin()

    def update(self, n: int = 1) -> None:
        self.done += n
        self.lines.show(lambda elapsed: progress_line(self.desc, self.done, self.total, elapsed), self.done, self.total)

    def close(self) -> None:
        pass


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):
    """A counter with ``update``/``close``: tqdm's bar on a terminal (stderr), :class:`LineProgress` lines in a log
    file, nothing when not ``enabled``."""
    if not enabled:
        return _NoProgress()
    if is_terminal(sys.stderr):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=False)
    return LineProgress(total, desc)


def training_progress(enabled: bool, label: str) -> tuple[bool, list]:
    """``(enable_progress_bar, callbacks)`` for a Trainer: Lightning's bar on a terminal, a :class:`StepProgress`
    line every :data:`INTERVAL` seconds in a log file, nothing when not ``enabled``."""
    if not enabled:
        return False, []
    if is_terminal():
        return True, []
    return False, [StepProgress(label)]


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in str(record.getMessage())


_TIPS = _DropTips()


def quiet_lightning() -> None:
    """Drop the ``💡 Tip: ... litlogger / litmodels`` lines Lightning logs at every Trainer, and its
    ``[rank: 0] Received SIGTERM`` line (the command line says in its own line what a signal stopped and kept),
    and torch's ``LeafSpec is deprecated`` warning where Lightning's own data loaders raise it (every training;
    the filter matches Lightning's module only, so the same warning from a user's code still shows) (idempotent)."""
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated", category=FutureWarning,
                            module=r"lightning\.pytorch\.utilities\._pytree")
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _TIPS not in logger.filters:
            logger.addFilter(_TIPS)
