"""The bootstrap maths of aselect_bench.uncertainty against known answers and brute-force recomputations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aselect_bench.uncertainty import (
    LEVEL,
    RESAMPLES,
    MeanIoU,
    Top1,
    _weights,
    as_metric,
    mean_and_se,
    mean_interval_over_groups,
    metric_interval,
    miou_record,
    paired_difference,
    percentile_interval,
    regret_intervals,
    resample_weights,
    top1_record,
)

IGNORE = 255


def top1(correct) -> dict:
    return top1_record(np.asarray(correct, dtype=int))


# --- resampling, seeds ------------------------------------------------------------------------------------


def test_defaults():
    assert RESAMPLES == 1000 and LEVEL == 0.95


def test_resample_weights_are_multiplicities_and_seeded():
    w = resample_weights(7, 50, seed=3)
    assert w.shape == (50, 7) and np.issubdtype(w.dtype, np.integer)
    assert (w >= 0).all() and (w.sum(1) == 7).all()
    assert np.array_equal(w, resample_weights(7, 50, seed=3))
    assert not np.array_equal(w, resample_weights(7, 50, seed=4))
    # each image is drawn with probability 1/n: mean multiplicity 1
    assert abs(resample_weights(20, 2000, seed=0).mean() - 1) < 1e-12
    assert abs(resample_weights(20, 2000, seed=0)[:, 0].mean() - 1) < 0.1


def test_same_seed_same_interval_different_seed_different_samples():
    rec = top1(np.random.default_rng(1).random(300) < 0.6)
    assert metric_interval(rec, 500, seed=7) == metric_interval(rec, 500, seed=7)
    m = as_metric(rec)
    a, b = m.scores(resample_weights(300, 500, 7)), m.scores(resample_weights(300, 500, 8))
    assert not np.array_equal(a, b)
    assert metric_interval(rec, 500, seed=7)["ci"] != metric_interval(rec, 500, seed=8)["ci"]


def test_percentile_interval():
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval([np.nan, 1.0, 1.0]) == (1.0, 1.0)  # NaN replicates are left out
    assert all(math.isnan(v) for v in percentile_interval([np.nan, np.nan]))
    with pytest.raises(ValueError):
        percentile_interval([1.0], level=1.0)


# --- top-1 --------------------------------------------------------------------------------------------------


def test_top1_point_and_weights():
    m = Top1([1, 0, 1, 1])
    assert m.value == 75.0
    assert np.allclose(m.scores([[0, 2, 1, 1], [0, 4, 0, 0], [4, 0, 0, 0]]), [50.0, 0.0, 100.0])
    assert top1_record([True, False]) == {"kind": "top1", "correct": [1, 0]}
    assert as_metric(m.to_record()).value == 75.0
    with pytest.raises(ValueError):
        Top1([0, 2])
    with pytest.raises(ValueError):
        as_metric({"kind": "top5", "correct": [1]})
    with pytest.raises(ValueError):
        m.scores(np.ones((3, 5)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binomial_interval_matches_normal_approximation(seed):
    n, p = 600, 0.3
    correct = np.zeros(n, dtype=int)
    correct[np.random.default_rng(seed).permutation(n)[:int(p * n)]] = 1
    out = metric_interval(top1(correct), seed=seed)
    assert out["value"] == pytest.approx(100 * p)
    half = 100 * 1.96 * math.sqrt(p * (1 - p) / n)  # 3.67 points
    lo, hi = out["ci"]
    assert (hi - lo) == pytest.approx(2 * half, rel=0.10)
    assert (lo + hi) / 2 == pytest.approx(100 * p, abs=0.1 * half)


def test_identical_predictions_give_an_exact_zero_difference():
    rec = top1(np.random.default_rng(0).random(257) < 0.4)
    assert paired_difference(rec, dict(rec), resamples=400, seed=5) == {"value": 0.0, "ci": [0.0, 0.0]}
    seg = miou_record(*_random_counts(9, 4, seed=2))
    assert paired_difference(seg, seg, resamples=400) == {"value": 0.0, "ci": [0.0, 0.0]}


def test_paired_difference_is_paired():
    """Two classifiers that differ on 5 of 400 images: the unpaired intervals overlap widely, the paired one is
    narrow and excludes 0 (a = b + 5 images, always >= 0)."""
    rng = np.random.default_rng(3)
    b = (rng.random(400) < 0.5).astype(int)
    a = b.copy()
    a[np.flatnonzero(b == 0)[:5]] = 1
    out = paired_difference(top1(a), top1(b), resamples=1000, seed=0)
    assert out["value"] == pytest.approx(100 * 5 / 400)
    lo, hi = out["ci"]
    assert 0 < lo <= hi < 3
    single = metric_interval(top1(b))["ci"]
    assert hi - lo < (single[1] - single[0]) / 3
    with pytest.raises(ValueError):
        paired_difference(top1(a), top1(b[:-1]))


# --- mIoU ---------------------------------------------------------------------------------------------------


def _random_counts(n, k, seed):
    rng = np.random.default_rng(seed)
    inter = rng.integers(0, 20, size=(n, k))
    return inter, inter + rng.integers(0, 20, size=(n, k))


def _pixel_case():
    """6 images of 4x5 pixels, 3 classes, some pixels ignored; class 2 only in image 0 (label and prediction)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(6, 4, 5))
    preds = np.where(rng.random((6, 4, 5)) < 0.7, labels, 1 - labels)
    labels[0, :2, :2], preds[0, :1, :3] = 2, 2
    labels[:, 3, 4] = IGNORE
    return preds, labels


