"""Faults a new user hits, second round (issue #35): each reproduced as reported, each ending in one clear line
before the work it would waste, and no answer silently wrong."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from aselect_bench import UserError
from aselect_bench.config import CONFIG_DIR
from tests.test_cli import assert_one_line_error, cli
from tests.test_faults import run_in_process, select_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY_SYNTH = {"fgvc": {"num_classes": 3, "train_per_class": 6, "test_per_class": 2, "image_size": 16},
              "ade20k": {"num_train": 8, "num_val": 2, "image_size": 16, "num_classes": 4}}


def custom_preset(tmp_path: Path, name: str = "mine", **changes) -> Path:
    """A small synthetic preset of another name than ``demo`` (a YAML file inheriting the demo's)."""
    data = {"_base_": str(CONFIG_DIR / "presets" / "demo.yaml"), "backbone": "tiny-dit", "num_workers": 0,
            "data_root": str(tmp_path / "data"), "synth": TINY_SYNTH,
            "fgvc": {"tap": "blocks.1.out", "max_epochs": 1, "batch_size": 16},
            "hfr": {"candidates": [0, 500], "num_images": 4}, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def compare_args(tmp_path: Path, preset: Path, *extra) -> list:
    return ["compare", "--preset", preset, "--out", tmp_path / "out", "--state", tmp_path / "state", "--runs",
            tmp_path / "runs", *extra]


# ------------------------------------------------------------- the worst: a second comparison into one --out

def test_two_comparisons_of_a_custom_preset_share_one_out_folder(tmp_path):
    """The leaderboard's own selectors-<preset>.json matched the comparisons' glob: every comparison after the
    first into one --out ended in KeyError 'task', after all its training, for every preset but demo."""
    preset = custom_preset(tmp_path)
    runs = [cli(*compare_args(tmp_path, preset, "--dataset", dataset, "--no-selectors"), cwd=tmp_path)
            for dataset in ("cub", "flowers", "cub")]
    for result in runs:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        assert "Tight layout" not in result.stderr  # matplotlib's warning on every comparison figure
    board = json.loads((tmp_path / "out" / "selectors-mine.json").read_text())
    assert board["comparisons"] == ["fgvc/cub", "fgvc/flowers"]
    logs = tmp_path / "runs" / "trainings" / "compare" / "fgvc-cub-mine"
    assert [p.name for p in (logs / "exhaustive-t0").iterdir()] == ["version_0"]  # the rerun trained nothing
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == [
        "fgvc-cub-mine.json", "fgvc-flowers-mine.json", "selectors-mine.json"]


def test_no_other_file_of_the_folder_is_read_as_a_comparison(tmp_path):
    from aselect_bench.analyses.leaderboard import collect_comparisons, is_comparison

    comparison = {"task": "fgvc", "dataset": "cub", "preset": "x-demo", "selectors": [{"name": "hfr"}]}
    assert is_comparison(comparison, "fgvc-cub-x-demo.json", "x-demo")
    assert not is_comparison(comparison, "fgvc-cub-x-demo.json", "demo")  # another preset's, same ending
    assert not is_comparison({"preset": "demo", "selectors": [{"name": "hfr"}]}, "selectors-demo.json", "demo")
    (tmp_path / "fgvc-cub-x-demo.json").write_text(json.dumps(comparison))
    (tmp_path / "fgvc-dogs-demo.json").write_text('{"task": "fgvc", "dat')  # cut short
    assert collect_comparisons(tmp_path, "demo") == []
    assert collect_comparisons(tmp_path, "x-demo") == [comparison]


# ----------------------------------------------------------------------------------- checked too late

def test_compare_all_checks_every_dataset_before_the_first_training(tmp_path):
    from aselect_bench.data.synth_fgvc import write_layout

    write_layout("cub", tmp_path / "real" / "cub", num_classes=3, train_per_class=4, test_per_class=1, image_size=16)
    preset = custom_preset(tmp_path, "real", synthetic=False, fgvc={"datasets": ["cub", "flowers"],
                                                                   "tap": "blocks.1.out", "max_epochs": 1})
    result = cli(*compare_args(tmp_path, preset, "--dataset", "all", "--data-root", tmp_path / "real"))
    assert_one_line_error(result, f"dataset folder {tmp_path / 'real' / 'flowers'} does not exist")
    assert "exhaustive: t=" not in result.stdout and not list((tmp_path / "state").glob("*/*/exhaustive"))


@pytest.mark.parametrize("extra, fragment", [
    (["--candidates", "0,1200"], "candidate timestep 1200 is outside the schedule [0, 1000)"),
    (["--candidates", "0,500", "--only", "999"], "--only 999 is not a candidate of the grid (0, 500)"),
    (["--candidates", "0,0,500"], "timestep 0 is listed more than once"),
    (["--max-epochs", "0"], "argument --max-epochs: 0 is not a positive integer"),
    (["--dataset", "bogus"], "unknown dataset 'bogus': use one of cub, nabirds, flowers, dogs, cars, aircraft, all"),
    (["--candidates", "0:1000:0"], "the range '0:1000:0' has step 0"),
    (["--candidates", "-50,0"], "timestep -50 is negative"),
])
def test_compare_refuses_bad_options_before_any_training(tmp_path, extra, fragment):
    result = cli(*compare_args(tmp_path, custom_preset(tmp_path), *extra))
    assert_one_line_error(result, fragment)
    assert "exhaustive: t=" not in result.stdout


def test_a_bad_dataset_name_of_a_real_preset_is_named_not_a_missing_folder(tmp_path):
    result = cli(*compare_args(tmp_path, "paper", "--dataset", "bogus", "--data-root", tmp_path))
    assert_one_line_error(result, "unknown dataset 'bogus'")
    assert "does not exist" not in result.stderr


def test_make_compare_exhaustive_with_a_bogus_dataset_is_one_line(tmp_path):
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "stamp").touch()  # the environment is there: make must not set it up
    result = subprocess.run(["make", "-s", "compare-exhaustive", "DATASET=bogus", f"BIN={Path(sys.executable).parent}",
                             f"STAMP={tmp_path / 'stamp'}", f"ARGS=--state {tmp_path / 's'} --out {tmp_path / 'o'}"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "unknown dataset 'bogus'" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("extra, fragment", [
    (["--batch-size", "0"], "argument --batch-size: 0 is not a positive integer"),
    (["--batch-size", "-4"], "argument --batch-size: -4 is not a positive integer"),
    (["--num-images", "0"], "argument --num-images: 0 is not a positive integer"),
    (["--noise-draws", "0"], "argument --noise-draws: 0 is not a positive integer"),
    (["--seed", "-1"], "argument --seed: -1 is negative"),
    (["--cutoff", "0"], "argument --cutoff: 0 is not a positive number"),
    (["--candidates", "0:1000:0"], "the range '0:1000:0' has step 0: give a positive step"),
    (["--candidates", "0,0,500"], "timestep 0 is listed more than once"),
    (["--candidates", "-50,0"], "timestep -50 is negative"),
    (["--dataset", "bogus"], "unknown dataset 'bogus'"),
])
def test_select_checks_every_number_at_parse_time(cub_root, extra, fragment):
    args = select_args(cub_root)
    for i in range(0, len(extra), 2):  # replace the option if select_args gave it
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    assert_one_line_error(cli(*args), fragment)


def test_select_out_an_existing_folder_is_refused_before_the_scan(cub_root, tmp_path):
    result = cli(*select_args(cub_root, "--out", tmp_path))
    assert_one_line_error(result, f"--out {tmp_path} is a folder: give the path of the file to write, e.g. "
                                  f"{tmp_path / 'selection.json'}")
    assert "chosen timestep" not in result.stdout


def test_estimate_batch_size_zero_is_a_parse_error_not_the_upernet(tmp_path):
    result = cli("estimate", "--preset", "demo", "--task", "fgvc", "--batch-size", "0", "--out", tmp_path)
    assert_one_line_error(result, "argument --batch-size: 0 is not a positive integer")
    assert "UperNet" not in result.stderr


@pytest.mark.parametrize("argv", [["synth", "fgvc", "--layout", "cub", "--out", "x", "--num-classes", "0"],
                                  ["pretrain", "--steps", "0"], ["components", "--timestep", "-5"],
                                  ["components", "--blocks", "1,1"]])
def test_every_other_command_checks_its_numbers_at_parse_time(tmp_path, argv):
    result = cli(*argv, cwd=tmp_path)
    assert result.returncode == 2 and "error: argument" in result.stderr and "Traceback" not in result.stderr


def test_a_preset_with_a_repeated_candidate_is_refused():
    from aselect_bench.settings import load_bench_preset

    with pytest.raises(UserError, match="HFR candidates list timestep 50 more than once"):
        load_bench_preset("demo").override(**{"hfr.candidates": [0, 50, 50]})


# ------------------------------------------------------------------------- silent wrong or wasted answers

class OnePerClass:
    """A datamodule whose labelled held-out images are one per class (or ``counts`` per class)."""

    def __init__(self, counts):
        self.targets = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
        self.num_classes = len(counts)

    def selection_images(self, n, seed=0):
        return torch.zeros(len(self.targets), 3, 8, 8), self.targets


def test_label_using_selectors_refuse_one_image_per_class():
    from aselect_bench.selectors import labelled_set

    with pytest.raises(UserError, match="need at least two labelled held-out images of each of two classes"):
        labelled_set(OnePerClass([1, 1, 1, 1]), 256)


def test_images_alone_in_their_class_are_left_out_and_said(capsys):
    from aselect_bench.selectors import labelled_set

    images, labels = labelled_set(OnePerClass([3, 1, 2]), 256)
    assert labels.targets.tolist() == [0, 0, 0, 2, 2] and len(images) == 5
    assert "1 of 6 labelled held-out images are alone in their class" in capsys.readouterr().err


def test_synthetic_data_is_never_written_into_a_users_data_folder(tmp_path):
    """fit --preset demo --dataset nabirds --data-root <a real folder holding only cub> wrote synthetic nabirds
    into the user's folder and trained on it."""
    (tmp_path / "mydata" / "CUB_200_2011").mkdir(parents=True)
    result = cli("fit", "--preset", "demo", "--dataset", "nabirds", "--data-root", tmp_path / "mydata", cwd=tmp_path)
    assert_one_line_error(result, f"--data-root {tmp_path / 'mydata'} holds files this suite did not generate "
                                  f"(CUB_200_2011): preset 'demo' is synthetic")
    assert sorted(p.name for p in (tmp_path / "mydata").iterdir()) == ["CUB_200_2011"]


def test_a_new_or_earlier_synthetic_folder_may_be_named(tmp_path):
    from aselect_bench.experiments import claim_synthetic_root
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset("demo").override(data_root=str(tmp_path / "new"))
    claim_synthetic_root(preset)  # a new folder: claimed, marked
    (tmp_path / "new" / "fgvc").mkdir()
    claim_synthetic_root(preset)  # marked: still ours
    (tmp_path / "old" / "fgvc" / "cub").mkdir(parents=True)
    (tmp_path / "old" / "fgvc" / "cub" / ".aselect_synth.json").write_text("{}")
    claim_synthetic_root(preset.override(data_root=str(tmp_path / "old")))  # written by an earlier version


# ---------------------------------------------------------------------------------------------- concurrency

def test_a_piece_another_run_is_computing_is_skipped_or_awaited(tmp_path, capsys):
    from filelock import FileLock

    from aselect_bench.analyses.compare import Store

    store = Store(tmp_path)
    (tmp_path / "exhaustive").mkdir()
    holding, calls = threading.Event(), []

    def another_run_trains_t50():
        with FileLock(str(tmp_path / "exhaustive" / "t0050.lock")):
            holding.set()
            time.sleep(1.0)
            (tmp_path / "exhaustive" / "t0050.json").write_text('{"val": 1}')

    other = threading.Thread(target=another_run_trains_t50)
    other.start()
    holding.wait(10)
    assert store.try_run("exhaustive/t0050", lambda: calls.append(1), wait=False) is Store.BUSY
    assert store.try_run("exhaustive/t0050", lambda: calls.append(1)) == ({"val": 1}, True)
    other.join()
    assert calls == [] and "another run is computing it" in capsys.readouterr().out


SWEEP = """
import json, sys
from aselect_bench import load_backbone
from aselect_bench.analyses.compare import run_comparison
from tests.test_search import PRESET, BlobsExperiment

exp = BlobsExperiment(PRESET.override(**{"hfr.candidates": [0, 100, 200, 300, 400, 999]}),
                      load_backbone("tiny-dit", pretrained=False))
result = run_comparison(exp, state_root=sys.argv[1], runs_dir=sys.argv[2], selectors=False, progress=False)
print(json.dumps({"calls": exp.calls, "per_t": {t: [r["val"], r["test"], r["forwards"]]
                                                  for t, r in result["exhaustive"]["per_timestep"].items()},
                  "forwards": result["exhaustive"]["forwards"], "resumed": result["resumed"]}))
"""


def test_two_comparisons_on_one_state_split_the_work_and_agree(tmp_path):
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", SWEEP, str(tmp_path / "state"), str(tmp_path / f"runs{i}")],
                              cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    trained = [t for r in runs for t in r["calls"]]  # the sweep's trainings, then A-SelecT's one (at some t)
    assert len(trained) == 7 and set(trained) == {0, 100, 200, 300, 400, 999}
    assert runs[0]["per_t"] == runs[1]["per_t"] and runs[0]["forwards"] == runs[1]["forwards"]
    assert runs[0]["resumed"] == runs[1]["resumed"] == {}  # no phantom "killed" attempts


# ------------------------------------------------------------------- tracebacks on simple bad inputs

def test_an_unknown_key_in_a_fit_config_is_said_first(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"class_path": "aselect_bench.tasks.classification.ClassificationTask",
                  "init_args": {"backbone": "tiny-dit", "bogus_key": 3}},
        "data": {"class_path": "aselect_bench.data.fgvc_datamodule.FGVCDataModule",
                 "init_args": {"dataset": "cub", "data_root": str(tmp_path)}}}))
    result = cli("fit", "--config", config, cwd=tmp_path)
    assert_one_line_error(result, "model.init_args: unknown key 'bogus_key' for ClassificationTask; it accepts "
                                  "backbone, num_classes, tap, timestep")
    assert "usage:" not in result.stderr and "Subtypes" not in result.stderr


