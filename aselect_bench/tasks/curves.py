"""A training's learning curve: one row per validation run, and what a run continued from a checkpoint needs to
be the same run as one trained to the end at once.

Rows are ``{"epoch", "val", "seconds", "forwards"}``: ``epoch`` counts validation runs (an epoch, or a validation
point of an iteration-based schedule), ``val`` is the choosing split's metric there (percent), ``seconds`` and
``forwards`` (images through the backbone) are cumulative from the start of the training, and so is
``cpu_seconds`` (this process's CPU time, as :mod:`aselect_bench.costs` counts it). A run resumed from a
checkpoint continues the curve it holds (the epochs before it keep their costs).

Continuing is exact when every random draw of an epoch comes from a state the checkpoint holds: the global RNGs
(torch, CUDA, NumPy, Python) and the training loader's shuffling generator are saved with each checkpoint and
restored when a run resumes from it. The LR schedule is the full ``max_epochs`` one: a run asked to stop after
``stop_after`` validation runs keeps it and stops early, so continuing it later is the same schedule, continued.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def rng_states(sampler_generator: torch.Generator | None) -> dict:
    """Every random state an epoch of training draws from: the global RNGs and the loader's shuffling generator."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # plain types: checkpoints load weights-only
    return {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "sampler": sampler_generator.get_state() if sampler_generator is not None else None}


def set_rng_states(states: dict, trainer) -> None:
    """Restore :func:`rng_states` in this process and on the trainer's training loader, then start the epoch's
    loader iterator again: Lightning made the first one before any hook ran, from states a resumed run does not
    have yet (the restored ones draw what the uninterrupted run drew there: a worker base seed only where the
    uninterrupted run made a new iterator, the epoch's order)."""
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    generator = _sampler_generator(trainer)
    if states["sampler"] is not None and generator is not None:
        generator.set_state(states["sampler"])
    iter(trainer.fit_loop._data_fetcher)  # Lightning's own call (FitLoop.setup_data), made again


def _sampler_generator(trainer) -> torch.Generator | None:
    loader = getattr(trainer, "train_dataloader", None)
    return getattr(getattr(loader, "sampler", None), "generator", None)


class LearningCurve(Callback):
    """Records a row after every validation run (the module's docstring says what it holds) and keeps the rows,
    with the random states, in every checkpoint; with ``stop_after`` the training stops after that many
    validation runs (its schedule still the full one).

    ``backbone``: whose ``forwards`` counter is read; ``monitor``: the logged metric of the choosing split;
    ``clock``, ``cpu_clock``: wall and CPU seconds (injectable for tests).
    """

    def __init__(self, backbone, monitor: str, stop_after: int | None = None, clock=time.perf_counter,
                 cpu_clock=time.process_time):
        self.backbone, self.monitor, self.stop_after = backbone, monitor, stop_after
        self.clock, self.cpu_clock = clock, cpu_clock
        self.rows: list[dict] = []
        self._resume_states = None
        self._trainer = None

    @property
    def state_key(self) -> str:
        return "LearningCurve"

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def on_train_start(self, trainer, pl_module) -> None:
        last = self.rows[-1] if self.rows else {"seconds": 0.0, "forwards": 0}  # a resumed run's curve so far
        self._start = self.clock() - last["seconds"]
        self._cpu_start = self.cpu_clock() - last.get("cpu_seconds", 0.0)
        self._forwards = self.backbone.forwards - last["forwards"]
        if self._resume_states is not None:
            set_rng_states(self._resume_states, trainer)
            self._resume_states = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.rows.append({"epoch": len(self.rows) + 1, "val": float(trainer.callback_metrics[self.monitor]),
                          "seconds": self.clock() - self._start, "forwards": self.backbone.forwards - self._forwards,
                          "cpu_seconds": self.cpu_clock() - self._cpu_start})
        if self.stop_after is not None and len(self.rows) >= self.stop_after:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        generator = _sampler_generator(self._trainer) if self._trainer is not None else None
        return {"rows": [dict(r) for r in self.rows], "rng": rng_states(generator)}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self._resume_states = state.get("rng")


def checkpoint_curve(path) -> list[dict]:
    """The learning-curve rows a Lightning checkpoint at ``path`` holds (``[]`` when it holds none)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return [dict(r) for r in checkpoint.get("callbacks", {}).get("LearningCurve", {}).get("rows", [])]
