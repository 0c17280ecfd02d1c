"""The one scan every selector reads: features of the calibration images (and, for label-using selectors, of
the labelled held-out images) at every candidate timestep, each selector's score per candidate, and what each
selector cost beyond the scan.

Costs (:mod:`aselect_bench.costs`): the *scan* is encoding the calibration images and one noise draw of
their features at every candidate, what A-SelecT pays for. A selector's *extra* cost is its own scoring time
plus any backbone work only it needs (more noise draws, the labelled images), measured separately. A rule
(``t0``...) needs no scan at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from aselect_bench.costs import Cost, measure_cost
from aselect_bench.errors import UserError
from aselect_bench.selectors.base import Labels, Selector
from aselect_bench.selectors.features import check_candidates, encode_batches, features_at, scan_progress
from aselect_bench.selectors.support import bootstrap_choice, firmness_line, weak_choice_line


@dataclass
class Choice:
    """One selector's outcome: the chosen ``timestep`` (``None`` for the random rule, or when it cannot score:
    then ``no_pick`` says why), its ``scores`` ``{t: float or None}`` (``None`` for rules; a score is ``None``
    where undefined), and its cost beyond the scan. Per-image selectors also carry the per-image spread and the
    bootstrap support of the choice over the images (``support.bootstrap_choice``)."""

    selector: str
    timestep: int | None
    scores: dict[int, float] | None
    uses_labels: bool
    needs_scan: bool
    extra_forwards: int
    extra_seconds: float
    settings: dict = field(default_factory=dict)
    spread: dict[int, float] | None = None
    support: float | None = None
    runner_up: int | None = None
    margin: float | None = None
    no_pick: str | None = None
    extra_cpu_seconds: float | None = None

    def firmness(self) -> str:
        """How firm the choice is over bootstrap resamples of the images (per-image selectors)."""
        return firmness_line(self.support, self.runner_up, self.margin)

    def weak_choice_warning(self, images_option: str = "--num-images") -> str | None:
        return weak_choice_line(self.timestep, self.support, self.runner_up, self.margin, images_option)

    def refuse_if_no_pick(self, fix: str) -> None:
        """One :class:`UserError` when the selector could not pick (``no_pick``), ending with ``fix``."""
        if self.no_pick is not None:
            raise UserError(f"selector {self.selector!r} picks no timestep: {self.no_pick}; {fix}")

    def to_json(self) -> dict:
        """Plain JSON: timestep keys are strings of integers."""
        out = dict(self.__dict__)
        for key in ("scores", "spread"):
            if out[key] is not None:
                out[key] = {str(t): v for t, v in out[key].items()}
        return out


@dataclass
class Selection:
    """Every selector's :class:`Choice` on one scan of ``tap`` over ``candidates``, and the scan's cost."""

    tap: str
    candidates: list[int]
    num_images: int
    num_labelled: int
    scan: Cost
    choices: dict[str, Choice]

    def cost_of(self, name: str) -> Cost:
        """What selector ``name`` cost in all: the scan (if it needs one) plus its own extra work."""
        c = self.choices[name]
        base = self.scan if c.needs_scan else Cost()
        return base + Cost(c.extra_seconds, c.extra_forwards, c.extra_cpu_seconds)

    def record(self, name: str) -> dict:
        """The ``select`` output for selector ``name``: its timestep, scores, firmness and cost in all, the HFR
        curve when ``hfr`` ran too, and its settings (timestep keys as strings)."""
        c, cost, hfr = self.choices[name], self.cost_of(name), self.choices.get("hfr")
        curve = hfr.to_json() if hfr is not None else {"scores": None, "spread": None}
        return {"selector": name, "timestep": c.timestep, "scores": c.to_json()["scores"], "hfr": curve["scores"],
                "hfr_std": curve["spread"], "support": c.support, "runner_up": c.runner_up, "margin": c.margin,
                "seconds": cost.seconds, "forwards": cost.forwards, "tap": self.tap, "num_images": self.num_images,
                "num_labelled": self.num_labelled, "uses_labels": c.uses_labels, "no_pick": c.no_pick,
                **c.settings}

    def to_json(self) -> dict:
        return {"tap": self.tap, "candidates": self.candidates, "num_images": self.num_images,
                "num_labelled": self.num_labelled, "scan": self.scan.to_json(),
                "choices": {n: c.to_json() for n, c in self.choices.items()}}


@dataclass
class RawScores:
    """What :func:`collect_scores` measured: per selector ``{t: [N] tensor or float}``, and the costs."""

    candidates: list[int]
    scores: dict[str, dict[int, torch.Tensor | float]]
    scan: Cost
    extra: dict[str, Cost]
    num_images: int = 0
    num_labelled: int = 0


def collect_scores(backbone, selectors: Sequence[Selector], candidates: Sequence[int], tap: str, calibration=None,
                   labelled=None, labels: Labels | None = None, seed: int = 0, batch_size: int = 32,
                   progress: bool = False, first_index: int = 0) -> RawScores:
    """Run the scan once for all ``selectors``.

    ``calibration``: images ``[N, 3, H, W]`` (or a DataLoader) for the unlabelled scan; ``labelled`` and
    ``labels``: the labelled held-out images ``[M, 3, H, W]`` and their :class:`Labels` (only read by
    label-using selectors). Draw 0 of the calibration features is shared by every calibration selector; a
    selector averaging K draws pays for draws 1..K-1; the labelled images are paid by the selectors reading them.
    """
    candidates = check_candidates(candidates, backbone.num_train_timesteps)
    scanning = [s for s in selectors if s.needs_scan]
    for s in scanning:
        if s.images == "labelled" and (labelled is None or labels is None):
            raise UserError(f"selector {s.name!r} reads labelled held-out images, and none were given: use a "
                            f"datamodule with a labelled selection split, or another selector")
        if s.images == "calibration" and calibration is None:
            raise UserError(f"selector {s.name!r} reads the calibration images, and none were given")
    groups: dict[tuple[str, int], list[Selector]] = {}
    for s in scanning:
        groups.setdefault((s.images, s.noise_draws), []).append(s)
    scan, extra = Cost(), {s.name: Cost() for s in selectors}
    shared = {key: Cost() for key in groups}  # backbone work beyond the scan, paid by each selector of the group

    def timed(total: Cost, fn):
        with measure_cost(backbone) as cost:
            value = fn()
        total.add_(cost)
        return value

    x0_cal = x0_lab = None
    if any(images == "calibration" for images, _ in groups):
        x0_cal = timed(scan, lambda: encode_batches(backbone, calibration, batch_size))
    labelled_groups = [key for key in groups if key[0] == "labelled"]
    if labelled_groups:
        x0_lab = timed(shared[labelled_groups[0]], lambda: encode_batches(backbone, labelled, batch_size))

    def grid(x0s, t, draws, first):
        return torch.cat([f[tap].float() for f in features_at(backbone, x0s, t, [tap], seed, draws, first)]).cpu()

    raw: dict[str, dict] = {s.name: {} for s in scanning}
    bar = scan_progress(len(candidates), progress, "selector scan")
    for t in candidates:
        base = timed(scan, lambda t=t: grid(x0_cal, t, [0], first_index)) if x0_cal is not None else None
        for (images, draws), members in sorted(groups.items()):
            if images == "calibration":
                feats = base if draws == 1 else timed(
                    shared[(images, draws)], lambda t=t, k=draws, b=base: (b + grid(x0_cal, t, range(1, k), first_index)) / k)
            else:
                feats = timed(shared[(images, draws)], lambda t=t, k=draws: grid(x0_lab, t, range(k), 0) / k)
            for s in members:
                value = timed(extra[s.name], lambda s=s, f=feats: s.score(f, labels if s.uses_labels else None))
                raw[s.name][t] = value.detach().cpu() if isinstance(value, torch.Tensor) else float(value)
        bar.update(1)
    bar.close()
    for key, members in groups.items():
        for s in members:
            extra[s.name] = extra[s.name] + shared[key]
    num_images = sum(len(x) for x in x0_cal) if x0_cal is not None else 0
    num_labelled = sum(len(x) for x in x0_lab) if x0_lab is not None else 0
    return RawScores(candidates, raw, scan, extra, num_images, num_labelled)


def finalize(selectors: Sequence[Selector], raw: RawScores, tap: str) -> Selection:
    """Turn :func:`collect_scores`' output into each selector's :class:`Choice`: its rule, or its choice among
    the candidates whose score is defined (a NaN/inf score is ``None``, never ranked); with no defined score
    at all, no pick and ``no_pick`` says why."""
    choices = {}
    for s in selectors:
        per_t = raw.scores.get(s.name)
        scores = spread = firm = None
        if per_t is not None:
            scores = {t: _finite(float(torch.as_tensor(v, dtype=torch.float64).mean())) for t, v in per_t.items()}
            if s.per_image:
                spread = {t: float(torch.as_tensor(v).std(unbiased=False)) for t, v in per_t.items()}
                firm = bootstrap_choice({t: torch.as_tensor(v) for t, v in per_t.items()})
        timestep, no_pick = _pick(s, raw, scores)
        cost = raw.extra.get(s.name, Cost())
        choices[s.name] = Choice(s.name, timestep, scores, s.uses_labels, s.needs_scan, cost.forwards, cost.seconds,
                                 s.settings, spread, **(firm or {}), no_pick=no_pick,
                                 extra_cpu_seconds=cost.cpu_seconds)
    return Selection(tap, raw.candidates, raw.num_images, raw.num_labelled, raw.scan, choices)


def _pick(selector: Selector, raw: RawScores, scores: dict | None) -> tuple[int | None, str | None]:
    """``(timestep, None)``: the selector's choice among the candidates with a defined score (a rule: among
    all); ``(None, why)`` when no candidate has one."""
    if scores is None:
        return selector.choose(raw.candidates, None), None
    defined = [t for t in raw.candidates if scores.get(t) is not None]
    if not defined:
        n = raw.num_labelled if selector.images == "labelled" else raw.num_images
        return None, f"every candidate's score is undefined ({selector.why_undefined(n)})"
    return selector.choose(defined, {t: scores[t] for t in defined}), None


def run_selectors(backbone, selectors: Sequence[Selector], candidates: Sequence[int], tap: str, calibration=None,
                  labelled=None, labels: Labels | None = None, seed: int = 0, batch_size: int = 32,
                  progress: bool = False) -> Selection:
    """:func:`collect_scores` then :func:`finalize`: every selector's choice from one scan."""
    raw = collect_scores(backbone, selectors, candidates, tap, calibration, labelled, labels, seed, batch_size,
                         progress)
    return finalize(selectors, raw, tap)