# ---------------------------------------------------------------------------- damaged files the suite reads

def test_a_damaged_state_piece_is_named_in_one_line(tmp_path):
    preset = custom_preset(tmp_path)
    first = cli(*compare_args(tmp_path, preset, "--only", "0"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    piece = next((tmp_path / "state").rglob("exhaustive/t0000.json"))
    piece.write_text(piece.read_text()[:20])  # cut short (a full disk, an interrupted copy)
    result = cli(*compare_args(tmp_path, preset, "--only", "0"), cwd=tmp_path)
    assert_one_line_error(result, f"cannot read {piece}: it is not valid UTF-8 JSON")
    assert "delete it to have it recomputed" in result.stderr


def test_a_badly_encoded_index_file_is_named_in_one_line(tmp_path):
    from aselect_bench.data.fgvc import read_split
    from aselect_bench.data.synth_fgvc import write_layout

    write_layout("cub", tmp_path, num_classes=3, train_per_class=2, test_per_class=1, image_size=16)
    index = tmp_path / "CUB_200_2011" / "classes.txt"
    index.write_bytes(index.read_bytes() + "4 caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"cannot read the cub index file {index}: it is not UTF-8 text") as info:
        read_split("cub", tmp_path, "train")
    assert "\n" not in str(info.value)


def test_a_damaged_feature_cache_entry_is_rebuilt(tmp_path):
    from aselect_bench.cache import FeatureCache

    key = {"tap": "blocks.0.out", "timestep": 50}
    FeatureCache(key, 4, root=tmp_path).put(torch.arange(4), torch.ones(4, 2, 2, 2))
    (next(tmp_path.rglob("meta.json"))).write_text("{not json")
    cache = FeatureCache(key, 4, root=tmp_path)
    assert cache.get(torch.arange(4)) is None  # damaged: recomputed, never read
    cache.put(torch.arange(4), torch.zeros(4, 2, 2, 2))
    assert torch.equal(FeatureCache(key, 4, root=tmp_path).get(torch.arange(4)), torch.zeros(4, 2, 2, 2))


# -------------------------------------------------------------------------------------------- small but seen

def test_select_stopped_by_sigint_does_not_promise_a_resume(cub_root, capsys, monkeypatch):
    import aselect_bench.selectors as selectors

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(selectors, "run_selectors", interrupted)
    status, _, stderr = run_in_process(select_args(cub_root), capsys)
    line = [x for x in stderr.splitlines() if x.startswith("aselect-bench: stopped by SIGINT")]
    assert status == 130 and len(line) == 1 and "start again" in line[0] and "resume" not in line[0]


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    from aselect_bench.data.synth_fgvc import write_layout

    root = tmp_path_factory.mktemp("cub")
    write_layout("cub", root, num_classes=5, train_per_class=3, test_per_class=1, image_size=32)
    return root


def test_a_block_outside_the_model_is_refused_before_any_data_is_written(tmp_path):
    result = cli("components", "--blocks", "99", "--data-root", tmp_path / "data", cwd=tmp_path)
    assert_one_line_error(result, "block 99 does not exist, this model has 6 blocks")
    assert not (tmp_path / "data").exists()



def test_without_blocks_components_probes_the_models_default_grid(tmp_path, monkeypatch):
    """`make bench-components` passes no --blocks: the early block check must not turn that into "no taps given"."""
    import aselect_bench.experiments as experiments
    from aselect_bench.cli import build_parser, run_command

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(experiments, "build_experiment", reached)  # stop where the data would be read
    with pytest.raises(Reached):
        run_command(build_parser().parse_args(["components", "--out", str(tmp_path / "out"),
                                               "--runs", str(tmp_path / "runs")]))

def test_launcher_settings_are_checked_when_the_preset_loads():
    from aselect_bench.settings import load_bench_preset

    with pytest.raises(UserError, match="launcher.time_min: must be >= 1, got 0"):
        load_bench_preset("demo").override(**{"launcher.time_min": 0})
    with pytest.raises(UserError, match="launcher.retries: must be >= 0, got -1"):
        load_bench_preset("demo").override(**{"launcher.retries": -1})
