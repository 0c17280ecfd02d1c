"""Sana taps against diffusers' own forward (hooks), its flow DPM-Solver's tables, the DC-AE and the pipeline's
Gemma prompt encoding."""

from __future__ import annotations

import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.backbones.registry import sana_config
from aselect_bench.backbones.sana import SANA_SCHEDULER
from tests.family_utils import (
    captured,
    check_against,
    cross_block_features,
    cross_block_modules,
    drop_tensor,
    load_quietly,
    save_text,
    select_end_to_end,
    tiny_gemma,
)

pytestmark = pytest.mark.usefixtures("private_cache")
TIMESTEPS = (1, 321, 999)
BLOCKS = (1, 3)


def tiny_transformer(**overrides):
    from diffusers import SanaTransformer2DModel

    torch.manual_seed(0)
    config = sana_config(depth=4, heads=2, head_dim=16, cross_heads=2, cross_head_dim=16, in_channels=3,
                         sample_size=16, patch_size=2, caption_channels=16)
    return SanaTransformer2DModel(**{**config, **overrides})


def tiny_dc_ae():
    """A two-level DC-AE (2x downsampling, 4 latent channels) with Sana's block types."""
    from diffusers import AutoencoderDC

    torch.manual_seed(1)
    blocks, scales = ("ResBlock", "EfficientViTBlock"), ((), (5,))
    return AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=8, encoder_block_types=blocks,
                         decoder_block_types=blocks, encoder_block_out_channels=(8, 16),
                         decoder_block_out_channels=(8, 16), encoder_layers_per_block=(1, 1),
                         decoder_layers_per_block=(1, 1), encoder_qkv_multiscales=scales,
                         decoder_qkv_multiscales=scales, upsample_block_type="interpolate",
                         downsample_block_type="Conv", decoder_norm_types="rms_norm", decoder_act_fns="silu",
                         scaling_factor=0.5)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffusers import DPMSolverMultistepScheduler

    root = tmp_path_factory.mktemp("sana")
    tiny_transformer().save_pretrained(root / "bare")
    latent = root / "latent"  # DC-AE latents, its own flow shift, q/k RMS norm (Sana 1.5) and a timestep scale
    tiny_transformer(in_channels=4, out_channels=4, sample_size=8, patch_size=1, qk_norm="rms_norm_across_heads",
                     timestep_scale=0.5).save_pretrained(latent / "transformer")
    tiny_dc_ae().save_pretrained(latent / "vae")
    config = {k: v for k, v in SANA_SCHEDULER.items() if not k.startswith("_")}
    DPMSolverMultistepScheduler(**{**config, "flow_shift": 2.0}).save_pretrained(latent / "scheduler")
    save_text(latent, *tiny_gemma(16))
    return root


def own_scheduler(folder):
    from diffusers import DPMSolverMultistepScheduler

    sched_dir = folder / "scheduler"
    config = {k: v for k, v in SANA_SCHEDULER.items() if not k.startswith("_")}
    scheduler = (DPMSolverMultistepScheduler.from_pretrained(sched_dir) if sched_dir.exists()
                 else DPMSolverMultistepScheduler(**config))
    scheduler.set_timesteps(1000)
    return scheduler


def pipeline_conditioning(folder, transformer, b):
    """The negative prompt ``""`` as diffusers' own ``SanaPipeline.encode_prompt`` encodes it."""
    from diffusers import SanaPipeline
    from transformers import AutoTokenizer, Gemma2Model

    pipe = SanaPipeline(tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
                        text_encoder=Gemma2Model.from_pretrained(folder / "text_encoder"), vae=None,
                        transformer=transformer, scheduler=own_scheduler(folder))
    with torch.no_grad():  # as in the pipeline's __call__
        _, _, embeds, mask = pipe.encode_prompt("", do_classifier_free_guidance=True, negative_prompt="",
                                                num_images_per_prompt=b, device=torch.device("cpu"))
    return embeds, mask


def reference_features(backbone, folder, images, timestep, noise):
    """Every component of :data:`BLOCKS`, read with hooks on diffusers' full forward; noise from the folder's
    scheduler (its ``add_noise`` at index ``1000 - t``), the pipeline's conditioning (or zeros)."""
    tr, b = backbone.transformer, images.shape[0]
    scheduler = own_scheduler(folder)
    with torch.no_grad():
        x0 = images
        if backbone.vae is not None:
            x0 = backbone.vae.encode(images).latent * backbone.vae.config.scaling_factor
        scheduler.set_begin_index(1000 - timestep)  # int timesteps repeat: address the step by its index
        model_t = scheduler.timesteps[1000 - timestep]
        x_t = scheduler.add_noise(x0, noise, model_t[None])
        if (folder / "text_encoder").exists():
            embeds, mask = pipeline_conditioning(folder, tr, b)
        else:
            embeds, mask = torch.zeros(b, 300, 16), torch.ones(b, 300)
        outputs, inputs = cross_block_modules(tr, BLOCKS)
        with captured(outputs, inputs) as seen:
            tr(x_t, encoder_hidden_states=embeds, encoder_attention_mask=mask,
               timestep=model_t.expand(b) * tr.config.timestep_scale)
    p = tr.config.patch_size  # GLUMBConv works on the grid: its output [B, D, h, w] back to tokens
    return cross_block_features(seen, BLOCKS, x0.shape[-2] // p, x0.shape[-1] // p,
                                mlp=lambda grid: grid.flatten(2, 3).transpose(1, 2))


