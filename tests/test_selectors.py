"""Timestep selectors: each on constructed features whose answer is known, the registry, the scan's cost
accounting, the leaderboard's aggregation, resuming, and the callback/CLI wiring."""

from __future__ import annotations

import json

import pytest
import torch

from aselect_bench.errors import UserError
from aselect_bench.hfr import HFRSettings, high_frequency_ratio
from aselect_bench.selectors import (
    Labels,
    Selector,
    build_selector,
    register,
    run_selectors,
    selector_names,
    training_selector,
)
from aselect_bench.selectors.base import _REGISTRY
from aselect_bench.selectors.labelled import knn_accuracy, ncm_accuracy, token_labels, token_ncm_miou
from aselect_bench.selectors.spectrum import effective_rank, spectral_decay
from aselect_bench.settings import load_bench_preset

CANDIDATES = [0, 250, 500, 750, 999]


class TableBackbone:
    """A stand-in backbone whose features are a known function ``fn(ids [b], t) -> [b, C, h, w]`` of each
    image's id (carried in pixel [0, 0, 0]) and the timestep; counts forwards like :class:`Backbone`."""

    num_train_timesteps = 1000

    def __init__(self, fn):
        self.fn, self.forwards = fn, 0

    def encode(self, images):
        return images

    def extract_x0(self, x0, t, taps, noise=None):
        self.forwards += len(x0)
        feats = self.fn(x0[:, 0, 0, 0].long(), t)
        return {tap: feats + 0.01 * noise.mean() for tap in taps}  # noise changes features a little: draws differ


def ids(n: int, offset: int = 0) -> torch.Tensor:
    """``[n, 3, 4, 4]`` images whose pixel [0, 0, 0] holds the id ``offset + i``."""
    images = torch.zeros(n, 3, 4, 4)
    images[:, 0, 0, 0] = torch.arange(offset, offset + n, dtype=torch.float32)
    return images


def seeded(i: int, t: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(i) * 7919 + t))


# ------------------------------------------------------------------------- registry
def test_registry_lists_every_shipped_selector_once_with_hfr_first():
    names = selector_names()
    assert names[0] == "hfr" and len(names) == len(set(names))
    assert {"t0", "fixed-100", "fixed-150", "random", "rankme", "alpha-req", "knn", "ncm", "token-ncm"} <= set(names)
    assert sum(n.startswith("hfr-") for n in names) == 11  # 3 bands x mean x {1, 8} draws, less the paper's own
    assert "knn" in selector_names("fgvc") and "knn" not in selector_names("ade20k")
    assert "token-ncm" in selector_names("ade20k") and "token-ncm" not in selector_names("fgvc")
    for name in names:
        s = build_selector(name)
        assert s.name == name and (s.__doc__ or "").strip(), name  # each names its source
    with pytest.raises(UserError, match="unknown timestep selector 'nope'"):
        build_selector("nope")
    demo = load_bench_preset("demo")  # a preset naming a bad selector stops at load
    with pytest.raises(UserError, match="unknown timestep selector"):
        demo.override(**{"hfr.selector": "nope"})
    with pytest.raises(UserError, match="cannot choose the training timestep"):
        demo.override(**{"hfr.selector": "random"})
    with pytest.raises(UserError, match="cannot choose the training timestep"):
        training_selector("random")
    with pytest.raises(ValueError, match="registered twice"):
        register("hfr")(lambda settings: None)


def test_hfr_follows_the_settings_and_variants_are_fixed():
    hfr = build_selector("hfr", HFRSettings(cutoff=0.3, mode="radial", remove_mean=True, noise_draws=4))
    assert hfr.settings == {"cutoff": 0.3, "mode": "radial", "remove_mean": True, "noise_draws": 4}
    assert build_selector("hfr-separable-demean-K8").settings == {"cutoff": 0.15, "mode": "separable",
                                                                  "remove_mean": True, "noise_draws": 8}
    x = torch.rand(3, 5, 4, 4)
    assert torch.equal(build_selector("hfr").score(x), high_frequency_ratio(x))


def test_a_new_selector_is_one_registration(monkeypatch):
    class Latest(Selector):
        """Test-only: the noisiest candidate (a rule)."""

        images = None

        def choose(self, candidates, scores=None):
            return max(candidates)

    monkeypatch.setitem(_REGISTRY, "latest", lambda settings: Latest())
    assert "latest" in selector_names()
    selection = run_selectors(TableBackbone(lambda i, t: torch.zeros(len(i), 2, 2, 2)), [build_selector("latest")],
                              CANDIDATES, "blocks.0.out")
    assert selection.choices["latest"].timestep == 999 and selection.scan.forwards == 0  # a rule needs no scan


