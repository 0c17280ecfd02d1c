"""Reading YAML configs with ``_base_`` inheritance (deep merge); :mod:`aselect_bench.settings` types the presets."""

from __future__ import annotations

from pathlib import Path

import yaml

from aselect_bench.errors import UserError
from aselect_bench.io import read_text

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``, recursively for nested dicts."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_yaml(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    """Load a YAML file, resolving ``_base_: other.yaml`` (relative to the file) recursively; a circle of
    ``_base_`` files is one error naming them (``_chain``: the files that led here)."""
    if path.resolve() in _chain:
        circle = " -> ".join(str(p) for p in (*_chain[_chain.index(path.resolve()):], path.resolve()))
        raise UserError(f"_base_ files form a circle: {circle}; remove the _base_ line of one of them")
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(read_text(path, "the config file")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path} is not valid YAML{where}: {problem}; fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of settings (key: value lines), not a YAML {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is not None and not isinstance(base, str):
        raise UserError(f"{path}: _base_ must be one file name (relative to the file), got {base!r}")
    return deep_merge(load_yaml(path.parent / base, (*_chain, path.resolve())), data) if base else data
