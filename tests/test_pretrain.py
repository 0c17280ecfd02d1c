"""The demo DiT: a real DDPM objective, shipped weights that match the code's recipe, a diffusers-layout cache
(reused, rebuilt when broken), progress and a measured duration estimate."""

from __future__ import annotations

import argparse
import io
import json
import math
from dataclasses import asdict, replace
from types import SimpleNamespace

import pytest
import torch

from aselect_bench.backbones import load_backbone
from aselect_bench.backbones.registry import DEMO_FOLDER, dit_config
from aselect_bench.errors import UserError
from aselect_bench.pretrain import DiffusionPretrainer, Recipe, demo, pretrain_demo, training
from aselect_bench.pretrain.demo import add_pretrain_arguments, load_demo_backbone, run_pretrain
from aselect_bench.progress import StepProgress

TINY = tuple(sorted(dit_config(depth=2, heads=2, head_dim=16, sample_size=16, patch_size=2, in_channels=3,
                               out_channels=3, num_classes=1).items()))


def tiny_recipe(**kw) -> Recipe:
    return Recipe(**{**dict(steps=3, batch_size=8, warmup=1, fgvc_images=24, scene_images=8, image_size=16,
                            precision="32", transformer=TINY), **kw})


@pytest.fixture
def trainings(tmp_path, monkeypatch) -> list:
    """An empty cache in ``tmp_path`` (TensorBoard logs in ``tmp_path/runs``); the list grows per training."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    calls = []
    real_train = demo.train
    monkeypatch.setattr(demo, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    return calls


def test_ddpm_objective_learns_on_a_fixed_batch():
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    module = DiffusionPretrainer(DiTTransformer2DModel(**dict(TINY)), tiny_recipe())
    module.log = lambda *a, **k: None
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    x0 = torch.rand(8, 3, 18, 18) * 2 - 1  # random crops of 16 px
    for step in range(30):
        loss = module.training_step((x0,), step)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    first, last = sum(module.losses[:5]) / 5, sum(module.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_saves_a_loadable_diffusers_folder_with_a_card(trainings):
    recipe = tiny_recipe()
    folder = pretrain_demo(recipe=recipe, progress=False)
    assert folder == demo.demo_folder(recipe) and folder.parent.name == "demo-dit"
    card = json.loads((folder / "card.json").read_text())
    assert card["steps"] == 3 and card["batch_size"] == 8 and card["recipe_fingerprint"] == recipe.fingerprint()
    assert math.isfinite(card["initial_loss"]) and math.isfinite(card["final_loss"]) and card["seconds"] > 0
    assert {"data", "torch", "weights_sha256"} <= card.keys()
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["beta_end"] == 0.02
    backbone = load_backbone(str(folder))
    assert backbone.vae is None and backbone.image_size == 16 and backbone.num_blocks == 2
    assert backbone.transformer.dtype == torch.float32
    assert not list(folder.parent.glob(".*.tmp-*"))  # the temporary folder is gone


def test_cache_is_reused_and_rebuilt_when_partial_or_corrupt(trainings):
    recipe = tiny_recipe()
    folder = pretrain_demo(recipe=recipe, progress=False)
    assert trainings == [1]
    assert pretrain_demo(recipe=recipe, progress=False) == folder and trainings == [1]  # reused
    (folder / "card.json").unlink()  # partial
    with pytest.warns(UserWarning, match="no readable card.json"):
        pretrain_demo(recipe=recipe, progress=False)
    assert trainings == [1, 1] and (folder / "card.json").exists()
    weights = next((folder / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match="do not match"):
        pretrain_demo(recipe=recipe, progress=False)
    assert trainings == [1, 1, 1] and demo.check_folder(folder, recipe) is None


def test_recipes_get_their_own_folders(trainings):
    recipe = tiny_recipe()
    assert pretrain_demo(recipe=recipe, progress=False) != pretrain_demo(recipe=tiny_recipe(steps=4), progress=False)
    assert tiny_recipe(seed=1).fingerprint() != recipe.fingerprint()
    assert trainings == [1, 1]


def test_the_demo_preset_loads_the_shipped_weights_without_training(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("the demo preset must not pretrain")

    monkeypatch.setattr(demo, "train", no_training)
    monkeypatch.setattr(training, "train", no_training)
    backbone = load_backbone("demo")
    sha = json.loads((DEMO_FOLDER / "card.json").read_text())["weights_sha256"]
    assert backbone.name == "demo" and backbone.weights_id == f"demo@sha256:{sha[:12]}"  # the same on every machine
    assert backbone.transformer.dtype == torch.float32 and backbone.num_blocks == 6
    reference = load_backbone(str(DEMO_FOLDER))
    assert torch.equal(backbone.transformer.pos_embed.proj.weight, reference.transformer.pos_embed.proj.weight)
    assert torch.equal(load_demo_backbone().transformer.pos_embed.proj.weight, reference.transformer.pos_embed.proj.weight)
    random = load_demo_backbone(pretrained=False, seed=3)
    assert random.num_blocks == 6 and random.weights_id == "random-init-seed3"


def shipped_card() -> dict:
    return json.loads((DEMO_FOLDER / "card.json").read_text())


def test_the_shipped_card_is_for_the_current_recipe():
    """A changed recipe fails here until the weights are rebuilt: ``aselect-bench pretrain --ship``."""
    card = shipped_card()
    assert card["recipe_fingerprint"] == Recipe().fingerprint(), "rebuild: aselect-bench pretrain --ship"
    assert card["recipe"] == json.loads(json.dumps(asdict(Recipe()))), "rebuild: aselect-bench pretrain --ship"
    assert card["precision_requested"] == "auto" and card["precision"] in ("32", "bf16", "16")
    assert {"data_seeds", "losses", "torch", "hardware"} <= card.keys() and len(card["losses"]) == card["steps"]
    assert card["fixed_draw_loss"]["after"] < card["fixed_draw_loss"]["before"]


def test_the_shipped_weights_match_their_card_and_are_small():
    weights = DEMO_FOLDER / "transformer" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 8 * 2**20
    assert training.weights_digest(DEMO_FOLDER) == shipped_card()["weights_sha256"]
    assert demo.check_folder(DEMO_FOLDER, Recipe()) is None


def test_a_short_run_of_the_demo_recipe_decreases_the_loss(tmp_path, monkeypatch):
    """The shipped recipe (architecture, lr, precision, image size) on fewer images, steps and a tiny batch."""
    monkeypatch.chdir(tmp_path)
    recipe = replace(Recipe(), steps=30, batch_size=8, warmup=3, fgvc_images=96, scene_images=32)
    card = training.train(recipe, tmp_path / "short", progress=False)
    assert card["fixed_draw_loss"]["after"] < 0.9 * card["fixed_draw_loss"]["before"], card["fixed_draw_loss"]


def test_ship_refuses_a_changed_recipe(tmp_path):
    with pytest.raises(UserError, match="unchanged demo recipe"):
        pretrain_demo(steps=5, ship=True)
    with pytest.raises(UserError, match="unchanged demo recipe"):
        pretrain_demo(tmp_path / "x", ship=True)


def test_the_duration_notice_comes_from_a_measured_step(trainings, monkeypatch, capsys):
    monkeypatch.setattr(training, "measure_step_seconds", lambda *a, **k: 20.0)
    pretrain_demo(recipe=tiny_recipe(), progress=False)
    assert "~1m00s here (one step measured: 20.00 s)" in capsys.readouterr().out


def fake_trainer(step, total=400):
    return SimpleNamespace(global_step=step, max_steps=total, is_global_zero=True)


def test_progress_prints_a_line_every_interval_in_a_log_file():
    now = [0.0]
    stream = io.StringIO()
    progress = StepProgress(interval=30, stream=stream, clock=lambda: now[0])
    progress.on_train_start(None, None)
    for step in range(1, 11):
        now[0] = 10.0 * step
        progress.on_train_batch_end(fake_trainer(step, 10), None, {"loss": torch.tensor(0.5)}, None, step)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()  # at 30, 60, 90 s and the last step
    assert lines[0] == "pretraining: step 3/10 (30%), 0m30s elapsed, ETA 1m10s, loss 0.5000"
    assert lines[-1].startswith("pretraining: step 10/10 (100%), 1m40s elapsed, ETA 0m00s")


def test_progress_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    now, stream = [0.0], Terminal()
    progress = StepProgress(stream=stream, clock=lambda: now[0])
    progress.on_train_start(None, None)
    for step in (1, 2):
        now[0] = float(step)
        progress.on_train_batch_end(fake_trainer(step, 2), None, torch.tensor(1.0), None, step)
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("loss 1.0000\n")


def test_command_writes_to_out_and_refuses_foreign_folders(trainings, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "Recipe", lambda: tiny_recipe())
    monkeypatch.setattr(demo, "DEMO_FOLDER", tmp_path / "shipped")
    parser = add_pretrain_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "mine")])
    folder = run_pretrain(args)
    assert folder == tmp_path / "mine" and json.loads((folder / "card.json").read_text())["steps"] == 2
    assert "loss" in capsys.readouterr().out
    run_pretrain(parser.parse_args(["--steps", "2", "--batch-size", "4", "--out", str(folder), "--force"]))
    assert trainings == [1, 1]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="other files"):
        run_pretrain(parser.parse_args(["--steps", "2", "--out", str(tmp_path / "other")]))
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    assert run_pretrain(parser.parse_args(["--ship"])) == tmp_path / "shipped" and trainings == [1, 1, 1]
    assert json.loads((tmp_path / "shipped" / "card.json").read_text())["recipe_fingerprint"] == tiny_recipe().fingerprint()


def test_checkpoints_are_kept_at_the_recipes_fractions_and_load(trainings):
    recipe = tiny_recipe(steps=8, checkpoints=(0.125, 0.25, 0.5))
    assert recipe.checkpoint_steps() == [1, 2, 4]
    folder = pretrain_demo(recipe=recipe, progress=False)
    kept = demo.checkpoint_folder(recipe.fingerprint())
    assert sorted(p.name for p in kept.iterdir()) == ["step-00001", "step-00002", "step-00004"]
    card = json.loads((kept / "step-00004" / "card.json").read_text())
    assert card["step"] == 4 and card["fraction"] == 0.5 and card["checkpoint_of"] == recipe.fingerprint()
    assert card["weights_sha256"] == training.weights_digest(kept / "step-00004")
    early, final = load_backbone(str(kept / "step-00001")), load_backbone(str(folder))
    assert early.num_blocks == final.num_blocks == 2
    assert not torch.equal(early.transformer.pos_embed.proj.weight, final.transformer.pos_embed.proj.weight)
    assert json.loads((folder / "card.json").read_text())["checkpoints"] == {"step-00001": 1, "step-00002": 2,
                                                                             "step-00004": 4}
