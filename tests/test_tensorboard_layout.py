"""TensorBoard opens on the comparison (issue #41): the reports log into their own folder (``runs/reports``), a
handful of runs whatever the sweep's size, since TensorBoard selects no run at all above 40 (its Text tab then shows
empty cards, Custom Scalars "Matches (0)"); the trainings log beside it (``runs/trainings``). No training here: the
reports are written for a synthetic 3-seed, 21-candidate comparison."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from aselect_bench.analyses.compare_report import write_comparison
from aselect_bench.analyses.leaderboard import leaderboard_name, write_leaderboard
from aselect_bench.reports import report_logdir, training_logdir

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [*range(0, 1000, 50), 999]  # 21
SELECTORS = ["hfr", "t0", "random", "rankme", "knn", *(f"hfr-variant-{i}" for i in range(13))]
#: TensorBoard's run selectors enable every run by default only up to this many (tf-multi-checkbox).
TENSORBOARD_DEFAULT_SELECTION = 40


def training(rng: random.Random) -> dict:
    return {"val": rng.uniform(20, 60), "test": rng.uniform(20, 60), "seconds": rng.uniform(1, 3), "forwards": 24}


def synthetic_comparison(dataset: str, seeds: int = 3, seed: int = 0) -> dict:
    """A comparison result as ``compare`` writes it (seeds, intervals, selectors), with made-up numbers."""
    rng = random.Random(f"{dataset}-{seed}")
    per_t = {}
    for t in CANDIDATES:
        repeats = [training(rng) for _ in range(seeds)]
        mean = {k: sum(r[k] for r in repeats) / seeds for k in ("val", "test")}
        per_t[t] = {**mean, "seconds": sum(r["seconds"] for r in repeats), "forwards": 24 * seeds, "repeats": repeats,
                    "ci": [mean["test"] - 5, mean["test"] + 5], "val_ci": [mean["val"] - 6, mean["val"] + 6],
                    "regret_if_picked": 1.0, "regret_ci": [-2.0, 4.0], "tied_with_best": t % 100 == 0,
                    "val_se": 1.0, "test_se": 1.0}
    best = max(CANDIDATES, key=lambda t: per_t[t]["val"])
    seconds = sum(row["seconds"] for row in per_t.values())
    picks = [rng.choice(CANDIDATES) for _ in range(seeds)]
    aselect = {"timestep": picks[0], "timesteps": picks, "selector": "hfr", "val": per_t[picks[0]]["val"],
               "test": per_t[picks[0]]["test"], "seconds": seconds / 8, "forwards": 300, "support": 0.4,
               "runner_up": CANDIDATES[1], "margin": 0.01, "ci": [20.0, 50.0], "tied_with_best": True,
               "stages": {"scan": {"seconds": 1.0, "forwards": 252}, "train": {"seconds": 2.0, "forwards": 48}}}
    selectors = [{"name": name, "timestep": None if name == "random" else picks[0], "timesteps": picks,
                  "val": 40.0, "test": 40.0, "regret": rng.uniform(-3, 10), "regret_ci": [-5.0, 12.0],
                  "regret_se": 2.0, "tied_with_best": i % 2 == 0, "strictly_worse": i % 2 == 1,
                  "spearman": rng.uniform(-1, 1), "extra_forwards": 0, "extra_seconds": 0.1,
                  "uses_labels": name == "knn", "needs_scan": True, "seconds": 10.0, "forwards": 300,
                  "saving_seconds": 3.0, "saving_forwards": 4.0} for i, name in enumerate(SELECTORS)]
    return {
        "task": "fgvc", "dataset": dataset, "preset": "mine", "metric": "top1",
        "splits": {"val": "val", "test": "test"}, "backbone": "tiny-dit", "tap": "blocks.1.out",
        "candidates": CANDIDATES, "seeds": seeds, "hfr": {t: t / 2000 for t in CANDIDATES},
        "exhaustive": {"per_timestep": per_t, "best_timestep": best, "test_at_best": per_t[best]["test"],
                       "seconds": seconds, "forwards": 24 * seeds * len(CANDIDATES),
                       "test_at_best_ci": [30.0, 50.0], "tied_with_best": CANDIDATES[::2],
                       "best_frequency": {t: 1 / len(CANDIDATES) for t in CANDIDATES},
                       "best_by_seed": picks, "best_frequency_seeds": {picks[0]: 1.0}},
        "aselect": aselect, "saving_seconds": 8.0, "saving_forwards": 9.0, "ideal_saving": len(CANDIDATES),
        "scan_share_of_one_training": 0.5, "regret": 1.0, "regret_ci": [-3.0, 6.0], "spearman_hfr_val": 0.4,
        "selectors": selectors, "scan": {"seconds": 1.0, "forwards": 252, "num_images": 4, "num_labelled": 6},
        "test_checkpoint": "best", "fingerprint": "0" * 12, "resumed": {}, "bootstrap": 1000,
        "regret_seeds": {"mean": 1.0, "se": 0.5, "n": seeds}, "saving_seconds_seeds": {"mean": 8, "se": 1, "n": seeds},
    }


def runs_in(folder: Path) -> list[str]:
    """The TensorBoard runs under ``folder``: every folder that holds an event file, relative."""
    return sorted({p.parent.relative_to(folder).as_posix() for p in folder.rglob("events.out.tfevents.*")})


def events(folder: Path) -> EventAccumulator:
    return EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0, "scalars": 0}).Reload()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two 3-seed, 21-candidate comparisons and their leaderboard, written as ``compare`` writes them."""
    out, runs = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("runs")
    for dataset in ("cub", "dogs"):
        result = synthetic_comparison(dataset)
        write_comparison(result, out, tensorboard_dir=report_logdir(runs, f"fgvc-{dataset}-mine"))
    write_leaderboard(out, "mine", tensorboard_dir=report_logdir(runs, leaderboard_name("mine")))
    return runs / "reports"


