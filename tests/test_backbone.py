"""Taps against an independent computation: diffusers' own forward with hooks, and our own noising."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.backbones import COMPONENTS
from tests.conftest import hooked_components

T = 321


def reference_features(backbone, images, timestep, noise, blocks):
    """Every component of ``blocks``, read with forward hooks on diffusers' own full forward pass."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)[timestep]
    tr = backbone.transformer
    with torch.no_grad():
        if backbone.vae is not None:
            x0 = backbone.vae.encode(images).latent_dist.mean * backbone.vae.config.scaling_factor
        else:
            x0 = images
        x_t = (np.sqrt(abar) * x0.double() + np.sqrt(1 - abar) * noise.double()).float()
        with hooked_components(tr, blocks, "attn1") as seen:
            b = images.shape[0]
            tr(x_t, timestep=torch.full((b,), timestep), class_labels=torch.full((b,), tr.config.num_embeds_ada_norm))
    feats = {}
    for i in blocks:
        normed, gate_msa, _, _, gate_mlp = seen[(i, "norm1_tuple")]
        tokens = {
            "norm1": normed, "query": seen[(i, "query")], "key": seen[(i, "key")], "value": seen[(i, "value")],
            "attn": seen[(i, "attn")], "attn_gated": gate_msa[:, None] * seen[(i, "attn")],
            "mlp": seen[(i, "mlp")], "mlp_gated": gate_mlp[:, None] * seen[(i, "mlp")], "out": seen[(i, "out")],
        }
        gh = x0.shape[-2] // tr.config.patch_size
        gw = x0.shape[-1] // tr.config.patch_size
        for comp, tok in tokens.items():
            # row-major token order: token r * gw + c sits at grid position (r, c)
            grid = torch.empty(b, tok.shape[-1], gh, gw)
            for r in range(gh):
                for c in range(gw):
                    grid[:, :, r, c] = tok[:, r * gw + c]
            feats[f"blocks.{i}.{comp}"] = grid
    return feats, x0.shape


@pytest.mark.parametrize("model", ["tiny-dit", "tiny-dit-latent"])
def test_every_component_matches_hooked_diffusers_forward(model):
    backbone = load_backbone(model, pretrained=False)
    torch.manual_seed(0)
    size = backbone.image_size
    images = torch.rand(2, 3, size, size) * 2 - 1
    x0_shape = backbone.encode(images).shape
    noise = torch.randn(x0_shape)
    blocks = [1, 3]
    ref, _ = reference_features(backbone, images, T, noise, blocks)
    taps = [f"blocks.{i}.{c}" for i in blocks for c in COMPONENTS]
    ours = backbone.extract(images, T, taps, noise=noise)
    assert list(ours) == taps
    for tap in taps:
        assert ours[tap].shape == ref[tap].shape, tap
        torch.testing.assert_close(ours[tap], ref[tap], rtol=1e-4, atol=1e-5, msg=tap)


def test_timestep_zero_is_clean_and_noise_matters():
    backbone = load_backbone("tiny-dit", pretrained=False)
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    n1, n2 = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    tap = ["blocks.2.out"]
    # abar_0 = 1 - 1e-4: almost clean, so two noises barely differ; at t=999 they differ a lot
    d0 = (backbone.extract(images, 0, tap, noise=n1)[tap[0]] - backbone.extract(images, 0, tap, noise=n2)[tap[0]]).abs().mean()
    d9 = (backbone.extract(images, 999, tap, noise=n1)[tap[0]] - backbone.extract(images, 999, tap, noise=n2)[tap[0]]).abs().mean()
    assert d0 * 20 < d9


def test_generator_makes_extraction_deterministic():
    backbone = load_backbone("tiny-dit", pretrained=False)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    a = backbone.extract(images, 500, ["blocks.1.key"], generator=torch.Generator().manual_seed(7))
    b = backbone.extract(images, 500, ["blocks.1.key"], generator=torch.Generator().manual_seed(7))
    c = backbone.extract(images, 500, ["blocks.1.key"], generator=torch.Generator().manual_seed(8))
    assert torch.equal(a["blocks.1.key"], b["blocks.1.key"])
    assert not torch.equal(a["blocks.1.key"], c["blocks.1.key"])


