"""Reading YAML configs with ``_base_`` inheritance (deep merge), and the declared bounds and names a setting's
annotation carries (``Annotated[int, COUNT]``); :mod:`aselect_bench.settings` types the presets and checks them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml

from aselect_bench.errors import UserError
from aselect_bench.io import read_text

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class Bound:
    """The range a numeric setting may take, declared on its field (``Annotated[int, COUNT]``) and checked on load:
    ``low``/``high`` (inclusive, or exclusive where ``*_open``); ``also``: values allowed outside it (``-1``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple = ()

    def problem(self, value) -> str | None:
        """Why ``value`` is out of range (``must be >= 1``), or ``None``."""
        above = self.low is None or value > self.low or (value == self.low and not self.low_open)
        below = self.high is None or value < self.high or (value == self.high and not self.high_open)
        if value in self.also or (above and below):
            return None
        parts = ([f"{'>' if self.low_open else '>='} {self.low:g}"] if self.low is not None else []) + \
                ([f"{'<' if self.high_open else '<='} {self.high:g}"] if self.high is not None else [])
        return "must be " + " and ".join(parts) + "".join(f" (or {v})" for v in self.also)


@dataclass(frozen=True)
class OneOf:
    """A name setting's allowed values (``Annotated[str, OneOf(HEADS)]``), checked on load."""

    names: tuple

    def __init__(self, names):
        object.__setattr__(self, "names", tuple(names))

    def problem(self, value) -> str | None:
        return None if value in self.names else f"must be one of {', '.join(self.names)}"


class NotEmpty:
    """A list setting that must hold at least one item (``Annotated[tuple[str, ...], NotEmpty()]``)."""

    def problem(self, value) -> str | None:
        return None if len(value) else "must list at least one item"


#: Declared bounds of the numeric settings (one definition: the preset check and the command-line flags read them).
COUNT = Bound(1)  # images, epochs, sizes, jobs
NATURAL = Bound(0)  # seeds, retries, indices, workers
POSITIVE = Bound(0, low_open=True)  # learning rates
FRACTION = Bound(0, 1)  # shares, inclusive
PROBABILITY = Bound(0, 1, high_open=True)  # label smoothing
CLASSES = Bound(2)  # class counts: a classifier (and torchmetrics) needs two
Count = Annotated[int, COUNT]
Natural = Annotated[int, NATURAL]


def check_arguments(**values) -> None:
    """Refuse a constructor's argument outside its declared bound, as a preset's load does:
    ``check_arguments(lr=(lr, POSITIVE))`` raises ``UserError("lr must be > 0, got -1")`` (``None`` passes)."""
    for name, (value, bound) in values.items():
        why = None if value is None else bound.problem(value)
        if why:
            raise UserError(f"{name} {why}, got {value!r}")


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
    if base and not (path.parent / base).exists():
        raise UserError(f"{path}: its _base_ file {path.parent / base} does not exist; fix the _base_ line")
    return deep_merge(load_yaml(path.parent / base, (*_chain, path.resolve())), data) if base else data