def _miou_from_pixels(preds, labels, k):
    """mmsegmentation's IoUMetric on a set of images: one confusion matrix, NaN-free mean over present classes."""
    keep = labels != IGNORE
    confmat = np.bincount(labels[keep] * k + preds[keep], minlength=k * k).reshape(k, k).astype(float)
    inter, union = np.diag(confmat), confmat.sum(0) + confmat.sum(1) - np.diag(confmat)
    with np.errstate(invalid="ignore"):
        return 100 * np.nanmean(inter / union)


def _per_image_counts(preds, labels, k):
    inter, union = [], []
    for p, y in zip(preds, labels):
        keep = y != IGNORE
        c = np.bincount(y[keep] * k + p[keep], minlength=k * k).reshape(k, k)
        inter.append(np.diag(c))
        union.append(c.sum(0) + c.sum(1) - np.diag(c))
    return np.array(inter), np.array(union)


def test_miou_from_counts_matches_brute_force_recomputation():
    preds, labels = _pixel_case()
    rec = miou_record(*_per_image_counts(preds, labels, 3))
    m = as_metric(rec)
    assert m.value == pytest.approx(_miou_from_pixels(preds, labels, 3), abs=1e-12)
    weights = resample_weights(6, 300, seed=11)
    fast = m.scores(weights)
    brute = []
    for w in weights:
        images = np.repeat(np.arange(6), w)  # the resampled list of images, duplicates included
        brute.append(_miou_from_pixels(preds[images], labels[images], 3))
    assert np.allclose(fast, brute, rtol=0, atol=1e-10)
    without_0 = weights[:, 0] == 0
    assert without_0.any() and (~without_0).any()  # class 2 absent from some resamples' union, present in others
    ci = metric_interval(rec, resamples=300, seed=11)
    assert ci["ci"] == list(percentile_interval(brute))
    assert ci["value"] == m.value


def test_miou_semantics_match_the_suite_metric():
    """The brute-force reference above is the suite's SegmentationMetrics (mmsegmentation's IoUMetric)."""
    torch = pytest.importorskip("torch")
    from aselect_bench.metrics import SegmentationMetrics

    preds, labels = _pixel_case()
    for images in ([0, 1, 2, 3, 4, 5], [1, 1, 3, 5, 5, 2], [0, 0, 4]):
        metric = SegmentationMetrics(3)
        metric.update(torch.as_tensor(preds[images]), torch.as_tensor(labels[images]))
        expected = float(metric.compute()["mIoU"])
        w = np.bincount(images, minlength=6)
        got = as_metric(miou_record(*_per_image_counts(preds, labels, 3))).scores(w)[0]
        assert got == pytest.approx(expected, abs=1e-4)


def test_miou_no_class_present_is_nan_and_bad_counts_rejected():
    m = MeanIoU([[0, 0]], [[0, 0]])
    assert math.isnan(m.value)
    with pytest.raises(ValueError):
        MeanIoU([[3, 0]], [[2, 0]])  # intersection above union
    with pytest.raises(ValueError):
        MeanIoU([[1, 0]], [[2, 0], [1, 1]])
    with pytest.raises(ValueError):
        MeanIoU([[0.5, 0]], [[2, 0]])


