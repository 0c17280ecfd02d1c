"""What a split's files hold, wherever the dataset's folder lies and whenever it was touched.

A manifest has one line per item: each of its files as ``path relative to the data root<TAB>size:digest``
(:func:`~aselect_bench.io.content_identity`), an in-memory image as a digest of its pixels, a label as itself, all
joined by tabs. Its digest keys what depends on the data (a comparison's state, a feature cache, a readability
check), so a copied or moved dataset keeps its keys and a changed file changes them; :func:`manifest_changes` says
how two manifests differ.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter

from PIL import Image

from aselect_bench.io import content_identity, relative_name


def _field(value, root) -> str:
    if isinstance(value, Image.Image):
        return f"pixels:{hashlib.sha256(value.tobytes()).hexdigest()[:32]}"
    if isinstance(value, (str, os.PathLike)):
        name = relative_name(value, root) if root is not None else str(value)
        return f"{name}\t{content_identity(value)}"
    return str(value)


def manifest(items, root=None) -> list[str]:
    """One line per item of ``items`` (``(path or image, label)`` pairs, ``(image, annotation)`` paths, ...), paths
    relative to ``root`` (as given when ``root`` is None)."""
    return ["\t".join(_field(v, root) for v in (item if isinstance(item, tuple) else (item,))) for item in items]


def manifest_digest(lines: list[str], *extra: str) -> str:
    """A hex digest of a manifest (and ``extra`` strings, e.g. a transform's description)."""
    h = hashlib.sha256()
    for line in [*lines, *extra]:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def manifest_changes(old: list[str], new: list[str]) -> str:
    """How ``new`` differs from ``old``, item by item (keyed by the first field, the first file's path):
    ``"3 files differ: 1 changed, 1 added, 1 removed"``, or ``"the same files"`` when only their order changed."""
    before = {line.split("\t", 1)[0]: line for line in old}
    after = {line.split("\t", 1)[0]: line for line in new}
    counts = Counter("added" if k not in before else "changed" for k in after if before.get(k) != after[k])
    counts["removed"] = sum(k not in after for k in before)
    total = sum(counts.values())
    if not total:
        return "the same files"
    parts = ", ".join(f"{counts[k]} {k}" for k in ("changed", "added", "removed") if counts[k])
    return f"{total} file{'s' if total != 1 else ''} differ{'s' if total == 1 else ''}: {parts}"
