"""``aselect-bench estimate``: the dry run at real size, its projection arithmetic and its memory refusals."""

from __future__ import annotations

import json

import pytest
import torch

from aselect_bench.analyses.estimate import (
    FlopCounts,
    Plan,
    count_fgvc,
    fgvc_projection,
    project,
    run_estimate,
    warm_up,
)
from aselect_bench.analyses.estimate.gpu import architecture
from aselect_bench.analyses.projection import epoch_iterations, strategy_hours
from aselect_bench.analyses.resources import largest_that_runs, predict_fit
from aselect_bench.backbones.flops import flops_per_image
from aselect_bench.backbones.registry import MODELS
from aselect_bench.cli import main
from aselect_bench.data.fgvc import DATASETS, protocol_sizes
from aselect_bench.errors import UserError
from aselect_bench.settings import load_bench_preset
from tests.test_cli import assert_one_line_error, cli

CONTRACT = {"preset", "task", "device", "weights", "backbone_params", "peak_memory_bytes", "seconds_per_step",
            "projection", "run"}
GIB = 2**30
GPU_KEYS = {"gpu", "gpus", "mfu", "peak_flops", "flops_per_image", "head_flops_per_step", "aselect_gpu_hours",
            "exhaustive_gpu_hours", "aselect_wall_hours", "exhaustive_wall_hours", "saving", "basis"}


def check_projection(p: dict) -> None:
    """A-SelecT = scan + one training; exhaustive = one training per candidate; saving their ratio."""
    assert p["aselect_hours"] == pytest.approx(p["scan_hours"] + p["training_hours"])
    assert p["exhaustive_hours"] == pytest.approx(p["candidates"] * p["training_hours"])
    assert p["saving"] == pytest.approx(p["exhaustive_hours"] / p["aselect_hours"])
    assert 1 < p["saving"] < p["candidates"] and p["scan_hours"] > 0


def test_demo_estimate_writes_both_tasks_measured_here(tmp_path):
    from aselect_bench import load_backbone

    main(["estimate", "--preset", "demo", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
          "--steps", "1", "--batch-size", "2", "--gpus", "2", "--gpu", "a100"])
    demo = load_backbone("demo")
    params = sum(p.numel() for p in demo.transformer.parameters())
    for task, dataset, stages in (("fgvc", "cub", {"probe_train", "evaluate", "hfr_scan"}),
                                  ("ade20k", "ade20k", {"upernet_train", "inference", "hfr_scan"})):
        r = json.loads((tmp_path / "out" / f"demo-{task}-cpu.json").read_text())
        assert CONTRACT <= set(r) and r["preset"] == "demo" and r["task"] == task and r["device"] == "cpu"
        assert r["weights"] == "pretrained" and r["run"]["weights_id"] == demo.weights_id
        assert r["backbone_params"] == params and r["peak_memory_bytes"] > 0
        assert set(r["seconds_per_step"]) == stages and all(s > 0 for s in r["seconds_per_step"].values())
        assert r["cpu_share"] > 0 and all(s["cpu_seconds"] > 0 for s in r["stages"].values())
        assert r["stages"][f"{'probe' if task == 'fgvc' else 'upernet'}_train"]["batch"] == 2
        assert r["stages"]["hfr_scan"]["backbone_forwards"] == 2 * r["stages"]["hfr_scan"]["batch"]  # 2 candidates
        check_projection(r["projection"])
        assert r["data"].startswith(f"{dataset} from ")  # the demo's synthetic stand-in on disk, in its real layout
        markdown = (tmp_path / "out" / f"demo-{task}-cpu.md").read_text()
        assert "Projected cost on this device (cpu)" in markdown and "projection from FLOPs, not a measurement" in markdown
        g = r["gpu_projection"]  # beside the measured figures, which stay as they are
        assert GPU_KEYS <= set(g) and g["basis"] == "projection from FLOPs, not a measurement"
        assert (g["gpu"], g["gpus"], g["mfu"], g["peak_flops"]) == ("a100", 2, 0.4, 312e12)
        assert g["flops_per_image"] == r["flops_per_image"]["features"] and g["windows"] == r.get("windows", 1)
        assert g["rounds"] == 11 and g["exhaustive_wall_hours"] == pytest.approx(11 * g["training_gpu_hours"])
    r = json.loads((tmp_path / "out" / "demo-fgvc-cpu.json").read_text())
    assert r["projection"]["sizes"] == {"train": 1620, "val": 180, "test": 600}  # 12 classes x (150 train, 50 test)


