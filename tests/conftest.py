"""Shared fixtures: small in-memory data that tests can learn from quickly."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

#: Each test's CPU and wall seconds into $ASELECT_TEST_CPU_TIMES when set (docs/development.md).
pytest_plugins = ("tests.cpu_times",)


def pytest_configure(config):
    """Under pytest-xdist each worker gets its share of the cores (2 workers on 2 cores: one thread each), so the
    workers do not oversubscribe the CPU."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """The suite's cache (``$ASELECT_CACHE``) in a folder of this test session (of this xdist worker): never the
    user's, never shared between workers. Tests that need a cache of their own still set one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASELECT_CACHE", str(tmp_path_factory.mktemp("aselect-cache")))
        yield


@pytest.fixture(autouse=True)
def seeded_global_rngs():
    """Every test starts from the same global RNG state (torch, numpy, random), so an unseeded draw is the same
    whatever ran before it in its xdist worker: a failure repeats, and a pass does not hang on the test order."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


class BlobsDataModule(L.LightningDataModule):
    """Images ``[N, 3, S, S]`` in [-1, 1] whose class is the colour of a bright square (learnable, not trivial)."""

    def __init__(self, num_classes=3, per_class=12, size=16, batch_size=8, seed=0):
        super().__init__()
        self.num_classes, self.batch_size, self.size, self.seed = num_classes, batch_size, size, seed
        g = torch.Generator().manual_seed(seed)
        n = num_classes * per_class
        labels = torch.arange(n) % num_classes
        images = torch.rand(n, 3, size, size, generator=g) * 0.4 - 0.8
        for i, y in enumerate(labels.tolist()):
            r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
            images[i, y, r:r + 6, c:c + 6] = 0.9
        split = int(0.6 * n)
        self.sets = {"train": TensorDataset(images[:split], labels[:split], torch.arange(split)),
                     "val": TensorDataset(images[split:], labels[split:], torch.arange(n - split))}
        self.sets["test"] = self.sets["val"]

    def view_fingerprint(self, stage):
        return f"blobs-{stage}-{self.seed}"

    def split_size(self, stage):
        return len(self.sets[stage])

    def calibration_images(self, n, seed=0):
        return self.sets["train"].tensors[0][:n]

    def selection_images(self, n, seed=0):
        images, labels, _ = self.sets["val"].tensors
        return images[:n], labels[:n]

    def train_dataloader(self):
        return DataLoader(self.sets["train"], self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.sets["val"], self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], self.batch_size)


@pytest.fixture
def blobs():
    return BlobsDataModule()


def quiet_trainer(tmp_path, **kwargs) -> L.Trainer:
    """A CPU trainer without progress bars, logging to ``tmp_path``."""
    defaults = dict(accelerator="cpu", devices=1, max_epochs=2, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=str(tmp_path), log_every_n_steps=1,
                    deterministic=True, num_sanity_val_steps=0)
    return L.Trainer(**{**defaults, **kwargs})


@contextmanager
def hooked_components(transformer, blocks, attn_name: str):
    """Capture, during diffusers' own forward of ``transformer``, the outputs of each block in ``blocks``:
    ``{(i, name): output}`` for ``norm1_tuple``, ``query``/``key``/``value`` (the attention's ``to_q/k/v``),
    ``attn`` (module ``attn_name``), ``mlp`` (``ff``) and ``out`` (the block); hooks removed afterwards."""
    seen, handles = {}, []

    def keep(name):
        return lambda mod, inp, out: seen.__setitem__(name, out)

    for i in blocks:
        blk = transformer.transformer_blocks[i]
        attn = getattr(blk, attn_name)
        modules = {"norm1_tuple": blk.norm1, "query": attn.to_q, "key": attn.to_k, "value": attn.to_v,
                   "attn": attn, "mlp": blk.ff, "out": blk}
        handles += [m.register_forward_hook(keep((i, name))) for name, m in modules.items()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """The suite's cache (empty-prompt embeddings etc.) in a private folder for a test module, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASELECT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
