"""``ClassificationTask``: a probe (linear or attentive) on one tap of a frozen DiT, at one timestep."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from aselect_bench.heads.probes import build_head, head_options
from aselect_bench.tasks.common import FrozenBackboneTask, PerImageOutcomes, unpack_batch


class ClassificationTask(FrozenBackboneTask):
    """Train a head on ``backbone.extract(images, timestep, [tap])``; logs top-1/top-5 (percent) per stage.

    Args:
        backbone: a registered model's name, hub id or diffusers folder (or a ready ``Backbone`` from Python).
        num_classes: number of classes; ``None`` reads it from the datamodule at setup.
        tap: the feature, ``"blocks.{i}.{component}"``; ``None`` = the registered model's default.
        timestep: fixed timestep, or ``None`` to let the HFR callback choose it.
        head: ``linear`` or ``attentive`` (width/depth/heads as the authors' 800/2/8).
        linear_norm: the linear head's normalisation, ``batchnorm`` (per feature, MAE's probe) or ``layernorm``.
        cache_features: with a fixed view (no random augmentation), run the backbone once per image
            and read features from a memory-mapped cache afterwards (one fixed noise draw per image).
        feature_cache_root: where that cache lives (default ``$ASELECT_CACHE/features``).
        precision: the backbone's compute precision when it is loaded here from a name: ``auto`` (bf16 only
            where native), ``32``, ``bf16`` or ``16`` (a ready ``Backbone`` keeps its own).
    """

    def __init__(self, backbone: str = "demo", num_classes: int | None = None, tap: str | None = None,
                 timestep: int | None = None, head: str = "linear", head_width: int = 800, head_depth: int = 2,
                 head_heads: int = 8, lr: float = 1e-3, weight_decay: float = 0.05, warmup_fraction: float = 0.1,
                 label_smoothing: float = 0.0, seed: int = 0, cache_features: bool = False,
                 linear_norm: str = "batchnorm", feature_cache_root: str | None = None, precision: str = "auto"):
        from aselect_bench.backbones.registry import default_tap

        resolved = tap or default_tap(backbone if isinstance(backbone, str) else backbone.name)
        super().__init__(backbone, [resolved], timestep, lr, weight_decay, warmup_fraction, seed, cache_features,
                         feature_cache_root, precision)
        self.save_hyperparameters(ignore=["backbone", "feature_cache_root"])  # a location, not a hyperparameter
        self.hparams["backbone"] = backbone if isinstance(backbone, str) else backbone.name
        self.hparams["tap"] = self.tap = resolved
        self.head_name, self.label_smoothing = head, label_smoothing
        self.head_kwargs = head_options(head, head_width, head_depth, head_heads, linear_norm)
        self.head = None
        self.outcomes = PerImageOutcomes("top1")
        self.num_classes = num_classes
        if num_classes is not None:
            self._build(num_classes)

    def _build(self, num_classes: int) -> None:
        channels = self.backbone.hidden_size  # every component of a DiT block has the model width
        self.num_classes = num_classes
        self.hparams["num_classes"] = num_classes
        self.head = build_head(self.head_name, channels, num_classes, **self.head_kwargs)
        top5 = min(5, num_classes)
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", MetricCollection({
                "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "top5": MulticlassAccuracy(num_classes, top_k=top5, average="micro"),
            }, prefix=f"{stage}/"))

    def setup(self, stage: str) -> None:
        if self.head is None:
            datamodule = self.trainer.datamodule
            if datamodule is None or getattr(datamodule, "num_classes", None) is None:
                raise ValueError("num_classes is unknown: pass num_classes or a datamodule that knows it")
            self._build(datamodule.num_classes)
        super().setup(stage)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats [B, C, h, w]`` -> logits ``[B, K]``."""
        return self.head(feats)

    def _step(self, batch, batch_idx: int, stage: str):
        images, labels, indices = unpack_batch(batch)
        logits = self(self.features(images, indices, stage)[self.tap])
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing if stage == "train" else 0.0)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits, labels)
        self.outcomes.add(stage, indices, logits.argmax(1) == labels)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", on_step=False, on_epoch=True,
                 batch_size=len(labels), sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, batch_idx, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        values = {k: v * 100 for k, v in metrics.compute().items()}  # percentages
        self.log_dict(values, prog_bar=stage == "val", sync_dist=False)
        metrics.reset()

    def on_train_epoch_end(self):
        self._log_metrics("train")

    def on_validation_epoch_end(self):
        self._log_metrics("val")
        self.outcomes.gather(self, "val")
        self.outcomes.finish("val")

    def on_test_epoch_end(self):
        self._log_metrics("test")
        self.outcomes.gather(self, "test")
        self.outcomes.finish("test")