def test_random_architecture_and_synthetic_batch_when_nothing_is_on_disk(tmp_path):
    preset = load_bench_preset("paper-dit").override(**{
        "backbone": "tiny-dit-latent", "ade20k.backbone": "tiny-dit-latent", "fgvc.tap": "blocks.1.query",
        "fgvc.head_width": 32, "ade20k.channels": 16, "ade20k.aux_channels": 8, "ade20k.scale": [64, 16],
        "ade20k.crop_size": 16, "ade20k.slide_crop": 16, "ade20k.slide_stride": 10, "data_root": str(tmp_path)})
    fgvc, ade20k = run_estimate(preset, ("fgvc", "ade20k"), steps=1, out=tmp_path / "out", say=lambda line: None,
                                plan=Plan("l40s", 4))
    assert fgvc["weights"] == ade20k["weights"] == "random" and fgvc["run"]["weights_id"] == "random-init-seed0"
    assert "synthetic" in fgvc["data"] and fgvc["num_classes"] == DATASETS["cub"].num_classes == 200
    assert fgvc["projection"]["sizes"] == protocol_sizes("cub") == {"train": 5395, "val": 599, "test": 5794}
    assert fgvc["projection"]["iterations"] == 100 * 85  # 100 epochs x ceil(5,395 / 64)
    assert set(fgvc["projection_by_dataset"]) == set(DATASETS)
    assert ade20k["eval_image"] == [16, 21] and ade20k["windows"] == 2  # a 4:3 image, 16 px windows every 10 px
    assert ade20k["projection"]["iterations"] == 160_000 and ade20k["projection"]["evaluations"] == 10
    for r in (fgvc, ade20k):
        check_projection(r["projection"])
        g = r["gpu_projection"]  # the measured run's counts, at FLOP speed
        assert g["iterations"] == r["projection"]["iterations"] and g["sizes"] == r["projection"]["sizes"]
        assert g["flops_per_image"] == r["flops_per_image"]["features"] and g["encode_flops_per_image"] > 0  # VAE
        assert g["rounds"] == 6 and set(g["by_dataset"]) == (set(DATASETS) if r is fgvc else set())
    assert ade20k["gpu_projection"]["windows"] == ade20k["windows"] == 2


def test_projection_arithmetic():
    assert strategy_hours(3600, 7200, 21) == {"scan_hours": 1, "training_hours": 2, "aselect_hours": 3,
                                              "exhaustive_hours": 42, "saving": 14}
    assert epoch_iterations(5994, 100, 8) == 75_000 and epoch_iterations(10, 2, 4, drop_last=True) == 4
    stages = {"probe_train": {"seconds_per_image": 0.5}, "evaluate": {"seconds_per_image": 0.25},
              "hfr_scan": {"encode_seconds_per_image": 1.0, "seconds_per_backbone_forward": 0.1}}
    p = fgvc_projection(load_bench_preset("paper"), stages, {"train": 80, "val": 8, "test": 20})
    assert p["iterations"] == 100 * 10 and p["step_seconds"] == 4.0  # 0.5 s per image x batch 8
    assert p["evaluation_seconds"] == (100 * 8 + 20) * 0.25
    assert p["scan_hours"] * 3600 == pytest.approx(64 * 1.0 + 64 * 21 * 0.1)
    assert p["training_hours"] * 3600 == pytest.approx(1000 * 4.0 + 820 * 0.25)