def test_a_comparison_is_one_run_whatever_its_seeds_and_candidates(reports):
    comparison = events(reports / "fgvc-cub-mine")
    assert runs_in(reports / "fgvc-cub-mine") == ["."]  # its seeds are tags of that run, not runs of their own
    tags = comparison.Tags()
    assert "fgvc-cub-mine/text_summary" in tags["tensors"]  # the Text tab: the comparison's Markdown
    assert {"fgvc-cub-mine", "fgvc-cub-mine-cost", "fgvc-cub-mine-selectors"} <= set(tags["images"])
    seed_tags = [tag for tag in tags["scalars"] if tag.startswith("seeds/val_top1/")]
    assert sorted(seed_tags) == ["seeds/val_top1/seed0", "seeds/val_top1/seed1", "seeds/val_top1/seed2"]
    assert [e.step for e in comparison.Scalars("seeds/val_top1/seed2")] == CANDIDATES
    assert [e.step for e in comparison.Scalars("exhaustive/test_top1_ci_high")] == CANDIDATES

    layout = layout_pb2.Layout()
    layout.ParseFromString(comparison.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: chart for category in layout.category for chart in category.chart}
    margin = charts["test top1 over the timestep, 95% interval"].margin.series[0]
    assert (margin.value, margin.lower, margin.upper) == ("exhaustive/test_top1", "exhaustive/test_top1_ci_low",
                                                          "exhaustive/test_top1_ci_high")
    (regex,) = charts["val top1 over the timestep, each seed"].multiline.tag
    assert sorted(filter(re.compile(regex).search, tags["scalars"])) == seed_tags


def test_the_report_folder_stays_a_handful_of_runs_under_tensorboards_limit(reports):
    """Two comparisons, 3 seeds x 21 candidates each, 18 selectors: one run per comparison, the leaderboard's run
    and one HParams session per selector (not per selector and comparison)."""
    runs = runs_in(reports)
    board = leaderboard_name("mine")
    assert runs == sorted(["fgvc-cub-mine", "fgvc-dogs-mine", board, *(f"{board}/{s}" for s in SELECTORS)])
    assert len(runs) < TENSORBOARD_DEFAULT_SELECTION
    session = events(reports / board / "hfr")
    assert {"hparam/mean_regret", "hparam/regret/fgvc/cub", "hparam/regret/fgvc/dogs"} <= set(session.Tags()["scalars"])
    assert "selectors-mine/text_summary" in events(reports / board).Tags()["tensors"]


def test_a_rewritten_report_replaces_the_earlier_one(tmp_path):
    folder = report_logdir(tmp_path, "fgvc-cub-mine")
    for _ in range(2):
        write_comparison(synthetic_comparison("cub", seeds=2), tmp_path / "out", tensorboard_dir=folder)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert [e.step for e in events(folder).Scalars("seeds/test_top1/seed1")] == CANDIDATES  # one copy of each point


def test_make_tensorboard_opens_the_reports_and_the_trainings_log_beside_them():
    assert report_logdir("runs", "x").parent == Path("runs/reports")
    assert training_logdir("runs", "compare", "x").parent.parent == Path("runs/trainings")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^tensorboard:.*\n\t.*tensorboard --logdir runs/reports\b", makefile, re.M)
    assert "runs/reports" in (ROOT / "docs" / "error-bars.md").read_text()
