"""SD3 / SD3.5 taps against diffusers' own forward (hooks, its scheduler, its pipeline's prompt encoding)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.backbones import COMPONENTS
from aselect_bench.backbones.registry import sd3_config
from tests.conftest import hooked_components
from tests.test_cli import cli

T = 321
#: Tiny CLIP pair: widths 8 + 16 (<= joint_attention_dim 32), projections 8 + 8 (= pooled_projection_dim 16).
CLIP_WIDTHS = ((8, 8), (16, 8))


def tiny_transformer(**overrides):
    from diffusers import SD3Transformer2DModel

    config = sd3_config(depth=4, heads=2, head_dim=16, sample_size=16, in_channels=3, joint_attention_dim=32,
                        pooled_projection_dim=16, pos_embed_max_size=16)
    torch.manual_seed(0)
    return SD3Transformer2DModel(**{**config, **overrides})


def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16],
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=0.7,
                         shift_factor=0.25, use_quant_conv=False, use_post_quant_conv=False)


def tiny_clip(folder, width, projection, pad_token):
    """A CLIP tokenizer (a small BPE vocabulary written here) and a text encoder with projection."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a": 3, "a</w>": 4, "b</w>": 5}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad_token,
                              model_max_length=77)
    torch.manual_seed(width)
    encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=projection, bos_token_id=0,
        eos_token_id=1, pad_token_id=vocab[pad_token]))
    return tokenizer, encoder.eval()


def write_pipeline(folder, transformer, vae=None, scheduler_shift=None, text=False):
    """An SD3 pipeline folder (``transformer/``, optional ``vae/``, ``scheduler/``, CLIP tokenizers + encoders)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    transformer.save_pretrained(folder / "transformer")
    if vae is not None:
        vae.save_pretrained(folder / "vae")
    if scheduler_shift is not None:
        FlowMatchEulerDiscreteScheduler(shift=scheduler_shift).save_pretrained(folder / "scheduler")
    if text:
        for i, (width, proj) in enumerate(CLIP_WIDTHS):
            suffix = "" if i == 0 else "_2"
            tokenizer, encoder = tiny_clip(folder / f"tmp{suffix}", width, proj, "<|endoftext|>" if i == 0 else "!")
            tokenizer.save_pretrained(folder / f"tokenizer{suffix}")
            encoder.save_pretrained(folder / f"text_encoder{suffix}")
    return folder


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The empty-prompt cache goes to a private folder, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASELECT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd3")
    tiny_transformer().save_pretrained(root / "bare")
    write_pipeline(root / "latent", tiny_transformer(in_channels=4, sample_size=8), tiny_vae(), scheduler_shift=2.0,
                   text=True)
    tiny_transformer(dual_attention_layers=(0, 1), qk_norm="rms_norm").save_pretrained(root / "sd35")
    return root


def load_quietly(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_backbone(str(source), **kwargs)


def pipeline_conditioning(folder, transformer, b):
    """Empty-prompt embeddings from diffusers' own ``StableDiffusion3Pipeline.encode_prompt`` (no T5)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=None,
        text_encoder=CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"), text_encoder_3=None, tokenizer_3=None)
    embeds, _, pooled, _ = pipe.encode_prompt("", "", "", device=torch.device("cpu"), num_images_per_prompt=b,
                                              do_classifier_free_guidance=False)
    return embeds, pooled


