"""Faults a new user can hit (issue #28): each ends in one clear line, before the work where it can, and no
answer is silently wrong. Each test reproduces the fault as it was reported."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aselect_bench import UserError, load_backbone
from aselect_bench.cache import FeatureCache
from aselect_bench.cli import build_parser, run_command
from tests.test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    from aselect_bench.data.synth_fgvc import write_layout

    root = tmp_path_factory.mktemp("cub")
    write_layout("cub", root, num_classes=5, train_per_class=3, test_per_class=1, image_size=32)
    return root


def select_args(cub_root, *extra):
    return ["select", "--backbone", "tiny-dit", "--dataset", "cub", "--data-root", str(cub_root), "--tap",
            "blocks.1.out", "--candidates", "0,500,999", "--num-images", "4", *map(str, extra)]


def run_in_process(argv, capsys):
    """``aselect-bench ARGV`` in this process (so the test can fake a full disk): ``(exit status, out, err)``."""
    args = build_parser().parse_args(argv)
    try:
        run_command(args)
        status = 0
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ------------------------------------------------------------------------- 1. a full disk under a feature cache

def fill(cache: FeatureCache, n: int = 64):
    return cache.put(torch.arange(n), torch.ones(n, 8, 4, 4))


def test_a_full_disk_stops_in_one_line_before_the_cache_file_is_mapped(tmp_path, monkeypatch):
    """The mapped file used to be created sparse: on a full disk the first write died with SIGBUS (exit 135)."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 1000, 1000))
    cache = FeatureCache({"tap": "blocks.0.out", "timestep": 50}, 64, root=tmp_path)
    with pytest.raises(UserError, match=rf"no room for the feature cache .* in {tmp_path}/\w+: it needs 16,384 bytes "
                                        rf".* and 1,000 are free") as info:
        fill(cache)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*")), "a failed entry was left behind"
    assert FeatureCache({"tap": "blocks.0.out", "timestep": 50}, 64, root=tmp_path).get(torch.arange(2)) is None


def test_a_disk_that_fills_while_reserving_leaves_no_entry(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.posix_fallocate", no_space)
    cache = FeatureCache({"tap": "blocks.0.out", "timestep": 50}, 64, root=tmp_path)
    with pytest.raises(UserError, match=r"no room for the feature cache .*: it needs 16,384 bytes"):
        fill(cache)
    assert not list(tmp_path.rglob("*"))


def test_the_cache_files_are_reserved_not_sparse(tmp_path):
    cache = FeatureCache({"tap": "blocks.0.out", "timestep": 50}, 64, root=tmp_path)
    fill(cache)
    data = cache.root / "features.mmap"
    assert data.stat().st_size == 64 * 8 * 4 * 4 * 2 and data.stat().st_blocks * 512 >= data.stat().st_size
    again = FeatureCache({"tap": "blocks.0.out", "timestep": 50}, 64, root=tmp_path)
    assert again.complete and torch.equal(again.get(torch.arange(64)), torch.ones(64, 8, 4, 4))


def test_a_full_disk_during_training_is_one_line(tmp_path, monkeypatch, blobs):
    from aselect_bench.tasks.classification import ClassificationTask
    from tests.conftest import quiet_trainer

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6, 0))
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), tap="blocks.1.out", timestep=10,
                              cache_features=True, feature_cache_root=str(tmp_path / "features"))
    with pytest.raises(UserError, match=f"no room for the feature cache .* in {tmp_path / 'features'}"):
        quiet_trainer(tmp_path, max_epochs=1, logger=False).fit(task, datamodule=blobs)


# ---------------------------------------------------------------------------- 2. compare with one candidate

def test_compare_with_a_single_candidate_is_refused_before_any_training(tmp_path):
    from aselect_bench.analyses.compare import run_comparison
    from tests.test_search import PRESET, BlobsExperiment

    exp = BlobsExperiment(PRESET.override(**{"hfr.candidates": [300]}), load_backbone("tiny-dit", pretrained=False))
    with pytest.raises(UserError, match="at least 2 candidate timesteps, got \\[300\\]"):
        run_comparison(exp, state_root=tmp_path / "state", runs_dir=tmp_path / "runs", selectors=False, progress=False)
    assert exp.calls == []


