"""``aselect-bench fit|validate|test``: LightningCLI over the tasks and datamodules.

Two ways in, both LightningCLI underneath:

- ``--preset NAME --dataset NAME`` (the benchmark presets' options too: ``--data-root``, ``--precision``,
  ``--max-epochs``...): the experiment ``make bench-fgvc`` runs, built from the preset itself
  (:func:`preset_config`: the same task and data arguments, Trainer settings, checkpointing and HFR scan),
  so the two cannot drift apart; ``fit`` then tests at the best validation epoch, as the benchmark does.
  LightningCLI options (``--trainer.devices 8``...) still apply on top.
- ``--config FILE`` (YAML written by hand or by ``--print_config``); a file may start with
  ``_base_: other.yaml`` (inheritance, resolved before LightningCLI reads it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI

from aselect_bench.callbacks import HFRTimestepSelector
from aselect_bench.config import load_yaml
from aselect_bench.errors import UserError
from aselect_bench.progress import quiet_lightning, training_progress


class AselectCLI(LightningCLI):
    """LightningCLI with the HFR timestep selector as a configurable callback (``--hfr.*``), without Lightning's tips."""

    def __init__(self, *args, **kwargs):
        quiet_lightning()
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(HFRTimestepSelector, "hfr")

    def instantiate_classes(self) -> None:
        """A class refusing a config value while it is built (our own error: a bad head, tap, backbone, timestep...;
        or a library's ``ValueError``: ``num_classes: 0``) comes out as one line naming the config key it is about,
        instead of inside jsonargparse's dump of the Union it was checking."""
        try:
            super().instantiate_classes()
        except Exception as err:
            cause = _refusal(err)
            if cause is None:
                raise
            config = self.config.get(self.subcommand) if self.subcommand else self.config
            raise UserError(f"{config_key(config, cause)}: {cause}") from None


class PresetCLI(AselectCLI):
    """A preset's experiment: after ``fit``, test at the best validation epoch and print both, as the benchmark."""

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.best_model_path:
            return
        test = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best", verbose=False)[0]
        if self.trainer.is_global_zero:
            metric = checkpoint.monitor.split("/", 1)[1]
            print(f"timestep {self.model.timestep}: best val {metric} {float(checkpoint.best_model_score):.2f} "
                  f"({Path(checkpoint.best_model_path).name}), test {metric} {test[f'test/{metric}']:.2f}", flush=True)


def preset_config(preset, dataset: str, log_dir: str = "runs/cli", write: bool = True) -> dict:
    """The LightningCLI config of the FGVC experiment a benchmark preset defines on ``dataset`` (its data generated
    first for a synthetic preset; with ``write=False``, as for ``--print_config``, nothing is written: the synthetic
    data's place and class count come from the preset): what ``bench-fgvc`` builds, from the same functions."""
    from aselect_bench.data.fgvc import class_names
    from aselect_bench.experiments import dataset_path, prepare_dataset
    from aselect_bench.experiments.fgvc import datamodule_arguments, probe_arguments
    from aselect_bench.tasks.fit import TRAINER_DEFAULTS, checkpoint_options

    if preset.fgvc is None or dataset not in preset.fgvc.datasets:
        raise UserError(f"preset {preset.name!r} has no FGVC dataset {dataset!r}: fit --preset runs the FGVC "
                        f"experiments ({', '.join(preset.fgvc.datasets) if preset.fgvc else 'none here'}); ADE20K runs "
                        f"through 'make bench-ade20k' and 'aselect-bench compare --task ade20k'")
    root = prepare_dataset(preset, "fgvc", dataset) if write else dataset_path(preset, "fgvc", dataset)
    classes = len(class_names(dataset, root)) if write or not preset.synthetic else preset.synth.fgvc.num_classes
    model = {"backbone": preset.fgvc.backbone or preset.backbone, "num_classes": classes, **probe_arguments(preset)}
    return {
        "seed_everything": preset.seed,
        "trainer": {**TRAINER_DEFAULTS, "max_epochs": preset.fgvc.max_epochs,
                    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": log_dir, "name": f"{preset.name}-{dataset}",
                                             "default_hp_metric": False}},
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": checkpoint_options("val/top1")}]},
        "model": {"class_path": "aselect_bench.tasks.classification.ClassificationTask",
                  "init_args": {k: list(v) if isinstance(v, tuple) else v for k, v in model.items()}},
        "data": {"class_path": "aselect_bench.data.fgvc_datamodule.FGVCDataModule",
                 "init_args": datamodule_arguments(preset, dataset, root)},
        "hfr": {**preset.hfr.to_json(), "seed": preset.seed},
    }


