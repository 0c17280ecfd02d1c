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