def test_gpu_projection_arithmetic():
    """seconds = FLOPs x images x epochs / (peak x mfu), with the measured projection's counts (paper: 100 epochs at
    batch 8, a validation pass per epoch and a test pass; a scan of 64 images x 21 candidates)."""
    counts = FlopCounts("blocks.9.query", "blocks.9.query", features=10**12, hfr_scan=10**12, encode=5 * 10**11,
                        head_forward=10**11, evaluation=16 * 10**11)
    assert counts.training == 18 * 10**11  # encode + backbone + 3 x head forward
    rate = 989e12 * 0.4  # H100 bf16 dense peak x MFU
    training = (1.8e12 * 80 * 100 + 1.6e12 * (100 * 8 + 20)) / rate  # 80 train images x 100 epochs; 820 evaluated
    scan = (64 * 0.5e12 + 64 * 21 * 1e12) / rate  # 64 images encoded once, then 21 candidates each
    for gpus, rounds in ((8, 3), (21, 1), (64, 1)):
        g = project(load_bench_preset("paper"), "fgvc", counts, {"train": 80, "val": 8, "test": 20},
                    Plan("h100", gpus, 0.4))
        assert g["training_gpu_hours"] * 3600 == pytest.approx(training)
        assert g["aselect_gpu_hours"] * 3600 == pytest.approx(scan + training)
        assert g["exhaustive_gpu_hours"] * 3600 == pytest.approx(21 * training)
        assert g["aselect_wall_hours"] == g["aselect_gpu_hours"]  # one GPU
        assert g["exhaustive_wall_hours"] * 3600 == pytest.approx(rounds * training) and g["rounds"] == rounds
        assert g["saving"] == pytest.approx(21 * training / (scan + training))
        assert g["head_flops_per_step"] == 3 * 10**11 * 8 and GPU_KEYS <= set(g)
    assert g["flops_per_image"] == 10**12 and g["peak_flops"] == 989e12


def test_head_flops_are_counted_on_the_real_head():
    """The attentive head (width W, 2 blocks, MLP 4W) on N tokens of C channels, K classes, by hand."""
    preset = load_bench_preset("paper").override(**{"backbone": "tiny-dit", "fgvc.tap": "blocks.1.query",
                                                     "fgvc.head_width": 32, "fgvc.head_heads": 2})
    backbone = architecture("tiny-dit")
    counts = count_fgvc(preset, backbone, num_classes=10)
    n, c, w, k = 64, 32, 32, 10  # 16 px / patch 2 = 8 x 8 tokens
    block = 24 * (n + 1) * w * w + 4 * (n + 1) ** 2 * w  # qkv, out, MLP (2 x 4W) + attention, with the CLS token
    assert counts.head_forward == 2 * n * c * w + 2 * block + 2 * w * k
    assert counts.features == counts.hfr_scan == flops_per_image(backbone, "blocks.1.query")
    assert counts.encode == 0 and counts.evaluation == counts.features + counts.head_forward  # pixel space


