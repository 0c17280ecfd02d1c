"""The one writer of ``results/``: JSON + Markdown + figures (+ TensorBoard), atomically, with a record of
how the result was produced.

Timesteps stay ``int`` in memory; JSON turns mapping keys into strings (``{"50": ...}``), as the result
contracts in DESIGN.md say.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

#: Backbone autocast dtypes as the ``--precision`` names that chose them.
PRECISION_NAMES = {"None": "32", "torch.bfloat16": "bf16", "torch.float16": "16"}


def markdown_table(header: list[str], rows: list[list], floatfmt: str = "{:.2f}") -> str:
    """A GitHub-flavoured Markdown table; floats formatted with ``floatfmt``, ``None`` as a dash."""

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def hfr_row(curve: dict, chosen) -> str:
    """The HFR curve on one line, the chosen timestep in bold: ``0:0.123 50:**0.456** ...``."""
    return " ".join(f"{t}:**{v:.3f}**" if int(t) == int(chosen) else f"{t}:{v:.3f}" for t, v in curve.items())


#: What the code version covers: a result written by an earlier step of a run does not make the code dirty.
CODE_PATHS = ("aselect_bench", "benchmarks", "configs", "pyproject.toml", "constraints.txt")


@functools.cache
def code_version() -> str:
    """The package version and, in a git checkout, the commit (``.dirty`` with uncommitted code changes); read
    once per process, when :mod:`aselect_bench.reports` is imported: the code a run loaded, even if the checkout
    changes while it runs."""
    from aselect_bench import __version__

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+{sha}{'.dirty' if dirty else ''}"


def hardware_summary(device) -> dict:
    """``{"device": name, "cpu_bf16_native": bool}``: the GPU's name or ``cpu``, and whether this CPU runs bf16
    natively and fast (:func:`aselect_bench.precision.cpu_bf16_native`)."""
    import torch

    from aselect_bench.precision import cpu_bf16_native

    device = torch.device(device)
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "cpu_bf16_native": cpu_bf16_native()}


def unreadable_images(datamodules) -> dict:
    """``{"count", "first"}``: how many unreadable images the ``datamodules`` (their ``bad_files()``) left out of
    their splits, and the first few (display paths): what every report and run record says about them."""
    from aselect_bench.data.readable import NAMED
    from aselect_bench.io import display_path

    files = sorted({f for dm in datamodules for f in getattr(dm, "bad_files", list)()})
    return {"count": len(files), "first": [display_path(f) for f in files[:NAMED]]}


def run_record(preset=None, backbone=None, datamodules=()) -> dict:
    """How a result was run: ``{"preset", "preset_fingerprint" (of the preset as its YAML file defines it, before
    the overrides), "overrides" (paths as :func:`~aselect_bench.io.display_path` writes them), "precision",
    "weights_id", "hardware", "torch", "code_version"}`` (``preset`` a :class:`~aselect_bench.settings.BenchPreset`,
    or None for a run without one, such as ``aselect-bench select``; ``backbone`` None for a result about several
    models or none: its precision, backbone and weights are then None), and with the ``datamodules`` it read,
    ``"unreadable_images"`` (:func:`unreadable_images`)."""
    import torch

    from aselect_bench.io import display_path

    data = {"unreadable_images": unreadable_images(datamodules)} if datamodules else {}
    overrides = {} if preset is None else {k: display_path(v) if isinstance(v, str) and Path(v).is_absolute() else v
                                           for k, v in preset.overrides.items()}
    return {"preset": None if preset is None else preset.name,
            "preset_fingerprint": None if preset is None else preset.yaml_fingerprint,
            "overrides": overrides,
            "precision": None if backbone is None else PRECISION_NAMES.get(str(backbone.autocast_dtype),
                                                                            str(backbone.autocast_dtype)),
            "backbone": None if backbone is None else backbone.name,
            "weights_id": None if backbone is None else backbone.weights_id,
            "hardware": hardware_summary("cpu" if backbone is None else backbone.device), "torch": torch.__version__,
            "code_version": code_version(), **data}


def unreadable_line(run: dict) -> str:
    """``"3 unreadable image(s) left out: a.jpg, b.jpg, c.jpg"`` from a run record, or ``""`` when none were."""
    bad = run.get("unreadable_images") or {}
    if not bad.get("count"):
        return ""
    more = ", ..." if bad["count"] > len(bad["first"]) else ""
    return f"{bad['count']} unreadable image(s) left out: {', '.join(bad['first'])}{more}"


def run_header(run: dict) -> str:
    """One Markdown line saying how a result was run (from :func:`run_record`)."""
    overrides = ", ".join(f"`{k}={v}`" for k, v in run["overrides"].items()) or "none"
    hw, bad = run["hardware"], unreadable_line(run)
    return (f"_Run: preset `{run['preset']}`, overrides {overrides}, precision {run['precision']}, weights "
            f"`{run['weights_id']}`, device {hw['device']} (native CPU bf16: {hw['cpu_bf16_native']}), torch "
            f"{run['torch']}, code {run['code_version']}{f'; {bad}' if bad else ''}._\n")


def write_report(folder, name: str, data: dict, markdown: str, figures: dict | None = None,
                 tensorboard_dir=None, scalars: dict | None = None, tensorboard: dict | None = None) -> Path:
    """Write ``folder/name.json`` and ``folder/name.md`` and each of ``figures`` ``{file name: figure}``
    atomically; with ``tensorboard_dir`` also the Markdown (Text tab), the figures and ``scalars``
    ``{tag: value or {step: value}}`` there, and ``tensorboard``'s extras: ``"layout"`` (Custom Scalars charts,
    e.g. a ``Margin`` band) and ``"hparams"`` ``[(hyperparameters, metrics, run name)]`` (the HParams tab, one
    sub-run each). Returns ``folder/name``."""
    from aselect_bench.io import atomic_write_json, atomic_write_text
    from aselect_bench.plots import save_figure

    stem = Path(folder) / name
    if isinstance(data, dict) and "run" not in data:  # every result says how it was run
        data = {**data, "run": run_record()}
    # not with_suffix: a name may hold a dot (a corruption level, fgvc-cub-demo-gauss0.1)
    atomic_write_json(Path(folder) / f"{name}.json", data)
    atomic_write_text(Path(folder) / f"{name}.md", markdown)
    figures = figures or {}
    if tensorboard_dir is not None:
        write_tensorboard(Path(tensorboard_dir), name, markdown, figures, scalars or {}, tensorboard or {})
    for file_name, fig in figures.items():
        save_figure(fig, Path(folder) / file_name)
    return stem


def comparison_name(result: dict) -> str:
    """The file stem of a comparison: ``<task>-<dataset>-<preset>``, with the corruption's label after it when its
    data were corrupted (``fgvc-cub-demo-gauss0.1``), so it never takes the clean comparison's files."""
    return result.get("label") or f"{result['task']}-{result['dataset']}-{result['preset']}"


