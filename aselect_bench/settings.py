"""Typed benchmark presets: a YAML file (``configs/presets/<name>.yaml``, ``_base_`` inheritance) parsed once
into frozen dataclasses, validated on load.

A missing or unknown key stops with one line naming it; overrides (``--max-epochs``, ``--backbone``...)
make a new :class:`BenchPreset` that records them, nothing is mutated. "Preset" here always means a
*benchmark* preset; the backbone registry (``aselect_bench.backbones.registry``) names models.
"""

from __future__ import annotations

import dataclasses
import math
from argparse import ArgumentTypeError
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin, get_type_hints

from aselect_bench.backbones.loading import check_source
from aselect_bench.backbones.noise import DIT_SCHEDULER
from aselect_bench.backbones.registry import MODELS
from aselect_bench.backbones.taps import CROSS_COMPONENTS, parse_tap
from aselect_bench.config import (
    CLASSES,
    CONFIG_DIR,
    FRACTION,
    NATURAL,
    POSITIVE,
    PROBABILITY,
    Bound,
    Count,
    Natural,
    NotEmpty,
    OneOf,
    load_yaml,
)
from aselect_bench.data import synth_ade20k, synth_fgvc
from aselect_bench.data.corruption import Corruption
from aselect_bench.data.fgvc import DATASETS as FGVC_DATASETS
from aselect_bench.data.transforms import RESIZE_RATIO
from aselect_bench.errors import UserError
from aselect_bench.heads.probes import HEADS, NORMS
from aselect_bench.heads.upernet import check_pyramid_blocks
from aselect_bench.hfr import HFRSettings
from aselect_bench.precision import PRECISIONS
from aselect_bench.selectors import training_selector
from aselect_bench.selectors.features import check_candidates


class TapName:
    """A tap setting: ``blocks.<i>.<component>`` (or ``single_blocks``), parsed on load; the block index is
    checked against the backbone's depth where the preset's backbone is a registered model."""

    names_value = True  # the tap parser's sentence names the tap

    def problem(self, value) -> str | None:
        try:
            parse_tap(value, {"blocks": 10**6, "single_blocks": 10**6}, CROSS_COMPONENTS)
        except UserError as err:
            if not str(err).startswith("bad tap"):
                return str(err)
            return (f"bad tap {value!r}: write it as 'blocks.<i>.<component>' (or 'single_blocks.<i>.<component>' "
                    f"for Flux), component one of {', '.join(CROSS_COMPONENTS)}, e.g. 'blocks.9.query'")
        return None




@dataclass(frozen=True)
class FGVCSettings:
    """The classification probe: datasets, tap, head, optimiser and schedule (``backbone``: an override of
    the preset's backbone for FGVC only)."""

    datasets: Annotated[tuple[str, ...], NotEmpty()]  # the readers' names, checked on load (check_on_load)
    tap: Annotated[str, TapName()]
    head: Annotated[str, OneOf(HEADS)]
    head_width: Count
    head_depth: Count
    head_heads: Count
    linear_norm: Annotated[str, OneOf(NORMS)]
    lr: Annotated[float, POSITIVE]
    weight_decay: Annotated[float, NATURAL]
    warmup_fraction: Annotated[float, FRACTION]
    label_smoothing: Annotated[float, PROBABILITY]
    train_augment: bool
    max_epochs: Count
    batch_size: Count
    backbone: str | None = None
    # the short side resized to this x the crop (the authors: 576 for 512, 1.125)
    resize_ratio: Annotated[float, Bound(1)] = RESIZE_RATIO


