"""PixArt-α/Σ taps against diffusers' own forward (hooks), its scheduler's tables and its pipelines' prompt encoding."""

from __future__ import annotations

import json

import pytest
import torch

from aselect_bench import UserError, load_backbone
from aselect_bench.backbones.registry import pixart_config, tiny_vae_config
from tests.family_utils import (
    captured,
    check_against,
    cross_block_features,
    cross_block_modules,
    drop_tensor,
    load_quietly,
    save_text,
    select_end_to_end,
    tiny_t5,
)

pytestmark = pytest.mark.usefixtures("private_cache")
TIMESTEPS = (1, 321, 999)
BLOCKS = (1, 3)


def tiny_transformer(heads=2, **overrides):
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(0)
    config = pixart_config(depth=4, heads=heads, head_dim=16, sample_size=16, in_channels=3, caption_channels=16)
    return PixArtTransformer2DModel(**{**config, **overrides})


def write_pipeline(folder, transformer, pipeline="PixArtSigmaPipeline", text=True, betas=(1e-4, 0.012)):
    """A PixArt pipeline folder: ``transformer/``, a tiny ``vae/``, a DPM-Solver ``scheduler/`` with its own betas,
    ``model_index.json`` naming the pipeline, and a tiny T5 ``text_encoder/`` + ``tokenizer/``."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler

    transformer.save_pretrained(folder / "transformer")
    torch.manual_seed(1)
    AutoencoderKL(**tiny_vae_config()).save_pretrained(folder / "vae")
    DPMSolverMultistepScheduler(beta_start=betas[0], beta_end=betas[1]).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    if text:
        save_text(folder, *tiny_t5(16))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixart")
    tiny_transformer().save_pretrained(root / "bare")
    write_pipeline(root / "sigma", tiny_transformer(in_channels=4, sample_size=8))
    # PixArt-α 1024's resolution and aspect-ratio conditions, on a small model (their width: a third of 48 each)
    write_pipeline(root / "alpha1024", tiny_transformer(3, in_channels=4, sample_size=8, use_additional_conditions=True),
                   pipeline="PixArtAlphaPipeline", text=False)
    return root


def pipeline_conditioning(folder, transformer, b, length):
    """The negative prompt ``""`` as diffusers' own ``PixArtAlphaPipeline.encode_prompt`` encodes it."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline
    from transformers import T5EncoderModel, T5Tokenizer

    pipe = PixArtAlphaPipeline(tokenizer=T5Tokenizer.from_pretrained(folder / "tokenizer"),
                               text_encoder=T5EncoderModel.from_pretrained(folder / "text_encoder"), vae=None,
                               transformer=transformer, scheduler=DPMSolverMultistepScheduler())
    with torch.no_grad():  # as in the pipeline's __call__
        _, _, embeds, mask = pipe.encode_prompt("", do_classifier_free_guidance=True, negative_prompt="",
                                                num_images_per_prompt=b, device=torch.device("cpu"),
                                                max_sequence_length=length)
    return embeds, mask


