"""ClassificationTask + HFRTimestepSelector on a tiny backbone and learnable in-memory data."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from aselect_bench import UserError, load_backbone
from aselect_bench.callbacks import HFRTimestepSelector
from aselect_bench.heads.probes import AttentiveHead, LinearHead
from aselect_bench.tasks.classification import ClassificationTask
from tests.conftest import quiet_trainer


def test_heads_shapes():
    feats = torch.randn(2, 32, 4, 4)
    assert LinearHead(32, 5)(feats).shape == (2, 5)
    assert AttentiveHead(32, 5, width=16, depth=1, heads=2)(feats).shape == (2, 5)


def test_linear_head_norms():
    """batchnorm standardises each pooled feature over the batch (running statistics at eval, and for a
    training batch of one); layernorm normalises each image; an unknown norm is a clear error."""
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(64, 8, 2, 2, generator=generator) * torch.linspace(0.1, 10, 8)[:, None, None] + 3
    pooled = feats.mean((2, 3))
    head = LinearHead(8, 3)
    standardized = head.norm(pooled)
    # float32 sums over 64 rows differ from BatchNorm's by ~1e-5 on unit-scale outputs (a draw-dependent flake at
    # torch's default 1e-5); 1e-4 still tells the biased variance from the unbiased one (0.8% apart)
    torch.testing.assert_close(standardized, (pooled - pooled.mean(0)) / pooled.var(0, unbiased=False).add(1e-5).sqrt(),
                               rtol=1e-4, atol=1e-4)
    assert head(feats[:1]).shape == (1, 3)  # one image in training mode: running statistics, no error
    head.eval()
    torch.testing.assert_close(head.norm(pooled), (pooled - head.norm.running_mean) / head.norm.running_var.add(1e-5).sqrt())
    per_image = LinearHead(8, 3, norm="layernorm").norm(pooled)
    torch.testing.assert_close(per_image.mean(1), torch.zeros(64), atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="unknown linear-probe norm 'rms'"):
        LinearHead(8, 3, norm="rms")


def test_callback_selects_logs_and_the_probe_learns(tmp_path, blobs):
    backbone = load_backbone("tiny-dit", pretrained=False)
    task = ClassificationTask(backbone, tap="blocks.1.out", lr=5e-2, warmup_fraction=0.0)
    selector = HFRTimestepSelector(num_images=8, candidates=[0, 20, 40], progress=False)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = quiet_trainer(tmp_path, max_epochs=15, callbacks=[selector], logger=logger)
    trainer.fit(task, datamodule=blobs)
    assert task.timestep == selector.choice.timestep
    assert set(selector.result.choices["hfr"].scores) == {0, 20, 40}
    saved = json.loads((tmp_path / "run" / "version_0" / "hfr_selection.json").read_text())
    assert saved["timestep"] == task.timestep and set(saved["hfr"]) == {"0", "20", "40"}
    assert list((tmp_path / "run" / "version_0").glob("events.out.tfevents*"))
    # the backbone never trains and never enters the optimizer
    assert not task.backbone.training
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in task.backbone.parameters()}
    val = trainer.validate(task, datamodule=blobs, verbose=False)[0]
    assert val["val/top1"] > 100 / 3 + 20  # far above chance (33%)


def test_fixed_timestep_skips_the_scan(tmp_path, blobs):
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.0.out", timestep=123)
    selector = HFRTimestepSelector(num_images=4, candidates=[0, 999], progress=False)
    quiet_trainer(tmp_path, max_epochs=1, callbacks=[selector], logger=False).fit(task, datamodule=blobs)
    assert selector.result is None and task.timestep == 123


def test_checkpoint_has_no_backbone_weights_and_reloads(tmp_path, blobs):
    backbone = load_backbone("tiny-dit", pretrained=False)
    task = ClassificationTask(backbone, tap="blocks.0.out", timestep=50)
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=False)
    trainer.fit(task, datamodule=blobs)
    path = tmp_path / "probe.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert not any(k.startswith("backbone.") for k in ckpt["state_dict"])
    again = ClassificationTask(backbone, tap="blocks.0.out", num_classes=3)
    again.on_load_checkpoint(ckpt)
    again.load_state_dict(ckpt["state_dict"])
    assert again.timestep == 50
    other = ClassificationTask(load_backbone("tiny-dit", pretrained=False, seed=1), tap="blocks.0.out",
                               num_classes=3)
    ckpt = torch.load(path, weights_only=False)
    with pytest.raises(UserError, match="another backbone"):
        other.on_load_checkpoint(ckpt)


def test_missing_timestep_is_a_clear_error(tmp_path, blobs):
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.0.out")
    with pytest.raises(UserError, match="no timestep set"):
        quiet_trainer(tmp_path, max_epochs=1, logger=False).fit(task, datamodule=blobs)


def test_feature_cache_runs_the_backbone_once_per_image(tmp_path, blobs, monkeypatch):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    backbone = load_backbone("tiny-dit", pretrained=False)
    n_train, n_val = len(blobs.sets["train"]), len(blobs.sets["val"])

    def run(cache):
        torch.manual_seed(0)
        task = ClassificationTask(backbone, tap="blocks.1.out", timestep=30, lr=5e-2, cache_features=cache)
        before = backbone.forwards
        trainer = quiet_trainer(tmp_path, max_epochs=3, logger=False, enable_checkpointing=False)
        trainer.fit(task, datamodule=blobs)
        return backbone.forwards - before, trainer.callback_metrics["val/top1"].item()

    cached_forwards, cached_acc = run(True)
    assert cached_forwards == n_train + n_val  # epochs 2 and 3 read the cache
    again_forwards, again_acc = run(True)
    assert again_forwards == 0 and again_acc == cached_acc  # a later run reuses the files on disk
    plain_forwards, _ = run(False)
    assert plain_forwards == 3 * (n_train + n_val)


class _RecordingTask(ClassificationTask):
    """Records, per stage, the number of image values in each batch (0 for labels-only batches)."""

    def _step(self, batch, batch_idx, stage):
        self.seen.setdefault(stage, []).append((self.current_epoch, batch[0].numel()))
        return super()._step(batch, batch_idx, stage)


def test_cached_epochs_load_labels_only_and_match_full_loads(tmp_path, monkeypatch):
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule
    from aselect_bench.data.synth_fgvc import write_layout

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    write_layout("flowers", tmp_path / "data", num_classes=10, train_per_class=4, test_per_class=2, image_size=32)
    backbone = load_backbone("tiny-dit", pretrained=False)

    def run(labels_only: bool, name: str):
        torch.manual_seed(0)
        dm = FGVCDataModule("flowers", tmp_path / "data", batch_size=8, num_workers=2, train_augment=False)
        if not labels_only:
            dm.set_labels_only = lambda stage, value: None
        task = _RecordingTask(backbone, tap="blocks.1.out", timestep=30, lr=5e-2, cache_features=True)
        task.seen = {}
        trainer = quiet_trainer(tmp_path / name, max_epochs=3, logger=False, enable_checkpointing=False)
        trainer.fit(task, datamodule=dm)
        val = trainer.callback_metrics["val/top1"].item()
        tests = [trainer.test(task, datamodule=dm, verbose=False)[0]["test/top1"] for _ in range(2)]
        assert tests[0] == tests[1]
        return task.seen, val, tests[0]

    seen, val, test = run(True, "a")
    for stage in ("train", "val"):  # epoch 0 fills the cache from images; later epochs read labels only
        assert {n > 0 for epoch, n in seen[stage] if epoch == 0} == {True}
        assert {n for epoch, n in seen[stage] if epoch > 0} == {0}
    first_test = [n for _, n in seen["test"]][:len(seen["test"]) // 2]
    assert 0 not in first_test and {n for _, n in seen["test"]} == {0, *first_test}  # 2nd test: labels only
    again_seen, again_val, again_test = run(False, "b")  # same caches, images always loaded
    assert {n for _, n in again_seen["train"]} != {0}
    assert (again_val, again_test) == (val, test)  # labels-only batches carry the same labels


def test_a_splits_digest_is_computed_once_per_datamodule_not_per_step(tmp_path, monkeypatch):
    """The view fingerprint digests every file of a split: once per stage and datamodule (it was once per step, which
    tripled a cached probe's training time)."""
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule
    from aselect_bench.data.synth_fgvc import write_layout

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    write_layout("flowers", tmp_path / "data", num_classes=10, train_per_class=4, test_per_class=2, image_size=32)
    dm = FGVCDataModule("flowers", tmp_path / "data", batch_size=8, num_workers=0, train_augment=False)
    calls = []
    digest = dm.view_fingerprint
    dm.view_fingerprint = lambda stage: calls.append(stage) or digest(stage)
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.1.out", timestep=30,
                              lr=5e-2, cache_features=True)
    trainer = quiet_trainer(tmp_path, max_epochs=3, logger=False, enable_checkpointing=False)
    trainer.fit(task, datamodule=dm)
    trainer.test(task, datamodule=dm, verbose=False)
    assert sorted(calls) == ["test", "train", "val"]
