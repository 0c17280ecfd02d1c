"""Strict loading: folders of another model class and partial checkpoints are refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from aselect_bench import UserError, load_backbone
from aselect_bench.backbones.checkpoints import load_strict
from aselect_bench.backbones.loading import FOLDER_FAMILIES
from aselect_bench.io import display_path
from tests.test_cli import assert_one_line_error, cli

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _edit_checkpoint(folder, edit):
    """Apply ``edit(state_dict)`` to the safetensors file of a saved model folder."""
    state = load_file(folder / WEIGHTS)
    edit(state)
    save_file(state, folder / WEIGHTS, metadata={"format": "pt"})


def _drop_one(state):
    state.pop("transformer_blocks.1.attn1.to_q.weight")


def _add_one(state):
    state["transformer_blocks.9.attn1.to_q.weight"] = torch.zeros(32, 32)


def _reshape_one(state):
    state["proj_out_2.weight"] = torch.zeros(13, 32)


BROKEN = {
    "missing": (_drop_one, "1 missing tensor (e.g. transformer_blocks.1.attn1.to_q.weight)"),
    "extra": (_add_one, "1 unexpected tensor (e.g. transformer_blocks.9.attn1.to_q.weight)"),
    "shape": (_reshape_one, "1 wrongly shaped tensor (e.g. proj_out_2.weight [13, 32] vs model [12, 32])"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Bare tiny-DiT folders: intact, each broken variant, and a UNet2DModel (a class the suite never uses)."""
    from diffusers import UNet2DModel

    root = tmp_path_factory.mktemp("folders")
    source = load_backbone("tiny-dit", pretrained=False, seed=1)
    for name in ["intact", *BROKEN]:
        source.transformer.save_pretrained(root / name)
        if name in BROKEN:
            _edit_checkpoint(root / name, BROKEN[name][0])
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    unet.save_pretrained(root / "unet")
    unet.save_pretrained(root / "unet-pipeline" / "transformer")
    return root, source


def test_an_intact_folder_loads_every_tensor_and_names_its_weights(folders):
    root, source = folders
    loaded = load_backbone(str(root / "intact"))
    for (name, a), b in zip(source.transformer.state_dict().items(), loaded.transformer.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(p.is_meta for p in loaded.parameters())
    assert loaded.weights_id.startswith(f"{display_path(root / 'intact')}@") and len(loaded.weights_id.split("@")[1]) == 12
    assert load_backbone(str(root / "intact")).weights_id == loaded.weights_id  # stable while files are unchanged


@pytest.mark.parametrize("case", BROKEN)
def test_partial_checkpoints_are_refused_in_one_line(folders, case):
    root, _ = folders
    with pytest.raises(UserError) as info:
        load_backbone(str(root / case))
    message = str(info.value)
    assert "\n" not in message and BROKEN[case][1] in message and str(root / case / WEIGHTS) in message


def test_several_problems_are_counted_in_one_message(tmp_path):
    load_backbone("tiny-dit", pretrained=False).transformer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layers": 6}))  # the weights hold 4 blocks
    with pytest.raises(UserError, match=r"\d+ missing tensors \(e\.g\. transformer_blocks\.4\.") as info:
        load_backbone(str(tmp_path))
    assert "\n" not in str(info.value)


def test_the_vae_loads_strictly_too(tmp_path):
    from diffusers import AutoencoderKL

    load_backbone("tiny-dit-latent", pretrained=False).vae.save_pretrained(tmp_path)
    _edit_checkpoint(tmp_path, lambda state: state.pop("decoder.conv_out.bias"))
    with pytest.raises(UserError, match="AutoencoderKL config: 1 missing tensor"):
        load_strict(AutoencoderKL, tmp_path)


def test_legacy_attention_names_of_an_old_vae_checkpoint_load_as_diffusers_renames_them(tmp_path):
    from diffusers import AutoencoderKL

    vae = load_backbone("tiny-dit-latent", pretrained=False).vae
    vae.save_pretrained(tmp_path)
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}

    def rename(state):  # the names diffusers' AttentionBlock used before 0.14
        for key in [k for k in state if ".attentions.0." in k]:
            for new, legacy in old.items():
                if f".{new}." in key:
                    state[key.replace(f".{new}.", f".{legacy}.")] = state.pop(key)

    _edit_checkpoint(tmp_path, rename)
    assert any(".query." in k for k in load_file(tmp_path / WEIGHTS))
    loaded = load_strict(AutoencoderKL, tmp_path)
    for name, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


@pytest.mark.parametrize("folder", ["unet", "unet-pipeline"])
def test_folders_of_another_class_are_refused(folders, folder):
    root, _ = folders
    assert "UNet2DModel" not in FOLDER_FAMILIES
    with pytest.raises(UserError, match="holds a UNet2DModel, which this suite cannot use") as info:
        load_backbone(str(root / folder))
    assert "DiTTransformer2DModel" in str(info.value) and "\n" not in str(info.value)


def test_legacy_transformer2d_folders_load_as_the_class_their_norm_stands_for(folders, tmp_path):
    """The released DiT-XL/2 folders name ``Transformer2DModel`` (saved by diffusers 0.12): a DiT all the same; one
    with ``ada_norm_single`` is a PixArt."""
    root, source = folders
    config = json.loads((root / "intact" / "config.json").read_text())
    (tmp_path / "dit").mkdir()
    (tmp_path / "dit" / "config.json").write_text(json.dumps({**config, "_class_name": "Transformer2DModel"}))
    (tmp_path / "dit" / WEIGHTS).symlink_to(root / "intact" / WEIGHTS)
    loaded = load_backbone(str(tmp_path / "dit"))
    assert torch.equal(loaded.transformer.proj_out_2.weight, source.transformer.proj_out_2.weight)
    # the released PixArt-Σ folder was saved as a Transformer2DModel too: it loads as PixArt
    pixart = load_backbone("tiny-pixart", pretrained=False)
    pixart.transformer.save_pretrained(tmp_path / "pixart")
    config = json.loads((tmp_path / "pixart" / "config.json").read_text())
    (tmp_path / "pixart" / "config.json").write_text(json.dumps({**config, "_class_name": "Transformer2DModel"}))
    with pytest.warns(UserWarning, match="conditioning on zeros"):
        loaded = load_backbone(str(tmp_path / "pixart"))
    assert type(loaded.family).__name__ == "PixArtFamily"
    assert torch.equal(loaded.transformer.proj_out.weight, pixart.transformer.proj_out.weight)


def test_a_config_without_a_class_name_is_refused(folders, tmp_path):
    root, _ = folders
    config = json.loads((root / "intact" / "config.json").read_text())
    config.pop("_class_name")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="names no diffusers model class"):
        load_backbone(str(tmp_path))


@pytest.mark.parametrize("case, fragment", [("missing", "1 missing tensor"), ("extra", "1 unexpected tensor"),
                                            ("shape", "1 wrongly shaped tensor"), ("unet", "holds a UNet2DModel")])
def test_the_cli_refuses_them_with_status_2(folders, case, fragment):
    root, _ = folders
    result = cli("select", "--backbone", root / case, "--dataset", "cub", "--data-root", root, "--num-images", 2)
    assert_one_line_error(result, fragment)
