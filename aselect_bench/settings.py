"""Typed benchmark presets: a YAML file (``configs/presets/<name>.yaml``, ``_base_`` inheritance) parsed once
into frozen dataclasses, validated on load.

A missing or unknown key stops with one line naming it; overrides (``--max-epochs``, ``--backbone``...)
make a new :class:`BenchPreset` that records them, nothing is mutated. "Preset" here always means a
*benchmark* preset; the backbone registry (``aselect_bench.backbones.registry``) names models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from aselect_bench.config import CONFIG_DIR, load_yaml
from aselect_bench.data import synth_ade20k, synth_fgvc
from aselect_bench.data.corruption import Corruption
from aselect_bench.data.transforms import RESIZE_RATIO
from aselect_bench.errors import UserError
from aselect_bench.hfr import HFRSettings
from aselect_bench.selectors import training_selector


@dataclass(frozen=True)
class FGVCSettings:
    """The classification probe: datasets, tap, head, optimiser and schedule (``backbone``: an override of
    the preset's backbone for FGVC only)."""

    datasets: tuple[str, ...]
    tap: str
    head: str
    head_width: int
    head_depth: int
    head_heads: int
    linear_norm: str
    lr: float
    weight_decay: float
    warmup_fraction: float
    label_smoothing: float
    train_augment: bool
    max_epochs: int
    batch_size: int
    backbone: str | None = None
    resize_ratio: float = RESIZE_RATIO  # short side resized to this x the crop (the authors: 576 for 512, 1.125)


@dataclass(frozen=True)
class ADE20KSettings:
    """The UperNet segmentation head, its data protocol and schedule (``blocks``/``crop_size`` ``None``: the
    backbone's defaults)."""

    num_classes: int
    component: str
    blocks: tuple[int, ...] | None
    channels: int
    aux_channels: int
    lr: float
    weight_decay: float
    warmup_fraction: float
    scale: tuple[int, int]
    crop_size: int | None
    batch_size: int
    val_batch_size: int
    inference: str
    max_epochs: int
    slide_crop: int | None = None
    slide_stride: int | None = None
    num_workers: int | None = None
    backbone: str | None = None
    warmup_iters: int | None = None  # mmseg's linear warm-up in iterations (1,500), instead of warmup_fraction
    max_iters: int | None = None  # an iteration budget (mmseg's 160k) instead of max_epochs
    val_every_iters: int | None = None  # evaluate the selection split every N iterations (mmseg: 16k)


@dataclass(frozen=True)
class SynthFGVC:
    """Sizes of each generated fine-grained stand-in, and its sensor grain (see :mod:`~aselect_bench.data.synth_fgvc`)."""

    num_classes: int
    train_per_class: int
    test_per_class: int
    image_size: int
    grain: float = synth_fgvc.GRAIN


@dataclass(frozen=True)
class SynthADE20K:
    """Sizes of the generated scene-parsing stand-in, and its sensor grain (see :mod:`~aselect_bench.data.synth_ade20k`)."""

    num_train: int
    num_val: int
    image_size: int
    num_classes: int
    grain: float = synth_ade20k.GRAIN


@dataclass(frozen=True)
class SynthSettings:
    nested: ClassVar[dict] = {"fgvc": SynthFGVC, "ade20k": SynthADE20K}
    fgvc: SynthFGVC
    ade20k: SynthADE20K


@dataclass(frozen=True)
class LauncherSettings:
    """How ``compare --launcher slurm|local`` runs a sweep's jobs (each a training or A-SelecT's side, one GPU
    each): SLURM's partition, account, qos, time limit per job in minutes, resources per job, constraint, how
    many array tasks run at once, how often a failed job is submitted again, and extra sbatch options
    (``slurm: {mail-type: END}``). Never part of what a result is (not in any fingerprint)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 1440
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    retries: int = 1
    slurm: dict = field(default_factory=dict)

    def __post_init__(self):
        counts = {"time_min": self.time_min, "cpus_per_job": self.cpus_per_job,
                  "array_parallelism": self.array_parallelism, "mem_gb": self.mem_gb or 1}
        low = [k for k, v in counts.items() if v < 1] + [k for k in ("gpus_per_job", "retries") if getattr(self, k) < 0]
        if low:
            raise UserError(f"launcher.{low[0]} is {getattr(self, low[0])}: give a count of 1 or more (0 or more "
                            f"for gpus_per_job and retries)")


@dataclass(frozen=True)
class BenchPreset:
    """A benchmark preset: backbone, data, HFR scan, FGVC probe and ADE20K head settings.

    ``overrides``: the settings changed from the YAML file, ``{"fgvc.max_epochs": 3, ...}`` (recorded in
    every result file). ``precision``: ``auto`` (bf16 where native), ``32``, ``bf16`` or ``16``.
    """

    nested: ClassVar[dict] = {"hfr": HFRSettings, "fgvc": FGVCSettings, "ade20k": ADE20KSettings,
                              "synth": SynthSettings, "launcher": LauncherSettings, "corruption": Corruption}
    #: Settings that say how a run is carried out, not what it computes: left out of fingerprints.
    RUN_ONLY: ClassVar[tuple] = ("launcher", "overrides", "yaml_fingerprint")
    #: Sections left out of the JSON (so of every fingerprint) while unset: a preset without one fingerprints as
    #: it did before the section existed.
    OPTIONAL: ClassVar[tuple] = ("corruption",)
    name: str
    backbone: str
    fgvc: FGVCSettings | None = None
    ade20k: ADE20KSettings | None = None
    hfr: HFRSettings = field(default_factory=HFRSettings)
    seed: int = 0
    num_workers: int = 2
    precision: str = "auto"
    synthetic: bool = False
    data_root: str | None = None
    strict: bool = False
    synth: SynthSettings | None = None
    seeds: int = 1  # repeats of every training of a comparison, each with its own seed (head, order, noise)
    launcher: LauncherSettings = field(default_factory=LauncherSettings)
    corruption: Corruption | None = None  # a seeded per-image corruption of every split (data/corruption.py)
    overrides: dict = field(default_factory=dict)
    yaml_fingerprint: str | None = None  # of the preset as its YAML file defines it (before any override)

    def __post_init__(self):
        training_selector(self.hfr.selector, self.hfr)  # a bad hfr.selector stops the preset's load
        if self.seeds < 1:
            raise UserError(f"preset {self.name!r}: seeds must be 1 or more, got {self.seeds}")

    def fingerprint(self) -> str:
        """A short hash of what the preset computes (its settings with overrides applied; how it is launched
        left out)."""
        import hashlib
        import json

        data = {k: v for k, v in self.to_json().items() if k not in self.RUN_ONLY}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def to_json(self) -> dict:
        """Plain JSON (tuples as lists), the inverse of :func:`preset_from_dict`."""
        return {k: v for k, v in _jsonable(asdict(self)).items() if not (k in self.OPTIONAL and v is None)}

    def override(self, **changes: Any) -> BenchPreset:
        """A new preset with ``changes`` applied; keys are dotted paths (``fgvc__max_epochs`` or
        ``**{"fgvc.max_epochs": 3}``); ``None`` values are ignored (an option the user did not give)."""
        changes = {k.replace("__", "."): v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        data = {**{k: None for k in self.OPTIONAL}, **self.to_json()}
        for key, value in changes.items():
            *parents, leaf = key.split(".")
            node = data
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise UserError(f"cannot override {key!r}: preset {self.name!r} has no section {part!r}")
                node = node[part]
            if leaf not in node:
                raise UserError(f"cannot override {key!r}: preset {self.name!r} has no setting {key!r}")
            node[leaf] = _jsonable(value)
        data["overrides"] = {**self.overrides, **{k: _jsonable(v) for k, v in changes.items()}}
        return preset_from_dict(data, self.name)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _describe(hint) -> str:
    """A type annotation in words: ``tuple[int, ...] | None`` -> ``a list of integers, or null``."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (Union, UnionType):
        described = " or ".join(_describe(a) for a in args)
        return f"{described}, or null" if type(None) in get_args(hint) else described
    if get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).split(' ', 1)[1]}s"
        return f"a list of {len(args)} {_describe(args[0]).split(' ', 1)[1]}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(hint, getattr(hint, "__name__", str(hint)))


