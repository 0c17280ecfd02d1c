"""What the classification and segmentation tasks share: the frozen backbone, features, optimizer."""

from __future__ import annotations

import math
import warnings

import lightning as L
import torch

from aselect_bench.backbones import Backbone, load_backbone
from aselect_bench.backbones.noise import batch_noise
from aselect_bench.config import FRACTION, NATURAL, POSITIVE, check_arguments
from aselect_bench.errors import UserError

#: The frozen backbone is in eval mode on purpose; Lightning's generic warning about it is noise here.
EVAL_MODE_WARNING = r".*module\(s\) in eval mode.*"
warnings.filterwarnings("ignore", message=EVAL_MODE_WARNING)


def resolve_backbone(backbone: str | Backbone, precision: str | None = None) -> Backbone:
    """A ready :class:`Backbone` from a source string (preset, hub id, folder) or an existing one (kept as is).

    ``precision`` (``auto``, ``32``, ``bf16``, ``16``) sets a loaded backbone's compute precision for the device
    Lightning trains on (``auto``: bf16 only where native); ``None`` leaves it in float32."""
    if isinstance(backbone, Backbone):
        return backbone
    loaded = load_backbone(backbone)
    if precision is not None:
        from aselect_bench.precision import describe_precision, training_device

        loaded.set_precision(describe_precision(precision, training_device())["precision"])
    return loaded


