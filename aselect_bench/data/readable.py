"""Unreadable images, found before the work: every image of a dataset is decoded once when its datamodule is set
up (in threads), and an unreadable one is left out of its split (no other image stands in) and counted, or stops
the run under ``strict``. A checked set is remembered by its files' contents (paths relative to the data root,
sizes, digests: :func:`~aselect_bench.io.content_identity`) in ``cache_dir()/image-checks/``, so a rerun, a copied
or a ``touch``ed dataset is not decoded again.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aselect_bench.cache import cache_dir
from aselect_bench.data.images import UnreadableImage, load_rgb
from aselect_bench.data.manifest import manifest, manifest_digest
from aselect_bench.errors import CorruptFileError
from aselect_bench.io import atomic_write_json, read_json, relative_name

#: How many unreadable images a warning or a report names (the count is always whole).
NAMED = 5


def _unreadable(path) -> bool:
    try:
        load_rgb(path)
    except UnreadableImage:
        return True
    return False


def find_unreadable(paths: list, root) -> list[Path]:
    """The images of ``paths`` that :func:`~aselect_bench.data.images.load_rgb` cannot read (missing, truncated,
    not an image), in their order: decoded in threads, or read from the record of an identical set."""
    names = [relative_name(p, root) for p in paths]
    record = cache_dir() / "image-checks" / f"{manifest_digest(manifest(paths, root))[:24]}.json"
    try:
        bad = set(read_json(record, ("unreadable",))["unreadable"])
    except (OSError, CorruptFileError):
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            flags = list(pool.map(_unreadable, paths))
        bad = {n for n, flag in zip(names, flags) if flag}
        try:
            atomic_write_json(record, {"images": len(paths), "unreadable": sorted(bad)})
        except OSError:
            pass  # a read-only cache: check again next time
    return [Path(p) for n, p in zip(names, paths) if n in bad]


def check_readable(paths: list, root, strict: bool, what: str) -> set[str]:
    """``{str(path)}`` of the unreadable images of ``paths`` (``what`` names the dataset in the warning), to be left
    out of their splits; with ``strict`` the first one stops the run instead (its one-line error)."""
    bad = find_unreadable(paths, root)
    if bad and strict:
        load_rgb(bad[0])  # raises its own one-line error
    if bad:
        shown = ", ".join(relative_name(p, root) for p in bad[:NAMED]) + (", ..." if len(bad) > NAMED else "")
        print(f"warning: {len(bad)} unreadable image(s) of {len(paths)} in {what} left out (no other image takes "
              f"their place; counted in the run's record): {shown}; pass --strict to stop instead", file=sys.stderr,
              flush=True)
    return {str(p) for p in bad}
