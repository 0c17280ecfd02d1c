"""Reliability: NaN features, mismatched checkpoints, repeatable runs, resuming a LightningCLI fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.tasks.classification import ClassificationTask
from tests.conftest import quiet_trainer


def test_nan_features_stop_the_run(tmp_path, blobs):
    backbone = load_backbone("tiny-dit", pretrained=False)
    with torch.no_grad():
        backbone.transformer.transformer_blocks[0].ff.net[2].weight.fill_(float("nan"))
    task = ClassificationTask(backbone, tap="blocks.1.out", timestep=10)
    with pytest.raises(UserError, match="NaN/Inf features at blocks.1.out"):
        quiet_trainer(tmp_path, max_epochs=1, logger=False).fit(task, datamodule=blobs)


def test_checkpoint_whose_shapes_do_not_match_its_config(tmp_path):
    backbone = load_backbone("tiny-dit", pretrained=False)
    backbone.transformer.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["attention_head_dim"] = 24  # the weights were saved with 16
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"does not match its DiTTransformer2DModel config: \d+ wrongly shaped tensors"):
        load_backbone(str(tmp_path / "model"))


def test_same_seed_same_metrics_on_the_demo_architecture(tmp_path):
    from aselect_bench.experiments import build_experiment, hfr_selector
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset("demo").override(**{
        "data_root": str(tmp_path / "data"), "num_workers": 0, "fgvc.max_epochs": 2, "fgvc.batch_size": 16,
        "synth.fgvc": dict(num_classes=10, train_per_class=6, test_per_class=2, image_size=32),
        "hfr.num_images": 8, "hfr.candidates": [0, 100, 500]})
    backbone = load_backbone("demo", pretrained=False)  # the demo architecture; weights do not matter here
    runs = []
    for i in range(2):
        exp = build_experiment("fgvc", "cub", preset, backbone)
        runs.append(exp.fit(None, tmp_path / "runs", f"run{i}", progress=False, selector=hfr_selector(preset)))
    assert (runs[0].timestep, runs[0].val, runs[0].test, runs[0].hfr) == \
        (runs[1].timestep, runs[1].val, runs[1].test, runs[1].hfr)


def test_lightning_cli_fit_resumes_from_last_checkpoint(tmp_path):
    from aselect_bench.data.synth_fgvc import write_layout

    write_layout("flowers", tmp_path / "flowers", num_classes=10, train_per_class=4, test_per_class=1, image_size=32)
    args = ["fit", "--model", "aselect_bench.tasks.classification.ClassificationTask",
            "--model.backbone", "tiny-dit", "--model.tap", "blocks.1.out", "--model.timestep", "50",
            "--data", "aselect_bench.data.fgvc_datamodule.FGVCDataModule", "--data.dataset", "flowers",
            "--data.data_root", str(tmp_path / "flowers"), "--data.image_size", "16", "--data.num_workers", "0",
            "--data.batch_size", "8", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.dirpath", str(tmp_path / "ckpt"),
            "--trainer.callbacks.save_last", "true"]

    def fit(*extra):
        result = subprocess.run([sys.executable, "-m", "aselect_bench.cli", *args, *extra], capture_output=True,
                                text=True, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)

    first = fit("--trainer.max_epochs", "1")
    assert first["epoch"] == 0 and first["global_step"] > 0
    resumed = fit("--trainer.max_epochs", "2", "--resume")  # continues: epoch 1 only, steps add up
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * first["global_step"]


def test_trainers_are_deterministic_yet_do_not_stop_at_cuda_ops_without_deterministic_kernels(tmp_path):
    """Pixel-wise cross-entropy, interpolate's and adaptive pooling's backward have no deterministic CUDA kernel:
    with ``deterministic=True`` every segmentation fit on a GPU would raise; warn-only keeps the rest deterministic."""
    from aselect_bench.tasks.fit import make_trainer

    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        make_trainer(tmp_path, "determinism", 1, progress=False, accelerator="cpu")
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