def labelled_set(datamodule, n: int, seed: int = 0) -> tuple[torch.Tensor, Labels]:
    """``(images [M, 3, H, W], Labels)``: the datamodule's labelled held-out images (its ``selection_images``),
    for the label-using selectors."""
    if datamodule is None or not hasattr(datamodule, "selection_images"):
        raise UserError("a label-using selector needs a datamodule with labelled held-out images "
                        "(selection_images); use a label-free selector such as hfr")
    images, targets = datamodule.selection_images(n, seed=seed)
    if targets.ndim == 1:  # class labels: leave-one-out scores an image against the others of its class
        images, targets = _drop_lone_images(images, targets)
    return images, Labels(targets, int(datamodule.num_classes))


def _drop_lone_images(images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``images [M, 3, H, W]``, ``targets [M]`` without the images alone in their class (leave-one-out has
    nothing to match them with: they would score 0 at every timestep), saying so in one line; too few left
    is one :class:`UserError`."""
    keep = torch.bincount(targets)[targets] >= 2
    if int(keep.sum()) < 2 or len(targets[keep].unique()) < 2:
        raise UserError(f"the label-using selectors (knn, ncm) need at least two labelled held-out images of "
                        f"each of two classes (leave-one-out), but the {len(targets)} selection images hold "
                        f"{int(keep.sum())} such; use a label-free selector (hfr, rankme, ...) or a larger "
                        f"validation split / --label-images")
    if not keep.all():
        print(f"note: {int((~keep).sum())} of {len(targets)} labelled held-out images are alone in their class and "
              f"are left out of the label-using selectors (leave-one-out needs two of a class)", file=sys.stderr,
              flush=True)
    return images[keep], targets[keep]


def _finite(value: float) -> float | None:
    """``None`` for NaN/inf (JSON has no such numbers), else the value."""
    return value if value == value and abs(value) != float("inf") else None
