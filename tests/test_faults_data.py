"""Data faults of issue #41: a moved or touched dataset is not retrained, an unreadable image is dropped and
counted (never swapped for another), synth never writes over a dataset it did not generate, printing a config
writes nothing, and no empty temporary files are left behind. Each reproduced as reported."""

from __future__ import annotations

import pytest

from aselect_bench.data.synth_fgvc import write_layout
from tests.test_faults import run_in_process

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = dict(num_classes=3, train_per_class=4, test_per_class=1, image_size=16)


# ---------------------------------------------------------------------- 7. synth over an existing dataset

def synth_args(kind: str, out, *extra) -> list:
    sizes = ["--layout", "cub", "--num-classes", "3", "--train-per-class", "2", "--test-per-class", "1"] \
        if kind == "fgvc" else ["--num-train", "3", "--num-val", "1", "--num-classes", "3"]
    return ["synth", kind, "--out", str(out), "--image-size", "16", *sizes, *map(str, extra)]


def a_users_cub(folder):
    """A CUB folder this suite did not write (no marker): the user's real dataset."""
    base = folder / "CUB_200_2011"
    (base / "images" / "001.Real").mkdir(parents=True)
    (base / "images" / "001.Real" / "real.jpg").write_bytes(b"a user's photo")
    (base / "images.txt").write_text("1 001.Real/real.jpg\n")
    return base


@pytest.mark.parametrize("kind", ["fgvc", "ade20k"])
def test_synth_never_writes_into_a_folder_holding_a_dataset_it_did_not_generate(tmp_path, capsys, kind):
    before = a_users_cub(tmp_path)
    for extra in ((), ("--force",)):
        status, _, err = run_in_process(synth_args(kind, tmp_path, *extra), capsys)
        assert status == 2 and "holds files this suite did not generate (CUB_200_2011)" in err, err
    assert (before / "images.txt").read_text() == "1 001.Real/real.jpg\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CUB_200_2011"]


@pytest.mark.parametrize("kind", ["fgvc", "ade20k"])
def test_synth_replaces_its_own_dataset_only_with_force_and_leaves_nothing_stale(tmp_path, capsys, kind):
    out = tmp_path / "synth"
    assert run_in_process(synth_args(kind, out), capsys)[0] == 0
    status, _, err = run_in_process(synth_args(kind, out, "--seed", "1"), capsys)
    assert status == 2 and "already holds a synthetic dataset written by this suite: pass --force" in err
    stale = next(p for p in out.rglob("*.jpg"))
    stale.rename(stale.with_name("stale.jpg"))  # an image the new set would not write
    assert run_in_process(synth_args(kind, out, "--seed", "1", "--force"), capsys)[0] == 0
    assert not list(out.rglob("stale.jpg"))
    (out / "notes.txt").write_text("mine")  # a user's file beside our dataset: even --force keeps off
    status, _, err = run_in_process(synth_args(kind, out, "--force"), capsys)
    assert status == 2 and "files this suite did not generate (notes.txt)" in err
    assert (out / "notes.txt").read_text() == "mine"


# ------------------------------------------------ 2. a moved or touched dataset, and 3. an unreadable image

class Trained(Exception):
    """Raised by a training in a run that must reuse every piece."""


def compare(tmp_path, preset, *extra) -> list[str]:
    """``compare`` of the tiny custom preset on cub, without the selectors' leaderboard, as strings."""
    from tests.test_faults_second_round import compare_args

    return [str(a) for a in compare_args(tmp_path, preset, "--dataset", "cub", "--no-selectors", *extra)]


def no_training(monkeypatch):
    from aselect_bench.experiments.base import Experiment

    def fit(self, *args, **kwargs):
        raise Trained(f"trained at {kwargs.get('timestep')}")

    monkeypatch.setattr(Experiment, "fit", fit)


def cub_images(root, train: bool) -> list:
    """The training (or test) images of the CUB layout at ``root``, by its index files."""
    base = root / "CUB_200_2011"
    names = dict(line.split() for line in (base / "images.txt").read_text().splitlines())
    is_train = dict(line.split() for line in (base / "train_test_split.txt").read_text().splitlines())
    return [base / "images" / names[i] for i in names if is_train[i] == ("1" if train else "0")]