@pytest.mark.parametrize("timestep", TIMESTEPS)
@pytest.mark.parametrize("kind", ["bare", "latent"])
def test_every_component_matches_hooked_diffusers_forward(folders, kind, timestep):
    backbone = load_quietly(folders / kind)
    assert (backbone.vae is not None) == (kind == "latent")
    torch.manual_seed(timestep)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    noise = torch.randn(backbone.encode(images).shape)
    check_against(backbone, images, timestep, noise, reference_features(backbone, folders / kind, images, timestep,
                                                                        noise))


def test_the_schedule_is_the_folders_flow_dpm_solver(folders):
    for kind, shift in (("latent", 2.0), ("bare", 3.0)):  # the folder's flow_shift; Sana's 3.0 without a scheduler
        noise, scheduler = load_quietly(folders / kind).noise, own_scheduler(folders / kind)
        assert scheduler.config.flow_shift == shift
        for t in (1, 50, 500, 999):
            assert noise.sigma(t) == pytest.approx(float(scheduler.sigmas[1000 - t]), abs=1e-7)
            assert noise.model_timestep(t) == float(scheduler.timesteps[1000 - t])
        assert noise.sigma(0) == 0 and noise.model_timestep(0) == 0
        sigmas = [noise.sigma(t) for t in range(1000)]
        assert all(a < b for a, b in zip(sigmas, sigmas[1:]))


def test_dc_ae_latents_are_scaled(folders):
    backbone = load_quietly(folders / "latent")
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert backbone.vae_scale == 2 and backbone.patch_size == 2 and backbone.image_size == 16
    torch.testing.assert_close(backbone.encode(images), backbone.vae.encode(images).latent * 0.5)


def test_empty_prompt_is_the_pipelines_computed_once_and_cached(folders, tmp_path, monkeypatch):
    from aselect_bench.backbones import pixart

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    family = load_quietly(folders / "latent").family
    cond = family.conditioning
    assert tuple(cond["embeds"].shape) == (1, 300, 16) and tuple(cond["mask"].shape) == (1, 300)
    embeds, mask = pipeline_conditioning(folders / "latent", family.transformer, 1)
    torch.testing.assert_close(cond["embeds"], embeds)
    torch.testing.assert_close(cond["mask"], mask.float())
    assert mask.sum() == 1  # "" is <bos> alone, right-padded
    assert len(list((tmp_path / "cache" / "sana-empty-prompt").glob("*.pt"))) == 1
    monkeypatch.setattr(pixart, "load_text_model", lambda *a, **k: pytest.fail("the cache should be used"))
    assert load_quietly(folders / "latent").family.identity() == family.identity() != {"conditioning": "zeros"}


def test_without_a_text_encoder_the_caption_is_zeros_with_one_warning_line(folders):
    with pytest.warns(UserWarning) as caught:
        backbone = load_backbone(str(folders / "bare"))
    messages = [str(w.message) for w in caught if "conditioning on zeros" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and messages[0].startswith("Sana folder")
    assert tuple(backbone.family.conditioning["embeds"].shape) == (1, 300, 16)


def test_sana_folders_load_strictly(folders, tmp_path):
    import shutil

    shutil.copytree(folders / "latent", tmp_path / "latent")
    drop_tensor(tmp_path / "latent" / "vae", "encoder.conv_out.weight")
    with pytest.raises(UserError, match="AutoencoderDC config: 1 missing tensor") as info:
        load_quietly(tmp_path / "latent")
    assert "\n" not in str(info.value)
    shutil.copytree(folders / "bare", tmp_path / "bare")
    drop_tensor(tmp_path / "bare", "transformer_blocks.0.ff.conv_depth.weight")
    with pytest.raises(UserError, match="1 missing tensor"):
        load_quietly(tmp_path / "bare")


def test_real_architecture_without_weights():
    with torch.device("meta"):
        backbone = load_backbone("sana-1600m-1024", pretrained=False, device="meta")
    n = sum(p.numel() for p in backbone.transformer.parameters())
    assert abs(n / 1.6e9 - 1) < 0.03, n
    assert backbone.num_blocks == 20 and backbone.hidden_size == 2240
    assert backbone.vae_scale == 32 and backbone.patch_size == 32 and backbone.image_size == 1024
    assert tuple(backbone.family.conditioning["embeds"].shape) == (1, 300, 2304)


def test_select_on_a_tiny_sana_folder_end_to_end(folders, tmp_path):
    select_end_to_end(folders / "latent", "blocks.2.mlp", tmp_path)


def test_a_flow_match_scheduler_is_used_as_is_and_a_ddpm_one_is_refused():
    from diffusers import FlowMatchEulerDiscreteScheduler

    from aselect_bench.backbones.noise import RectifiedFlowNoise

    config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 7.0}  # as diffusers' tiny Sana test pipe
    noise = RectifiedFlowNoise.from_config(config, SANA_SCHEDULER)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    scheduler.set_timesteps(1000)
    assert noise.sigma(300) == pytest.approx(float(scheduler.sigmas[700]), abs=1e-7)
    with pytest.raises(UserError, match="not a rectified-flow scheduler") as info:
        RectifiedFlowNoise.from_config({"_class_name": "DDPMScheduler"}, SANA_SCHEDULER)
    assert "\n" not in str(info.value)
