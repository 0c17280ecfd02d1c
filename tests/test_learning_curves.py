"""Learning curves in every training (issue #42, part 1) and the live search run that proves the replay (part 3):
a training continued from a checkpoint is the same run as one trained to the end at once, so a search run live
ends with the pick and the epochs of its replay over the exhaustive sweep's recorded curves."""

from __future__ import annotations

import json

import pytest

from aselect_bench import load_backbone
from aselect_bench.analyses.compare import Comparison, exhaustive_piece, run_comparison
from aselect_bench.experiments import FGVCExperiment
from aselect_bench.searches import ReplaySource, build_search, search_names
from aselect_bench.searches.live import LiveSource, run_live, search_piece
from aselect_bench.settings import preset_from_dict
from aselect_bench.tasks.curves import LearningCurve
from tests.conftest import BlobsDataModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CANDIDATES = [0, 500, 999]
PRESET = preset_from_dict({
    "name": "curves", "backbone": "tiny-dit", "seed": 0, "num_workers": 0,
    "hfr": {"candidates": CANDIDATES, "num_images": 6},
    "fgvc": {"tap": "blocks.1.out", "head": "linear", "linear_norm": "batchnorm", "head_width": 16, "head_depth": 1,
             "head_heads": 2, "lr": 0.2, "weight_decay": 0.0, "warmup_fraction": 0.0, "label_smoothing": 0.0,
             "max_epochs": 3, "batch_size": 8, "train_augment": False, "datasets": ["cub"]},
})


class Blobs(FGVCExperiment):
    """The comparison's FGVC experiment on in-memory blobs (3 classes, 16 px), counting its trainings."""

    def __init__(self, preset, backbone):
        self.calls = []
        super().__init__(preset, "cub", backbone, BlobsDataModule())

    def fit(self, timestep, log_dir, name, progress=True, selector=None, **kwargs):
        self.calls.append((timestep, kwargs.get("stop_after"), kwargs.get("resume") is not None))
        return super().fit(timestep, log_dir, name, progress=False, **kwargs)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("tiny-dit", pretrained=False)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, backbone):
    """The full comparison (3 candidates x 3 epochs, no other selectors): ``(result, state folder)``."""
    root = tmp_path_factory.mktemp("sweep")
    result = run_comparison(Blobs(PRESET, backbone), state_root=root / "state", runs_dir=root / "runs",
                            selectors=False, progress=False)
    return result, root


def fit(backbone, tmp_path, name, t=999, **options):
    return Blobs(PRESET, backbone).fit(t, tmp_path / "runs", name, feature_cache_root=tmp_path / name, **options)


# ----------------------------------------------------------------------------------------- 1. the curves

def test_every_training_records_its_curve_with_cumulative_costs(sweep):
    result, _ = sweep
    for t in CANDIDATES:
        row = result["exhaustive"]["per_timestep"][t]
        history = row["history"]
        assert [h["epoch"] for h in history] == [1, 2, 3]
        assert max(h["val"] for h in history) == row["val"]  # the best epoch's, where the test was taken
        tested = [h for h in history if "test" in h]
        assert len(tested) == 1 and tested[0]["test"] == row["test"]
        assert tested[0] is next(h for h in history if h["val"] == row["val"])  # the first best epoch
        for key in ("seconds", "forwards", "cpu_seconds"):
            assert all(a[key] <= b[key] for a, b in zip(history, history[1:])), key
        assert 0 < history[-1]["seconds"] <= row["seconds"]
        assert history[0]["forwards"] == 21 + 15  # train and val images once; later epochs read the cache
        assert history[-1]["forwards"] == history[0]["forwards"]
    assert [h["epoch"] for h in result["aselect"]["history"]] == [1, 2, 3]
    json.dumps(result["exhaustive"]["per_timestep"][0]["history"])


def test_with_seeds_each_repeat_keeps_its_own_curve():
    from aselect_bench.analyses.compare import merge_repeats

    rows = [{"val": v, "test": v, "seconds": 1.0, "forwards": 2, "outcomes": {},
             "history": [{"epoch": 1, "val": v, "seconds": 1.0, "forwards": 2}]} for v in (40.0, 60.0)]
    merged = merge_repeats(rows)
    assert [r["history"] for r in merged["repeats"]] == [r["history"] for r in rows] and "history" not in merged
    assert merge_repeats(rows[:1])["history"] == rows[0]["history"]  # one seed: the row carries it directly