@dataclass(frozen=True)
class ADE20KSettings:
    """The UperNet segmentation head, its data protocol and schedule (``blocks``/``crop_size`` ``None``: the
    backbone's defaults)."""

    num_classes: Annotated[int, CLASSES]
    component: Annotated[str, OneOf(CROSS_COMPONENTS)]
    blocks: tuple[Natural, ...] | None
    channels: Count
    aux_channels: Count
    lr: Annotated[float, POSITIVE]
    weight_decay: Annotated[float, NATURAL]
    warmup_fraction: Annotated[float, FRACTION]
    scale: tuple[Count, Count]
    crop_size: Count | None
    batch_size: Count
    val_batch_size: Count
    inference: Annotated[str, OneOf(("whole", "slide"))]
    max_epochs: Annotated[int, Bound(1, also=(-1,))]  # -1: no epoch limit (with max_iters)
    slide_crop: Count | None = None
    slide_stride: Count | None = None
    num_workers: Natural | None = None
    backbone: str | None = None
    warmup_iters: Natural | None = None  # mmseg's linear warm-up in iterations (1,500), instead of warmup_fraction
    max_iters: Count | None = None  # an iteration budget (mmseg's 160k) instead of max_epochs
    val_every_iters: Count | None = None  # evaluate the selection split every N iterations (mmseg: 16k)

    def __post_init__(self):
        if self.blocks is not None:
            try:
                check_pyramid_blocks(self.blocks)
            except UserError as err:
                raise UserError(f"ade20k.blocks: {err}") from None


@dataclass(frozen=True)
class SynthFGVC:
    """Sizes of each generated fine-grained stand-in, and its sensor grain (see :mod:`~aselect_bench.data.synth_fgvc`)."""

    num_classes: Annotated[int, CLASSES]
    train_per_class: Count
    test_per_class: Count
    image_size: Count
    grain: Annotated[float, NATURAL] = synth_fgvc.GRAIN


@dataclass(frozen=True)
class SynthADE20K:
    """Sizes of the generated scene-parsing stand-in, and its sensor grain (see :mod:`~aselect_bench.data.synth_ade20k`)."""

    num_train: Count
    num_val: Count
    image_size: Count
    num_classes: Annotated[int, CLASSES]
    grain: Annotated[float, NATURAL] = synth_ade20k.GRAIN


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
    time_min: Count = 1440
    gpus_per_job: Natural = 1
    cpus_per_job: Count = 8
    mem_gb: Count | None = None  # None: SLURM's default (never 0, which SLURM reads as all of a node's memory)
    constraint: str | None = None
    array_parallelism: Count = 64
    retries: Natural = 1
    slurm: dict = field(default_factory=dict)


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
    seed: Natural = 0
    num_workers: Natural = 2
    precision: Annotated[str, OneOf(PRECISIONS)] = "auto"
    synthetic: bool = False
    data_root: str | None = None
    strict: bool = False
    synth: SynthSettings | None = None
    seeds: Count = 1  # repeats of every training of a comparison, each with its own seed (head, order, noise)
    launcher: LauncherSettings = field(default_factory=LauncherSettings)
    corruption: Corruption | None = None  # a seeded per-image corruption of every split (data/corruption.py)
    overrides: dict = field(default_factory=dict)
    yaml_fingerprint: str | None = None  # of the preset as its YAML file defines it (before any override)

    def __post_init__(self):
        try:
            training_selector(self.hfr.selector, self.hfr)  # a bad hfr.selector stops the preset's load
        except UserError as err:
            raise UserError(f"hfr.selector: {err}") from None

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
    if get_origin(hint) is Annotated:
        return _describe(get_args(hint)[0])
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (Union, UnionType):
        described = " or ".join(_describe(a) for a in args)
        return f"{described}, or null" if type(None) in get_args(hint) else described
    if get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).split(' ', 1)[1]}s"
        return f"a list of {len(args)} {_describe(args[0]).split(' ', 1)[1]}s"
    if dataclasses.is_dataclass(hint):
        return f"a mapping of settings ({', '.join(f.name for f in dataclasses.fields(hint))})"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(hint, getattr(hint, "__name__", str(hint)))


class _OutOfRange(Exception):
    """A value of the right type that a declared :class:`Bound`, :class:`OneOf` or :class:`TapName` refuses."""

    def __init__(self, value, problem: str, names_value: bool = False):
        super().__init__(problem)
        self.value, self.problem, self.names_value = value, problem, names_value


