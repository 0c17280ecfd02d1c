"""The real paths on CUDA (``pytest -m gpu``; skipped without CUDA): extraction equals the CPU's, the HFR scan picks
the CPU's timestep, every LightningModule trains through a real Trainer on one GPU, the demo DiT's pretraining
step runs there, and the feature cache filled from GPU features holds the CPU's features.

``ASELECT_TEST_DEVICE=cpu`` runs the same tests with the CPU in the GPU's place (``benchmarks/gpu_check.sh
--dry-run`` does): it proves the tests themselves work where no GPU is lent, not that CUDA does.
"""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from aselect_bench import load_backbone
from aselect_bench.backbones.registry import MODELS
from aselect_bench.selectors import select_timestep
from aselect_bench.tasks.classification import ClassificationTask
from aselect_bench.tasks.fit import make_trainer

DEVICE = os.environ.get("ASELECT_TEST_DEVICE", "cuda")
ACCELERATOR = "gpu" if DEVICE == "cuda" else DEVICE
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                                  reason="needs a CUDA device")]

#: Every family's tiny model.
TINY_MODELS = sorted(name for name in MODELS if name.startswith("tiny-"))
#: Relative error allowed against float32 on the CPU: cuDNN may use TF32 (10-bit mantissa) in the VAE's
#: convolutions; a device bug (noise, labels or a tensor left behind) gives errors of order 1.
TOLERANCE = {"32": 1e-2, "bf16": 5e-2}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm().clamp_min(1e-12))


def pair(model: str):
    """The same random-weight backbone on the CPU and on the device under test."""
    cpu = load_backbone(model, pretrained=False)
    return cpu, load_backbone(model, pretrained=False, device=DEVICE)


@pytest.mark.parametrize("precision", ["32", "bf16"])
@pytest.mark.parametrize("model", TINY_MODELS)
def test_extraction_on_cuda_equals_the_cpu(model, precision):
    cpu, gpu = pair(model)
    gpu.set_precision(precision)
    taps = [f"{stack}.{min(1, count - 1)}.{c}" for stack, count in cpu.family.block_counts().items()
            for c in cpu.family.components]  # Flux: its single-stream blocks too
    images = torch.rand(4, 3, cpu.image_size, cpu.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = torch.randn(cpu.encode(images).shape, generator=torch.Generator().manual_seed(1))
    expected = cpu.extract(images, 300, taps, noise=noise)
    got = gpu.extract(images.to(DEVICE), 300, taps, noise=noise.to(DEVICE))
    for tap in taps:
        assert got[tap].device.type == DEVICE and got[tap].dtype == torch.float32
        assert relative_error(got[tap], expected[tap]) < TOLERANCE[precision], tap


@pytest.mark.parametrize("model", TINY_MODELS)
def test_hfr_scan_on_cuda_picks_the_cpu_timestep(model):
    cpu, gpu = pair(model)
    images = torch.rand(8, 3, cpu.image_size, cpu.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    candidates, tap = [0, 100, 300, 500, 700, 900], f"blocks.{min(1, cpu.num_blocks - 1)}.out"
    on_cpu = select_timestep(cpu, images, candidates, tap)
    on_gpu = select_timestep(gpu, images.to(DEVICE), candidates, tap)
    assert on_gpu.timestep == on_cpu.timestep
    for t in candidates:
        assert abs(on_gpu.curve[t] - on_cpu.curve[t]) <= 5e-3 * abs(on_cpu.curve[t]) + 1e-6, t


def fit_on_gpu(task, datamodule, tmp_path, monitor: str, max_epochs: int = 2) -> dict:
    """Fit with the suite's own Trainer settings (``make_trainer``: deterministic, TensorBoard) on one GPU."""
    trainer, _ = make_trainer(tmp_path, "gpu", max_epochs, progress=False, monitor=monitor, accelerator=ACCELERATOR)
    trainer.fit(task, datamodule=datamodule)
    assert trainer.strategy.root_device.type == DEVICE
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics and all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    return metrics


@pytest.mark.parametrize("cache_features", [False, True])
def test_classification_trains_on_one_gpu(tmp_path, blobs, cache_features):
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.1.out", timestep=30, lr=5e-2,
                              cache_features=cache_features, feature_cache_root=tmp_path / "features")
    metrics = fit_on_gpu(task, blobs, tmp_path, "val/top1")
    assert {"train/loss", "val/loss", "val/top1"} <= set(metrics)


def test_the_feature_cache_filled_on_the_gpu_holds_the_cpu_features(tmp_path, blobs):
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.1.out", timestep=30,
                              cache_features=True, feature_cache_root=tmp_path / "features")
    fit_on_gpu(task, blobs, tmp_path, "val/top1", max_epochs=1)
    cache = task._feature_caches[("val", 30, "blocks.1.out")]
    images, _, indices = blobs.sets["val"].tensors
    assert cache.complete
    task.cpu()
    task.cache_features = False  # the same features, computed again on the CPU
    expected = task.features(images, indices, "val")["blocks.1.out"]
    assert relative_error(cache.get(indices), expected) < 5e-3  # the cache stores float16


def test_segmentation_with_aux_head_and_slide_inference_trains_on_one_gpu(tmp_path):
    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule
    from aselect_bench.data.synth_ade20k import write_ade20k
    from aselect_bench.tasks.segmentation import SegmentationTask

    root = write_ade20k(tmp_path / "ade", num_train=8, num_val=3, image_size=48, num_classes=8, seed=0)
    datamodule = ADE20KDataModule(root / "ADEChallengeData2016", crop_size=16, scale=(64, 32), batch_size=4,
                                  val_batch_size=3, num_workers=0, num_classes=8)
    task = SegmentationTask(load_backbone("tiny-dit", pretrained=False), num_classes=8, timestep=50, channels=16,
                            aux_channels=8, inference="slide", slide_crop=16, slide_stride=11)
    metrics = fit_on_gpu(task, datamodule, tmp_path, "val/mIoU")
    assert {"train/loss", "train/loss_aux", "val/mIoU", "val/aAcc"} <= set(metrics)


def test_fused_probe_trains_on_one_gpu(tmp_path, blobs):
    from aselect_bench.tasks.fused import FusedProbeTask, pair_key

    pairs = [("blocks.1.out", 30), ("blocks.3.out", 300)]
    task = FusedProbeTask(load_backbone("tiny-dit", pretrained=False), pairs, num_classes=blobs.num_classes,
                          cache_features=True, feature_cache_root=tmp_path / "features")
    metrics = fit_on_gpu(task, blobs, tmp_path, f"val/top1/{pair_key(*pairs[0])}")
    assert {f"val/top1/{pair_key(tap, t)}" for tap, t in pairs} <= set(metrics)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_demo_pretraining_step_runs_on_one_gpu(precision):
    from diffusers import DiTTransformer2DModel

    from aselect_bench.pretrain import DiffusionPretrainer
    from tests.test_pretrain import TINY, tiny_recipe

    torch.manual_seed(0)
    module = DiffusionPretrainer(DiTTransformer2DModel(**dict(TINY)), tiny_recipe(precision=precision))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(24, 3, 18, 18) * 2 - 1),
                                         batch_size=8, shuffle=True)
    trainer = L.Trainer(accelerator=ACCELERATOR, devices=1, max_steps=3, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    assert trainer.strategy.root_device.type == DEVICE
    assert len(module.losses) == 3 and all(torch.isfinite(torch.tensor(module.losses)))
