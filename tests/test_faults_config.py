"""Configuration faults (issue 41: items 9, 11-14, and Lightning's LeafSpec warning): every file and field of a
preset is validated when it loads (types, declared bounds, names, taps, candidates), a bad value in a ``fit --config``
is one line naming its key, and ``_base_`` circles are named. Nothing here trains."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Annotated, get_args, get_origin, get_type_hints

import pytest
import yaml

from aselect_bench.config import CONFIG_DIR, NotEmpty, load_yaml
from aselect_bench.errors import UserError
from aselect_bench.settings import (
    BenchPreset,
    Bound,
    LauncherSettings,
    OneOf,
    TapName,
    load_bench_preset,
    setting_argtype,
)

DEMO = CONFIG_DIR / "presets" / "demo.yaml"


def write_preset(tmp_path, text: str, name: str = "mine"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"_base_: {DEMO}\n{text}")
    return path


def load_error(tmp_path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load_bench_preset(str(write_preset(tmp_path, text)))
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------- 11. every numeric field, by its declared bounds

def bounded_fields(cls=BenchPreset, path=""):
    """``(dotted key, check, list length or None)`` of every declared check (:class:`Bound`, :class:`OneOf`,
    :class:`NotEmpty`...) of ``cls`` and its nested sections (a length where the check is on each item of a list)."""
    hints = get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        key = f"{path}{f.name}"
        if f.name in getattr(cls, "nested", {}):
            yield from bounded_fields(cls.nested[f.name], f"{key}.")
        else:
            yield from ((key, check, length) for check, length in checks_of(hints[f.name]))


def checks_of(hint, length=None):
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is Annotated:
        yield from checks_of(args[0], length)
        yield from ((check, length) for check in args[1:])
    elif get_origin(hint) is tuple:
        yield from checks_of(args[0], 1 if args[-1] is Ellipsis else len(args))
    else:
        for arg in args:
            yield from checks_of(arg, length)


def outside(check, length=None):
    """A value the check refuses: just below a Bound, a name not in a OneOf, an empty list (a list of it for a
    list setting)."""
    if isinstance(check, NotEmpty):
        return []
    bad = "bogus" if isinstance(check, OneOf) else check.low - 1 if not check.low_open else check.low
    return bad if length is None else [bad] * length


def nested_yaml(key: str, value) -> str:
    *parents, leaf = key.split(".")
    data = {leaf: value}
    for part in reversed(parents):
        data = {part: data}
    return yaml.safe_dump(data)


def test_every_declared_bound_and_name_is_checked_on_load_with_its_key(tmp_path):
    """Generic: for every section field that declares a bound or a set of names, a value outside it stops the load
    with one line naming the key's path, the rule and the file (a new section gets this for free)."""
    checks = list(bounded_fields())
    assert all(isinstance(c, (Bound, OneOf, NotEmpty, TapName)) for _, c, _ in checks)
    checks = [(k, c, n) for k, c, n in checks if not isinstance(c, TapName)]  # taps: their own test below
    assert {"fgvc.datasets", "ade20k.scale", "fgvc.max_epochs", "fgvc.lr", "fgvc.batch_size", "ade20k.val_batch_size",
            "launcher.mem_gb", "launcher.time_min", "synth.fgvc.image_size", "seeds", "fgvc.head", "fgvc.linear_norm",
            "precision", "ade20k.inference", "hfr.num_images", "hfr.candidates"} <= {k for k, _, _ in checks}
    seen = set()
    for key, check, length in checks:
        if key.startswith("synth.fgvc."):  # the demo's synth section: the other keys are required
            value = {"num_classes": 3, "train_per_class": 2, "test_per_class": 1, "image_size": 16,
                     key.rsplit(".", 1)[1]: outside(check, length)}
            text = nested_yaml("synth.fgvc", value)
        elif key.startswith("synth.ade20k."):
            value = {"num_train": 2, "num_val": 1, "image_size": 16, "num_classes": 3,
                     key.rsplit(".", 1)[1]: outside(check, length)}
            text = nested_yaml("synth.ade20k", value)
        else:
            text = nested_yaml(key, outside(check, length))
        message = load_error(tmp_path, text)
        rule = check.problem(outside(check))
        assert message.startswith(f"{key}: {rule}, got "), message
        assert message.endswith(f"(in preset 'mine', {tmp_path / 'mine.yaml'})"), message
        seen.add(type(check))
    assert seen == {Bound, OneOf, NotEmpty}


@pytest.mark.parametrize("text, line", [
    ("fgvc: {max_epochs: 0}\n", "fgvc.max_epochs: must be >= 1, got 0"),
    ("fgvc: {lr: -1}\n", "fgvc.lr: must be > 0, got -1"),
    ("fgvc: {batch_size: 0}\n", "fgvc.batch_size: must be >= 1, got 0"),
    ("fgvc: {label_smoothing: 1}\n", "fgvc.label_smoothing: must be >= 0 and < 1, got 1"),
    ("ade20k: {max_epochs: 0}\n", "ade20k.max_epochs: must be >= 1 (or -1), got 0"),
    ("ade20k: {scale: [128, 0]}\n", "ade20k.scale: must be >= 1, got 0"),
    ("fgvc: {lr: .nan}\n", "fgvc.lr: expected a number, got nan"),
    ("fgvc: {datasets: []}\n", "fgvc.datasets: must list at least one item, got []"),
    ("hfr: {candidates: [0, -50]}\n", "hfr.candidates: must be >= 0, got -50"),
])
def test_the_faults_numbers_are_refused_on_load(tmp_path, text, line):
    assert load_error(tmp_path, text) == f"{line} (in preset 'mine', {tmp_path / 'mine.yaml'})"


def test_minus_one_epochs_with_an_iteration_budget_is_still_accepted(tmp_path):
    preset = load_bench_preset(str(write_preset(tmp_path, "ade20k: {max_epochs: -1, max_iters: 10}\n")))
    assert (preset.ade20k.max_epochs, preset.ade20k.max_iters) == (-1, 10)


# ------------------------------------------------------------------- names, taps and candidates on load

@pytest.mark.parametrize("text, fragment", [
    ("fgvc: {head: lineer}\n", "fgvc.head: must be one of linear, attentive, got 'lineer'"),
    ("fgvc: {linear_norm: bogus}\n", "fgvc.linear_norm: must be one of batchnorm, layernorm, got 'bogus'"),
    ("precision: fp8\n", "precision: must be one of auto, 32, bf16, 16, got 'fp8'"),
    ("hfr: {selector: nope}\n", "hfr.selector: unknown timestep selector 'nope'"),
    ("fgvc: {tap: blocks.x}\n", "fgvc.tap: bad tap 'blocks.x': write it as 'blocks.<i>.<component>'"),
    ("fgvc: {tap: blocks.1.bogus}\n", "fgvc.tap: tap 'blocks.1.bogus' has an unknown component 'bogus'"),
    ("fgvc: {tap: blocks.99.mlp}\n", "fgvc.tap: tap 'blocks.99.mlp' is outside the model: block 99 does not exist, "
                                     "this model has 6 blocks (0..5) for backbone 'demo'"),
    ("ade20k: {blocks: [1, 2, 3, 99]}\n", "ade20k.blocks: tap 'blocks.99.out' is outside the model"),
    ("ade20k: {blocks: [1, 2]}\n", "ade20k.blocks: UperNet takes 4 tapped blocks (one per pyramid level, shallow to "
                                   "deep), got 2 ([1, 2]); list four"),
    ("hfr: {candidates: [0, 5000]}\n", "hfr.candidates: candidate timestep 5000 is outside the schedule [0, 1000) "
                                       "for backbone 'demo'"),
    ("backbone: nosuchmodel\n", "backbone: unknown backbone 'nosuchmodel': use a registered model (dit-xl-2-256, "),
    ("ade20k: {backbone: nosuch}\n", "ade20k.backbone: unknown backbone 'nosuch': use a registered model"),
])
def test_names_taps_and_candidates_are_checked_on_load(tmp_path, text, fragment):
    message = load_error(tmp_path, text)
    assert message.startswith(fragment) and message.endswith(f"{tmp_path / 'mine.yaml'})"), message


def test_a_folder_backbone_gets_the_tap_syntax_check_only(tmp_path):
    """Its depth is unknown until it loads: a deep block is left to the backbone, a malformed tap is not."""
    preset = load_bench_preset(str(write_preset(tmp_path, f"backbone: {tmp_path}\nfgvc: {{tap: blocks.99.mlp}}\n")))
    assert preset.fgvc.tap == "blocks.99.mlp"
    assert load_error(tmp_path, f"backbone: {tmp_path}\nfgvc: {{tap: block9}}\n").startswith("fgvc.tap: bad tap")


# ------------------------------------------------------------------------ 13. an unknown dataset, named first