def test_early_exit_runs_no_block_after_the_deepest_tap():
    backbone = load_backbone("tiny-dit", pretrained=False)
    called = []
    for i, blk in enumerate(backbone.transformer.transformer_blocks):
        blk.norm1.register_forward_hook(lambda m, a, o, i=i: called.append(("norm1", i)))
        blk.attn1.to_q.register_forward_hook(lambda m, a, o, i=i: called.append(("q", i)))
        blk.ff.register_forward_hook(lambda m, a, o, i=i: called.append(("ff", i)))
    backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["blocks.1.query", "blocks.0.out"])
    assert called == [("norm1", 0), ("q", 0), ("ff", 0), ("norm1", 1), ("q", 1)]


def test_frozen_eval_mode_and_usable_features():
    backbone = load_backbone("tiny-dit", pretrained=False)
    backbone.train()
    assert not backbone.training and not backbone.transformer.training
    assert all(not p.requires_grad for p in backbone.parameters())
    feats = backbone.extract(torch.zeros(2, 3, 16, 16), 5, ["blocks.0.out"])["blocks.0.out"]
    head = torch.nn.Linear(feats.shape[1], 2)
    head(feats.mean((2, 3))).sum().backward()  # features are normal tensors, not inference tensors
    assert backbone.forwards == 2


@pytest.mark.parametrize(
    "taps, fragment",
    [
        (["blocks.4.out"], "block 4 does not exist"),
        (["blocks.1.bogus"], "unknown component 'bogus'"),
        (["block1.out"], "blocks.<i>.<component>"),
        ([], "no taps"),
    ],
)
def test_bad_taps_are_refused_with_what_is_allowed(taps, fragment):
    backbone = load_backbone("tiny-dit", pretrained=False)
    with pytest.raises(ValueError) as info:
        backbone.extract(torch.zeros(1, 3, 16, 16), 10, taps)
    assert fragment in str(info.value)
    assert isinstance(info.value, UserError)


@pytest.mark.parametrize("t", [-1, 1000, 2.5, "x"])
def test_bad_timesteps_are_refused(t):
    backbone = load_backbone("tiny-dit", pretrained=False)
    with pytest.raises(UserError, match=r"\[0, 1000\)"):
        backbone.extract(torch.zeros(1, 3, 16, 16), t, ["blocks.0.out"])


def test_dit_xl_2_architecture_without_weights():
    with torch.device("meta"):
        backbone = load_backbone("dit-xl-2-256", pretrained=False, device="meta")
    n = sum(p.numel() for p in backbone.transformer.parameters())
    assert abs(n / 1e6 - 749.8) < 0.1, n
    assert backbone.image_size == 256 and backbone.patch_size == 16 and backbone.num_blocks == 28
    assert backbone.family.null_class == 1000


def test_local_folders_pipeline_and_bare_transformer(tmp_path):
    from diffusers import DDPMScheduler

    src = load_backbone("tiny-dit-latent", pretrained=False)
    src.transformer.save_pretrained(tmp_path / "pipe" / "transformer")
    src.vae.save_pretrained(tmp_path / "pipe" / "vae")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "pipe" / "scheduler")
    loaded = load_backbone(str(tmp_path / "pipe"))
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(loaded.extract(images, 50, "blocks.2.value", generator=g())["blocks.2.value"],
                               src.extract(images, 50, "blocks.2.value", generator=g())["blocks.2.value"])
    bare = load_backbone("tiny-dit", pretrained=False)
    bare.transformer.save_pretrained(tmp_path / "bare")
    loaded = load_backbone(str(tmp_path / "bare"))
    assert loaded.vae is None and loaded.image_size == 16


def test_missing_weights_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UserError, match="HF_HOME") as info:
        load_backbone("dit-xl-2-256")
    assert "facebook/DiT-XL-2-256" in str(info.value) and "transformer/" in str(info.value)
    with pytest.raises(UserError, match="not a diffusers model folder"):
        load_backbone(str(tmp_path))
    with pytest.raises(UserError, match="unknown backbone"):
        load_backbone("no-such-preset")


def test_fingerprint_is_the_same_in_every_process():
    """diffusers keeps a set-ordered list in its configs; the fingerprint must not depend on hash seeds."""
    import os
    import subprocess
    import sys

    code = "from aselect_bench import load_backbone; print(load_backbone('tiny-dit-latent').fingerprint)"
    prints = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip() for seed in range(4)}
    assert len(prints) == 1