def test_compare_command_refuses_a_single_candidate_in_one_line(tmp_path):
    result = cli("compare", "--candidates", "300", "--data-root", tmp_path / "data", "--state", tmp_path / "state",
                 "--out", tmp_path / "out", "--runs", tmp_path / "runs")
    assert_one_line_error(result, "a comparison needs at least 2 candidate timesteps")
    assert not (tmp_path / "data").exists()  # refused before any data was generated


# --------------------------------------------------------------- 3. a bad ADE20K annotation found before training

@pytest.fixture
def ade_root(tmp_path, monkeypatch):
    from aselect_bench.data.synth_ade20k import write_ade20k

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    write_ade20k(tmp_path / "ade", num_train=12, num_val=3, image_size=32, num_classes=5)
    return tmp_path / "ade" / "ADEChallengeData2016"


@pytest.mark.parametrize("fault, message", [
    ("class", "holds class 7, above the 5 classes"),
    ("size", "ADE_val_00000002.png is 8x8 but its image is 32x32"),
])
def test_a_bad_validation_annotation_stops_at_setup_not_after_training(ade_root, fault, message):
    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule

    bad = ade_root / "annotations" / "validation" / "ADE_val_00000002.png"
    mask = np.asarray(Image.open(bad)).copy()
    if fault == "class":
        mask[0, 0] = 7
    else:
        mask = mask[:8, :8]
    Image.fromarray(mask).save(bad)
    dm = ADE20KDataModule(ade_root, crop_size=16, scale=(64, 32), num_workers=0, num_classes=5)
    with pytest.raises(UserError, match=message):
        dm.setup("fit")  # the validation split is only read at the end of training: checked here, up front


def test_a_checked_annotation_set_is_not_decoded_again(ade_root, monkeypatch):
    from aselect_bench.data import ade20k
    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule

    ADE20KDataModule(ade_root, crop_size=16, scale=(64, 32), num_workers=0, num_classes=5).setup()
    decoded = []
    monkeypatch.setattr(ade20k, "load_mask", lambda *a, **k: decoded.append(a))
    ADE20KDataModule(ade_root, crop_size=16, scale=(64, 32), num_workers=0, num_classes=5).setup()
    assert decoded == []  # the same files (path, size, mtime): the earlier check holds
    ADE20KDataModule(ade_root, crop_size=16, scale=(64, 32), num_workers=0, num_classes=6).setup()
    assert len(decoded) == 15  # another class count: checked again


# ------------------------------------------------------------------ 4. silent wrong answers, 8. early tracebacks

@pytest.mark.parametrize("extra, fragment", [
    (["--cutoff", "5"], "HFR cutoff 5.0 is outside (0, 0.5)"),
    (["--cutoff", "0.5"], "HFR cutoff 0.5 is outside (0, 0.5)"),
    (["--num-images", "-3"], "argument --num-images: -3 is not a positive integer"),
    (["--num-images", "0"], "argument --num-images: 0 is not a positive integer"),
])
def test_select_refuses_settings_that_give_a_wrong_answer(cub_root, extra, fragment):
    assert_one_line_error(cli(*select_args(cub_root, *extra)), fragment)


def test_the_cutoff_is_checked_in_one_place_for_every_caller():
    from aselect_bench.data.calibration import calibration_order
    from aselect_bench.hfr import HFRSettings, high_frequency_ratio

    with pytest.raises(UserError, match="cutoff 5 is outside"):
        HFRSettings(cutoff=5)
    with pytest.raises(UserError, match="cutoff 0 is outside"):
        high_frequency_ratio(torch.randn(1, 2, 4, 4), cutoff=0)
    with pytest.raises(UserError, match="positive integer, got -3"):
        calibration_order(-3, 20)