def _typed(value, hint):
    """``value`` as the annotation ``hint`` wants it (an int is a valid float; a list a valid tuple), or raise
    ``TypeError``; a value outside its declared range (``Annotated[int, COUNT]``) raises :class:`_OutOfRange`.
    Booleans are never numbers, text is never a number (YAML reads ``1e-3`` as text), and numbers are finite."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        typed = _typed(value, args[0])
        for check in args[1:]:
            problem = check.problem(typed)
            if problem is not None:
                raise _OutOfRange(value, problem, getattr(check, "names_value", False))
        return typed
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
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str, dict) and isinstance(value, hint):
        return value
    if hint is Any:
        return value
    raise TypeError


def _text_tip(value: str, hint) -> str:
    """Why a number written as text was read as text, and how to write it."""
    try:
        number = float(value)
    except ValueError:
        return ""
    if "e" in value.lower() and "float" in str(hint) and math.isfinite(number):
        return f" (YAML reads {value} as text: write it with a dot and a signed exponent, e.g. 1.0e-3)"
    return f" (a number written as text: write it without quotes, {value})"


def _check_type(value, hint, key: str, source: str):
    """:func:`_typed`, or one :class:`UserError` naming the key, the expected type or range, the value and the
    preset it is in (``source``)."""
    try:
        return _typed(value, hint)
    except TypeError:
        pass
    except _OutOfRange as out:
        said = "" if out.names_value else f", got {out.value!r}"
        raise UserError(f"{key}: {out.problem}{said} (in {source})") from None
    tip = _text_tip(value, hint) if isinstance(value, str) else ""
    raise UserError(f"{key}: expected {_describe(hint)}, got {value!r}{tip} (in {source})") from None


def _section(cls, key: str, value, path: str, source: str):
    """The nested section ``key`` of ``cls`` built from ``value``; ``null`` gives the section's defaults where it has
    them (``launcher: null``), ``None`` where the section is optional, else one error."""
    field_ = next(f for f in dataclasses.fields(cls) if f.name == key)
    nested = cls.nested[key]
    if value is not None:
        return _build(nested, value, path, source)
    if type(None) in get_args(get_type_hints(cls)[key]):
        return None
    if field_.default_factory is not dataclasses.MISSING:
        return field_.default_factory()
    raise UserError(f"{path}: expected {_describe(nested)}, got null (in {source})")


def _build(cls, data, path: str, source: str):
    """``cls(**data)`` with nested dataclasses built recursively; unknown and missing keys, values of the wrong
    type (checked against the field annotations) and values outside their declared range (:class:`Bound`,
    :class:`OneOf`, :class:`TapName`) are one clear error naming the key's ``path`` and the ``source``."""
    where = f"{path}: " if path else ""
    if not isinstance(data, dict):
        raise UserError(f"{where}expected {_describe(cls)}, got {data!r} (in {source})")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        known = [n for n in names if n not in getattr(cls, "INTERNAL", ())]
        raise UserError(f"{where}unknown key {unknown[0]!r}; known keys: {', '.join(known)} (in {source})")
    required = [n for n, f in names.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise UserError(f"{where}missing key {missing[0]!r}: add it to the preset or its _base_ file (in {source})")
    nested, hints = getattr(cls, "nested", {}), get_type_hints(cls, include_extras=True)
    values = {}
    for key, value in data.items():
        inner = f"{path}.{key}" if path else key
        if key in nested:
            values[key] = _section(cls, key, value, inner, source)
        else:
            values[key] = _check_type(value, hints[key], inner, source)
    try:
        return cls(**values)
    except TypeError as err:
        raise UserError(f"{where}{err} (in {source})") from None
    except UserError as err:  # a section's own check (__post_init__): name where it is, unless it does
        said = str(err).split(" ", 1)[0].startswith(path) if path else True
        raise UserError(f"{err} (in {source})" if said else f"{path}: {err} (in {source})") from None


def _stacks(spec) -> dict[str, int]:
    """A registered model's block stacks, ``{"blocks": depth, ...}`` (Flux adds ``single_blocks``)."""
    config = spec.transformer
    return {k: n for k, n in (("blocks", config["num_layers"]), ("single_blocks", config.get("num_single_layers")))
            if n}


def check_on_load(preset: BenchPreset, source: str) -> None:
    """What a preset file must also hold beyond its types and bounds: backbones that name a registered model, an
    existing folder or a hub id; FGVC datasets the readers know (a preset built
    in code, a test's, may name its own data), and where a task's backbone is a registered model (its architecture
    known without loading it) a tap and ADE20K blocks that exist in it and HFR candidates inside its schedule. One
    error naming the key."""
    for key, name in (("backbone", preset.backbone), ("fgvc.backbone", preset.fgvc and preset.fgvc.backbone),
                      ("ade20k.backbone", preset.ade20k and preset.ade20k.backbone)):
        try:
            if name:
                check_source(name)
        except UserError as err:
            raise UserError(f"{key}: {err} (in {source})") from None
    names = OneOf(FGVC_DATASETS)
    for dataset in preset.fgvc.datasets if preset.fgvc is not None else ():
        if names.problem(dataset):
            raise UserError(f"fgvc.datasets: {names.problem(dataset)}, got {dataset!r} (in {source})")
    for task in ("fgvc", "ade20k"):
        section = getattr(preset, task)
        name = section.backbone if section is not None and section.backbone else preset.backbone
        spec = MODELS.get(name)
        if section is None or spec is None:
            continue
        stacks, key = _stacks(spec), f"{task}.tap"
        try:
            if task == "fgvc":
                parse_tap(section.tap, stacks, CROSS_COMPONENTS)
            else:
                key = f"{task}.blocks"
                for block in section.blocks or ():
                    parse_tap(f"blocks.{block}.out", stacks)
            key = "hfr.candidates"
            check_candidates(preset.hfr.candidates, spec.scheduler.get("num_train_timesteps",
                                                                       DIT_SCHEDULER["num_train_timesteps"]))
        except UserError as err:
            raise UserError(f"{key}: {err} for backbone {name!r} (in {source})") from None


def preset_from_dict(data: dict, name: str = "custom", where: str | None = None) -> BenchPreset:
    """A validated :class:`BenchPreset` from a plain mapping (e.g. a merged YAML file); errors name ``where``
    (default: the preset's name)."""
    data = {"name": name, **data}
    return _build(BenchPreset, data, "", where or f"preset {data['name']!r}")


def load_bench_preset(name: str) -> BenchPreset:
    """The benchmark preset ``name`` (``demo``, ``paper``..., or a path to a YAML file), validated: every key, type
    and range, and (for a registered backbone) its tap, blocks and candidates."""
    path = Path(name) if str(name).endswith((".yaml", ".yml")) else CONFIG_DIR / "presets" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONFIG_DIR / "presets").glob("*.yaml") if not p.stem.startswith("_"))
        raise UserError(f"unknown preset {name!r}: use one of {', '.join(known)} or a path to a YAML file")
    source = f"preset {path.stem!r}, {path}"
    preset = preset_from_dict(load_yaml(path), path.stem, where=source)
    check_on_load(preset, source)
    return dataclasses.replace(preset, yaml_fingerprint=preset.fingerprint())


def setting_argtype(cls, key: str):
    """An argparse ``type`` for a command-line flag that sets ``cls``'s field ``key`` (``--mem-gb`` for
    ``LauncherSettings.mem_gb``): the text as the field's type, within the field's declared range, so the flag and
    the preset's key are checked by one definition."""
    hint = get_type_hints(cls, include_extras=True)[key]
    base = _base_type(hint)

    def parse(text: str):
        try:
            value = base(text)
        except ValueError:
            raise ArgumentTypeError(f"{text!r} is not {_describe(base)}") from None
        try:
            return _typed(value, hint)
        except _OutOfRange as out:
            raise ArgumentTypeError(f"{text} {out.problem}") from None

    parse.__name__ = key
    return parse


def _base_type(hint):
    """``int`` for ``Annotated[int, ...]``, ``int | None``..."""
    while get_origin(hint) in (Annotated, Union, UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint
