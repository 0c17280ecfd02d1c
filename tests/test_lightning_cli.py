"""``aselect-bench fit --preset``: the benchmark's experiment through LightningCLI, built from the preset (no second
source that could drift); and what every training prints: progress lines in a log file, no Lightning tips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from aselect_bench import load_backbone
from aselect_bench.config import CONFIG_DIR

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SMALL = {"num_workers": 0, "fgvc.max_epochs": 1, "hfr.num_images": 6, "hfr.candidates": [0, 500],
         "synth.fgvc": {"num_classes": 4, "train_per_class": 6, "test_per_class": 2, "image_size": 32}}


def small_demo(tmp_path):
    from aselect_bench.settings import load_bench_preset

    return load_bench_preset("demo").override(data_root=str(tmp_path / "data"), **SMALL)


def test_fit_preset_builds_what_bench_fgvc_builds(tmp_path):
    """The LightningCLI experiment and the benchmark's, built from one preset, are the same: task, data, Trainer,
    checkpointing, HFR scan and backbone precision. Fails on any drift between the two paths."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from aselect_bench.callbacks import HFRTimestepSelector
    from aselect_bench.experiments import build_experiment, hfr_selector, preset_backbone
    from aselect_bench.lightning_cli import AselectCLI, preset_config
    from aselect_bench.tasks.fit import make_trainer

    preset = small_demo(tmp_path)
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(preset_config(preset, "cub", log_dir=str(tmp_path / "runs"))))
    torch.use_deterministic_algorithms(False)
    cli = AselectCLI(subclass_mode_model=True, subclass_mode_data=True, args=["--config", str(config)], run=False)
    determinism = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    exp = build_experiment("fgvc", "cub", preset, preset_backbone(preset, "fgvc"))
    bench_task = exp.make_task(None)
    instantiation = {"_class_path", "_instantiator"}  # LightningCLI's own record of how it built the model
    assert {k: v for k, v in cli.model.hparams.items() if k not in instantiation} == dict(bench_task.hparams)
    assert cli.model.backbone.weights_id == exp.backbone.weights_id
    assert cli.model.backbone.autocast_dtype == exp.backbone.autocast_dtype  # the preset's precision, resolved
    cli.trainer.strategy.connect(cli.model)  # as Trainer.fit attaches them: the data reads the model's image size
    cli.datamodule.trainer = cli.trainer
    cli.datamodule.setup("fit")
    for name in ("image_size", "dataset", "batch_size", "num_workers", "seed", "train_augment", "strict", "resize_ratio", "limit",
                 "num_classes"):
        assert getattr(cli.datamodule, name) == getattr(exp.datamodule, name), name
    assert cli.datamodule.view_fingerprint("val") == exp.datamodule.view_fingerprint("val")

    bench_trainer, bench_saver = make_trainer(tmp_path / "runs", "bench", exp.max_epochs, progress=False,
                                              monitor="val/top1")
    for name in ("max_epochs", "num_sanity_val_steps", "log_every_n_steps"):
        assert getattr(cli.trainer, name) == getattr(bench_trainer, name), name
    assert cli.trainer.fit_loop.max_epochs == preset.fgvc.max_epochs
    assert type(cli.trainer.accelerator) is type(bench_trainer.accelerator)
    assert determinism == (torch.are_deterministic_algorithms_enabled(),
                           torch.is_deterministic_algorithms_warn_only_enabled()) == (True, True)
    torch.use_deterministic_algorithms(False)
    saver = next(c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint))
    for name in ("monitor", "mode", "save_last", "filename"):
        assert getattr(saver, name) == getattr(bench_saver, name), name
    selector = next(c for c in cli.trainer.callbacks if isinstance(c, HFRTimestepSelector))
    assert vars(selector) == vars(hfr_selector(preset))


def test_fit_preset_trains_and_tests_like_the_benchmark(tmp_path):
    """End to end in a subprocess (its output is a pipe, as a log file): trains, tests at the best epoch, prints
    both; progress comes as full lines, and Lightning's tips are gone."""
    preset = tmp_path / "small.yaml"
    preset.write_text(yaml.safe_dump({"_base_": str(CONFIG_DIR / "presets" / "demo.yaml"), "num_workers": 0,
                                      "hfr": {"num_images": 6, "candidates": [0, 500]},
                                      "synth": {"fgvc": SMALL["synth.fgvc"]}}))
    result = subprocess.run([sys.executable, "-m", "aselect_bench.cli", "fit", "--preset", str(preset), "--dataset",
                             "cub", "--data-root", str(tmp_path / "data"), "--max-epochs", "2",
                             "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("timestep ")]
    assert len(lines) == 1 and "best val top1" in lines[0] and "test top1" in lines[0], result.stdout[-2000:]
    assert "fit: step 2/2 (100%)" in result.stdout  # the last training step's line
    assert "selector scan: 2/2 (100%)" in result.stderr  # the timestep scan of the HFR callback
    assert "\r" not in result.stdout + result.stderr and "litlogger" not in result.stdout + result.stderr
    assert "args parameter" not in result.stderr  # Lightning's warning when args and sys.argv both hold arguments
    assert list((tmp_path / "runs" / "small-cub").glob("version_0/checkpoints/best-epoch=*.ckpt"))


def test_fit_preset_refuses_what_it_cannot_run(tmp_path):
    from tests.test_cli import assert_one_line_error, cli

    result = cli("fit", "--preset", "demo", "--dataset", "ade20k", "--data-root", tmp_path)
    assert_one_line_error(result, "preset 'demo' has no FGVC dataset 'ade20k'")


def test_a_training_in_a_log_file_prints_lines_not_bars_and_no_tips(tmp_path, blobs, capfd, caplog):
    from aselect_bench.tasks.classification import ClassificationTask
    from aselect_bench.tasks.fit import make_trainer

    caplog.set_level("INFO")
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.1.out", timestep=10)
    trainer, _ = make_trainer(tmp_path, "blobs-t10", 2, progress=True, accelerator="cpu")
    trainer.fit(task, datamodule=blobs)
    out, err = capfd.readouterr()
    assert "blobs-t10: step 6/6 (100%)" in out  # 3 steps an epoch, 2 epochs: the last step always prints
    assert "\r" not in out + err
    assert "litlogger" not in out + err + caplog.text and "litmodels" not in out + err + caplog.text


def test_the_hfr_scan_prints_lines_in_a_log_file(capsys):
    from aselect_bench.selectors import select_timestep

    backbone = load_backbone("tiny-dit", pretrained=False)
    select_timestep(backbone, torch.zeros(4, 3, 16, 16), [0, 500, 999], "blocks.0.out", batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "HFR scan: 6/6 (100%)" in err and "\r" not in err


def test_the_configs_folder_holds_no_second_copy_of_an_experiment():
    """The FGVC configs used to repeat (and contradict) the presets: lr 2e-3 and 12 epochs vs 3e-2 and 40."""
    assert not (CONFIG_DIR / "fgvc").exists()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "aselect-bench fit --preset demo --dataset cub" in readme and "configs/fgvc" not in readme