def test_a_copied_or_touched_data_root_reuses_every_piece_and_a_changed_image_is_named(tmp_path, monkeypatch,
                                                                                       capsys):
    import json
    import os
    import shutil

    from PIL import Image

    from aselect_bench.cli import build_parser, run_command
    from aselect_bench.experiments import prepare_dataset
    from aselect_bench.settings import load_bench_preset
    from tests.test_faults_second_round import custom_preset

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    preset = custom_preset(tmp_path)
    cub = prepare_dataset(load_bench_preset(str(preset)), "fgvc", "cub")
    broken = cub_images(cub, train=True)[0]
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated image: left out and counted, not replaced
    status, _, err = run_in_process(compare(tmp_path, preset), capsys)
    assert status == 0, err[-3000:]
    result = json.loads(next((tmp_path / "out").glob("fgvc-cub-mine.json")).read_text())
    assert result["run"]["unreadable_images"]["count"] == 1
    assert broken.name in result["run"]["unreadable_images"]["first"][0]
    assert "1 unreadable image(s) left out" in next((tmp_path / "out").glob("fgvc-cub-mine.md")).read_text()

    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "data", moved)  # another path ...
    for path in moved.rglob("*"):
        os.utime(path, (1e9, 1e9))  # ... and other mtimes: every file touched
    no_training(monkeypatch)
    status, _, err = run_in_process(compare(tmp_path, preset, "--data-root", moved), capsys)
    assert status == 0 and "note:" not in err, err[-3000:]
    test_image = cub_images(moved / "fgvc" / "cub", train=False)[0]
    pixels = Image.open(test_image).convert("RGB")
    pixels.putpixel((0, 0), (255, 0, 0))
    pixels.save(test_image, quality=50)
    args = build_parser().parse_args(compare(tmp_path, preset, "--data-root", moved))
    with pytest.raises(Trained):
        run_command(args)
    err = capsys.readouterr().err
    assert "note: the data's test split changed (1 file differs: 1 changed) since the state in" in err
    assert "every piece is trained anew" in err


def test_select_leaves_an_unreadable_image_out_counts_it_and_strict_stops(tmp_path, capsys, monkeypatch):
    import json

    from tests.test_faults import select_args

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    cub = write_layout("cub", tmp_path / "cub", **TINY)
    training = cub_images(cub, train=True)
    broken = training[0]
    broken.write_bytes(b"not an image")
    out = tmp_path / "selection.json"
    status, printed, err = run_in_process(select_args(cub, "--num-images", 100, "--out", out), capsys)
    assert status == 0, err
    # 12 training images, 10% (one a class) held out as val: 9 for the scan, one of them unreadable
    assert "8 images" in printed and "9 images" not in printed
    note = [line for line in printed.splitlines() if line.startswith("note: 1 unreadable image(s) left out: ")]
    assert len(note) == 1 and note[0].endswith(broken.name)
    assert "pass --strict to stop instead" in err
    run = json.loads(out.read_text())["run"]
    assert run["unreadable_images"]["count"] == 1 and run["unreadable_images"]["first"][0].endswith(broken.name)
    status, _, err = run_in_process(select_args(cub, "--strict"), capsys)
    assert status == 2 and f"cannot read image {broken}" in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------- 16. temporary files left by kill -9