def _preset_parser() -> argparse.ArgumentParser:
    from aselect_bench.commands.options import add_preset_arguments, any_dataset

    parser = argparse.ArgumentParser(prog="aselect-bench fit", add_help=False, allow_abbrev=False)
    add_preset_arguments(parser)
    parser.add_argument("--dataset", default="cub", type=any_dataset, help="FGVC dataset of the preset (default cub)")
    return parser


def preset_arguments(argv: list[str], tmp_dir: Path) -> list[str]:
    """``SUBCOMMAND --preset P --dataset D [preset options] [LightningCLI options]`` -> ``SUBCOMMAND --config
    <the preset's config> [LightningCLI options]`` (unchanged when neither ``--preset`` nor ``--dataset`` is given)."""
    from aselect_bench.commands.options import preset_from_args

    if not any(a.split("=", 1)[0] in ("--preset", "--dataset") for a in argv):
        return argv
    args, rest = _preset_parser().parse_known_args(argv[1:])
    path = tmp_dir / f"preset-{args.preset}-{args.dataset}.yaml".replace("/", "_")
    printing = any(a.split("=", 1)[0] == "--print_config" for a in rest)  # prints the config: writes no data
    path.write_text(yaml.safe_dump(preset_config(preset_from_args(args, "fgvc"), args.dataset, write=not printing)))
    return [argv[0], "--config", str(path), *rest]


def resolve_configs(argv: list[str], tmp_dir: Path) -> list[str]:
    """Replace each ``--config FILE`` that uses ``_base_`` by a merged copy in ``tmp_dir``."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        path = argv[i + 1] if arg in ("--config", "-c") and i + 1 < len(argv) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and Path(path).is_file() and "_base_" in Path(path).read_text():
            merged = tmp_dir / f"merged-{len(out)}-{Path(path).name}"
            merged.write_text(yaml.safe_dump(load_yaml(Path(path))))
            out += ["--config", str(merged)]
            i += 1 if arg.startswith("--config=") else 2
            continue
        out.append(arg)
        i += 1
    return out


def run_lightning_cli(argv: list[str]) -> None:
    """``--resume`` continues training from the run's ``last.ckpt`` (Lightning's ``--ckpt_path last``).

    Progress is Lightning's bar on a terminal and a line every 30 s in a log file."""
    argv = [a for arg in argv for a in (["--ckpt_path", "last"] if arg == "--resume" else [arg])]
    bar, lines = training_progress(True, argv[0] if argv else "fit")
    from jsonargparse import ArgumentError

    with tempfile.TemporaryDirectory(prefix="aselect-cfg-") as tmp, _argv_only(argv):
        args = preset_arguments(argv, Path(tmp))
        cli = PresetCLI if args is not argv else AselectCLI
        # parse errors come back as exceptions, so the one useful line is said first (not under the usage)
        errors_raise = {"exit_on_error": False}
        try:
            cli(subclass_mode_model=True, subclass_mode_data=True, args=resolve_configs(args, Path(tmp)),
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "aselect-bench", **errors_raise, **{c: errors_raise for c in LIGHTNING_SUBCOMMANDS}},
                trainer_defaults={} if bar else {"enable_progress_bar": False, "callbacks": lines})
        except ArgumentError as err:
            raise UserError(config_error(str(err), argv[0] if argv else "fit")) from None


