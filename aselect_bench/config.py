"""Reading YAML configs with ``_base_`` inheritance (deep merge); :mod:`aselect_bench.settings` types the presets."""

from __future__ import annotations

from pathlib import Path

import yaml

from aselect_bench.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``, recursively for nested dicts."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_yaml(path: Path) -> dict:
    """Load a YAML file, resolving ``_base_: other.yaml`` (relative to the file) recursively."""
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("_base_", None)
    return deep_merge(load_yaml(path.parent / base), data) if base else data
