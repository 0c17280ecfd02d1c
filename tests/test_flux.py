"""Flux.1 taps against diffusers' own forward (hooks), the scheduler's resolution-dependent tables and
``FluxPipeline``'s packing, position ids, guidance and prompt encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.backbones import COMPONENTS
from aselect_bench.backbones.flux import DEV_SCHEDULER
from aselect_bench.backbones.registry import flux_config
from tests.family_utils import (
    as_grid,
    captured,
    check_against,
    drop_tensor,
    load_quietly,
    save_text,
    select_end_to_end,
    tiny_clip_text,
    tiny_t5,
)
from tests.test_sd3 import tiny_vae

pytestmark = pytest.mark.usefixtures("private_cache")
TIMESTEPS = (1, 321, 999)
BLOCKS = (0, 1)  # every double- and every single-stream block of the tiny model (the last ones included)


def tiny_transformer(**overrides):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    config = flux_config(depth=2, single_depth=2, heads=2, head_dim=16, in_channels=12, joint_attention_dim=32,
                         pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))
    return FluxTransformer2DModel(**{**config, **overrides})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffusers import FlowMatchEulerDiscreteScheduler

    root = tmp_path_factory.mktemp("flux")
    tiny_transformer().save_pretrained(root / "bare")
    dev = root / "dev"  # guidance-distilled, a dynamic shift with its own limits, CLIP + T5
    tiny_transformer(in_channels=16).save_pretrained(dev / "transformer")
    tiny_vae().save_pretrained(dev / "vae")
    FlowMatchEulerDiscreteScheduler(**{**DEV_SCHEDULER, "base_image_seq_len": 8, "max_image_seq_len": 64,
                                       "max_shift": 1.6}).save_pretrained(dev / "scheduler")
    save_text(dev, *tiny_clip_text(root / "clip", 16))
    save_text(dev, *tiny_t5(32), suffix="_2")
    schnell = root / "schnell"  # no guidance, a static shift, no text encoders
    tiny_transformer(in_channels=16, guidance_embeds=False).save_pretrained(schnell / "transformer")
    tiny_vae().save_pretrained(schnell / "vae")
    FlowMatchEulerDiscreteScheduler(shift=2.0).save_pretrained(schnell / "scheduler")
    return root


def pipeline_scheduler(folder, tokens):
    """The folder's scheduler after ``FluxPipeline``'s ``retrieve_timesteps(1000, sigmas, mu)`` for ``tokens``."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    sched_dir = folder / "scheduler"
    scheduler = (FlowMatchEulerDiscreteScheduler.from_pretrained(sched_dir) if sched_dir.exists()
                 else FlowMatchEulerDiscreteScheduler(**DEV_SCHEDULER))
    cfg = scheduler.config
    mu = calculate_shift(tokens, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                         cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
    retrieve_timesteps(scheduler, 1000, "cpu", sigmas=np.linspace(1.0, 1 / 1000, 1000), mu=mu)
    return scheduler


def pipeline_conditioning(folder, transformer, b, length):
    """``FluxPipeline.encode_prompt("")`` with the folder's CLIP and T5."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None,
                        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
                        tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
                        text_encoder_2=T5EncoderModel.from_pretrained(folder / "text_encoder_2"),
                        tokenizer_2=AutoTokenizer.from_pretrained(folder / "tokenizer_2"), transformer=transformer)
    with torch.no_grad():  # as in the pipeline's __call__ (with autograd on, attention takes another kernel)
        embeds, pooled, _ = pipe.encode_prompt("", None, device=torch.device("cpu"), num_images_per_prompt=b,
                                               max_sequence_length=length)
    return embeds, pooled


def reference_features(backbone, folder, images, timestep, noise):
    """Every component of the double and single blocks :data:`BLOCKS`, read with hooks on diffusers' full forward
    of ``FluxPipeline``'s packed latents, ids, timestep, guidance and conditioning (or zeros)."""
    from diffusers import FluxPipeline

    tr, b = backbone.transformer, images.shape[0]
    with torch.no_grad():
        x0 = images
        if backbone.vae is not None:
            cfg = backbone.vae.config
            x0 = (backbone.vae.encode(images).latent_dist.mean - cfg.shift_factor) * cfg.scaling_factor
        _, c, h, w = x0.shape
        packed, packed_noise = (FluxPipeline._pack_latents(x, b, c, h, w) for x in (x0, noise))
        scheduler = pipeline_scheduler(folder, packed.shape[1])
        model_t = scheduler.timesteps[1000 - timestep]
        x_t = scheduler.scale_noise(packed, model_t[None], packed_noise)
        length = backbone.family.conditioning["embeds"].shape[1]
        if (folder / "text_encoder_2").exists():
            embeds, pooled = pipeline_conditioning(folder, tr, b, length)
        else:
            embeds, pooled = torch.zeros(b, length, 32), torch.zeros(b, 16)
        guidance = torch.full([b], 3.5) if tr.config.guidance_embeds else None
        double = {i: tr.transformer_blocks[i] for i in BLOCKS}
        single = {i: tr.single_transformer_blocks[i] for i in BLOCKS}
        outputs = {("blocks", i, n): m for i, blk in double.items() for n, m in [
            ("norm1", blk.norm1), ("query", blk.attn.to_q), ("key", blk.attn.to_k), ("value", blk.attn.to_v),
            ("attn", blk.attn), ("mlp", blk.ff), ("out", blk)]}
        outputs.update({("single_blocks", i, n): m for i, blk in single.items() for n, m in [
            ("norm1", blk.norm), ("query", blk.attn.to_q), ("key", blk.attn.to_k), ("value", blk.attn.to_v),
            ("attn", blk.attn), ("mlp", blk.act_mlp), ("out", blk)]})
        with captured(outputs) as seen:
            tr(hidden_states=x_t, encoder_hidden_states=embeds, pooled_projections=pooled,
               timestep=model_t.expand(b) / 1000, img_ids=FluxPipeline._prepare_latent_image_ids(
                   b, h // 2, w // 2, "cpu", torch.float32), txt_ids=torch.zeros(length, 3), guidance=guidance)
    feats = {}
    for i in BLOCKS:
        s = {n: seen[("blocks", i, n)] for n in ("norm1", "query", "key", "value", "attn", "mlp", "out")}
        normed, gate_msa, _, _, gate_mlp = s["norm1"]
        tokens = {"norm1": normed, "query": s["query"], "key": s["key"], "value": s["value"], "attn": s["attn"][0],
                  "attn_gated": gate_msa[:, None] * s["attn"][0], "mlp": s["mlp"],
                  "mlp_gated": gate_mlp[:, None] * s["mlp"], "out": s["out"][1]}
        feats.update({f"blocks.{i}.{k}": as_grid(tokens[k], h // 2, w // 2) for k in COMPONENTS})
    d = backbone.hidden_size
    for i in BLOCKS:
        s = {n: seen[("single_blocks", i, n)] for n in ("norm1", "query", "key", "value", "attn", "mlp", "out")}
        weight, (normed, gate) = single[i].proj_out.weight, s["norm1"]
        attn, mlp = s["attn"][:, length:] @ weight[:, :d].T, s["mlp"][:, length:] @ weight[:, d:].T
        tokens = {"norm1": normed[:, length:], "query": s["query"][:, length:], "key": s["key"][:, length:],
                  "value": s["value"][:, length:], "attn": attn, "attn_gated": gate[:, None] * attn, "mlp": mlp,
                  "mlp_gated": gate[:, None] * mlp, "out": s["out"][1]}
        feats.update({f"single_blocks.{i}.{k}": as_grid(tokens[k], h // 2, w // 2) for k in COMPONENTS})
    return feats


@pytest.mark.parametrize("timestep", TIMESTEPS)
@pytest.mark.parametrize("kind, size", [("bare", 16), ("dev", 16), ("dev", 32), ("schnell", 16)])
def test_every_component_matches_hooked_diffusers_forward(folders, kind, size, timestep):
    backbone = load_quietly(folders / kind)
    assert (backbone.vae is not None) == (kind != "bare")
    torch.manual_seed(timestep)
    images = torch.rand(2, 3, size, size) * 2 - 1
    noise = torch.randn(backbone.encode(images).shape)
    check_against(backbone, images, timestep, noise, reference_features(backbone, folders / kind, images, timestep,
                                                                        noise))


def test_the_shift_follows_the_token_count_as_the_pipeline_computes_it(folders):
    noise = load_quietly(folders / "dev").noise
    for tokens in (16, 64, 100):
        sized, scheduler = noise.for_tokens(tokens), pipeline_scheduler(folders / "dev", tokens)
        for t in (1, 50, 500, 999):
            assert sized.sigma(t) == pytest.approx(float(scheduler.sigmas[1000 - t]), abs=1e-7)
            assert sized.model_timestep(t) == pytest.approx(float(scheduler.timesteps[1000 - t]), abs=1e-4)
        assert sized.sigma(0) == 0 and sized.model_timestep(0) == 0
    assert noise.mu(64) == pytest.approx(1.6) and noise.mu(8) == pytest.approx(0.5)  # the folder's limits
    assert noise.for_tokens(16).sigma(500) < noise.for_tokens(64).sigma(500)  # more tokens, more noise
    with torch.device("meta"):
        released = load_backbone("flux.1-dev", pretrained=False, device="meta").noise
    assert released.mu(4096) == pytest.approx(1.15)  # 1024 px
    schnell = load_quietly(folders / "schnell").noise  # static shift: the same at every size
    scheduler = pipeline_scheduler(folders / "schnell", 16)
    assert schnell.for_tokens(16) is schnell and schnell.sigma(500) == pytest.approx(float(scheduler.sigmas[500]))


def test_empty_prompt_is_the_pipelines_computed_once_and_cached(folders, tmp_path, monkeypatch):
    from aselect_bench.backbones import flux

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    family = load_quietly(folders / "dev").family
    cond = family.conditioning
    assert tuple(cond["embeds"].shape) == (1, 512, 32) and tuple(cond["pooled"].shape) == (1, 16)
    embeds, pooled = pipeline_conditioning(folders / "dev", family.transformer, 1, 512)
    torch.testing.assert_close(cond["embeds"], embeds)
    torch.testing.assert_close(cond["pooled"], pooled)
    assert len(list((tmp_path / "cache" / "flux-empty-prompt").glob("*.pt"))) == 1

    def no_text_encoders(*args, **kwargs):
        raise AssertionError("the cached conditioning should be used")

    monkeypatch.setattr(flux, "load_text_model", no_text_encoders)
    again = load_quietly(folders / "dev").family
    torch.testing.assert_close(again.conditioning["pooled"], cond["pooled"])
    assert again.identity() == family.identity() == {"conditioning": cond.source, "guidance": 3.5}


def test_schnell_without_text_encoders_is_zeros_of_256_tokens_with_one_warning_line(folders):
    with pytest.warns(UserWarning) as caught:
        backbone = load_backbone(str(folders / "schnell"))
    messages = [str(w.message) for w in caught if "conditioning on zeros" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and "text_encoder_2/" in messages[0]
    cond = backbone.family.conditioning
    assert tuple(cond["embeds"].shape) == (1, 256, 32) and cond["embeds"].abs().sum() == 0
    assert backbone.family.identity() == {"conditioning": "zeros", "guidance": None}


def test_early_exit_runs_single_blocks_only_for_single_block_taps():
    backbone = load_backbone("tiny-flux", pretrained=False)
    tr, called = backbone.transformer, []
    modules = {"double": lambda blk: [("q", blk.attn.to_q), ("ff", blk.ff), ("ff_context", blk.ff_context)],
               "single": lambda blk: [("q", blk.attn.to_q), ("mlp", blk.proj_mlp), ("proj_out", blk.proj_out)]}
    for stack, blocks in (("double", tr.transformer_blocks), ("single", tr.single_transformer_blocks)):
        for i, blk in enumerate(blocks):
            for name, module in modules[stack](blk):
                module.register_forward_hook(lambda m, a, o, i=i, n=f"{stack}-{name}": called.append((n, i)))
    backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["blocks.1.query"])
    assert called == [("double-q", 0), ("double-ff", 0), ("double-ff_context", 0), ("double-q", 1)]
    called.clear()
    feats = backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["single_blocks.0.attn", "blocks.0.out"])
    assert called[-3:] == [("double-ff", 1), ("double-ff_context", 1), ("single-q", 0)]  # no MLP for an attn tap
    assert tuple(feats["single_blocks.0.attn"].shape) == (1, 32, 8, 8)
    called.clear()
    backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["single_blocks.0.out"])
    assert called[-3:] == [("single-q", 0), ("single-mlp", 0), ("single-proj_out", 0)]


@pytest.mark.parametrize("tap, fragment", [
    ("single_blocks.2.out", "single block 2 does not exist, this model has 2 single blocks"),
    ("single_blocks.0.cross", "unknown component 'cross'"),
    ("double_blocks.0.out", "'single_blocks.<i>.<component>'"),
])
def test_bad_flux_taps_are_refused_in_one_line(tap, fragment):
    backbone = load_backbone("tiny-flux", pretrained=False)
    with pytest.raises(UserError) as info:
        backbone.extract(torch.zeros(1, 3, 16, 16), 10, [tap])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_flux_folders_load_strictly(folders, tmp_path):
    import shutil

    shutil.copytree(folders / "bare", tmp_path / "bare")
    drop_tensor(tmp_path / "bare", "single_transformer_blocks.1.proj_out.weight")
    with pytest.raises(UserError, match="1 missing tensor") as info:
        load_quietly(tmp_path / "bare")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("preset, guidance, tokens", [("flux.1-dev", 3.5, 512), ("flux.1-schnell", None, 256)])
def test_real_architectures_without_weights(preset, guidance, tokens):
    with torch.device("meta"):
        backbone = load_backbone(preset, pretrained=False, device="meta")
    n = sum(p.numel() for p in backbone.transformer.parameters())
    assert abs(n / 11.9e9 - 1) < 0.01, n
    assert backbone.family.block_counts() == {"blocks": 19, "single_blocks": 38} and backbone.hidden_size == 3072
    assert backbone.image_size == 1024 and backbone.patch_size == 16 and backbone.vae.config.latent_channels == 16
    assert backbone.family.guidance == guidance and backbone.family.conditioning["embeds"].shape[1] == tokens


def test_select_on_a_tiny_flux_folder_end_to_end(folders, tmp_path):
    select_end_to_end(folders / "dev", "single_blocks.1.mlp", tmp_path)
