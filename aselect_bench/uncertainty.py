"""Error bars: bootstrap intervals over images, paired differences, regret with the best re-chosen, seeds.

Numpy only, no training: the functions read what a reported metric is made of, per image, and say how much
the metric would move on another draw of the same number of images.

**Records.** A reported metric is kept as its per-image outcomes, a plain JSON-able dict:

- top-1 accuracy: ``{"kind": "top1", "correct": [0/1 per image]}`` -> ``100 * mean(correct)``;
- mIoU: ``{"kind": "miou", "intersection": [[K ints] per image], "union": [[K ints] per image]}``, each
  image's per-class pixel counts with ``union = pred area + label area - intersection`` (additive over
  images), -> ``100 * nanmean_k(sum_i I[i, k] / sum_i U[i, k])``, a class whose summed union is 0 (absent
  from both the predictions and the labels) left out: the semantics of :mod:`aselect_bench.metrics`
  (mmsegmentation's ``IoUMetric``).

**Resampling.** A bootstrap resample of ``N`` images is given by its multiplicities: a weight row ``[N]`` of
non-negative integers summing to ``N`` (how many times each image was drawn). A metric evaluates a whole
weight matrix ``[R, N]`` at once with matrix products; the point estimate is the row of ones. Because the
counts are integers, the weighted sums are exact in float64, so two identical records give bit-identical
scores on every resample.

**Intervals** are percentile intervals (the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
resampled values), ``RESAMPLES = 1000`` seeded resamples at ``LEVEL = 0.95`` by default.

**Regret with the best re-chosen** (:func:`regret_intervals`). The exhaustive search picks the candidate
with the best selection-split (validation) score and reports its test score, so the "best" is itself a
random choice. Each bootstrap replicate therefore resamples *both* splits (independently: they hold
different images; the same weights for every candidate of a split, so the comparison is paired), re-takes
the argmax on the resampled selection split, and computes ``regret = test(best) - test(pick)`` on the
resampled test split. A pick whose regret interval contains 0 is *tied with the best*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: Bootstrap resamples by default.
RESAMPLES = 1000
#: Coverage of the intervals by default.
LEVEL = 0.95

KINDS = ("top1", "miou")


# ---------------------------------------------------------------------------------------------------------
# Records and metrics


def top1_record(correct) -> dict:
    """The record of a top-1 accuracy from ``correct`` ``[N]`` (bools or 0/1, one per image)."""
    return Top1(correct).to_record()


def miou_record(intersection, union) -> dict:
    """The record of an mIoU from per-image per-class pixel counts ``intersection`` and ``union`` ``[N, K]``."""
    return MeanIoU(intersection, union).to_record()


def _check_weights(weights, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"resampling weights have shape {np.shape(weights)}; expected [R, {n}] (one column per image)")
    return w


class Top1:
    """Top-1 accuracy, in percent, from ``correct`` ``[N]`` (0/1 per image)."""

    kind = "top1"

    def __init__(self, correct):
        c = np.asarray(correct)
        if c.ndim != 1 or c.size == 0:
            raise ValueError(f"top-1 'correct' must be a non-empty list with one 0/1 per image, got shape {c.shape}")
        if not np.isin(c, (0, 1)).all():
            raise ValueError("top-1 'correct' holds values other than 0/1 (or true/false)")
        self.correct = c.astype(np.float64)

    @property
    def n(self) -> int:
        """How many images."""
        return self.correct.size

    def scores(self, weights) -> np.ndarray:
        """``weights`` ``[R, N]`` (multiplicities) -> ``[R]`` accuracies: ``100 * (w @ correct) / sum(w)``."""
        w = _check_weights(weights, self.n)
        return 100.0 * (w @ self.correct) / w.sum(1)

    @property
    def value(self) -> float:
        """The point estimate (every image once)."""
        return float(self.scores(np.ones(self.n))[0])

    def to_record(self) -> dict:
        return {"kind": "top1", "correct": [int(v) for v in self.correct]}


class MeanIoU:
    """Mean IoU over classes, in percent, from per-image per-class ``intersection`` and ``union`` ``[N, K]``."""

    kind = "miou"

    def __init__(self, intersection, union):
        i, u = np.asarray(intersection), np.asarray(union)
        if i.ndim != 2 or i.shape != u.shape or i.shape[0] == 0 or i.shape[1] == 0:
            raise ValueError(f"mIoU 'intersection' and 'union' must both be [N images, K classes] with N, K > 0; "
                             f"got {i.shape} and {u.shape}")
        if not (np.issubdtype(i.dtype, np.number) and np.issubdtype(u.dtype, np.number)) or \
                (np.mod(i, 1) != 0).any() or (np.mod(u, 1) != 0).any():
            raise ValueError("mIoU counts must be whole numbers of pixels")
        if (i < 0).any() or (u < i).any():
            raise ValueError("mIoU counts must satisfy 0 <= intersection <= union for every image and class")
        self.counts = np.concatenate([i, u], axis=1).astype(np.float64)  # [N, 2K]: one product for both
        self.classes = i.shape[1]

    @property
    def n(self) -> int:
        return self.counts.shape[0]

    def scores(self, weights) -> np.ndarray:
        """``weights`` ``[R, N]`` -> ``[R]`` mIoUs from the weighted sums of the counts (NaN if no class has a union)."""
        w = _check_weights(weights, self.n)
        summed = w @ self.counts  # [R, 2K], exact: integer counts
        inter, union = summed[:, :self.classes], summed[:, self.classes:]
        present = union > 0
        iou = np.where(present, inter / np.where(present, union, 1.0), 0.0)
        count = present.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, 100.0 * iou.sum(1) / count, np.nan)

    @property
    def value(self) -> float:
        return float(self.scores(np.ones(self.n))[0])

    def to_record(self) -> dict:
        k = self.classes
        return {"kind": "miou", "intersection": self.counts[:, :k].astype(np.int64).tolist(),
                "union": self.counts[:, k:].astype(np.int64).tolist()}


class SeedMean:
    """The mean over seeds of one metric on the same images (each seed a training of its own): the score on a
    resample is the seeds' mean score on it, so an interval over images covers the seed-averaged metric."""

    def __init__(self, records: Sequence):
        self.metrics = [as_metric(r) for r in records]
        if not self.metrics or len({m.n for m in self.metrics}) != 1:
            raise ValueError("a seed mean needs at least one record, all over the same images")

    @property
    def n(self) -> int:
        return self.metrics[0].n

    def scores(self, weights) -> np.ndarray:
        return np.mean([m.scores(weights) for m in self.metrics], axis=0)

    @property
    def value(self) -> float:
        return float(np.mean([m.value for m in self.metrics]))