def test_more_calibration_images_than_exist_says_how_many_were_used(cub_root):
    result = cli(*select_args(cub_root, "--num-images", 500))
    assert result.returncode == 0, result.stderr
    assert "note: 500 calibration images asked for, the training split has 10: using all 10" in result.stderr
    assert "10 images" in result.stdout


# ------------------------------------------------------------- 5. and 8. unwritable or full --out / --state

def test_out_under_a_file_is_one_line_before_the_scan(cub_root, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = cli(*select_args(cub_root, "--out", tmp_path / "afile" / "sel.json"))
    assert_one_line_error(result, f"cannot create the --out folder {tmp_path / 'afile'}: a file is in the way")
    assert "chosen timestep" not in result.stdout


def test_a_failed_write_of_the_answer_keeps_the_printed_answer(cub_root, tmp_path, monkeypatch, capsys):
    fsync = os.fsync

    def disk_full_under_tmp_path(fd):
        if str(tmp_path) in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_under_tmp_path)
    out = tmp_path / "sel.json"
    status, stdout, stderr = run_in_process(select_args(cub_root, "--out", out), capsys)
    assert status == 2 and "chosen timestep:" in stdout and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("aselect-bench: error:")]
    assert errors == [f"aselect-bench: error: cannot write {out}: No space left on device; free space on that disk "
                      f"or write elsewhere"]
    assert not out.exists() and not list(tmp_path.glob(".sel.json.*"))


def test_a_read_only_state_folder_is_one_line_before_the_work(tmp_path, monkeypatch, capsys):
    read_only = tmp_path / "ro"
    mkdir = Path.mkdir

    def refuse_under_read_only(self, *args, **kwargs):
        if self == read_only or read_only in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse_under_read_only)
    status, _, stderr = run_in_process(["compare", "--data-root", str(tmp_path / "data"), "--state",
                                        str(read_only / "state"), "--out", str(tmp_path / "out"), "--runs",
                                        str(tmp_path / "runs")], capsys)
    assert status == 2 and "Traceback" not in stderr
    assert f"aselect-bench: error: cannot create the --state folder {read_only / 'state'}: Permission denied" in stderr
    assert not (tmp_path / "data").exists()


def test_unwritable_errors_are_still_oserrors_for_code_that_falls_back(tmp_path):
    from aselect_bench.io import atomic_write_json

    (tmp_path / "afile").write_text("")
    with pytest.raises(OSError, match="a file is in the way"):
        atomic_write_json(tmp_path / "afile" / "x.json", {})


# -------------------------------------------------------------- 6. a latent pipeline folder without its VAE

@pytest.fixture(scope="module")
def latent_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    load_backbone("tiny-dit-latent", pretrained=False).transformer.save_pretrained(root / "pipe" / "transformer")
    return root / "pipe"


@pytest.mark.parametrize("vae, fragment", [
    ("missing", "has no vae/"),
    ("empty", "vae is empty or has no config.json"),
    ("bare", "is a bare transformer folder, which runs in pixel space \\(RGB\\)"),
])
def test_a_latent_model_without_its_vae_is_named_not_a_channel_mismatch(latent_folder, vae, fragment):
    if vae == "empty":
        (latent_folder / "vae").mkdir(exist_ok=True)
    source = latent_folder / "transformer" if vae == "bare" else latent_folder
    try:
        with pytest.raises(UserError, match=f"takes 4-channel latents, so it needs its VAE: .*{fragment}"):
            load_backbone(str(source))
    finally:
        shutil.rmtree(latent_folder / "vae", ignore_errors=True)


# ------------------------------------------------------------------------ 8. an invalid scheduler_config.json

@pytest.fixture(scope="module")
def pixel_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixel") / "pipe"
    load_backbone("tiny-dit", pretrained=False).transformer.save_pretrained(root / "transformer")
    (root / "scheduler").mkdir()
    return root


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "cannot read the model config .*scheduler_config.json: Expecting property name"),
    ("[1, 2]", "scheduler_config.json holds a JSON list, not an object of settings"),
    ('{"beta_schedule": "bogus"}', "scheduler config is not valid \\(bogus is not implemented"),
    ('{"num_train_timesteps": "abc"}', "scheduler config is not valid .*fix scheduler/scheduler_config.json"),
])
def test_an_invalid_scheduler_config_is_one_line(pixel_pipeline, text, fragment):
    (pixel_pipeline / "scheduler" / "scheduler_config.json").write_text(text)
    with pytest.raises(UserError, match=fragment) as info:
        load_backbone(str(pixel_pipeline))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------- 7. preset typing