#: LightningCLI's subcommands (each has a parser of its own).
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


@contextmanager
def _argv_only(argv: list[str]):
    """While inside, ``sys.argv`` is the program name alone: LightningCLI reads ``args=argv`` (ours, already
    rewritten) and would otherwise warn that the command line holds arguments too."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def _user_error(err: BaseException) -> UserError | None:
    """The :class:`UserError` ``err`` is, or was raised from (jsonargparse re-raises it as a ``ValueError``)."""
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__ or err.__context__
    return err


def _refusal(err: BaseException) -> str | None:
    """What a class said when it refused a config value: a :class:`UserError` in ``err``'s chain, or the first line
    of the ``ValueError`` a constructor raised that jsonargparse re-raised in its Union check (``None``: anything
    else, a bug, keeps its traceback)."""
    user = _user_error(err)
    if user is not None:
        return str(user)
    if isinstance(err, ValueError) and isinstance(err.__cause__, ValueError) and "Union subtypes" in str(err):
        return str(err.__cause__).strip().splitlines()[0]
    return None


def config_key(config, message: str) -> str:
    """The key of ``config`` (a parsed LightningCLI namespace) that ``message`` is about: of the init arguments whose
    value the message names (quoted text such as ``'lineer'`` counts above a bare number such as ``5000``, and a key
    the message names too, ``timestep 5000``, above one it does not), the one that scores best; else ``the config``."""
    import re

    scores = {}
    for section, value in vars(config).items():
        args = getattr(value, "init_args", value)
        prefix = f"{section}.init_args" if hasattr(value, "init_args") else section
        for key, given in (vars(args).items() if hasattr(args, "__dict__") else ()):
            if isinstance(given, str) and repr(given) in message:
                score = 2
            elif isinstance(given, (int, float)) and not isinstance(given, bool) and \
                    re.search(rf"(?<![\w.]){re.escape(str(given))}(?![\w.])", message):
                score = 1
            else:
                continue
            scores[f"{prefix}.{key}"] = score + 2 * bool(re.search(rf"\b{re.escape(key)}\b", message))
    best = [k for k, v in scores.items() if v == max(scores.values())]
    return best[0] if len(best) == 1 else "the config"


def config_error(message: str, subcommand: str) -> str:
    """jsonargparse's nested parse error as one line: an unknown key first, with the keys its class accepts
    (instead of the usage, a Union dump and the given value), else the error's most specific lines."""
    import importlib
    import inspect
    import re

    unknown = re.search(r"Problem with given class_path '([\w.]+)':\s*(?:Key '[^']*': )?Option '([^']+)' is not "
                        r"accepted", message)
    key = re.match(r'Parser key "([^"]+)"', message)
    where = f"{key.group(1)}.init_args" if key else "the config"
    if unknown:
        class_path, option = unknown.groups()
        module, _, name = class_path.rpartition(".")
        accepted = [p for p in inspect.signature(getattr(importlib.import_module(module), name)).parameters
                    if p not in ("self", "args", "kwargs")]
        return (f"{where}: unknown key {option!r} for {name}; it accepts {', '.join(accepted)} (see "
                f"'aselect-bench {subcommand} --print_config')")
    keys = re.findall(r'Parser key "([^"]+)":\s*\n\s*(Expected a <class \'(\w+)\'>\. Got value: (.*))?', message)
    if len(keys) > 1 and keys[-1][1]:  # a value of the wrong type, as deep as it was found
        *_, (inner, _, kind, value) = keys
        words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
        expected = words.get(kind, kind)
        return f"{where}.{inner}: expected {expected}, got {value.strip()!r} (see 'aselect-bench {subcommand} --help')"
    lines = [line.strip(" -") for line in message.splitlines() if line.strip(" -")]
    details = [line for line in lines[1:] if not line.startswith(("Subtypes:", "Errors:", "Given value"))]
    return f"{where}: {'; '.join([lines[0], *details[:3]])} (see 'aselect-bench {subcommand} --help')"