def test_flops_only_plans_the_paper_sweep_without_the_real_size_run(tmp_path, monkeypatch, capsys):
    import aselect_bench.analyses.estimate.run as run

    monkeypatch.setattr(run, "load", lambda *args, **kwargs: pytest.fail("--flops-only built a model"))
    main(["estimate", "--preset", "paper", "--flops-only", "--gpus", "8", "--gpu", "h100",
          "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().out.splitlines()
    for task in ("fgvc", "ade20k"):
        r = json.loads((tmp_path / "out" / f"paper-{task}-flops.json").read_text())
        g = r["gpu_projection"]
        assert CONTRACT <= set(r) and r["measured"] is False and r["projection"] is None and GPU_KEYS <= set(g)
        assert r["backbone_params"] == 2_028_328_000 and g["gpus"] == 8 and g["rounds"] == 3
        line = next(line for line in lines if line.startswith(f"paper {task} (") and "GPU-h" in line)
        assert "projected from FLOPs, not measured, on 8 x NVIDIA H100 SXM" in line and "h wall-clock" in line
        assert f"exhaustive {g['exhaustive_gpu_hours']:.3g} GPU-h" in line
        assert "not a measurement" in (tmp_path / "out" / f"paper-{task}-flops.md").read_text()
    assert g["tap"] == "blocks.23.out" and g["windows"] == 2  # SD3's last seg block; a 512 x 683 image, 2 windows


def test_a_model_too_large_for_this_machine_is_projected_from_flops_alone(tmp_path, monkeypatch):
    import aselect_bench.analyses.estimate.run as run
    import aselect_bench.analyses.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda device: 16 * GIB)
    monkeypatch.setattr(run, "load", lambda *args, **kwargs: pytest.fail("built a model that does not fit"))
    preset = load_bench_preset("paper").override(**{"backbone": "flux.1-dev", "ade20k.backbone": "flux.1-dev",
                                                     "data_root": str(tmp_path)})
    fgvc, ade20k = run_estimate(preset, ("fgvc", "ade20k"), out=tmp_path / "out", say=lambda line: None)
    spec = MODELS["flux.1-dev"]
    for r in (fgvc, ade20k):
        assert r["measured"] is False and "does not fit this machine's memory" in r["flops_only"]
        assert "16 GiB available" in r["flops_only"] and r["gpu_projection"]["gpus"] == 1  # the default plan
        assert r["backbone_params"] > 11e9 and (tmp_path / "out" / f"paper-{r['task']}-flops.md").exists()
    assert fgvc["gpu_projection"]["tap"] == spec.default_tap  # the preset's tap, the registry's default too
    seg = [f"blocks.{b}.out" for b in spec.seg_blocks]  # ade20k.blocks null: the registry's blocks
    assert ade20k["gpu_projection"]["tap"] == seg[-1] and ade20k["gpu_projection"]["hfr_tap"] == seg[1]


def test_flops_only_refuses_a_folder_in_one_line(tmp_path):
    preset = load_bench_preset("paper").override(backbone=str(tmp_path))
    with pytest.raises(UserError, match="--flops-only counts a registered model's architecture"):
        run_estimate(preset, ("fgvc",), out=tmp_path / "out", flops_only=True, say=lambda line: None)


def test_largest_batch_that_fits_is_found_by_halving():
    assert predict_fit(16, {1: GIB}, 5 * GIB) == 4  # proportional: 4 GiB <= 90% of 5
    assert predict_fit(16, {1: 3 * GIB, 2: 3.6 * GIB}, 5 * GIB) == 2  # the line: 3 + 0.6 (b - 1) GiB; 4.8 at 4
    assert predict_fit(8, {2: 10 * GIB}, 5 * GIB, smallest=2) is None


def test_a_cuda_out_of_memory_error_halves_the_batch():
    tried, cleaned = [], []

    def run(b):  # a GPU with room for 5 images
        tried.append(b)
        if b > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert largest_that_runs(run, 16, cleanup=lambda: cleaned.append(1)) == 4
    assert tried == [16, 8, 4] and len(cleaned) == 2
    assert largest_that_runs(run, 24, smallest=6) is None  # 24, 12, 6 all fail


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/clear_refs").exists(), reason="Linux memory accounting")
def test_a_cpu_batch_that_would_not_fit_is_refused_before_it_runs(monkeypatch):
    import aselect_bench.analyses.estimate.stages as stages

    ran = []

    def step(b, k):  # 200 MB per image, touched, freed at once
        return lambda: ran.append(b) or torch.ones(b * 50_000_000).sum()

    monkeypatch.setattr(stages, "available_memory_bytes", lambda device: 500 * 2**20)
    with pytest.raises(UserError, match=r"batch 8 would not fit .* the largest batch that fits, found by halving, is "
                                        r"2: rerun with --batch-size 2"):
        warm_up(step, "probe_train", 8, 1, "cpu", say=lambda line: None)
    assert ran == [1, 2]  # measured at 1, then 2 (the proportional bound said 2 fits); 8 never ran


def test_a_batch_below_the_heads_minimum_is_one_line(tmp_path):
    result = cli("estimate", "--preset", "demo", "--task", "ade20k", "--batch-size", 1, "--out", tmp_path)
    assert_one_line_error(result, "--batch-size 1 is too small for ade20k")
    result = cli("estimate", "--preset", "demo", "--flops-only", "--mfu", "1.5", "--out", tmp_path)
    assert_one_line_error(result, "1.5 is above 1")