def test_a_curve_row_counts_from_the_start_and_a_resumed_curve_continues(tmp_path):
    """Rows read the injected clocks; a curve restored from a checkpoint goes on from its last row's costs."""
    class Backbone:
        forwards = 100

    class Trainer:
        sanity_checking, should_stop, callback_metrics = False, False, {"val/top1": 50.0}

    wall, cpu = iter([10.0, 12.5, 20.0, 21.0]), iter([1.0, 2.0, 5.0, 6.0])
    curve = LearningCurve(Backbone(), "val/top1", stop_after=2, clock=lambda: next(wall),
                          cpu_clock=lambda: next(cpu))
    trainer = Trainer()
    curve.on_train_start(trainer, None)
    Backbone.forwards = 130
    curve.on_validation_end(trainer, None)
    assert curve.rows == [{"epoch": 1, "val": 50.0, "seconds": 2.5, "forwards": 30, "cpu_seconds": 1.0}]
    assert not trainer.should_stop
    resumed = LearningCurve(Backbone(), "val/top1", stop_after=2, clock=lambda: next(wall), cpu_clock=lambda: next(cpu))
    resumed.load_state_dict({"rows": curve.rows})
    resumed.on_train_start(trainer, None)  # 20.0 s, 5.0 s CPU
    Backbone.forwards = 140
    resumed.on_validation_end(trainer, None)  # 21.0 s, 6.0 s CPU
    assert resumed.rows[1] == {"epoch": 2, "val": 50.0, "seconds": 3.5, "forwards": 40, "cpu_seconds": 2.0}
    assert trainer.should_stop  # stop_after=2 reached


def test_a_continued_run_is_the_same_run_as_one_trained_at_once(sweep, backbone, tmp_path):
    """One epoch, then a fresh start from its last checkpoint to the end: the same curve, the same best epoch,
    test metric and per-image outcomes as the sweep's run at t=999, trained to the end at once (the schedule is
    the full one, continued; the order and random states come back from the checkpoint)."""
    _, root = sweep
    full = Comparison(Blobs(PRESET, backbone), root / "state", root / "runs", selectors=False).candidate(999)[0]
    part = fit(backbone, tmp_path, "part", stop_after=1, checkpoint_dir=tmp_path / "ckpt")
    assert part.test is None and len(part.history) == 1 and part.outcomes == {}
    rest = fit(backbone, tmp_path, "part", resume=tmp_path / "ckpt" / "last.ckpt", checkpoint_dir=tmp_path / "ckpt")
    strip = lambda rows: [(r["epoch"], r["val"], r["forwards"], r.get("test")) for r in rows]  # noqa: E731
    assert strip(rest.history) == strip(full["history"])
    assert (rest.val, rest.test, rest.outcomes) == (full["val"], full["test"], full["outcomes"])
    assert len({r["val"] for r in full["history"]}) > 1  # a curve that moves, so the check can fail


def test_pieces_stored_before_curves_still_load(sweep, backbone, tmp_path):
    """An old state (pieces without history) merges as before, without curves; a replay then says it cannot
    pick, and a live source trains its own run instead of reading a curve that is not there."""
    import shutil

    _, root = sweep
    shutil.copytree(root / "state", tmp_path / "state")
    for path in (tmp_path / "state").rglob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "history" in data:
            path.write_text(json.dumps({k: v for k, v in data.items() if k != "history"}))
    exp = Blobs(PRESET, backbone)
    old = run_comparison(exp, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False,
                         progress=False)
    assert exp.calls == [] and "history" not in old["exhaustive"]["per_timestep"][0] and "history" not in old["aselect"]
    assert all(row["timestep"] is None and "no learning curve" in row["reason"] for row in old["searches"]
               if row["name"] != "transfer")
    comparison = Comparison(exp, tmp_path / "state", tmp_path / "runs", selectors=False, progress=False)
    sweeps = comparison.exhaustive()
    for name in search_names():  # every search says it cannot replay (none stops on the empty curves)
        outcome = build_search(name).run(ReplaySource.from_sweep(sweeps[0]))[0]
        assert outcome.timestep is None and "no learning curve" in outcome.reason, name
    assert LiveSource(comparison).finished_row(0) is None


def test_an_iteration_based_schedule_counts_validation_points(monkeypatch):
    """ADE20K's mmseg schedule (max_iters, validation every N iterations): the trainer gets its max_epochs (-1)
    once, and a full training makes max_iters / N validation runs (its curve's length)."""
    from types import SimpleNamespace

    from aselect_bench.experiments.base import Experiment
    from aselect_bench.searches.live import validation_runs

    class Iterations(Experiment):
        def trainer_options(self):
            return {"max_steps": 6, "max_epochs": -1, "val_check_interval": 2, "check_val_every_n_epoch": None}

        def make_task(self, timestep, seed=None):
            return SimpleNamespace(timestep=timestep)

    seen = {}
    monkeypatch.setattr("aselect_bench.tasks.fit.fit_and_test", lambda *args, **kwargs: seen.update(args=args, **kwargs))
    exp = Iterations("ade20k", "ade20k", PRESET, None, SimpleNamespace(), 12, "", "mIoU")
    exp.fit(0, "logs", "run", stop_after=2)
    assert seen["args"][4] == -1 and seen["max_steps"] == 6 and seen["stop_after"] == 2 and "max_epochs" not in seen
    assert validation_runs(exp) == 3


