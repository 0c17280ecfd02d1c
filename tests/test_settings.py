"""Typed benchmark presets: validated on load, overrides make new recorded presets, nothing is mutated."""

from __future__ import annotations

import pytest

from aselect_bench.errors import UserError
from aselect_bench.hfr import DEFAULTS, HFRSettings
from aselect_bench.settings import BenchPreset, load_bench_preset, preset_from_dict


@pytest.mark.parametrize("name", ["demo", "paper", "paper-dit"])
def test_shipped_presets_load_and_take_hfr_defaults_from_one_place(name):
    preset = load_bench_preset(name)
    assert isinstance(preset, BenchPreset) and preset.name == name and preset.overrides == {}
    assert preset.hfr == HFRSettings() == DEFAULTS  # the YAML files do not repeat the grid or the band
    assert preset.hfr.mode == "tokens1d" and preset.hfr.cutoff == 0.15 and len(preset.hfr.candidates) == 21
    assert preset.to_json()["hfr"]["candidates"] == list(DEFAULTS.candidates)


def test_overrides_make_a_new_preset_and_are_recorded():
    demo = load_bench_preset("demo")
    changed = demo.override(**{"fgvc.max_epochs": 3, "hfr.candidates": [0, 500]}, precision="32", backbone=None)
    assert (demo.fgvc.max_epochs, demo.hfr.candidates, demo.overrides) == (40, DEFAULTS.candidates, {})
    assert changed.fgvc.max_epochs == 3 and changed.hfr.candidates == (0, 500) and changed.precision == "32"
    assert changed.overrides == {"fgvc.max_epochs": 3, "hfr.candidates": [0, 500], "precision": "32"}
    assert changed.override(seed=1).overrides == {**changed.overrides, "seed": 1}  # accumulates
    with pytest.raises(UserError, match="no setting 'fgvc.bogus'"):
        demo.override(**{"fgvc.bogus": 1})


@pytest.mark.parametrize("data, fragment", [
    ({"backbone": "demo", "fgvc": {"tap": "blocks.0.out"}}, "fgvc: missing key 'datasets'"),
    ({"backbone": "demo", "bogus": 1}, "unknown key 'bogus'"),
    ({"backbone": "demo", "hfr": {"mode": "disc"}}, "hfr: unknown HFR mode 'disc'"),
    ({"fgvc": None}, "missing key 'backbone'"),
])
def test_a_bad_preset_is_one_clear_line(data, fragment):
    with pytest.raises(UserError, match="^" + fragment.replace("(", r"\(").replace(".", r"\.")) as info:
        preset_from_dict(data, "x")
    assert "\n" not in str(info.value) and str(info.value).endswith("(in preset 'x')")


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(UserError, match="unknown preset 'nope'.*demo.*paper"):
        load_bench_preset("nope")


def test_trainers_never_ask_cuda_for_strict_determinism(tmp_path):
    """Segmentation uses ops without deterministic CUDA kernels: runs are seeded, and determinism only warns."""
    import torch

    from aselect_bench.tasks.fit import make_trainer

    torch.use_deterministic_algorithms(False)
    trainer, checkpoint = make_trainer(tmp_path, "t", 1)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert checkpoint is not None
    trainer, checkpoint = make_trainer(tmp_path, "t", 1, checkpoint=False, logger=False)
    assert checkpoint is None and trainer.logger is None and not trainer.checkpoint_callbacks
    torch.use_deterministic_algorithms(False)


def test_paper_is_the_authors_recipe_and_paper_dit_keeps_dit_xl_2():
    paper, dit = load_bench_preset("paper"), load_bench_preset("paper-dit")
    assert (paper.backbone, paper.ade20k.backbone, dit.backbone, dit.ade20k.backbone) == \
        ("sd3-medium", "sd3-medium", "dit-xl-2-256", "dit-xl-2-512")
    f = paper.fgvc
    assert (f.tap, f.head, f.head_width, f.head_depth, f.head_heads) == ("blocks.9.query", "attentive", 800, 2, 8)
    assert (f.lr, f.weight_decay, f.warmup_fraction, f.label_smoothing, f.batch_size, f.max_epochs) == \
        (3e-3, 1e-3, 0.0, 0.0, 8, 100)
    assert f.train_augment and round(512 * f.resize_ratio) == 576  # fresh noise every step; resize 576, crop 512
    a = paper.ade20k
    assert (a.max_iters, a.val_every_iters, a.warmup_iters, a.batch_size, a.crop_size) == (160000, 16000, 1500, 16, 512)


def test_the_authors_attentive_head():
    import torch
    from timm.models.vision_transformer import Block

    from aselect_bench.heads.probes import AttentiveHead

    head = AttentiveHead(1536, 200)
    assert head.proj.in_features == 1536 and head.proj.out_features == 800 and head.cls.shape == (1, 1, 800)
    assert len(head.blocks) == 2 and all(isinstance(b, Block) for b in head.blocks)
    block = head.blocks[0]
    assert block.attn.num_heads == 8 and block.attn.qkv.bias is None and block.mlp.fc1.out_features == 3200
    assert head(torch.zeros(2, 1536, 4, 4)).shape == (2, 200)
