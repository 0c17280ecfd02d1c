"""The demo DiT's pretraining: a real DDPM objective, a diffusers-layout cache, rebuilt when broken."""

from __future__ import annotations

import json

import pytest
import torch

from aselect_bench import pretrain
from aselect_bench.backbones import load_backbone
from aselect_bench.backbones.presets import dit_config
from aselect_bench.pretrain import DiffusionPretrainer, Recipe, ensure_demo

TINY = tuple(sorted(dit_config(depth=2, heads=2, head_dim=16, sample_size=16, patch_size=2, in_channels=3,
                               out_channels=3, num_classes=1).items()))


def tiny_recipe(**kw):
    return Recipe(**{**dict(steps=3, batch_size=8, fgvc_images=24, scene_images=8, image_size=16,
                            precision="32-true", transformer=TINY), **kw})


def test_ddpm_objective_learns_on_a_fixed_batch():
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    module = DiffusionPretrainer(DiTTransformer2DModel(**dict(TINY)), tiny_recipe())
    opt = torch.optim.AdamW(module.parameters(), lr=2e-3)
    x0 = torch.rand(16, 3, 16, 16) * 2 - 1
    module.log = lambda *a, **k: None
    for step in range(60):
        loss = module.training_step((x0,), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    first, last = sum(module.losses[:5]) / 5, sum(module.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_cache_is_built_once_reused_and_rebuilt_when_broken(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # TensorBoard logs go to ./runs
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path))
    recipe = tiny_recipe()
    folder = ensure_demo(recipe, progress=False)
    card = json.loads((folder / "card.json").read_text())
    assert card["steps"] == 3 and card["recipe_fingerprint"] == recipe.fingerprint()
    assert (folder / "transformer" / "config.json").exists() and (folder / "scheduler").exists()
    backbone = load_backbone(str(folder))
    assert backbone.vae is None and backbone.image_size == 16

    calls = []
    real_train = pretrain.train
    monkeypatch.setattr(pretrain, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    assert ensure_demo(recipe, progress=False) == folder and calls == []  # reused
    (folder / "card.json").unlink()  # partial
    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        ensure_demo(recipe, progress=False)
    assert calls == [1]
    weights = next((folder / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        ensure_demo(recipe, progress=False)
    assert calls == [1, 1]
    assert ensure_demo(tiny_recipe(steps=4), progress=False) != folder  # another recipe, another folder