def reference_features(backbone, folder, images, timestep, noise, blocks):
    """Every component of ``blocks``, read with hooks on diffusers' full forward; noise from its scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    tr, b = backbone.transformer, images.shape[0]
    sched_dir = folder / "scheduler"
    scheduler = (FlowMatchEulerDiscreteScheduler.from_pretrained(sched_dir) if sched_dir.exists()
                 else FlowMatchEulerDiscreteScheduler(shift=3.0))
    scheduler.set_timesteps(1000)
    model_t = scheduler.timesteps[1000 - timestep]
    with torch.no_grad():
        if backbone.vae is not None:
            cfg = backbone.vae.config
            x0 = (backbone.vae.encode(images).latent_dist.mean - cfg.shift_factor) * cfg.scaling_factor
        else:
            x0 = images
        x_t = scheduler.scale_noise(x0, model_t[None], noise)
        if (folder / "text_encoder").exists():
            embeds, pooled = pipeline_conditioning(folder, tr, b)
        else:
            embeds, pooled = torch.zeros(b, 333, tr.config.joint_attention_dim), torch.zeros(b, 16)
        with hooked_components(tr, blocks, "attn") as seen:
            tr(x_t, encoder_hidden_states=embeds, pooled_projections=pooled, timestep=model_t.expand(b))
    feats = {}
    gh, gw = x0.shape[-2] // tr.config.patch_size, x0.shape[-1] // tr.config.patch_size
    for i in blocks:
        norm = seen[(i, "norm1_tuple")]
        attn = seen[(i, "attn")][0]  # (image part, context part)
        tokens = {
            "norm1": norm[0], "query": seen[(i, "query")], "key": seen[(i, "key")], "value": seen[(i, "value")],
            "attn": attn, "attn_gated": norm[1][:, None] * attn, "mlp": seen[(i, "mlp")],
            "mlp_gated": norm[4][:, None] * seen[(i, "mlp")], "out": seen[(i, "out")][1],
        }
        for comp, tok in tokens.items():  # token r * gw + c sits at grid position (r, c)
            feats[f"blocks.{i}.{comp}"] = tok.reshape(b, gh, gw, -1).permute(0, 3, 1, 2)
    return feats


@pytest.mark.parametrize("kind", ["bare", "latent", "sd35"])
def test_every_component_matches_hooked_diffusers_forward(folders, kind):
    backbone = load_quietly(folders / kind)
    assert (backbone.vae is not None) == (kind == "latent")
    assert backbone.transformer.transformer_blocks[1].use_dual_attention == (kind == "sd35")
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    noise = torch.randn(backbone.encode(images).shape)
    blocks = [1, 3]  # 3 is the last block: its context stream is "pre only"
    ref = reference_features(backbone, folders / kind, images, T, noise, blocks)
    taps = [f"blocks.{i}.{c}" for i in blocks for c in COMPONENTS]
    ours = backbone.extract(images, T, taps, noise=noise)
    assert list(ours) == taps
    for tap in taps:
        assert ours[tap].shape == ref[tap].shape, tap
        torch.testing.assert_close(ours[tap], ref[tap], rtol=1e-4, atol=1e-5, msg=tap)


@pytest.mark.parametrize("shift", [3.0, 2.0])
def test_sigma_and_timestep_input_follow_the_scheduler(folders, shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from aselect_bench.backbones.noise import RectifiedFlowNoise

    noise = RectifiedFlowNoise.from_config({"shift": shift})
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(1000)
    for t in (1, 50, 500, 999):
        assert noise.sigma(t) == pytest.approx(float(scheduler.sigmas[1000 - t]), abs=1e-7)
        assert noise.model_timestep(t) == pytest.approx(float(scheduler.timesteps[1000 - t]), abs=1e-4)
    assert noise.sigma(0) == 0 and noise.model_timestep(0) == 0
    sigmas = [noise.sigma(t) for t in range(1000)]
    assert all(a < b for a, b in zip(sigmas, sigmas[1:]))  # t = 0 clean, larger t noisier
    x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(noise.add_noise(x0, 500, eps),
                               scheduler.scale_noise(x0, scheduler.timesteps[500][None], eps))
    torch.testing.assert_close(noise.add_noise(x0, 0, eps), x0)
    # a folder's scheduler config is used: the latent folder's has shift 2.0
    loaded = load_quietly(folders / "latent").noise
    assert loaded.sigma(500) == pytest.approx(RectifiedFlowNoise.from_config({"shift": 2.0}).sigma(500))


def test_latents_subtract_the_shift_then_scale(folders):
    backbone = load_quietly(folders / "latent")
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    mean = backbone.vae.encode(images).latent_dist.mean
    torch.testing.assert_close(backbone.encode(images), (mean - 0.25) * 0.7)


def test_empty_prompt_is_the_pipelines_computed_once_and_cached(folders, tmp_path, monkeypatch):
    from aselect_bench.backbones import sd3

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    backbone = load_quietly(folders / "latent")
    family = backbone.family
    assert tuple(family.prompt_embeds.shape) == (1, 333, 32) and tuple(family.pooled.shape) == (1, 16)
    embeds, pooled = pipeline_conditioning(folders / "latent", backbone.transformer, 1)
    torch.testing.assert_close(family.prompt_embeds, embeds)
    torch.testing.assert_close(family.pooled, pooled)
    assert family.prompt_embeds[:, 77:].abs().sum() == 0 and family.prompt_embeds[:, :77, 24:].abs().sum() == 0
    assert len(list((tmp_path / "cache" / "sd3-empty-prompt").glob("*.pt"))) == 1

    def no_text_encoders(folder):
        raise AssertionError("the cached conditioning should be used")

    monkeypatch.setattr(sd3, "_load_text_encoders", no_text_encoders)
    again = load_quietly(folders / "latent").family
    torch.testing.assert_close(again.prompt_embeds, family.prompt_embeds)
    assert again.conditioning_id == family.conditioning_id != "zeros"


def test_without_text_encoders_the_conditioning_is_zeros_with_one_warning_line(folders):
    with pytest.warns(UserWarning) as caught:
        backbone = load_backbone(str(folders / "bare"))
    messages = [str(w.message) for w in caught if "conditioning on zeros" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and "text_encoder/" in messages[0]
    assert tuple(backbone.family.prompt_embeds.shape) == (1, 333, 32)
    assert backbone.family.prompt_embeds.abs().sum() == 0 and backbone.family.pooled.abs().sum() == 0
    assert backbone.family.identity() == {"conditioning": "zeros"}


def test_fingerprint_names_the_conditioning_and_the_schedule(folders, tmp_path):
    base = load_quietly(folders / "latent")
    tiny_transformer(in_channels=4, sample_size=8).save_pretrained(tmp_path / "x" / "transformer")
    write_pipeline(tmp_path / "y", tiny_transformer(in_channels=4, sample_size=8), tiny_vae(), scheduler_shift=3.0)
    no_text = load_quietly(tmp_path / "y")
    assert no_text.family.conditioning_id == "zeros" and no_text.fingerprint != base.fingerprint
    assert no_text.noise.identity() != base.noise.identity()


def test_early_exit_runs_no_block_after_the_deepest_tap():
    backbone = load_backbone("tiny-sd3", pretrained=False)
    called = []
    for i, blk in enumerate(backbone.transformer.transformer_blocks):
        blk.norm1.register_forward_hook(lambda m, a, o, i=i: called.append(("norm1", i)))
        blk.attn.to_q.register_forward_hook(lambda m, a, o, i=i: called.append(("q", i)))
        blk.attn.add_q_proj.register_forward_hook(lambda m, a, o, i=i: called.append(("context_q", i)))
        blk.ff.register_forward_hook(lambda m, a, o, i=i: called.append(("ff", i)))
        if blk.ff_context is not None:  # the last block has no context MLP
            blk.ff_context.register_forward_hook(lambda m, a, o, i=i: called.append(("ff_context", i)))
    backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["blocks.1.query", "blocks.0.out"])
    assert called == [("norm1", 0), ("q", 0), ("context_q", 0), ("ff", 0), ("ff_context", 0), ("norm1", 1), ("q", 1)]
    called.clear()
    backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["blocks.3.attn"])
    assert called[-3:] == [("norm1", 3), ("q", 3), ("context_q", 3)]  # the last block: no MLP for an attn tap


def test_bf16_autocast_runs_close_to_float32():
    backbone = load_backbone("tiny-sd3", pretrained=False)
    images, noise = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 3, 16, 16)
    ref = backbone.extract(images, 400, ["blocks.2.out"], noise=noise)["blocks.2.out"]
    low = backbone.set_precision("bf16").extract(images, 400, ["blocks.2.out"], noise=noise)["blocks.2.out"]
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert torch.nn.functional.cosine_similarity(low.flatten(), ref.flatten(), dim=0) > 0.99


@pytest.mark.parametrize("taps, t, fragment", [
    (["blocks.4.out"], 10, "block 4 does not exist"),
    (["blocks.1.bogus"], 10, "unknown component 'bogus'"),
    (["blocks.1.out"], 1000, "[0, 1000)"),
    (["blocks.1.out"], -1, "[0, 1000)"),
    (["blocks.1.out"], 2.5, "not an integer"),
])
def test_bad_taps_and_timesteps_are_refused_with_one_line(taps, t, fragment):
    backbone = load_backbone("tiny-sd3", pretrained=False)
    with pytest.raises(UserError) as info:
        backbone.extract(torch.zeros(1, 3, 16, 16), t, taps)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_class_labels_are_refused():
    backbone = load_backbone("tiny-sd3", pretrained=False)
    with pytest.raises(UserError, match="empty prompt"):
        backbone.extract(torch.zeros(1, 3, 16, 16), 5, ["blocks.0.out"], class_labels=3)


@pytest.mark.parametrize("preset, params, blocks, width", [
    ("sd3-medium", 2.03e9, 24, 1536), ("sd3.5-medium", 2.24e9, 24, 1536), ("sd3.5-large", 8.06e9, 38, 2432),
])
def test_real_architectures_without_weights(preset, params, blocks, width):
    with torch.device("meta"):
        backbone = load_backbone(preset, pretrained=False, device="meta")
    n = sum(p.numel() for p in backbone.transformer.parameters())
    assert abs(n / params - 1) < 0.02, n
    assert backbone.num_blocks == blocks and backbone.hidden_size == width
    assert backbone.image_size == 512 and backbone.patch_size == 16 and backbone.vae.config.latent_channels == 16
    assert tuple(backbone.family.prompt_embeds.shape) == (1, 333, 4096)


def test_gated_hub_weights_missing_is_one_line_saying_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UserError) as info:
        load_backbone("sd3-medium")
    text = str(info.value)
    assert "stabilityai/stable-diffusion-3-medium-diffusers" in text and "login" in text and "\n" not in text


def test_select_on_a_tiny_sd3_folder_end_to_end(folders, tmp_path):
    from aselect_bench.data.synth_fgvc import write_layout

    cub_root = write_layout("cub", tmp_path / "cub", num_classes=2, train_per_class=3, test_per_class=1, image_size=32)
    out = tmp_path / "selection.json"
    result = cli("select", "--backbone", folders / "latent", "--dataset", "cub", "--data-root", cub_root,
                 "--tap", "blocks.2.query", "--candidates", "0,500,999", "--num-images", 4, "--out", out)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert set(saved["hfr"]) == {"0", "500", "999"} and saved["forwards"] == 12
    assert f"chosen timestep: {saved['timestep']}" in result.stdout


def test_comparison_and_component_grid_with_a_tiny_sd3(tmp_path, monkeypatch):
    from aselect_bench.analyses.compare import run_comparison
    from aselect_bench.analyses.components import run_components
    from tests.test_search import PRESET, BlobsExperiment

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    backbone = load_backbone("tiny-sd3", pretrained=False)
    preset = PRESET.override(**{"backbone": "tiny-sd3", "hfr.candidates": [0, 999], "hfr.num_images": 4,
                                "fgvc.max_epochs": 1})
    result = run_comparison(BlobsExperiment(preset, backbone), state_root=tmp_path / "state",
                            runs_dir=tmp_path / "runs", selectors=False, progress=False)
    assert set(result["exhaustive"]["per_timestep"]) == {0, 999} and result["aselect"]["timestep"] in (0, 999)
    grid = run_components(BlobsExperiment(preset, backbone), blocks=[3], components=["query", "out"],
                          runs_dir=tmp_path / "runs", progress=False, measure_separate=False)
    assert set(grid["grid"]) == {"blocks.3.query", "blocks.3.out"}
    assert all(0 <= row["val_top1"] <= 100 for row in grid["grid"].values())


def test_sd3_folders_load_strictly(folders, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from aselect_bench.backbones.loading import FOLDER_FAMILIES

    assert "SD3Transformer2DModel" in FOLDER_FAMILIES
    shutil.copytree(folders / "bare", tmp_path / "bare")
    weights = tmp_path / "bare" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("transformer_blocks.2.attn.add_q_proj.weight")
    save_file(state, weights)
    with pytest.raises(UserError, match="1 missing tensor") as info:
        load_quietly(tmp_path / "bare")
    assert "\n" not in str(info.value)
    shutil.copytree(folders / "latent", tmp_path / "latent")
    encoder = tmp_path / "latent" / "text_encoder_2" / "model.safetensors"
    state = load_file(encoder)
    state.pop(next(k for k in state if "final_layer_norm" in k))
    save_file(state, encoder)
    with pytest.raises(UserError, match="text_encoder_2 does not match its config"):
        load_quietly(tmp_path / "latent")