def test_an_unknown_dataset_is_named_with_the_known_ones_before_any_folder_is_looked_at(tmp_path):
    message = load_error(tmp_path, f"data_root: {tmp_path / 'data'}\nfgvc: {{datasets: [cub, birds]}}\n")
    assert message.startswith("fgvc.datasets: must be one of cub, nabirds, flowers, dogs, cars, aircraft, got 'birds'")
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------- 12. a circle of _base_ files

def test_a_circle_of_base_files_names_them(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\nseed: 1\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    (tmp_path / "self.yaml").write_text("_base_: self.yaml\n")
    with pytest.raises(UserError) as info:
        load_bench_preset(str(tmp_path / "a.yaml"))
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert str(info.value) == f"_base_ files form a circle: {a} -> {b} -> {a}; remove the _base_ line of one of them"
    with pytest.raises(UserError, match="_base_ files form a circle: .*self.yaml -> .*self.yaml;"):
        load_yaml(tmp_path / "self.yaml")
    (tmp_path / "c.yaml").write_text("_base_: [a.yaml]\n")
    with pytest.raises(UserError, match=r"c.yaml: _base_ must be one file name"):
        load_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("_base_: gone.yaml\n")
    with pytest.raises(UserError, match=r"d.yaml: its _base_ file .*gone.yaml does not exist; fix the _base_ line"):
        load_yaml(tmp_path / "d.yaml")


def test_a_diamond_of_base_files_is_no_circle(tmp_path):
    (tmp_path / "root.yaml").write_text("seed: 1\n")
    (tmp_path / "mid.yaml").write_text("_base_: root.yaml\nnum_workers: 0\n")
    (tmp_path / "top.yaml").write_text("_base_: mid.yaml\n")
    assert load_yaml(tmp_path / "top.yaml") == {"seed": 1, "num_workers": 0}


# ----------------------------------------------------------------------------------- 14. the launcher section

def test_launcher_text_numbers_zero_memory_and_null(tmp_path):
    message = load_error(tmp_path, "launcher: {time_min: '60'}\n")
    assert message.startswith("launcher.time_min: expected an integer, got '60' (a number written as text: write it "
                              "without quotes, 60)") and "exponent" not in message
    assert load_error(tmp_path, "launcher: {mem_gb: 0}\n").startswith("launcher.mem_gb: must be >= 1, got 0")
    assert load_bench_preset(str(write_preset(tmp_path, "launcher: null\n"))).launcher == LauncherSettings()
    assert load_error(tmp_path, "launcher: 3\n").startswith(
        "launcher: expected a mapping of settings (partition, account, qos, time_min,")


def test_launcher_flags_and_preset_keys_share_one_definition_of_their_bounds(tmp_path):
    """Each ``compare`` launcher flag refuses exactly what its preset key refuses, in the same words."""
    import argparse

    from aselect_bench.commands.compare import LAUNCHER_FLAGS, launcher_value

    bounds = {key: check for key, check, _ in bounded_fields(LauncherSettings, "launcher.")}
    assert {"launcher.time_min", "launcher.mem_gb", "launcher.retries", "launcher.gpus_per_job"} <= set(bounds)
    for flag, key in LAUNCHER_FLAGS.items():
        check = bounds.get(f"launcher.{key}")
        if check is None:
            continue
        bad = outside(check)
        with pytest.raises(argparse.ArgumentTypeError) as info:
            launcher_value(key)(str(bad))
        assert str(info.value) == f"{bad} {check.problem(bad)}", flag
        assert load_error(tmp_path, f"launcher: {{{key}: {bad}}}\n").startswith(f"launcher.{key}: {check.problem(bad)}")
        assert launcher_value(key)(str(bad + 1)) == bad + 1 == setting_argtype(LauncherSettings, key)(str(bad + 1))
    with pytest.raises(argparse.ArgumentTypeError, match="'sixty' is not an integer"):
        launcher_value("time_min")("sixty")


# --------------------------------------------------------------------- 9. a bad value in a fit --config file

def fit_config(tmp_path, **model_args):
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"class_path": "aselect_bench.tasks.classification.ClassificationTask",
                  "init_args": {"backbone": "tiny-dit", "num_classes": 3, **model_args}},
        "data": {"class_path": "aselect_bench.data.fgvc_datamodule.FGVCDataModule",
                 "init_args": {"dataset": "cub", "data_root": str(tmp_path / "data")}},
        "trainer": {"max_epochs": 1, "logger": False, "default_root_dir": str(tmp_path / "runs")}}))
    return path