# ------------------------------------------------------------------------------------------ 3. live = replay

@pytest.fixture(scope="module")
def live(tmp_path_factory, backbone):
    """Successive halving run live in a state of its own (no sweep there): ``(run row, trainings, comparison)``."""
    root = tmp_path_factory.mktemp("live")
    exp = Blobs(PRESET, backbone)
    comparison = Comparison(exp, root / "state", root / "runs", selectors=False, progress=False)
    return run_live(comparison, "successive-halving")["runs"][0], list(exp.calls), comparison


def test_live_successive_halving_equals_its_replay_and_trains_only_what_it_asks(sweep, live, backbone):
    result, _ = sweep
    replayed = build_search("successive-halving").run(ReplaySource.from_comparison(result))[0]
    row, calls, comparison = live
    assert (row["timestep"], row["epochs"]) == (replayed.timestep, replayed.epochs)
    assert row["observed"] == {str(t): e for t, e in replayed.observed.items()}
    assert replayed.epochs < len(CANDIDATES) * PRESET.fgvc.max_epochs  # it did stop some candidates early
    # every candidate one epoch; the survivor continued from its checkpoint to the end, then tested
    assert sorted(calls, key=str) == sorted([(t, 1, False) for t in CANDIDATES] + [(row["timestep"], None, True)],
                                            key=str)
    assert row["test"] == result["exhaustive"]["per_timestep"][row["timestep"]]["test"]
    again = Blobs(PRESET, backbone)  # a rerun reads the stored pieces and checkpoints: it trains nothing
    rerun = run_live(Comparison(again, comparison.store.root.parents[1], comparison.store.root.parents[2] / "runs", selectors=False),
                     "successive-halving")["runs"][0]
    assert again.calls == [] and (rerun["timestep"], rerun["epochs"]) == (row["timestep"], row["epochs"])


def test_a_live_source_continues_a_stopped_run_and_reuses_a_finished_sweep(sweep, live, backbone):
    """A candidate successive halving stopped after one epoch is continued from its checkpoint (one more epoch
    trained, the sweep's numbers); a finished exhaustive piece is read, never trained again."""
    result, root = sweep
    row, _, comparison = live
    stopped = next(t for t in CANDIDATES if t != row["timestep"])
    exp = Blobs(PRESET, backbone)
    later = LiveSource(Comparison(exp, comparison.store.root.parents[1], comparison.store.root.parents[2] / "runs", selectors=False),
                       name="successive-halving")
    rows = later.observe(stopped, 2)
    assert later.trained == [(stopped, 1, 2)] and exp.calls == [(stopped, 2, True)]
    assert [r["val"] for r in rows] == [r["val"] for r in result["exhaustive"]["per_timestep"][stopped]["history"][:2]]
    assert not later.store.has(search_piece("successive-halving", stopped))  # partial: only its checkpoint
    done = Blobs(PRESET, backbone)
    sweep_source = LiveSource(Comparison(done, root / "state", root / "runs", selectors=False))
    assert sweep_source.observe(0, 3) == result["exhaustive"]["per_timestep"][0]["history"]
    assert done.calls == [] and sweep_source.store.has(exhaustive_piece(0))


def test_compare_search_runs_live_from_the_command_line(tmp_path, capsys):
    from tests.test_faults import run_in_process
    from tests.test_faults_second_round import compare_args, custom_preset

    preset = custom_preset(tmp_path, hfr={"candidates": [0, 999], "num_images": 4},
                           fgvc={"tap": "blocks.1.out", "max_epochs": 2, "batch_size": 16})
    status, out, err = run_in_process([str(a) for a in compare_args(tmp_path, preset, "--search",
                                                                     "successive-halving", "--no-selectors")], capsys)
    assert status == 0, err
    written = json.loads((tmp_path / "out" / "fgvc-cub-mine-search-successive-halving.json").read_text())
    run = written["runs"][0]
    assert written["live"] and run["timestep"] in (0, 999) and run["epochs"] == 1 + 2  # the other candidate 1 epoch, the survivor 2
    assert f"picks t={run['timestep']} after 3 epochs" in out
    assert not list((tmp_path / "state").rglob("exhaustive/*.json"))  # no exhaustive sweep was run
    status, _, err = run_in_process([str(a) for a in compare_args(tmp_path, preset, "--search", "nope")], capsys)
    assert status != 0 and "unknown search 'nope'" in err