def write_preset(tmp_path, text: str) -> Path:
    from aselect_bench.config import CONFIG_DIR

    path = tmp_path / "mine.yaml"
    path.write_text(f"_base_: {CONFIG_DIR / 'presets' / 'demo.yaml'}\n{text}")
    return path


@pytest.mark.parametrize("text, fragment", [
    ("fgvc: {lr: fast}\n", "fgvc.lr: expected a number, got 'fast' (in preset 'mine', "),
    ("fgvc: {lr: 1e-3}\n", "fgvc.lr: expected a number, got '1e-3' (YAML reads 1e-3 as text"),
    ("hfr: {num_images: many}\n", "hfr.num_images: expected an integer, got 'many'"),
    ("fgvc: {max_epochs: true}\n", "fgvc.max_epochs: expected an integer, got True"),
    ("hfr: {candidates: [0, fifty]}\n", "hfr.candidates: expected a list of integers, got [0, 'fifty']"),
    ("ade20k: {scale: [128]}\n", "ade20k.scale: expected a list of 2 integers, got [128]"),
    ("fgvc: {datasets: cub}\n", "fgvc.datasets: expected a list of strings, got 'cub'"),
    ("fgvc: {lr: 1e-3\n", "mine.yaml is not valid YAML at line 3, column 1: expected ',' or '}'"),
    ("- a list\n", "is not valid YAML"),
])
def test_a_badly_typed_or_malformed_preset_names_file_key_type_and_value(tmp_path, text, fragment):
    from aselect_bench.settings import load_bench_preset

    with pytest.raises(UserError) as info:
        load_bench_preset(str(write_preset(tmp_path, text)))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_typed_presets_still_accept_what_the_yaml_files_write(tmp_path):
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset(str(write_preset(tmp_path, "fgvc: {lr: 1, warmup_fraction: 0}\nhfr: {cutoff: 0.1}\n")))
    assert preset.fgvc.lr == 1.0 and isinstance(preset.fgvc.lr, float) and preset.hfr.cutoff == 0.1
    assert preset.ade20k.scale == (128, 32) and preset.ade20k.blocks is None


def test_a_bad_override_is_one_line_too():
    from aselect_bench.settings import load_bench_preset

    with pytest.raises(UserError, match=r"fgvc\.max_epochs: expected an integer, got 'x' \(in preset 'demo'\)"):
        load_bench_preset("demo").override(**{"fgvc.max_epochs": "x"})


# ------------------------------------------------------------------------------ 9. the cost of a resumed run

def test_a_resumed_candidate_counts_the_cost_of_its_interrupted_attempt(tmp_path, monkeypatch):
    """An interrupted training leaves its cached features; the resumed one read them and used to count only
    its own forwards (372 of 500 in the report)."""
    from aselect_bench.analyses.compare import run_comparison
    from aselect_bench.analyses.compare_report import comparison_markdown
    from aselect_bench.cli import Interrupted
    from aselect_bench.tasks.classification import ClassificationTask
    from tests.test_search import PRESET, BlobsExperiment

    backbone = load_backbone("tiny-dit", pretrained=False)
    reference = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "ref",
                               runs_dir=tmp_path / "runs", selectors=False, progress=False)
    steps, original = [], ClassificationTask.training_step

    def interrupted_in_the_second_epoch_of_t300(self, batch, batch_idx):
        steps.append(self.timestep)
        if steps.count(300) == 4:  # 3 steps an epoch: the first epoch cached every training feature
            raise Interrupted(2)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationTask, "training_step", interrupted_in_the_second_epoch_of_t300)
    with pytest.raises(Interrupted):
        run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "state", runs_dir=tmp_path / "runs",
                       selectors=False, progress=False, only=[0, 300])
    monkeypatch.setattr(ClassificationTask, "training_step", original)
    resumed = run_comparison(BlobsExperiment(PRESET, backbone), state_root=tmp_path / "state",
                             runs_dir=tmp_path / "runs", selectors=False, progress=False)
    row, expected = resumed["exhaustive"]["per_timestep"][300], reference["exhaustive"]["per_timestep"][300]
    assert row["forwards"] == expected["forwards"] and row["interrupted_forwards"] > 0
    assert row["attempts"] == 2 and row["cost_complete"] is True
    assert resumed["exhaustive"]["forwards"] == reference["exhaustive"]["forwards"]
    assert resumed["saving_forwards"] == pytest.approx(reference["saving_forwards"])
    assert resumed["resumed"] == {"exhaustive t=300": {"attempts": 2, "cost_complete": True}}
    assert "Resumed after an interruption: exhaustive t=300 (2 attempts)" in comparison_markdown(resumed)


