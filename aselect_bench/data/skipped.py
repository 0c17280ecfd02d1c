"""Files skipped as unreadable, recorded across DataLoader worker processes.

A worker holds a copy of its dataset, so an in-memory set would lose what workers saw. Each skip appends
one line to a small temporary file instead (``O_APPEND`` writes of a short line do not interleave); the
process that created the log reads the union and deletes the file when the log is garbage collected.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import weakref
from collections.abc import Callable, Sequence

from aselect_bench.data.images import UnreadableImage


def _remove(path: str, owner: int) -> None:
    if os.getpid() == owner:  # never from a forked worker that inherited the log
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class SkippedFiles:
    """``add(name)`` warns once per process and records ``name``; ``files()`` lists every recorded name."""

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="aselect-skipped-", suffix=".txt")
        os.close(fd)
        self._seen: set[str] = set()
        weakref.finalize(self, _remove, self.path, os.getpid())

    def add(self, name: str) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        warnings.warn(f"skipping unreadable image {name} (counted in the run's summary; --strict stops instead)",
                      stacklevel=3)
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(name.replace("\n", " ") + "\n")

    def files(self) -> list[str]:
        """Sorted distinct names recorded by this process and its workers."""
        try:
            with open(self.path, encoding="utf-8") as log:
                recorded = {line.rstrip("\n") for line in log if line.strip()}
        except FileNotFoundError:
            recorded = set()
        return sorted(recorded | self._seen)

    def __len__(self) -> int:
        return len(self.files())


def load_first_readable(items: Sequence, index: int, load: Callable, skipped: SkippedFiles, strict: bool):
    """``load(items[index])``; if its image is unreadable (:class:`UnreadableImage`), raise when ``strict``,
    else record it in ``skipped`` and try the next item (wrapping around). Other errors propagate."""
    for offset in range(len(items)):
        try:
            return load(items[(index + offset) % len(items)])
        except UnreadableImage as err:
            if strict:
                raise
            skipped.add(err.path)
    raise UnreadableImage("no readable image in this split: every file failed to load; check the dataset "
                          "folder (re-extract the archive)", "")