# ------------------------------------------------------------------------- rules
def test_fixed_rules_take_the_nearest_candidate_and_random_names_none():
    grid = [0, 50, 100, 150, 999]
    assert build_selector("t0").choose([300, 50, 999]) == 50  # the cleanest candidate, wherever it is listed
    assert build_selector("fixed-100").choose(grid) == 100 and build_selector("fixed-150").choose(grid) == 150
    assert build_selector("fixed-150").choose([0, 300, 999]) == 0  # equally near: the cleaner
    assert build_selector("fixed-100").choose([0, 250, 500]) == 0
    assert build_selector("random").choose(grid) is None and build_selector("random").expected


# ------------------------------------------------------------------------- label-free statistics
def test_effective_rank_and_spectral_decay_on_known_spectra():
    assert effective_rank(torch.eye(8)) == pytest.approx(8, rel=1e-4)
    assert effective_rank(torch.ones(8, 5)) == pytest.approx(1, rel=1e-3)
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(400, 400, dtype=torch.float64, generator=g))
    for alpha in (0.5, 1.0, 2.0):
        scales = torch.arange(1, 201, dtype=torch.float64).pow(-alpha / 2)  # eigenvalue i ~ i^-alpha
        z = q[:, :200] * scales * 20
        assert spectral_decay(z) == pytest.approx(alpha, abs=0.15)


def test_rankme_and_alpha_req_pick_the_candidate_whose_spectrum_is_built_that_way():
    def features(i, t):  # 24 images, 16 channels: full rank at t = 500, rank 2 elsewhere
        rank = 16 if t == 500 else 2
        z = torch.stack([torch.cat([seeded(k, t, rank), torch.zeros(16 - rank)]) for k in i.tolist()])
        return z[:, :, None, None].expand(-1, -1, 2, 2)

    selection = run_selectors(TableBackbone(features), [build_selector("rankme")], CANDIDATES, "blocks.0.out",
                              ids(24))
    assert selection.choices["rankme"].timestep == 500

    def power_law(i, t):  # eigenvalue decay alpha = 2 (t = 0), 1 (t = 750), 0.3 (elsewhere)
        alpha = {0: 2.0, 750: 1.0}.get(t, 0.3)
        scales = torch.arange(1, 33, dtype=torch.float64).pow(-alpha / 2).float()
        return torch.stack([seeded(k, t, 32) * scales for k in i.tolist()])[:, :, None, None]

    selection = run_selectors(TableBackbone(power_law), [build_selector("alpha-req")], CANDIDATES, "blocks.0.out",
                              ids(400))
    assert selection.choices["alpha-req"].timestep == 750


# ------------------------------------------------------------------------- label-using proxies
def separable_at(t_good: int, num_classes: int = 4):
    """Features whose class (id % num_classes) is a clear direction only at ``t_good``; pure noise elsewhere."""

    def fn(i, t):
        z = torch.stack([seeded(k, t, 16) for k in i.tolist()])
        if t == t_good:
            z = z + 6 * torch.nn.functional.one_hot(i % num_classes, 16).float()
        return z[:, :, None, None].expand(-1, -1, 3, 3)

    return fn


@pytest.mark.parametrize("name", ["knn", "ncm"])
def test_knn_and_ncm_pick_the_only_separable_candidate(name):
    images = ids(40, offset=1000)
    labels = Labels(torch.arange(1000, 1040) % 4, 4)
    backbone = TableBackbone(separable_at(250))
    selection = run_selectors(backbone, [build_selector(name)], CANDIDATES, "blocks.0.out", labelled=images,
                              labels=labels)
    c = selection.choices[name]
    assert c.timestep == 250 and c.scores[250] == pytest.approx(100) and max(c.scores[t] for t in (0, 500)) < 70
    assert c.uses_labels and c.extra_forwards == 40 * len(CANDIDATES) and selection.scan.forwards == 0