def report_logdir(runs, name: str) -> Path:
    """Where the report ``name`` logs for TensorBoard: ``<runs>/reports/<name>``, one run (plus one per HParams
    row). ``make tensorboard`` opens ``runs/reports``: a handful of runs whatever a sweep's size, so TensorBoard
    selects them all (it selects none above 40) and its first page shows the reports."""
    return Path(runs) / "reports" / name


def training_logdir(runs, *parts: str) -> Path:
    """Where trainings log for TensorBoard: ``<runs>/trainings/<parts>``, beside the reports, never among them."""
    return Path(runs, "trainings", *parts)


def write_tensorboard(folder: Path, name: str, markdown: str, figures: dict, scalars: dict, extras: dict) -> None:
    """The report in TensorBoard, as the run ``folder`` (:func:`report_logdir`; see :func:`write_report`); an
    earlier report there is replaced, so a rerun does not stack a second copy of every point."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(folder, ignore_errors=True)

    def add_scalars(writer, values: dict) -> None:
        for tag, value in values.items():
            for step, v in (value.items() if isinstance(value, dict) else [(0, value)]):
                if v is not None:
                    writer.add_scalar(tag, v, global_step=int(step))

    with SummaryWriter(str(folder)) as writer:
        writer.add_text(name, markdown)
        add_scalars(writer, scalars)
        for file_name, fig in figures.items():
            writer.add_figure(Path(file_name).stem, fig, close=False)
        if extras.get("layout"):
            writer.add_custom_scalars(extras["layout"])
        for hparams, metrics, run in extras.get("hparams", []):
            writer.add_hparams(hparams, metrics, run_name=run)


code_version()  # the version of the code this process loaded