def as_metric(record) -> Top1 | MeanIoU | SeedMean:
    """A metric object from a record (``{"kind": "top1" | "miou", ...}``); a metric object passes through."""
    if isinstance(record, (Top1, MeanIoU, SeedMean)):
        return record
    if not isinstance(record, Mapping) or record.get("kind") not in KINDS:
        kind = record.get("kind") if isinstance(record, Mapping) else type(record).__name__
        raise ValueError(f"not a per-image metric record (kind {kind!r}); expected a dict with 'kind' in {KINDS}")
    if record["kind"] == "top1":
        return Top1(record["correct"])
    return MeanIoU(record["intersection"], record["union"])


# ---------------------------------------------------------------------------------------------------------
# Resampling and intervals


def _weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one image and one resample, got n={n}, resamples={resamples}")
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)


def resample_weights(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap resamples of ``n`` images, as multiplicities: int array ``[resamples, n]``, rows summing to ``n``.

    Each row draws ``n`` images uniformly with replacement (``numpy.random.default_rng(seed)``); the same
    ``(n, resamples, seed)`` gives the same weights, so metrics evaluated on the same images with the same
    seed are paired.
    """
    return _weights(n, resamples, np.random.default_rng(seed))


def percentile_interval(samples, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval ``(lo, hi)`` of ``samples`` ``[R]`` at coverage ``level``.

    NaN samples (an mIoU with no class present in a resample) are left out; all NaN gives ``(nan, nan)``.
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level {level!r} must be in (0, 1), e.g. 0.95")
    s = np.asarray(samples, dtype=np.float64).ravel()
    s = s[~np.isnan(s)]
    if s.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def metric_interval(record, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """A metric and its bootstrap interval over images: ``{"value": float, "ci": [lo, hi]}`` (percent).

    ``record``: a record (see the module docstring) or a metric object; resamples its ``N`` images with
    :func:`resample_weights` ``(N, resamples, seed)``.
    """
    metric = as_metric(record)
    samples = metric.scores(resample_weights(metric.n, resamples, seed))
    return {"value": metric.value, "ci": list(percentile_interval(samples, level))}


def mean_interval(records: Sequence, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """The mean of metrics on independent image sets (one per dataset, say), each resampled on its own: the
    mean's bootstrap interval ``{"value", "ci"}`` (the datasets themselves are fixed, not resampled)."""
    metrics = [as_metric(r) for r in records]
    samples = np.mean([m.scores(resample_weights(m.n, resamples, seed + i)) for i, m in enumerate(metrics)], axis=0)
    return {"value": float(np.mean([m.value for m in metrics])), "ci": list(percentile_interval(samples, level))}


def paired_difference(record_a, record_b, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """``a - b`` on the same images, with a paired bootstrap interval: ``{"value": float, "ci": [lo, hi]}``.

    Both records must be over the same ``N`` images in the same order; each resample draws the same images
    for both, so what the two have in common cancels (two identical records give exactly 0 and ``[0, 0]``).
    """
    a, b = as_metric(record_a), as_metric(record_b)
    if a.n != b.n:
        raise ValueError(f"a paired difference needs the same images: {a.n} against {b.n}")
    w = resample_weights(a.n, resamples, seed)
    return {"value": a.value - b.value, "ci": list(percentile_interval(a.scores(w) - b.scores(w), level))}


# ---------------------------------------------------------------------------------------------------------
# Regret with the best re-chosen on held-out data


def _split_scores(records: Sequence, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point scores ``[T]`` and resampled scores ``[R, T]`` of one split's candidates (shared images)."""
    metrics = [as_metric(r) for r in records]
    sizes = {m.n for m in metrics}
    if len(sizes) != 1:
        raise ValueError(f"the candidates of a split must share its images; they hold {sorted(sizes)} images")
    n = sizes.pop()
    ones = np.ones((1, n))
    points = np.array([m.scores(ones)[0] for m in metrics])
    resampled = np.stack([m.scores(weights) for m in metrics], axis=1)
    return points, resampled


def _argmax_first(scores: np.ndarray) -> np.ndarray:
    """Argmax over the last axis, the first on ties (as ``max()``); an undefined (NaN) score never wins."""
    return np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=-1)


def regret_intervals(val: Mapping, test: Mapping, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL,
                     keep_samples: bool = False, picks: Mapping | None = None) -> dict:
    """The regret of each candidate against the exhaustive best, the best re-chosen on every resample.

    ``val``: ``{t: record}`` on the selection split, ``test``: ``{t: record}`` on the reported split, the same
    candidates (grid order: ``val``'s key order); all candidates of a split share its images.

    Each of the ``R`` replicates draws the test images with :func:`resample_weights` ``(N_test, R, seed)``
    (the same resamples as :func:`metric_interval` with that seed) and the selection images independently
    (``default_rng([seed, 1])``); every candidate of a split gets the same weights. On replicate ``r``,
    ``best_r = argmax_t val_r(t)`` (the first in grid order on ties, as ``best_on_validation``) and a pick
    ``p`` has ``regret_r(p) = test_r(best_r) - test_r(p)``. The point values use all images once.

    Returns::

        {"candidates": [t, ...], "best": t (argmax on the full selection split),
         "per_candidate": {t: {"regret", "ci": [lo, hi], "se", "tied_with_best"}},
         "random": {...same...}        # the expectation over the grid: test(best) - mean_t test(t)
         "test_at_best": {"value", "ci": [lo, hi]},   # test(best_r): the exhaustive result, selection included
         "best_frequency": {t: share of replicates where t is best_r},   # sums to 1
         "tied_with_best": [t, ...],   # the candidates whose regret interval contains 0, in grid order
         "resamples": R, "seed": seed, "level": level}

    ``picks``: ``{name: test record}``, more picks scored the same way (``"picks": {name: entry}``) that are no
    candidates of the best: a training of its own at a selector's timestep, or a seed mean over timesteps
    that differ by seed.

    ``se`` is the standard deviation of the replicates (for a normal within-group draw in
    :func:`mean_interval_over_groups`); ``keep_samples=True`` adds each entry's ``"samples"`` ``[R]``.
    The keys ``t`` are passed through as given.
    """
    candidates = list(val)
    if not candidates:
        raise ValueError("no candidates to compare")
    if set(test) != set(candidates):
        raise ValueError(f"the selection and reported splits name different candidates: {candidates} "
                         f"against {list(test)}")
    val_records = [val[t] for t in candidates]
    test_records = [test[t] for t in candidates]
    n_val, n_test = as_metric(val_records[0]).n, as_metric(test_records[0]).n
    w_test = resample_weights(n_test, resamples, seed)
    w_val = _weights(n_val, resamples, np.random.default_rng([seed, 1]))
    val_point, val_r = _split_scores(val_records, w_val)  # [T], [R, T]
    test_point, test_r = _split_scores(test_records, w_test)

    best = int(_argmax_first(val_point))
    best_r = _argmax_first(val_r)  # [R]
    test_best_r = test_r[np.arange(resamples), best_r]  # [R]

    def entry(point: float, samples: np.ndarray) -> dict:
        lo, hi = percentile_interval(samples, level)
        finite = samples[~np.isnan(samples)]
        out = {"regret": float(point), "ci": [lo, hi],
               "se": float(finite.std(ddof=1)) if finite.size > 1 else None,
               "tied_with_best": bool(lo <= 0 <= hi)}
        if keep_samples:
            out["samples"] = samples.tolist()
        return out

    regrets = test_best_r[:, None] - test_r  # [R, T]
    per_candidate = {t: entry(test_point[best] - test_point[j], regrets[:, j]) for j, t in enumerate(candidates)}
    counts = np.bincount(best_r, minlength=len(candidates))
    return {
        "candidates": candidates,
        "best": candidates[best],
        "per_candidate": per_candidate,
        "random": entry(test_point[best] - test_point.mean(), test_best_r - test_r.mean(1)),
        "test_at_best": {"value": float(test_point[best]), "ci": list(percentile_interval(test_best_r, level))},
        "best_frequency": {t: float(counts[j]) / resamples for j, t in enumerate(candidates)},
        "tied_with_best": [t for t in candidates if per_candidate[t]["tied_with_best"]],
        "picks": {name: _pick_entry(record, n_test, w_test, test_point[best], test_best_r, entry)
                  for name, record in (picks or {}).items()},
        "resamples": resamples, "seed": seed, "level": level,
    }


def _pick_entry(record, n_test: int, w_test: np.ndarray, best_point: float, test_best_r: np.ndarray, entry) -> dict:
    """A pick's regret entry: ``test(best) - test(pick)``, paired on the test resamples ``w_test``."""
    metric = as_metric(record)
    if metric.n != n_test:
        raise ValueError(f"a pick must be scored on the reported split's {n_test} images, not {metric.n}")
    return entry(best_point - metric.value, test_best_r - metric.scores(w_test))


# ---------------------------------------------------------------------------------------------------------
# Seeds and leaderboards


def mean_and_se(values) -> dict:
    """``{"mean", "se", "n"}`` of ``values`` (e.g. one metric over seeds): s.e. = sample std (ddof 1) / sqrt(n).

    ``se`` is ``None`` for a single value (no spread can be estimated from one).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_and_se of no values")
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
    return {"mean": float(v.mean()), "se": se, "n": int(v.size)}


def mean_interval_over_groups(groups: Sequence, resamples: int = RESAMPLES, seed: int = 0,
                              level: float = LEVEL) -> dict:
    """The mean of per-group values (e.g. a selector's regret over comparisons) with a two-stage bootstrap interval.

    ``groups``: one entry per group, each ``{"value": v, "samples": [...]}`` (the group's own bootstrap
    replicates, e.g. ``regret_intervals(..., keep_samples=True)``), ``{"value": v, "se": s}`` (its s.e., e.g.
    over seeds; ``None`` or 0 for no spread), ``{"value": v}`` or a bare number (no within-group spread).

    Each replicate draws ``G`` groups with replacement and, for every drawn group, one within-group value:
    a uniformly drawn one of its ``samples``, or ``value + se * z`` with ``z ~ N(0, 1)``; the replicate's
    statistic is the mean of the ``G`` draws. Returns ``{"mean": mean of the groups' values, "ci": [lo, hi],
    "n": G}``.

    Approximations: (1) the observed group values already vary by their within-group noise, so drawing
    that noise again counts it twice; the interval is conservative (slightly wide) when the within-group
    spread is comparable to the spread between groups, which partly offsets (2) the percentile bootstrap's
    under-coverage of a mean over few groups (about ``sqrt((G - 1) / G)`` too narrow, and normal rather than
    Student tails). (3) Within-group samples are used as they are, not re-centred on the group's value, so a
    group whose bootstrap distribution is shifted (regret with the best re-chosen usually is) shifts this
    interval the same way its own interval is; a normal draw is centred on the value.
    """
    if not groups:
        raise ValueError("no groups to average")
    values, spreads, samples = [], [], []
    for g in groups:
        if not isinstance(g, Mapping):
            g = {"value": g}
        if "samples" in g and g.get("se") is not None:
            raise ValueError("give a group either its 'samples' or its 'se', not both")
        values.append(float(g["value"]))
        spreads.append(float(g.get("se") or 0.0))
        s = np.asarray(g["samples"], dtype=np.float64).ravel() if "samples" in g else np.empty(0)
        s = s[~np.isnan(s)]
        if "samples" in g and s.size == 0:
            raise ValueError("a group's 'samples' are empty (or all NaN)")
        samples.append(s)
    values, spreads = np.array(values), np.array(spreads)
    count = len(values)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, count, size=(resamples, count))  # [R, G] group indices
    lengths = np.array([s.size for s in samples])
    padded = np.zeros((count, max(1, lengths.max())))
    for j, s in enumerate(samples):
        padded[j, :s.size] = s
    pick = np.floor(rng.random((resamples, count)) * np.maximum(lengths[drawn], 1)).astype(np.int64)
    normal = values[drawn] + spreads[drawn] * rng.standard_normal((resamples, count))
    within = np.where(lengths[drawn] > 0, padded[drawn, pick], normal)  # [R, G]
    return {"mean": float(values.mean()), "ci": list(percentile_interval(within.mean(1), level)), "n": int(count)}