def _typed(value, hint):
    """``value`` as the annotation ``hint`` wants it (an int is a valid float; a list a valid tuple), or raise
    ``TypeError``. Booleans are never numbers, and text is never a number (YAML reads ``1e-3`` as text)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(value, option)
            except TypeError:
                continue
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise TypeError
        elements = [args[0]] * len(value) if args[-1] is Ellipsis else args
        return tuple(_typed(v, a) for v, a in zip(value, elements))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str, dict) and isinstance(value, hint):
        return value
    if hint is Any:
        return value
    raise TypeError


def _check_type(value, hint, where: str):
    """:func:`_typed`, or one :class:`UserError` naming the key, the expected type and the value."""
    try:
        return _typed(value, hint)
    except TypeError:
        pass
    tip = ""
    if isinstance(value, str):
        try:
            float(value)
            tip = f" (YAML reads {value} as text: write it with a dot and a signed exponent, e.g. 1.0e-3)"
        except ValueError:
            pass
    raise UserError(f"{where}: expected {_describe(hint)}, got {value!r}{tip}") from None


def _build(cls, data, where: str):
    """``cls(**data)`` with nested dataclasses built recursively; unknown and missing keys, and values of the
    wrong type (checked against the field annotations), are one clear error."""
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of settings, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(names)}")
    required = [n for n, f in names.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise UserError(f"{where}: missing key {missing[0]!r} (add it to the preset or its _base_ file)")
    nested, hints = getattr(cls, "nested", {}), get_type_hints(cls)
    values = {}
    for key, value in data.items():
        if key in nested and value is not None:
            value = _build(nested[key], value, f"{where}.{key}")
        else:
            value = _check_type(value, hints[key], f"{where}.{key}")
        values[key] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise UserError(f"{where}: {err}") from None


def preset_from_dict(data: dict, name: str = "custom", where: str | None = None) -> BenchPreset:
    """A validated :class:`BenchPreset` from a plain mapping (e.g. a merged YAML file); errors name ``where``
    (default: the preset's name)."""
    data = {"name": name, **data}
    return _build(BenchPreset, data, where or f"preset {data['name']!r}")


def load_bench_preset(name: str) -> BenchPreset:
    """The benchmark preset ``name`` (``demo``, ``paper``..., or a path to a YAML file), validated."""
    path = Path(name) if str(name).endswith((".yaml", ".yml")) else CONFIG_DIR / "presets" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONFIG_DIR / "presets").glob("*.yaml") if not p.stem.startswith("_"))
        raise UserError(f"unknown preset {name!r}: use one of {', '.join(known)} or a path to a YAML file")
    preset = preset_from_dict(load_yaml(path), path.stem, where=f"preset {path.stem!r} ({path})")
    return dataclasses.replace(preset, yaml_fingerprint=preset.fingerprint())
