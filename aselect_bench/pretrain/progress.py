"""Progress of a step-based training run: steps done, ETA and loss, on a terminal or in a log file.

Lightning's bar redraws one line with carriage returns, which a log file shows as nothing useful until the
end. :class:`StepProgress` redraws a line on a terminal and, when the stream is not a terminal, prints a
full line every ``interval`` seconds (and at the last step).
"""

from __future__ import annotations

import sys
import time

import lightning as L


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3700`` -> ``"1h01m"``."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class StepProgress(L.Callback):
    """Reports ``step i/N``, the ETA from the mean step time so far, and the last loss.

    ``stream``: default ``sys.stdout``; ``interval``: seconds between lines when it is not a terminal;
    ``clock``: a ``time.perf_counter``-like function (tests pass a fake one).
    """

    def __init__(self, label: str = "pretraining", interval: float = 30.0, stream=None, clock=time.perf_counter):
        self.label, self.interval, self.clock = label, interval, clock
        self.stream = stream
        self.start = self.last_line = None

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = self.last_line = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        now, done, total = self.clock(), trainer.global_step, trainer.max_steps
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        line = self.line(done, total, now - self.start, float(loss) if loss is not None else None)
        out = self._out()
        if getattr(out, "isatty", lambda: False)():
            out.write("\r" + line + ("\n" if done >= total else ""))
            out.flush()
        elif now - self.last_line >= self.interval or done >= total:
            self.last_line = now
            print(line, file=out, flush=True)

    def line(self, done: int, total: int, elapsed: float, loss: float | None) -> str:
        """``pretraining: step 34/400 (8%), 1m02s elapsed, ETA 11m08s, loss 0.2314``."""
        eta = elapsed / done * (total - done) if done and total > 0 else float("nan")
        parts = [f"{self.label}: step {done}/{total}" + (f" ({100 * done / total:.0f}%)" if total > 0 else ""),
                 f"{format_duration(elapsed)} elapsed"]
        if eta == eta:  # not NaN
            parts.append(f"ETA {format_duration(eta)}")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        return ", ".join(parts)
