"""Where a synthetic dataset may be written: a new or empty folder, or (asked for) one this suite wrote before.

A folder the generators wrote holds :data:`MARKER` (the generator's version and arguments). Anything else in a
folder, such as a real dataset, is never overwritten: :func:`claim_output_folder` refuses it, even when asked to
replace (``force``), and ``force`` replaces only what the generators write (:data:`GENERATED`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aselect_bench.errors import UserError

#: Marks a folder the generators wrote (``.aselect_synth.json``: generator version and arguments).
MARKER = ".aselect_synth.json"
#: The top-level entries any generator writes (every FGVC layout's and ADE20K's): what ``force`` may replace.
GENERATED = frozenset({"CUB_200_2011", "nabirds", "jpg", "imagelabels.mat", "setid.mat", "Images", "lists",
                       "cars_train", "cars_test", "devkit", "cars_test_annos_withlabels.mat", "fgvc-aircraft-2013b",
                       "ADEChallengeData2016", MARKER})


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def claim_output_folder(out, force: bool = False) -> Path:
    """Make ``out`` ready for a generator: a new or empty folder as it is; a folder this suite wrote (marked) only
    with ``force``, its generated entries removed first. One :class:`UserError` for anything else (a file, a
    folder holding files the suite did not write there), whatever ``force`` says."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a new or empty folder for the synthetic dataset")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not held:
        return out
    if MARKER not in held:
        raise UserError(f"--out {out} holds files this suite did not generate ({_names(held)}): synth writes only "
                        f"into a new or empty folder (or one it wrote before), never over your data, --force or "
                        f"not; give a new or empty folder")
    foreign = [n for n in held if n not in GENERATED]
    if foreign:
        raise UserError(f"--out {out} holds a synthetic dataset and files this suite did not generate "
                        f"({_names(foreign)}): it replaces only a folder that holds nothing else, --force or not; "
                        f"move them, or give a new or empty folder")
    if not force:
        raise UserError(f"--out {out} already holds a synthetic dataset written by this suite: pass --force to "
                        f"replace it, or give a new or empty folder")
    for name in held:
        path = out / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return out