# --- regret with the best re-chosen ------------------------------------------------------------------------


def _acc(n, p, rng):
    correct = np.zeros(n, dtype=int)
    correct[rng.permutation(n)[:round(p * n)]] = 1
    return correct


def test_regret_clear_best_worse_and_near_ties():
    rng = np.random.default_rng(0)
    val, test = {}, {}
    for split, n in ((val, 300), (test, 500)):
        split[0] = top1(_acc(n, 0.3, rng))           # clearly worse
        a = _acc(n, 0.8, rng)
        split[100] = top1(a)                          # the best
        near = a.copy()
        near[np.flatnonzero(a == 1)[0]] = 0           # one image fewer than the best
        split[200] = top1(near)
    out = regret_intervals(val, test, resamples=500, seed=0, keep_samples=True)
    assert out["candidates"] == [0, 100, 200] and out["best"] == 100
    worse, best, near = (out["per_candidate"][t] for t in (0, 100, 200))
    assert worse["regret"] == pytest.approx(50.0) and not worse["tied_with_best"] and worse["ci"][0] > 40
    assert best["regret"] == 0.0 and best["tied_with_best"]
    assert near["regret"] == pytest.approx(0.2) and near["tied_with_best"]
    assert out["tied_with_best"] == [100, 200]
    assert sum(out["best_frequency"].values()) == pytest.approx(1.0)
    assert out["best_frequency"][0] == 0.0
    # the near-copy is one correct image short everywhere, so it never wins: the best always does, regret exactly 0
    assert out["best_frequency"][100] == 1.0 and best["ci"] == [0.0, 0.0] and set(best["samples"]) == {0.0}
    # random selector: the best's test score minus the grid's mean, at the point estimate
    points = [as_metric(test[t]).value for t in (0, 100, 200)]
    assert out["random"]["regret"] == pytest.approx(points[1] - np.mean(points))
    assert not out["random"]["tied_with_best"]
    assert out["test_at_best"]["value"] == points[1]
    lo, hi = out["test_at_best"]["ci"]
    assert lo < points[1] < hi


def test_regret_rechooses_the_best_on_each_resample():
    """Two candidates equal on validation up to noise: the best changes between resamples, and the replicates
    are exactly test(best_r) - test(p) with best_r re-taken on the independently resampled validation split."""
    rng = np.random.default_rng(4)
    val = {"a": top1(_acc(200, 0.6, rng)), "b": top1(_acc(200, 0.6, rng)), "c": top1(_acc(200, 0.55, rng))}
    test = {"a": top1(_acc(250, 0.62, rng)), "b": top1(_acc(250, 0.58, rng)), "c": top1(_acc(250, 0.5, rng))}
    out = regret_intervals(val, test, resamples=300, seed=9, keep_samples=True)
    assert out["best"] == "a"  # equal validation scores: the first in grid order, as max()
    freq = out["best_frequency"]
    assert 0.2 < freq["a"] < 0.8 and 0.2 < freq["b"] < 0.8 and sum(freq.values()) == pytest.approx(1.0)
    # brute force, one replicate at a time
    w_test = resample_weights(250, 300, seed=9)
    w_val = _weights(200, 300, np.random.default_rng([9, 1]))
    for r in range(0, 300, 37):
        v = {t: as_metric(val[t]).scores(w_val[r])[0] for t in val}
        best_r = max(v, key=v.get)
        s = {t: as_metric(test[t]).scores(w_test[r])[0] for t in test}
        for t in test:
            assert out["per_candidate"][t]["samples"][r] == pytest.approx(s[best_r] - s[t], abs=1e-12)
        assert out["random"]["samples"][r] == pytest.approx(s[best_r] - np.mean(list(s.values())), abs=1e-12)
    # the replicates' test split is the same resampling as metric_interval with the same seed
    assert metric_interval(test["a"], 300, seed=9)["ci"] == list(percentile_interval(as_metric(test["a"]).scores(w_test)))
    assert out["per_candidate"]["a"]["tied_with_best"] and out["per_candidate"]["b"]["tied_with_best"]
    assert out["per_candidate"]["a"]["se"] > 0