def test_an_attempt_killed_outright_marks_the_cost_as_a_lower_bound(tmp_path):
    from aselect_bench.costs import cost_across_attempts

    backbone = load_backbone("tiny-dit", pretrained=False)
    record = tmp_path / "piece.attempts.json"
    killed = cost_across_attempts(record, backbone)
    killed.__enter__()  # ... and the process is gone (kill -9): no exit, no cost written
    with pytest.raises(KeyboardInterrupt), cost_across_attempts(record, backbone):
        backbone.extract(torch.zeros(3, 3, 16, 16), 10, ["blocks.0.out"])
        raise KeyboardInterrupt
    with cost_across_attempts(record, backbone) as earlier:
        pass
    assert (earlier.count, earlier.unknown, earlier.cost.forwards) == (2, 1, 3)
    assert earlier.to_json() == {"attempts": 3, "interrupted_seconds": earlier.cost.seconds,
                                 "interrupted_forwards": 3, "interrupted_cpu_seconds": earlier.cost.cpu_seconds,
                                 "cost_complete": False}
    assert json.loads(record.read_text())["attempts"] == 3


def test_the_docs_say_what_a_missing_listed_image_does(tmp_path):
    """The docs said a missing image is skipped unless --strict; a file an index lists that does not exist stops the
    run at once (the index and the folder disagree), in one line naming the index line."""
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule
    from aselect_bench.data.synth_fgvc import write_layout

    docs = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    assert "Unreadable (missing," not in docs
    assert "An image that an index file lists but that does not exist stops the run" in docs
    write_layout("cub", tmp_path, num_classes=3, train_per_class=2, test_per_class=1, image_size=16)
    rel = (tmp_path / "CUB_200_2011" / "images.txt").read_text().splitlines()[0].split(" ", 1)[1]
    (tmp_path / "CUB_200_2011" / "images" / rel).unlink()
    with pytest.raises(UserError, match=r"images.txt line 1 lists .*, which does not exist"):
        FGVCDataModule("cub", tmp_path, image_size=16, num_workers=0).setup()



def test_a_subset_of_datasets_generates_the_same_synthetic_data(tmp_path):
    """Found while measuring `fit --preset` against `bench-fgvc --datasets cub`: the synthetic cub was seeded by its
    place among the datasets asked for, so `--datasets cub` made (and replaced) another cub than the full run."""
    from aselect_bench.experiments import ensure_synthetic_dataset
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset("demo").override(
        **{"synth.fgvc": {"num_classes": 3, "train_per_class": 2, "test_per_class": 1, "image_size": 16}})
    ensure_synthetic_dataset(preset, "fgvc", "cub", tmp_path / "all")
    ensure_synthetic_dataset(preset.override(fgvc__datasets=["cub"]), "fgvc", "cub", tmp_path / "one")
    files = sorted(p.relative_to(tmp_path / "all") for p in (tmp_path / "all").rglob("*.jpg"))
    assert files and all((tmp_path / "all" / f).read_bytes() == (tmp_path / "one" / f).read_bytes() for f in files)
