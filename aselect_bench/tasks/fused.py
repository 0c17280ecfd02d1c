"""``FusedProbeTask``: one data loop, one linear/attentive head per (tap, timestep) pair.

The DDAE-style fused sweep: one data loop; one backbone pass per distinct timestep serves all taps
read at that timestep (or the feature cache, when views are fixed); each head trains on its own features with its own loss. Each
head is tested at its own best validation epoch (its weights at that epoch are kept in memory).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from aselect_bench.heads.probes import build_head
from aselect_bench.tasks.common import FrozenBackboneTask, unpack_batch


def pair_key(tap: str, timestep: int) -> str:
    return f"{tap}@{timestep}"


class FusedProbeTask(FrozenBackboneTask):
    """Probes for every ``(tap, timestep)`` in ``pairs``; logs ``{stage}/top1/{tap}@{t}`` in percent."""

    def __init__(self, backbone, pairs: list[tuple[str, int]], num_classes: int, head: str = "linear",
                 head_kwargs: dict | None = None, lr: float = 1e-3, weight_decay: float = 0.05,
                 warmup_fraction: float = 0.1, label_smoothing: float = 0.0, seed: int = 0,
                 cache_features: bool = False, feature_cache_root=None):
        taps = sorted({tap for tap, _ in pairs})
        super().__init__(backbone, taps, None, lr, weight_decay, warmup_fraction, seed, cache_features,
                         feature_cache_root)
        self.pairs = [(tap, self.backbone.noise.check_timestep(t)) for tap, t in pairs]
        self.by_timestep = defaultdict(list)
        for tap, t in self.pairs:
            self.by_timestep[t].append(tap)
        self.label_smoothing = label_smoothing
        width = self.backbone.hidden_size
        self.heads = nn.ModuleDict({self._slot(tap, t): build_head(head, width, num_classes, **(head_kwargs or {}))
                                    for tap, t in self.pairs})
        self.metrics = nn.ModuleDict({f"{stage}_{self._slot(tap, t)}": MulticlassAccuracy(num_classes, average="micro")
                                      for stage in ("val", "test") for tap, t in self.pairs})
        self.best = {pair_key(tap, t): (-1.0, None) for tap, t in self.pairs}  # key -> (val top-1, head state)
        self.timestep = self.pairs[0][1]  # a timestep is set: the fused sweep needs no HFR callback

    def feature_requests(self) -> dict[int, list[str]]:
        return dict(self.by_timestep)

    @staticmethod
    def _slot(tap: str, timestep: int) -> str:
        return pair_key(tap, timestep).replace(".", "_")

    def _logits(self, images, indices, stage):
        """``{(tap, t): logits [B, K]}``: one backbone pass per distinct timestep serves all its taps."""
        out = {}
        for t, taps in self.by_timestep.items():
            feats = self.features(images, indices, stage, timestep=t, taps=taps)
            for tap in taps:
                out[(tap, t)] = self.heads[self._slot(tap, t)](feats[tap])
        return out

    def training_step(self, batch, batch_idx):
        images, labels, indices = unpack_batch(batch)
        losses = [F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
                  for logits in self._logits(images, indices, "train").values()]
        loss = torch.stack(losses).sum()
        self.log("train/loss_sum", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def _eval_step(self, batch, batch_idx, stage):
        images, labels, indices = unpack_batch(batch)
        for (tap, t), logits in self._logits(images, indices, stage).items():
            self.metrics[f"{stage}_{self._slot(tap, t)}"].update(logits, labels)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self):
        for tap, t in self.pairs:
            value = float(self.metrics[f"val_{self._slot(tap, t)}"].compute()) * 100
            self.metrics[f"val_{self._slot(tap, t)}"].reset()
            self.log(f"val/top1/{pair_key(tap, t)}", value)
            if value > self.best[pair_key(tap, t)][0]:
                state = copy.deepcopy(self.heads[self._slot(tap, t)].state_dict())
                self.best[pair_key(tap, t)] = (value, state)

    def on_test_start(self):
        for tap, t in self.pairs:  # each head at its own best validation epoch
            state = self.best[pair_key(tap, t)][1]
            if state is not None:
                self.heads[self._slot(tap, t)].load_state_dict(state)

    def on_test_epoch_end(self):
        self.test_top1 = {}
        for tap, t in self.pairs:
            value = float(self.metrics[f"test_{self._slot(tap, t)}"].compute()) * 100
            self.metrics[f"test_{self._slot(tap, t)}"].reset()
            self.test_top1[pair_key(tap, t)] = value
            self.log(f"test/top1/{pair_key(tap, t)}", value)

    def best_val_top1(self) -> dict[str, float]:
        return {key: value for key, (value, _) in self.best.items()}