class FrozenBackboneTask(L.LightningModule):
    """Base LightningModule: holds a frozen backbone (kept out of checkpoints and the optimizer) and
    turns images into features at ``self.timestep``; subclasses add heads, losses and metrics.

    ``timestep`` may be ``None`` until the :class:`~aselect_bench.callbacks.HFRTimestepSelector` sets it.
    """

    def __init__(self, backbone, taps: list[str], timestep: int | None, lr: float, weight_decay: float,
                 warmup_fraction: float, seed: int, cache_features: bool = False, feature_cache_root=None,
                 precision: str | None = None):
        super().__init__()
        self.backbone = resolve_backbone(backbone, precision)
        self.backbone.check_taps(taps)  # fail early on a bad tap
        self.taps = list(taps)
        self.hfr_tap = self.taps[0]  # the tap whose HFR the timestep scan reads
        self.timestep = None if timestep is None else self.backbone.noise.check_timestep(timestep)
        check_arguments(lr=(lr, POSITIVE), weight_decay=(weight_decay, NATURAL),
                        warmup_fraction=(warmup_fraction, FRACTION))
        self.lr, self.weight_decay, self.warmup_fraction, self.seed = lr, weight_decay, warmup_fraction, seed
        self.cache_features, self.feature_cache_root = cache_features, feature_cache_root
        self._feature_caches = {}
        self._views = {}  # stage -> (datamodule, its view_fingerprint(stage))

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    def features(self, images: torch.Tensor, indices: torch.Tensor | None, stage: str, timestep: int | None = None,
                 taps: list[str] | None = None, window: int | None = None) -> dict:
        """``{tap: [B, C, h, w]}`` for ``images [B, 3, H, W]`` at ``timestep`` (default ``self.timestep``).

        Noise is fixed per dataset image (``indices [B]``): in evaluation one draw per image, in
        training a fresh draw each epoch (one fixed draw when features are cached). Results thus do not
        depend on batching or on the number of processes. Without indices, noise comes from the global RNG.
        ``window`` (evaluation) numbers a sliding-window crop of each image: it gets its image's draw
        ``window`` and is never cached (the caches hold whole images).
        """
        timestep = self.timestep if timestep is None else timestep
        taps = self.taps if taps is None else taps
        if timestep is None:
            raise UserError("no timestep set: pass a fixed timestep or add the HFRTimestepSelector callback")
        caches = self._caches(stage, timestep, taps) if indices is not None and window is None else None
        if caches:
            cached = {tap: cache.get(indices) for tap, cache in caches.items()}
            if all(v is not None for v in cached.values()):
                return {tap: v.to(images.device) for tap, v in cached.items()}
        if images.numel() == 0:
            raise RuntimeError(f"a labels-only {stage} batch reached a feature cache miss (timestep {timestep}, "
                               f"taps {taps}): labels-only loading must be switched on only for complete caches")
        x0 = self.backbone.encode(images)
        noise = None
        if indices is not None:
            draw = window if window is not None else 1 + self.current_epoch if stage == "train" and not caches else 0
            noise = batch_noise(x0.shape[1:], self.seed, timestep, indices.tolist(), draw).to(x0.device)
        feats = self.backbone.extract_x0(x0, timestep, taps, noise=noise)
        for tap, value in feats.items():
            if not torch.isfinite(value).all():
                raise UserError(f"the backbone produced NaN/Inf features at {tap}, timestep {timestep}: "
                                f"check the weights (a corrupt checkpoint?) or use float32 instead of half precision")
        for tap, cache in (caches or {}).items():
            feats[tap] = cache.put(indices, feats[tap])
        return feats

    def _caches(self, stage: str, timestep: int, taps: list[str]) -> dict | None:
        """Feature caches ``{tap: FeatureCache}`` for ``stage``, or None when the view is not fixed."""
        if not self.cache_features or self._trainer is None:
            return None
        datamodule = self.trainer.datamodule
        known = self._views.get(stage)
        if known is None or known[0] is not datamodule:  # the split's digest: once per datamodule, not per step
            known = self._views[stage] = (datamodule, getattr(datamodule, "view_fingerprint", lambda s: None)(stage))
        view = known[1]
        if view is None:
            return None
        from aselect_bench.cache import FeatureCache

        out = {}
        for tap in taps:
            key = (stage, timestep, tap, view)
            if key not in self._feature_caches:
                self._feature_caches[key] = FeatureCache(
                    {"backbone": self.backbone.fingerprint, "tap": tap, "timestep": timestep, "seed": self.seed,
                     "view": view, "precision": str(self.backbone.autocast_dtype)}, datamodule.split_size(stage),
                    root=self.feature_cache_root)
            out[tap] = self._feature_caches[key]
        return out

    def feature_requests(self) -> dict[int, list[str]]:
        """``{timestep: taps}`` this task reads in every step (the fused sweep reads several timesteps)."""
        return {} if self.timestep is None else {self.timestep: self.taps}

    def _load_labels_only(self, stage: str) -> None:
        """Skip image loading for ``stage`` if the cache holds every feature this task reads there.

        Loaders start fetching before an epoch's hooks run (evaluation loops create their iterator first),
        so the flag is decided at ``setup`` (a new task or stage: the caches on disk), before each training
        epoch, and after each evaluation run (for the next one).
        """
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "set_labels_only"):
            return
        requests = self.feature_requests()
        caches = [self._caches(stage, t, taps) for t, taps in requests.items()]
        complete = bool(requests) and all(c and all(cache.complete for cache in c.values()) for c in caches)
        datamodule.set_labels_only(stage, complete)

    def setup(self, stage: str) -> None:
        for split in ("train", "val", "test"):
            self._load_labels_only(split)

    def on_train_epoch_start(self):
        self._load_labels_only("train")

    def on_validation_end(self):
        self._load_labels_only("val")

    def on_test_end(self):
        self._load_labels_only("test")

    def head_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.") and p.requires_grad]

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.head_parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.warmup_fraction * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.lr_factor(step, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @staticmethod
    def lr_factor(step: int, warmup: int, total: int) -> float:
        """Linear warm-up then cosine decay to 0."""
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the frozen backbone out of checkpoints; record which backbone the head belongs to."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("backbone.")}
        checkpoint["backbone_fingerprint"] = self.backbone.fingerprint
        checkpoint["timestep"] = self.timestep
        if getattr(self, "outcomes", None) is not None:  # a continued run reports its best epoch's images too
            checkpoint["outcome_snapshots"] = self.outcomes.best_snapshot()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("backbone_fingerprint")
        if saved is not None and saved != self.backbone.fingerprint:
            raise UserError(f"this checkpoint was trained on another backbone (fingerprint {saved}, "
                            f"current {self.backbone.fingerprint}): load it with the backbone it was made with")
        checkpoint["state_dict"].update({f"backbone.{k}": v for k, v in self.backbone.state_dict().items()})
        if checkpoint.get("timestep") is not None:
            self.timestep = checkpoint["timestep"]
        if getattr(self, "outcomes", None) is not None and not self.outcomes.snapshots:
            self.outcomes.snapshots = list(checkpoint.get("outcome_snapshots", []))


class PerImageOutcomes:
    """What a reported metric is made of, per image of an evaluation split (the error bars' input,
    :mod:`aselect_bench.uncertainty`): top-1 correctness ``[N]``, or per-class intersection and union pixel
    counts ``[N, K]``. Rows are kept by dataset index, so batching and processes do not matter; every
    validation run is kept as a snapshot (the run's metric is chosen at one of them: the best or the last).
    """

    def __init__(self, kind: str):
        self.kind = kind  # "top1" or "miou"
        self.rows: dict[str, dict[int, tuple]] = {"val": {}, "test": {}}
        self.snapshots: list[dict] = []  # one record per finished validation run
        self.test_record: dict | None = None

    def best_snapshot(self) -> list[dict]:
        """``[the first validation snapshot with the best metric]`` (``[]`` before any): the run a ``best``
        checkpoint is tested at, and all a continued run needs of the snapshots before it."""
        from aselect_bench.uncertainty import as_metric

        if not self.snapshots:
            return []
        scores = [as_metric(r).value for r in self.snapshots]
        return [self.snapshots[scores.index(max(scores))]]

    def add(self, stage: str, indices: torch.Tensor | None, *values: torch.Tensor) -> None:
        """``indices [B]`` (None: the rows follow in order) and per-image values (``correct [B]``, or
        ``intersection [B, K]`` and ``union [B, K]``)."""
        if stage not in self.rows:
            return
        rows = self.rows[stage]
        keys = range(len(rows), len(rows) + len(values[0])) if indices is None else indices.tolist()
        for i, key in enumerate(keys):
            rows[int(key)] = tuple(v[i].tolist() for v in values)

    def gather(self, module: L.LightningModule, stage: str) -> None:
        """Under DDP, every process's rows of ``stage`` (each holds its share of the images)."""
        trainer = module._trainer
        if trainer is None or trainer.world_size == 1:
            return
        import torch.distributed as dist

        shares = [None] * trainer.world_size
        dist.all_gather_object(shares, self.rows[stage])
        self.rows[stage] = {k: v for share in shares for k, v in share.items()}

    def finish(self, stage: str) -> dict:
        """The stage's record (``{"kind": "top1", "correct"}`` or ``{"kind": "miou", "intersection",
        "union"}``, rows in index order), cleared for the next run; a validation record is also kept as a
        snapshot."""
        rows = [self.rows[stage][k] for k in sorted(self.rows[stage])]
        self.rows[stage] = {}
        if self.kind == "top1":
            record = {"kind": "top1", "correct": [int(r[0]) for r in rows]}
        else:
            record = {"kind": "miou", "intersection": [r[0] for r in rows], "union": [r[1] for r in rows]}
        if stage == "val":
            self.snapshots.append(record)
        else:
            self.test_record = record
        return record


def unpack_batch(batch):
    """``(inputs, targets, indices or None)`` from a ``(x, y)`` or ``(x, y, index)`` batch."""
    if len(batch) == 3:
        return batch[0], batch[1], batch[2]
    return batch[0], batch[1], None