@pytest.mark.parametrize("key, value, line", [
    ("head", "lineer", "model.init_args.head: unknown head 'lineer'; use one of linear, attentive"),
    ("linear_norm", "bogus", "model.init_args.linear_norm: unknown linear-probe norm 'bogus'; use one of batchnorm, "
                             "layernorm"),
    ("tap", "blocks.99.mlp", "model.init_args.tap: tap 'blocks.99.mlp' is outside the model: block 99 does not exist, "
                             "this model has 4 blocks (0..3)"),
    ("backbone", "nosuchmodel", "model.init_args.backbone: unknown backbone 'nosuchmodel': use a registered model ("),
    ("timestep", 5000, "model.init_args.timestep: timestep 5000 is outside the schedule: allowed are integers in "
                       "[0, 1000)"),
    ("head_width", "wide", "model.init_args.head_width: expected an integer, got 'wide' (see 'aselect-bench fit "
                           "--help')"),
    ("lr", -1, "model.init_args.lr: lr must be > 0, got -1"),
    ("warmup_fraction", 2, "model.init_args.warmup_fraction: warmup_fraction must be >= 0 and <= 1, got 2"),
    ("num_classes", 0, "model.init_args.num_classes: Expected argument `num_classes` to be an integer larger than 1, "
                       "but got 0"),  # a library's ValueError while the class is built
])
def test_a_bad_value_in_a_fit_config_is_one_line_naming_its_key(tmp_path, key, value, line):
    """Exit status 2, one error line naming the key, the value and the fix; jsonargparse's Union dump and the chained
    tracebacks are gone, and nothing was written."""
    from tests.test_cli import assert_one_line_error, cli

    result = cli("fit", "--config", fit_config(tmp_path, **{key: value}), cwd=tmp_path)
    assert_one_line_error(result, line)
    assert f"aselect-bench: error: {line}" in result.stderr  # the line starts with the key
    assert "Subtypes" not in result.stderr and "Given value" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_a_bad_datamodule_value_in_a_fit_config_is_one_line_naming_its_key(tmp_path):
    """A batch size of 0 is refused when the datamodule is built, not at the first training step."""
    from tests.test_cli import assert_one_line_error, cli

    path = fit_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["data"]["init_args"]["batch_size"] = 0
    path.write_text(yaml.safe_dump(config))
    result = cli("fit", "--config", path, cwd=tmp_path)
    assert_one_line_error(result, "data.init_args.batch_size: batch_size must be >= 1, got 0")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_a_bad_fit_config_value_prints_no_traceback_from_a_process(tmp_path):
    """The one process-level check: what a user's terminal shows (no chained tracebacks)."""
    import subprocess
    import sys

    from tests.test_cli import assert_one_line_error

    result = subprocess.run([sys.executable, "-m", "aselect_bench.cli", "fit", "--config",
                             str(fit_config(tmp_path, head="lineer"))], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert_one_line_error(result, "model.init_args.head: unknown head 'lineer'; use one of linear, attentive")
    assert "direct cause" not in result.stderr


def test_the_config_key_is_the_one_the_message_names():
    from jsonargparse import Namespace

    from aselect_bench.lightning_cli import config_key

    config = Namespace(seed_everything=0, model=Namespace(class_path="X", init_args=Namespace(
        timestep=500, seed=0, num_workers=0, tap="blocks.1.out", head="linear")))
    assert config_key(config, "timestep 500 is outside [0, 100)") == "model.init_args.timestep"
    assert config_key(config, "tap 'blocks.1.out' is outside the model (0..0)") == "model.init_args.tap"
    assert config_key(config, "something else went wrong") == "the config"
    assert config_key(config, "0 or 0") == "the config"  # two keys hold 0: no guess


# ------------------------------------------------------------------ 16. Lightning's LeafSpec deprecation warning

def test_lightnings_leafspec_warning_is_silenced_at_its_source_only():
    """Lightning's data loaders build a ``LeafSpec`` at every training (a torch FutureWarning on each); the suite's
    filter matches Lightning's module, so a user's own use of it still warns."""
    from lightning.pytorch.utilities._pytree import _tree_flatten
    from torch.utils._pytree import LeafSpec

    from aselect_bench.progress import quiet_lightning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _tree_flatten(1)
        assert any("LeafSpec" in str(w.message) for w in seen)  # the warning is real (else this test proves nothing)
        seen.clear()
        quiet_lightning()
        _tree_flatten(1)
        assert not [w for w in seen if "LeafSpec" in str(w.message)]
        LeafSpec()
        assert [w for w in seen if "LeafSpec" in str(w.message)]
