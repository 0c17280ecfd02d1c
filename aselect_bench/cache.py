"""The suite's cache folder (:func:`cache_dir`) and caches keyed by fingerprints, so a stale entry is never used.

- :class:`LatentCache`: VAE encodings of deterministic views, keyed by (backbone, image content); in
  memory, bounded (least recently used entries are dropped).
- :class:`FeatureCache`: features of a fixed view at one (backbone, tap, timestep, noise, split); a
  memory-mapped file on disk with a "filled" mask, bounded in size, its disk space reserved when it is created.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from aselect_bench.errors import CorruptFileError
from aselect_bench.io import atomic_write_json, read_json, reserve_file


def cache_dir() -> Path:
    """The suite's cache folder: ``$ASELECT_CACHE``, default ``~/.cache/aselect_bench``."""
    root = os.environ.get("ASELECT_CACHE") or Path.home() / ".cache" / "aselect_bench"
    return Path(root).expanduser()


def feature_cache_root() -> Path:
    """The default feature-cache folder, ``<cache_dir>/features`` (a task or a comparison may pass its own)."""
    return cache_dir() / "features"


@contextmanager
def cold_feature_cache() -> Iterator[Path]:
    """A private, empty feature-cache folder for the duration (deleted afterwards: a grid's features are large),
    so a cost is measured from cold, not helped by earlier runs' features."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="features-", dir=cache_dir()) as folder:
        yield Path(folder)


def tensor_digest(x: torch.Tensor) -> str:
    """A content hash of one tensor (shape, dtype and bytes)."""
    x = x.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(x.shape)}{x.dtype}".encode())
    h.update(x.view(torch.uint8).numpy().tobytes() if x.dtype == torch.bfloat16 else x.numpy().tobytes())
    return h.hexdigest()


class LatentCache:
    """``encode(images)`` results per image, keyed by the backbone fingerprint and the image's content."""

    def __init__(self, max_items: int = 50_000):
        self.max_items = max_items
        self.store: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def encode(self, backbone, images: torch.Tensor, encode_fn) -> torch.Tensor:
        """``[B, 3, H, W] -> x0 [B, c, h, w]``; only images not seen before go through ``encode_fn``."""
        keys = [f"{backbone.fingerprint}:{tensor_digest(img)}" for img in images]
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = encode_fn(images[missing])
            for i, x in zip(missing, fresh):
                self.store[keys[i]] = x.clone()
        out = []
        for k in keys:
            self.store.move_to_end(k)
            out.append(self.store[k])
        while len(self.store) > self.max_items:
            self.store.popitem(last=False)
        return torch.stack(out).to(images.device)


class FeatureCache:
    """Features ``[N, C, h, w]`` of one dataset split for one key, memory-mapped under ``root``.

    ``get(indices)`` returns the cached rows or ``None`` if any is missing; ``put`` fills rows. The
    file is created lazily at the first ``put`` (its shape is known then); files larger than
    ``max_bytes`` are refused (the caller falls back to the backbone). The files' disk space is reserved when
    the entry is created or opened, so a full disk is one :class:`~aselect_bench.errors.UnwritableError`
    naming the folder and the bytes needed (not a ``SIGBUS`` at the first write into the mapped file); such a
    failed entry is removed, and ``meta.json``, written last, is what makes an entry usable.
    """

    def __init__(self, key: dict, num_items: int, root=None, max_bytes: int = 4 << 30, dtype=np.float16):
        self.key = key
        self.digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
        self.root = Path(root or feature_cache_root()) / self.digest
        self.num_items, self.max_bytes, self.dtype = num_items, max_bytes, np.dtype(dtype)
        self.data = self.filled = None
        self.enabled = True
        self._open_existing()

    def _open_existing(self) -> None:
        meta = self.root / "meta.json"
        if not meta.exists():
            return
        try:
            info = read_json(meta, keys=("key", "num_items", "item_shape"))
        except CorruptFileError:
            return  # a damaged entry is rebuilt: its features are recomputed and meta.json rewritten
        if info.get("key") != json.loads(json.dumps(self.key, default=str)) or info["num_items"] != self.num_items:
            return  # a different entry under a colliding digest: never trust it
        self._map(tuple(info["item_shape"]))

    def _map(self, item_shape: tuple) -> None:
        """Reserve the files' space (one clear error when the disk is too full), then memory-map them (new files
        read as zeros: nothing filled)."""
        shape = (self.num_items, *item_shape)
        for name, nbytes in (("features.mmap", int(np.prod(shape)) * self.dtype.itemsize),
                             ("filled.mmap", self.num_items)):
            reserve_file(self.root / name, nbytes, f"the feature cache ({self.key.get('tap')}, timestep "
                                                   f"{self.key.get('timestep')})")
        self.data = np.memmap(self.root / "features.mmap", dtype=self.dtype, mode="r+", shape=shape)
        self.filled = np.memmap(self.root / "filled.mmap", dtype=np.bool_, mode="r+", shape=(self.num_items,))

    def _create(self, item_shape) -> bool:
        size = self.num_items * int(np.prod(item_shape)) * self.dtype.itemsize
        if size > self.max_bytes:
            self.enabled = False
            return False
        files = [self.root / name for name in ("features.mmap", "filled.mmap")]
        for f in files:  # left by an entry that never got its meta.json: start from zeros
            f.unlink(missing_ok=True)
        try:
            self._map(tuple(item_shape))
        except BaseException:
            self.data = self.filled = None
            for f in files:  # no half-made entry is left for a later run
                f.unlink(missing_ok=True)
            if self.root.is_dir() and not any(self.root.iterdir()):
                self.root.rmdir()
            raise
        atomic_write_json(self.root / "meta.json", {"key": self.key, "num_items": self.num_items,
                                                    "item_shape": list(item_shape), "dtype": str(self.dtype)})
        return True

    def get(self, indices: torch.Tensor) -> torch.Tensor | None:
        if self.data is None:
            return None
        idx = indices.cpu().numpy()
        if not self.filled[idx].all():
            return None
        return torch.from_numpy(np.asarray(self.data[idx])).float()

    def put(self, indices: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Store rows; returns ``feats`` rounded to the cache's precision, so every epoch sees the same values."""
        if not self.enabled or (self.data is None and not self._create(tuple(feats.shape[1:]))):
            return feats
        idx = indices.cpu().numpy()
        stored = feats.detach().cpu().numpy().astype(self.dtype)
        self.data[idx] = stored
        self.data.flush()  # features before the mask: a crash never marks unwritten rows as filled
        self.filled[idx] = True
        self.filled.flush()
        return torch.from_numpy(stored).float().to(feats.device)

    @property
    def complete(self) -> bool:
        return self.filled is not None and bool(self.filled.all())