def test_regret_with_miou_records_and_bad_inputs():
    val = {t: miou_record(*_random_counts(8, 3, seed=t)) for t in range(4)}
    test = {t: miou_record(*_random_counts(10, 3, seed=10 + t)) for t in range(4)}
    out = regret_intervals(val, test, resamples=200, seed=1)
    best = out["best"]
    vals = {t: as_metric(val[t]).value for t in val}
    assert best == max(vals, key=vals.get)
    assert out["per_candidate"][best]["regret"] == 0.0
    assert sum(out["best_frequency"].values()) == pytest.approx(1.0)
    assert regret_intervals(val, test, resamples=200, seed=1) == out
    with pytest.raises(ValueError):
        regret_intervals(val, {t: test[t] for t in range(3)})
    with pytest.raises(ValueError):  # a split's candidates must share its images
        regret_intervals(val, {**test, 3: miou_record(*_random_counts(9, 3, seed=0))})


# --- seeds and leaderboards --------------------------------------------------------------------------------


def test_mean_and_se():
    out = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert out["mean"] == 2.5 and out["n"] == 4
    assert out["se"] == pytest.approx(math.sqrt(5 / 3) / 2)  # sample var 5/3, / sqrt(4)
    assert mean_and_se([7.0]) == {"mean": 7.0, "se": None, "n": 1}
    with pytest.raises(ValueError):
        mean_and_se([])


@pytest.mark.parametrize("form", ["se", "samples"])
def test_group_interval_contains_the_mean_and_shrinks_with_more_groups(form):
    rng = np.random.default_rng(0)

    def groups(count):
        values = rng.normal(2.0, 1.0, size=count)
        if form == "se":
            return [{"value": v, "se": 0.5} for v in values]
        return [{"value": v, "samples": v + rng.normal(0, 0.5, size=200)} for v in values]

    few, many = mean_interval_over_groups(groups(5), seed=1), mean_interval_over_groups(groups(80), seed=1)
    for out in (few, many):
        assert out["ci"][0] < out["mean"] < out["ci"][1]
    assert few["n"] == 5 and many["n"] == 80
    assert many["ci"][1] - many["ci"][0] < 0.5 * (few["ci"][1] - few["ci"][0])
    # with 80 groups: close to the normal interval of a mean, sd sqrt(1 + 0.25) between and within
    half = 1.96 * math.sqrt(1.25 / 80)
    assert many["ci"][1] - many["ci"][0] == pytest.approx(2 * half, rel=0.25)


def test_group_interval_without_spread():
    assert mean_interval_over_groups([3.0, 3.0, {"value": 3.0, "se": None}]) == {"mean": 3.0, "ci": [3.0, 3.0], "n": 3}
    # only the within-group spread: one group, its samples' percentile interval
    samples = np.linspace(-1, 1, 201)
    out = mean_interval_over_groups([{"value": 0.0, "samples": samples}], resamples=4000)
    assert out["ci"] == pytest.approx([-0.95, 0.95], abs=0.05)
    assert mean_interval_over_groups([1.0, 2.0], seed=3) == mean_interval_over_groups([1.0, 2.0], seed=3)
    with pytest.raises(ValueError):
        mean_interval_over_groups([{"value": 1.0, "se": 0.1, "samples": [1.0]}])
    with pytest.raises(ValueError):
        mean_interval_over_groups([])


def test_a_seed_mean_is_the_mean_of_the_seeds_on_every_resample():
    from aselect_bench.uncertainty import SeedMean, Top1, resample_weights

    a, b = Top1([1, 0, 1, 1, 0, 0]), Top1([0, 0, 1, 1, 1, 1])
    w = resample_weights(6, 50, seed=3)
    mean = SeedMean([a, b.to_record()])
    assert np.allclose(mean.scores(w), (a.scores(w) + b.scores(w)) / 2) and mean.value == pytest.approx(175 / 3)


def test_an_extra_pick_is_scored_like_the_candidate_it_equals():
    from aselect_bench.uncertainty import regret_intervals, top1_record

    rng = np.random.default_rng(0)
    val = {t: top1_record(rng.random(40) < p) for t, p in ((0, 0.5), (50, 0.7), (100, 0.6))}
    test = {t: top1_record(rng.random(60) < p) for t, p in ((0, 0.5), (50, 0.7), (100, 0.6))}
    out = regret_intervals(val, test, resamples=200, picks={"own training at 100": test[100]})
    assert out["picks"]["own training at 100"] == out["per_candidate"][100]
