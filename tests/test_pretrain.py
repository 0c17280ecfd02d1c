"""The demo DiT's pretraining: a real DDPM objective, a diffusers-layout cache, reused, rebuilt when broken."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from aselect_bench.backbones import load_backbone
from aselect_bench.backbones.registry import dit_config
from aselect_bench.errors import UserError
from aselect_bench.pretrain import DiffusionPretrainer, Recipe, demo, pretrain_demo
from aselect_bench.pretrain.demo import add_pretrain_arguments, load_demo_backbone, run_pretrain

TINY = tuple(sorted(dit_config(depth=2, heads=2, head_dim=16, sample_size=16, patch_size=2, in_channels=3,
                               out_channels=3, num_classes=1).items()))


def tiny_recipe(**kw) -> Recipe:
    return Recipe(**{**dict(steps=3, batch_size=8, warmup=1, fgvc_images=24, scene_images=8, image_size=16,
                            precision="32-true", transformer=TINY), **kw})


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


def test_recipes_get_their_own_folders_and_the_demo_preset_loads_the_cache(trainings, monkeypatch):
    recipe = tiny_recipe()
    assert pretrain_demo(recipe=recipe, progress=False) != pretrain_demo(recipe=tiny_recipe(steps=4), progress=False)
    assert tiny_recipe(seed=1).fingerprint() != recipe.fingerprint()
    monkeypatch.setattr(demo, "Recipe", lambda: recipe)  # the preset's default recipe, made tiny
    backbone = load_backbone("demo")
    assert backbone.name == "demo" and trainings == [1, 1]  # no third training
    reference = load_backbone(str(demo.demo_folder(recipe)))
    assert torch.equal(backbone.transformer.pos_embed.proj.weight, reference.transformer.pos_embed.proj.weight)
    random = load_demo_backbone(pretrained=False, seed=3)
    assert random.num_blocks == 6 and random.weights_id == "random-init-seed3" and trainings == [1, 1]


def test_command_writes_to_out_and_refuses_foreign_folders(trainings, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "Recipe", lambda: tiny_recipe())
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
