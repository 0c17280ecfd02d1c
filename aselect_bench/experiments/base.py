"""What every experiment shares: where its data lives, the HFR selector it uses, and ``Experiment``.

An :class:`Experiment` is one task on one dataset under one benchmark preset, holding ready parts (backbone,
datamodule); :func:`aselect_bench.experiments.build_experiment` does the I/O that makes those parts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from aselect_bench.callbacks import HFRTimestepSelector
from aselect_bench.data.calibration import calibration_images
from aselect_bench.data.manifest import manifest_changes
from aselect_bench.data.synth_folder import MARKER
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json, read_json
from aselect_bench.settings import BenchPreset

#: Marks a synthetic dataset's folder: the generator's version and sizes.
SYNTHETIC_MARKER = MARKER
#: Marks a folder that a user named (``--data-root``) as one the suite writes synthetic stand-ins into.
SYNTHETIC_ROOT_MARKER = ".aselect_synthetic_root"


def dataset_path(preset: BenchPreset, task: str, name: str, data_root=None) -> Path:
    """Where dataset ``name`` lives (no I/O): ``<data_root>/<name>``, or ``<data_root>/<task>/<name>`` for
    a synthetic preset."""
    base = Path(data_root or preset.data_root or "data")
    return base / task / name if preset.synthetic else base / name


def ensure_synthetic_dataset(preset: BenchPreset, task: str, name: str, root: Path) -> None:
    """Write the synthetic dataset ``name`` at ``root`` in its original layout unless an identical one is
    there (same generator version and sizes); a stale synthetic copy is deleted first."""
    if task == "fgvc":
        from aselect_bench.data import synth_fgvc as generator
        from aselect_bench.data.fgvc import DATASETS

        # seeded by the dataset's place among all six, not among the preset's: `--datasets cub` gets the same cub
        args = dict(layout=name, seed=preset.seed + sorted(DATASETS).index(name),
                    **asdict(preset.synth.fgvc))
    else:
        from aselect_bench.data import synth_ade20k as generator

        args = dict(seed=preset.seed, **asdict(preset.synth.ade20k))
    expected = {"generator_version": generator.GENERATOR_VERSION, **args}
    marker = root / SYNTHETIC_MARKER
    if marker.exists() and {k: v for k, v in read_json(marker).items() if k in expected} == expected:
        return
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise UserError(f"{root} holds files that this suite did not generate; move them or choose another "
                        f"--data-root for the synthetic {name} data")
    # stale synthetic data (another generator version or size) is replaced; nothing else in the folder is
    if task == "fgvc":
        generator.write_layout(out_dir=root, force=True, **args)
    else:
        generator.write_ade20k(root, force=True, **args)


def claim_synthetic_root(preset: BenchPreset, data_root=None) -> None:
    """A synthetic preset writes its stand-ins into its own folder (``data_root`` of its YAML file), or into a
    folder the user named that is new, empty, or already one it wrote (marked): never into a folder that
    holds anything else, such as the user's real datasets (one :class:`UserError` instead)."""
    if data_root is None and "data_root" not in preset.overrides:
        return  # the preset's own folder
    base = Path(data_root or preset.data_root)
    if (base / SYNTHETIC_ROOT_MARKER).exists():
        return
    held = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
    if held and not _only_synthetic(base):
        raise UserError(f"--data-root {base} holds files this suite did not generate ({', '.join(held[:3])}"
                        f"{', ...' if len(held) > 3 else ''}): preset {preset.name!r} is synthetic and writes its "
                        f"generated stand-ins only into a folder of its own, never into yours; give a new or empty "
                        f"folder for them, or use a preset with 'synthetic: false' (e.g. --preset paper) to read "
                        f"your datasets")
    atomic_write_json(base / SYNTHETIC_ROOT_MARKER, {"preset": preset.name})


def _only_synthetic(base: Path) -> bool:
    """Whether ``base`` holds nothing but ``<task>/<name>/`` stand-ins this suite generated (each marked)."""
    return all(task.is_dir() and task.name in ("fgvc", "ade20k") and all(
        (folder / SYNTHETIC_MARKER).exists() for folder in task.iterdir()) for task in base.iterdir())


