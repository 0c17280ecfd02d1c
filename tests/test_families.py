"""What every new family (PixArt, Flux, Sana) shares: the comparison and the component grid run on it, bf16
autocast stays close to float32, and the tap grammar knows which stacks a model has."""

from __future__ import annotations

import pytest
import torch

from aselect_bench import UserError, load_backbone

TINY = ["tiny-pixart", "tiny-flux", "tiny-sana"]


@pytest.mark.parametrize("model", TINY)
def test_comparison_and_component_grid_run_on_every_family(model, tmp_path, monkeypatch):
    from aselect_bench.analyses.compare import run_comparison
    from aselect_bench.analyses.components import run_components
    from tests.test_search import PRESET, BlobsExperiment

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    backbone = load_backbone(model, pretrained=False)
    settings = PRESET.override(**{"backbone": model, "hfr.candidates": [0, 999], "hfr.num_images": 4,
                                  "fgvc.max_epochs": 1})
    result = run_comparison(BlobsExperiment(settings, backbone), state_root=tmp_path / "state",
                            runs_dir=tmp_path / "runs", selectors=False, progress=False)
    assert set(result["exhaustive"]["per_timestep"]) == {0, 999} and result["aselect"]["timestep"] in (0, 999)
    components = ["cross", "out"] if "cross" in backbone.family.components else ["query", "out"]
    grid = run_components(BlobsExperiment(settings, backbone), blocks=[1], components=components,
                          runs_dir=tmp_path / "runs", progress=False, measure_separate=False)
    assert set(grid["grid"]) == {f"blocks.1.{c}" for c in components}
    assert all(0 <= row["val_top1"] <= 100 for row in grid["grid"].values())


@pytest.mark.parametrize("model", TINY)
def test_bf16_autocast_runs_close_to_float32(model):
    backbone = load_backbone(model, pretrained=False)
    taps = [f"{stack}.1.out" for stack in backbone.family.block_counts()]
    images, noise = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 3, 16, 16)
    ref = backbone.extract(images, 400, taps, noise=noise)
    low = backbone.set_precision("bf16").extract(images, 400, taps, noise=noise)
    for tap in taps:
        assert low[tap].dtype == torch.float32 and torch.isfinite(low[tap]).all()
        assert torch.nn.functional.cosine_similarity(low[tap].flatten(), ref[tap].flatten(), dim=0) > 0.99, tap


@pytest.mark.parametrize("model, tap, fragment", [
    ("tiny-pixart", "single_blocks.0.out", "write taps as 'blocks.<i>.<component>'"),
    ("tiny-sana", "blocks.4.cross", "block 4 does not exist"),
    ("tiny-dit", "blocks.1.cross", "unknown component 'cross'"),
])
def test_taps_a_model_does_not_have_are_refused_in_one_line(model, tap, fragment):
    backbone = load_backbone(model, pretrained=False)
    with pytest.raises(UserError) as info:
        backbone.check_taps([tap])
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("model", TINY)
def test_the_fingerprint_names_family_conditioning_and_schedule(model):
    a, b = load_backbone(model, pretrained=False), load_backbone(model, pretrained=False, seed=1)
    assert a.fingerprint == load_backbone(model, pretrained=False).fingerprint != b.fingerprint
    assert a.family.identity()["conditioning"] == "zeros"