def test_ncm_and_knn_leave_the_image_itself_out():
    z = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9], [5.0, 5.0]])
    y = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one image: without it, no class mean to match
    assert ncm_accuracy(z, y) == pytest.approx(80)
    g = torch.Generator().manual_seed(3)
    z, y = torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    zc = torch.nn.functional.normalize(z.double() - z.double().mean(0), dim=1)
    hits = 0
    for n in range(30):  # brute force: class means of the other 29 images
        rest = [m for m in range(30) if m != n]
        means = torch.stack([zc[[m for m in rest if y[m] == k]].mean(0) for k in range(3)])
        hits += int((torch.nn.functional.normalize(means, dim=1) @ zc[n]).argmax() == y[n])
    assert ncm_accuracy(z, y) == pytest.approx(100 * hits / 30)
    assert knn_accuracy(torch.tensor([[0.0], [0.1], [5.0], [5.1]]), torch.tensor([0, 0, 1, 1]), k=1) == 100


def test_token_labels_vote_per_patch_and_token_ncm_finds_the_separable_timestep():
    masks = torch.full((1, 4, 4), 255)
    masks[0, :2, :2] = 3
    masks[0, :2, 2:] = torch.tensor([[1, 1], [1, 2]])
    assert token_labels(masks, (2, 2), num_classes=5).tolist() == [[[3, 1], [255, 255]]]

    def scene(i, t):  # 8 x 8 tokens; class k in the k-th quarter of rows; tokens say so only at t = 500
        z = torch.stack([seeded(k, t, (8, 8, 8)) for k in i.tolist()])
        if t == 500:
            z += 5 * torch.nn.functional.one_hot(torch.arange(8) // 2, 8).float().T[None, :, :, None]  # [1, C, h, 1]
        return z

    masks = (torch.arange(16) // 4)[None, :, None].expand(6, 16, 16).clone()
    selection = run_selectors(TableBackbone(scene), [build_selector("token-ncm")], CANDIDATES, "blocks.0.out",
                              labelled=ids(6), labels=Labels(masks, 4))
    c = selection.choices["token-ncm"]
    assert c.timestep == 500 and c.scores[500] == pytest.approx(100)
    assert token_ncm_miou(torch.ones(2, 3, 2, 2), torch.zeros(2, 4, 4, dtype=torch.long), 2) == pytest.approx(100)


# ------------------------------------------------------------------------- the scan's accounting
def test_one_scan_serves_every_selector_and_extra_work_is_counted_per_selector():
    backbone = TableBackbone(separable_at(500))
    names = ["hfr", "hfr-radial-K8", "rankme", "knn", "t0", "random"]
    selection = run_selectors(backbone, [build_selector(n) for n in names], CANDIDATES, "blocks.0.out", ids(6),
                              ids(10, 100), Labels(torch.arange(100, 110) % 4, 4), batch_size=4)
    c = selection.choices
    assert selection.scan.forwards == 6 * 5 and selection.num_images == 6 and selection.num_labelled == 10
    assert backbone.forwards == 6 * 5 + 7 * 6 * 5 + 10 * 5  # the scan, 7 more draws, the labelled set
    assert c["hfr"].extra_forwards == 0 and c["rankme"].extra_forwards == 0
    assert c["hfr-radial-K8"].extra_forwards == 7 * 6 * 5 and c["knn"].extra_forwards == 10 * 5
    assert c["t0"].timestep == 0 and not c["t0"].needs_scan and c["random"].timestep is None
    assert selection.cost_of("t0").forwards == 0 and selection.cost_of("knn").forwards == 6 * 5 + 10 * 5
    assert c["hfr"].support is not None and c["knn"].support is None  # bootstrap over images: per-image only
    record = selection.record("knn")
    assert record["selector"] == "knn" and record["timestep"] == c["knn"].timestep and set(record["hfr"]) == set(map(str, CANDIDATES))
    json.dumps(selection.to_json(), allow_nan=False)


def test_a_label_using_selector_without_labels_is_one_clear_error():
    with pytest.raises(UserError, match="reads labelled held-out images"):
        run_selectors(TableBackbone(separable_at(0)), [build_selector("knn")], CANDIDATES, "blocks.0.out", ids(4))


def test_non_finite_scores_are_never_chosen():
    class Flaky(Selector):
        def score(self, features, labels=None):
            return float("nan") if features.mean() > 0.6 else float(features.mean())

    flaky = Flaky()
    flaky.name = "flaky"
    selection = run_selectors(TableBackbone(lambda i, t: torch.full((len(i), 1, 2, 2), t / 1000)), [flaky],
                              CANDIDATES, "blocks.0.out", ids(3))
    scores = selection.choices["flaky"].scores
    assert scores[750] is None and scores[999] is None and selection.choices["flaky"].timestep == 500
    json.dumps(selection.to_json(), allow_nan=False)


# ------------------------------------------------------------------------- leaderboard
def comparison(task, dataset, regrets: dict, spearmans: dict | None = None, preset="demo"):
    rows = [{"name": n, "timestep": None if n == "random" else 50, "regret": r, "uses_labels": n == "knn",
             "spearman": (spearmans or {}).get(n), "saving_seconds": 20.0} for n, r in regrets.items()]
    return {"task": task, "dataset": dataset, "preset": preset, "metric": "top1" if task == "fgvc" else "mIoU",
            "selectors": rows, "run": {"code_version": "x"}}


def test_leaderboard_means_worst_and_wins_with_ties(tmp_path):
    from aselect_bench.analyses.leaderboard import build_leaderboard, collect_comparisons, write_leaderboard
    from aselect_bench.io import atomic_write_json

    runs = [comparison("fgvc", "cub", {"hfr": 10.0, "t0": 0.0, "knn": 0.0, "random": 5.0}, {"hfr": -0.5, "knn": 0.9}),
            comparison("fgvc", "dogs", {"hfr": 2.0, "t0": 4.0, "knn": 1.0, "random": 3.0}, {"hfr": 0.5}),
            comparison("ade20k", "ade20k", {"hfr": 30.0, "t0": 0.0, "random": 12.0})]
    board = build_leaderboard(runs, "demo")
    rows = {r["name"]: r for r in board["selectors"]}
    assert [r["name"] for r in board["selectors"]] == ["knn", "t0", "random", "hfr"]  # by mean regret
    assert rows["hfr"]["mean_regret"] == pytest.approx(14) and rows["hfr"]["worst_regret"] == 30
    assert rows["hfr"]["mean_spearman"] == pytest.approx(0.0) and rows["random"]["mean_spearman"] is None
    assert rows["knn"]["datasets"] == 2 and (rows["knn"]["wins"], rows["knn"]["shared_wins"]) == (1, 1)  # cub: a tie
    assert (rows["t0"]["wins"], rows["t0"]["shared_wins"]) == (1, 1) and rows["hfr"]["wins"] == 0
    assert rows["random"]["wins"] + rows["random"]["shared_wins"] == 0
    assert board["comparisons"] == ["fgvc/cub", "fgvc/dogs", "ade20k/ade20k"]

    for r in runs + [comparison("fgvc", "cub", {"hfr": 1.0}, preset="paper")]:
        atomic_write_json(tmp_path / f"{r['task']}-{r['dataset']}-{r['preset']}.json", r)
    atomic_write_json(tmp_path / "fgvc-cars-demo.json", {"task": "fgvc", "dataset": "cars", "preset": "demo"})  # old
    assert [c["dataset"] for c in collect_comparisons(tmp_path, "demo")] == ["cub", "dogs", "ade20k"]
    stem = write_leaderboard(tmp_path, "demo")
    assert stem.name == "selectors" and (tmp_path / "selectors.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "selectors.json").read_text())
    assert saved["selectors"][0]["name"] == "knn" and "| knn | yes |" in (tmp_path / "selectors.md").read_text()
    assert write_leaderboard(tmp_path, "paper").name == "selectors-paper"
    assert write_leaderboard(tmp_path, "nothing") is None


# ------------------------------------------------------------------------- wiring
def test_the_callback_accepts_any_selector_and_refuses_the_random_rule(tmp_path, blobs):
    from aselect_bench.callbacks import HFRTimestepSelector
    from aselect_bench.tasks.classification import ClassificationTask
    from tests.conftest import quiet_trainer

    for name in ("knn", "t0"):
        callback = HFRTimestepSelector(num_images=6, candidates=[0, 400, 999], progress=False, selector=name)
        task = ClassificationTask("tiny-dit", num_classes=3, tap="blocks.1.out", lr=1e-2)
        quiet_trainer(tmp_path / name, max_epochs=1, callbacks=[callback]).fit(task, datamodule=blobs)
        assert task.timestep == callback.choice.timestep and callback.result.choices["hfr"].scores  # curve kept
        saved = json.loads(next((tmp_path / name).rglob("hfr_selection.json")).read_text())
        assert saved["selector"] == name and saved["timestep"] == task.timestep and len(saved["hfr"]) == 3
    assert callback.result.choices["t0"].timestep == 0
    with pytest.raises(UserError, match="names no single timestep"):
        callback = HFRTimestepSelector(num_images=6, candidates=[0, 999], progress=False, selector="random")
        task = ClassificationTask("tiny-dit", num_classes=3, tap="blocks.1.out")
        quiet_trainer(tmp_path / "random", max_epochs=1, callbacks=[callback]).fit(task, datamodule=blobs)