def reference_features(backbone, folder, images, timestep, noise):
    """Every component of :data:`BLOCKS`, read with hooks on diffusers' full forward; noise from DDPMScheduler with
    the folder's betas; the pipeline's conditioning (or zeros) and, at 1024 px, its size conditions."""
    from diffusers import DDPMScheduler

    tr, b = backbone.transformer, images.shape[0]
    sched_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = DDPMScheduler.from_config(json.loads(sched_file.read_text())) if sched_file.exists() else (
        DDPMScheduler(beta_start=1e-4, beta_end=0.02, beta_schedule="linear"))
    with torch.no_grad():
        x0 = images
        if backbone.vae is not None:
            x0 = backbone.vae.encode(images).latent_dist.mean * backbone.vae.config.scaling_factor
        x_t = scheduler.add_noise(x0, noise, torch.tensor([timestep]))
        length = backbone.family.conditioning["mask"].shape[1]
        if (folder / "text_encoder").exists():
            embeds, mask = pipeline_conditioning(folder, tr, b, length)
        else:
            embeds, mask = torch.zeros(b, length, 16), torch.ones(b, length)
        added = None
        if tr.use_additional_conditions:
            h, w = images.shape[-2:]
            added = {"resolution": torch.tensor([[h, w]] * b, dtype=torch.float32),
                     "aspect_ratio": torch.tensor([[h / w]] * b)}
        outputs, inputs = cross_block_modules(tr, BLOCKS)
        with captured(outputs, inputs) as seen:
            tr(x_t, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=torch.full((b,), timestep),
               added_cond_kwargs=added)
    return cross_block_features(seen, BLOCKS, x0.shape[-2] // 2, x0.shape[-1] // 2)


@pytest.mark.parametrize("timestep", TIMESTEPS)
@pytest.mark.parametrize("kind", ["bare", "sigma", "alpha1024"])
def test_every_component_matches_hooked_diffusers_forward(folders, kind, timestep):
    backbone = load_quietly(folders / kind)
    assert (backbone.vae is not None) == (kind != "bare")
    assert backbone.transformer.use_additional_conditions == (kind == "alpha1024")
    torch.manual_seed(timestep)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    noise = torch.randn(backbone.encode(images).shape)
    check_against(backbone, images, timestep, noise, reference_features(backbone, folders / kind, images, timestep,
                                                                        noise))


def test_the_schedule_is_the_folders_ddpm_betas(folders):
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    from aselect_bench.backbones.noise import DIT_SCHEDULER

    noise = load_quietly(folders / "sigma").noise
    own = DPMSolverMultistepScheduler.from_pretrained(folders / "sigma" / "scheduler")
    torch.testing.assert_close(noise.alphas_cumprod.float(), own.alphas_cumprod)
    assert own.config.beta_end == 0.012  # not DiT's 0.02: the folder's own betas are used
    x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for t in (0, 500, 999):
        torch.testing.assert_close(noise.add_noise(x0, t, eps), DDPMScheduler.from_config(own.config).add_noise(
            x0, eps, torch.tensor([t])))
    bare = load_quietly(folders / "bare").noise  # no scheduler: DiT's linear betas
    torch.testing.assert_close(bare.alphas_cumprod.float(), DDPMScheduler(**DIT_SCHEDULER).alphas_cumprod)
    assert bare.model_timestep(321) == 321


def test_empty_prompt_is_the_pipelines_computed_once_and_cached(folders, tmp_path, monkeypatch):
    from aselect_bench.backbones import pixart

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    family = load_quietly(folders / "sigma").family
    cond = family.conditioning
    assert tuple(cond["embeds"].shape) == (1, 300, 16) and tuple(cond["mask"].shape) == (1, 300)  # Σ: 300 tokens
    embeds, mask = pipeline_conditioning(folders / "sigma", family.transformer, 1, 300)
    torch.testing.assert_close(cond["embeds"], embeds)
    torch.testing.assert_close(cond["mask"], mask.float())
    assert mask.sum() == 1  # "" is one token (</s>); the cross-attention sees only it
    assert len(list((tmp_path / "cache" / "pixart-empty-prompt").glob("*.pt"))) == 1

    def no_text_encoder(*args, **kwargs):
        raise AssertionError("the cached conditioning should be used")

    monkeypatch.setattr(pixart, "load_text_model", no_text_encoder)
    again = load_quietly(folders / "sigma").family
    torch.testing.assert_close(again.conditioning["embeds"], cond["embeds"])
    assert again.identity() == family.identity() != {"conditioning": "zeros"}


def test_without_a_text_encoder_the_caption_is_zeros_with_one_warning_line(folders):
    with pytest.warns(UserWarning) as caught:
        backbone = load_backbone(str(folders / "alpha1024"))
    messages = [str(w.message) for w in caught if "conditioning on zeros" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0] and "text_encoder/" in messages[0]
    cond = backbone.family.conditioning
    assert tuple(cond["embeds"].shape) == (1, 120, 16) and cond["embeds"].abs().sum() == 0  # α: 120 tokens
    assert backbone.family.identity() == {"conditioning": "zeros"}


def test_early_exit_stops_after_the_taps_stage():
    backbone = load_backbone("tiny-pixart", pretrained=False)
    called = []
    for i, blk in enumerate(backbone.transformer.transformer_blocks):
        for name, module in [("q", blk.attn1.to_q), ("attn", blk.attn1), ("cross", blk.attn2), ("ff", blk.ff)]:
            module.register_forward_hook(lambda m, a, o, i=i, name=name: called.append((name, i)))
    backbone.extract(torch.zeros(1, 3, 16, 16), 10, ["blocks.1.cross", "blocks.0.query"])
    assert called == [("q", 0), ("cross", 0), ("ff", 0), ("q", 1), ("cross", 1)]


def test_pixart_folders_load_strictly(folders, tmp_path):
    import shutil

    from aselect_bench.backbones.loading import FOLDER_FAMILIES

    assert "PixArtTransformer2DModel" in FOLDER_FAMILIES
    shutil.copytree(folders / "bare", tmp_path / "bare")
    drop_tensor(tmp_path / "bare", "transformer_blocks.2.attn2.to_k.weight")
    with pytest.raises(UserError, match="1 missing tensor") as info:
        load_quietly(tmp_path / "bare")
    assert "\n" not in str(info.value)
    shutil.copytree(folders / "sigma", tmp_path / "sigma")
    drop_tensor(tmp_path / "sigma" / "text_encoder", "shared.weight")
    with pytest.raises(UserError, match="text_encoder does not match its config"):
        load_quietly(tmp_path / "sigma")


@pytest.mark.parametrize("preset, params, size, tokens", [
    ("pixart-sigma-1024", 611e6, 1024, 300), ("pixart-alpha-512", 611e6, 512, 120)])
def test_real_architectures_without_weights(preset, params, size, tokens):
    with torch.device("meta"):
        backbone = load_backbone(preset, pretrained=False, device="meta")
    n = sum(p.numel() for p in backbone.transformer.parameters())
    assert abs(n / params - 1) < 0.02, n
    assert backbone.num_blocks == 28 and backbone.hidden_size == 1152 and backbone.image_size == size
    assert not backbone.transformer.use_additional_conditions  # Σ sets it off; α-512 never had it
    assert tuple(backbone.family.conditioning["embeds"].shape) == (1, tokens, 4096)
    assert backbone.family.components[-4:] == ("cross", "mlp", "mlp_gated", "out")


def test_select_on_a_tiny_pixart_folder_end_to_end(folders, tmp_path):
    select_end_to_end(folders / "sigma", "blocks.2.cross", tmp_path)



def test_class_labels_are_refused():
    backbone = load_backbone("tiny-pixart", pretrained=False)
    with pytest.raises(UserError, match="empty prompt"):
        backbone.extract(torch.zeros(1, 3, 16, 16), 5, ["blocks.0.out"], class_labels=3)