@pytest.mark.parametrize("task", ["fgvc", "ade20k"])
def test_no_temporary_file_is_made_for_unreadable_images(tmp_path, monkeypatch, task):
    """Each datamodule made an ``aselect-skipped-*.txt`` in the temporary folder when it was set up, removed only
    when it was garbage collected: ``kill -9`` left them all. Unreadable images are now found at setup, in memory.
    (Loaded in this process: DataLoader worker processes forked from a pytest-xdist worker hung here.)"""
    import tempfile

    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule
    from aselect_bench.data.synth_ade20k import write_ade20k

    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    if task == "fgvc":
        cub = write_layout("cub", tmp_path / "cub", **TINY)
        cub_images(cub, train=False)[0].write_bytes(b"broken")
        dm = FGVCDataModule("cub", cub, image_size=16, num_workers=0)
    else:
        ade = write_ade20k(tmp_path / "ade", num_train=6, num_val=2, image_size=16, num_classes=3)
        next((ade / "ADEChallengeData2016" / "images" / "validation").glob("*.jpg")).write_bytes(b"broken")
        dm = ADE20KDataModule(ade, crop_size=16, scale=(32, 16), num_workers=0)
    list(dm.test_dataloader())  # set up and loaded; never deleted (as under kill -9)
    assert len(dm.bad_files()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


# --------------------------------------------------------------------- 8. printing a config writes nothing

def test_fit_print_config_writes_no_data(tmp_path, capsys):
    import yaml

    from aselect_bench.lightning_cli import run_lightning_cli
    from tests.test_faults_second_round import custom_preset

    preset = custom_preset(tmp_path)
    new_root = tmp_path / "new-root"
    with pytest.raises(SystemExit) as stop:  # jsonargparse exits after printing
        run_lightning_cli(["fit", "--preset", str(preset), "--dataset", "cub", "--data-root", str(new_root),
                           "--print_config"])
    assert stop.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["init_args"]["num_classes"] == 3
    assert config["data"]["init_args"]["data_root"] == str(new_root / "fgvc" / "cub")
    assert not new_root.exists() and not (tmp_path / "data").exists()  # neither the named nor the preset's root


def test_a_files_content_identity_ignores_place_and_time_not_content(tmp_path):
    import os
    import shutil

    from aselect_bench.io import DIGEST_WHOLE, content_identity

    big = tmp_path / "a" / "big.jpg"
    big.parent.mkdir()
    data = os.urandom(3 * DIGEST_WHOLE)
    big.write_bytes(data)
    first = content_identity(big)
    copy = tmp_path / "b" / "big.jpg"
    copy.parent.mkdir()
    shutil.copyfile(big, copy)
    os.utime(copy, (1e9, 1e9))
    assert content_identity(copy) == first  # another folder, another mtime: the same content
    copy.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the last byte (the end of a JPEG's coded data)
    assert content_identity(copy) != first
    copy.write_bytes(data[:-100])  # cut short
    assert content_identity(copy) != first
    assert content_identity(tmp_path / "missing.jpg").startswith("unreadable:")


def test_a_changed_configuration_is_said_part_by_part():
    from aselect_bench.experiments.base import describe_changes

    old = {"preset": {"fgvc": {"lr": 0.001, "max_epochs": 1}}, "backbone": "a", "data": {"test": "x", "val": "v"}}
    new = {"preset": {"fgvc": {"lr": 0.01, "max_epochs": 1}}, "backbone": "b", "data": {"test": "y", "val": "v"}}
    files = ({"test": ["a.jpg\t1:aa\t0", "b.jpg\t1:bb\t1", "c.jpg\t1:cc\t1"]},
             {"test": ["a.jpg\t1:aa\t0", "b.jpg\t1:b2\t1", "d.jpg\t1:dd\t2"]})
    assert describe_changes(old, new, *files) == (
        "the backbone changed; the data's test split changed (3 files differ: 1 changed, 1 added, 1 removed); "
        "the preset's fgvc.lr changed (0.001 -> 0.01)")
    assert describe_changes(old, old) == ""


def test_the_benchmark_summaries_count_their_unreadable_images_in_the_run_record(tmp_path, capsys):
    """``make bench-fgvc`` and ``make bench-ade20k`` listed bad images per dataset but their run records (and the
    Markdown header read from them) said nothing: every report counts them (issue #41 item 3)."""
    import importlib.util
    import json
    from pathlib import Path

    from aselect_bench.experiments import prepare_dataset
    from aselect_bench.settings import load_bench_preset
    from tests.test_faults_second_round import custom_preset

    preset = custom_preset(tmp_path)
    cub = prepare_dataset(load_bench_preset(str(preset)), "fgvc", "cub")
    cub_images(cub, train=False)[0].write_bytes(b"broken")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fgvc.py"
    spec = importlib.util.spec_from_file_location("bench_fgvc", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--preset", str(preset), "--datasets", "cub", "--results", str(tmp_path / "results"), "--runs",
                str(tmp_path / "runs")])
    summary = json.loads((tmp_path / "results" / "fgvc" / "mine" / "summary.json").read_text())
    assert summary["run"]["unreadable_images"]["count"] == 1
    assert "unreadable" in (tmp_path / "results" / "fgvc" / "mine" / "summary.md").read_text()