def prepare_dataset(preset: BenchPreset, task: str, name: str, data_root=None) -> Path:
    """The dataset's folder, generated first for a synthetic preset (:func:`claim_synthetic_root`); a missing
    real dataset is one clear error."""
    root = dataset_path(preset, task, name, data_root)
    if preset.synthetic:
        claim_synthetic_root(preset, data_root)
        ensure_synthetic_dataset(preset, task, name, root)
    elif not root.exists():
        raise UserError(f"dataset folder {root} does not exist: put the {name} files as distributed under "
                        f"{root} (or pass --data-root/DATA_ROOT with one folder per dataset)")
    return root


def preset_backbone(preset: BenchPreset, task: str):
    """The backbone the preset runs ``task`` on (the task's own override, else the preset's), at the preset's
    precision (``auto``: bf16 where native)."""
    from aselect_bench.backbones import load_backbone
    from aselect_bench.precision import describe_precision

    backbone = load_backbone(getattr(preset, task).backbone or preset.backbone)
    return backbone.set_precision(describe_precision(preset.precision, backbone.device)["precision"])


def best_on_validation(rows: dict):
    """The key of ``rows`` ``{key: {"val": ...}}`` with the best validation metric (the first in order on ties)."""
    return max(rows, key=lambda k: rows[k]["val"])


def exhaustive_summary(per_timestep: dict, cost=None) -> dict:
    """An exhaustive sweep's outcome from ``{t: {"val", "test", ...}}``: the best timestep on validation, its
    test metric, and the cost (``cost``, else the sum of the rows' ``seconds``/``forwards``)."""
    best = best_on_validation(per_timestep)
    seconds = cost.seconds if cost is not None else sum(r["seconds"] for r in per_timestep.values())
    forwards = cost.forwards if cost is not None else sum(r["forwards"] for r in per_timestep.values())
    return {"per_timestep": per_timestep, "best_timestep": best, "test_at_best": per_timestep[best]["test"],
            "seconds": seconds, "forwards": forwards}


def _changed_keys(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """``[(dotted key, old value, new value)]`` where two JSON-like values differ, deepest keys first found."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new), key=str)
                for c in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def describe_changes(old: dict, new: dict, old_files: dict | None = None, new_files: dict | None = None,
                     shown: int = 4) -> str:
    """What differs between two :meth:`Experiment.describe` configs, in words: ``"the data's test split changed (3
    files differ: 3 changed); the preset's fgvc.lr changed (0.001 -> 0.01)"``. ``old_files``/``new_files``:
    :meth:`Experiment.data_manifests` of each, to count the files that differ."""
    old_files, new_files, said = old_files or {}, new_files or {}, []
    for key, before, after in _changed_keys(old, new):
        part, _, rest = key.partition(".")
        if part == "data":
            files = (f" ({manifest_changes(old_files[rest], new_files[rest])})"
                     if rest in old_files and rest in new_files else "")
            said.append(f"the data's {rest} split changed{files}")
        elif part == "preset":
            said.append(f"the preset's {rest} changed ({before!r} -> {after!r})")
        else:
            said.append(f"the {key} changed" + ("" if key == "backbone" else f" ({before!r} -> {after!r})"))
    return "; ".join(said[:shown]) + (f"; and {len(said) - shown} more" if len(said) > shown else "")


def hfr_selector(preset: BenchPreset, **kwargs) -> HFRTimestepSelector:
    """The preset's HFR scan as a callback (``kwargs``: the callback's own options, e.g. ``progress``)."""
    return HFRTimestepSelector.from_settings(preset.hfr, seed=preset.seed, **kwargs)


class Experiment:
    """One task on one dataset under one preset: builds data and heads, trains at a timestep, scans HFR.

    The comparison (:mod:`aselect_bench.analyses.compare`) and the benchmarks drive everything through this, so
    both strategies share data, seeds, head and schedule.
    """

    supports_fused = False
    test_checkpoint = "best"  # the checkpoint the test split is scored at: "best" on validation, or "last"

    def __init__(self, task: str, dataset: str, preset: BenchPreset, backbone, datamodule, max_epochs: int,
                 hfr_tap: str, metric_name: str):
        self.task, self.dataset, self.preset, self.backbone = task, dataset, preset, backbone
        self.datamodule, self.max_epochs, self.hfr_tap, self.metric_name = datamodule, max_epochs, hfr_tap, metric_name

    #: The splits whose data a result depends on (the training images too: the head learns from them).
    STAGES = ("train", "val", "test")

    def describe(self) -> dict:
        """Everything that determines a result (for fingerprints): the preset with its overrides (HFR settings
        and candidate grid included), the backbone's weights and precision, the data of each split (what its
        files hold: paths relative to the data root, sizes, digests; not where the folder lies nor when it was
        touched), the HFR tap."""
        # how it is launched, how many repeats are asked and where the data lies change no piece: left out
        left_out = (*self.preset.RUN_ONLY, "seeds", "data_root")
        preset = {k: v for k, v in self.preset.to_json().items() if k not in left_out}
        return {"task": self.task, "dataset": self.dataset, "preset": preset,
                "backbone": self.backbone.fingerprint, "precision": str(self.backbone.autocast_dtype),
                "data": {stage: self._data_fingerprint(stage) for stage in self.STAGES}, "hfr_tap": self.hfr_tap}

    def _data_fingerprint(self, stage: str) -> str | None:
        """The datamodule's ``data_fingerprint`` of ``stage``, else its ``view_fingerprint`` (None without one)."""
        dm = self.datamodule
        if hasattr(dm, "data_fingerprint"):
            return dm.data_fingerprint(stage)
        return getattr(dm, "view_fingerprint", lambda s: None)(stage)

    def data_manifests(self) -> dict:
        """``{stage: manifest lines}`` of the splits whose datamodule lists its files (to say later which files
        changed when the data's fingerprint does)."""
        listing = getattr(self.datamodule, "data_manifest", lambda stage: None)
        manifests = {stage: listing(stage) for stage in self.STAGES}
        return {stage: lines for stage, lines in manifests.items() if lines is not None}

    def split_names(self) -> dict:
        """What the ``val`` and ``test`` stages hold, in plain words (ADE20K: ``selection``/``validation``)."""
        return dict(getattr(self.datamodule, "SPLIT_NAMES", {"val": "validation", "test": "test"}))

    def calibration_images(self) -> torch.Tensor:
        """``[N, 3, H, W]``: the preset's HFR calibration set (``hfr.num_images``, the preset's seed)."""
        return calibration_images(self.datamodule, self.preset.hfr.num_images, self.preset.seed)

    def make_task(self, timestep, tap=None, feature_cache_root=None, seed=None):
        raise NotImplementedError

    def trainer_options(self) -> dict:
        """Extra Trainer settings of this task (e.g. an iteration-based schedule)."""
        return {}

    def training_seed(self, repeat: int = 0) -> int:
        """The seed of repeat ``repeat`` of a training (0: the preset's seed): its head's init, its order and
        views, its noise draws; the data (splits, calibration images) never change with it."""
        return self.preset.seed + repeat

    def fit(self, timestep, log_dir, name: str, progress: bool = True, selector=None, repeat: int = 0,
            stop_after: int | None = None, resume=None, checkpoint_dir=None, **task_kwargs):
        """Train at ``timestep`` (or let ``selector`` choose it) and test the best validation epoch; ``repeat``
        numbers a repeat of the same training with another seed (:meth:`training_seed`). ``stop_after``,
        ``resume``, ``checkpoint_dir``: a partial run of the full schedule, continued from a checkpoint
        (:func:`~aselect_bench.tasks.fit.fit_and_test`)."""
        import lightning as L

        from aselect_bench.tasks.fit import fit_and_test

        seed = self.training_seed(repeat)
        L.seed_everything(seed, workers=True, verbose=False)  # the head's init is seeded too
        self.datamodule.training_seed = seed
        self.last_task = self.make_task(timestep, seed=seed, **task_kwargs)
        options = self.trainer_options()  # an iteration-based schedule sets its own max_epochs (-1)
        return fit_and_test(self.last_task, self.datamodule, log_dir, name, options.pop("max_epochs", self.max_epochs),
                            selector, seed=seed, progress=progress, monitor=f"val/{self.metric_name}",
                            test_metric=f"test/{self.metric_name}", test_checkpoint=self.test_checkpoint,
                            stop_after=stop_after, resume=resume, checkpoint_dir=checkpoint_dir, **options)


