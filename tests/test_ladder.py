"""The known-answer ladder (issue 43): corruptions as a seeded per-image transform, the matched timestep against each
backbone's own schedule, and one tiny ladder end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml

from aselect_bench import UserError
from aselect_bench.data.corruption import KINDS, Corruption, bind, image_key

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ------------------------------------------------------------------------------------------ the corruption

def grey_image(seed: int = 0) -> torch.Tensor:
    """``[3, 16, 16]`` in [-1, 1], away from the ends (clamping would hide the noise)."""
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.6


@pytest.mark.parametrize("kind, level", [("gauss", 0.1), ("shot", 0.2), ("jpeg", 0.7), ("blur", 1.0)])
def test_each_kind_is_deterministic_per_image_keeps_the_range_and_level_0_is_clean(kind, level):
    image = grey_image()
    c = Corruption(kind, level, seed=3)
    out = c.apply(image, "001.Black_footed_Albatross/a.jpg")
    assert out.shape == image.shape and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, c.apply(image.clone(), "001.Black_footed_Albatross/a.jpg"))
    assert (out - image).abs().mean() > 1e-3
    assert torch.equal(Corruption(kind, 0).apply(image, "a.jpg"), image)


@pytest.mark.parametrize("kind", ["gauss", "shot"])
def test_the_draw_changes_with_the_seed_the_level_and_the_image_only(kind):
    image = grey_image()
    base = Corruption(kind, 0.1, seed=0).apply(image, "a.jpg")
    assert not torch.equal(base, Corruption(kind, 0.1, seed=1).apply(image, "a.jpg"))
    assert not torch.equal(base, Corruption(kind, 0.1, seed=0).apply(image, "b.jpg"))
    noise = lambda lv: Corruption(kind, lv).apply(image, "a.jpg") - image  # noqa: E731
    assert not torch.allclose(noise(0.1) * 2, noise(0.2), atol=1e-3)  # another draw, not the same one scaled


def test_gauss_has_the_documented_std_on_unit_pixels():
    """``gauss`` at level sigma: std sigma on [0, 1] pixels, 2 sigma on the suite's [-1, 1] images."""
    image = torch.zeros(3, 64, 64)
    diff = Corruption("gauss", 0.05).apply(image, "a.jpg") - image
    assert abs(float(diff.std()) - 2 * 0.05) < 0.01


def test_bad_kinds_and_levels_are_one_line_naming_the_key():
    with pytest.raises(UserError, match="corruption.kind 'salt' is not a corruption: use one of gauss, shot"):
        Corruption("salt", 0.1)
    with pytest.raises(UserError, match="corruption.level 1.5 is outside jpeg's scale"):
        Corruption("jpeg", 1.5)
    with pytest.raises(UserError, match="corruption.level -0.1"):
        Corruption("gauss", -0.1)
    assert set(KINDS) == {"gauss", "shot", "jpeg", "blur"}


def test_an_image_is_named_by_its_path_under_the_root_or_its_pixels(tmp_path):
    from PIL import Image

    assert image_key(tmp_path / "images" / "a.jpg", tmp_path) == "images/a.jpg"
    assert image_key(tmp_path / "images" / "a.jpg", tmp_path / "elsewhere").endswith("images/a.jpg")
    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    assert image_key(red) == image_key(Image.new("RGB", (4, 4), "red")) != image_key(blue)


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    from aselect_bench.data.synth_fgvc import write_layout

    return write_layout("cub", tmp_path_factory.mktemp("cub") / "cub", num_classes=3, train_per_class=4,
                        test_per_class=2, image_size=16)


def files_of(root: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_fgvc_every_split_and_the_calibration_images_are_corrupted_alike_and_nothing_is_written(cub):
    from aselect_bench.data.fgvc_datamodule import FGVCDataModule
    from aselect_bench.data.transforms import ImageListDataset, classification_transform

    clean = FGVCDataModule("cub", str(cub), image_size=16, num_workers=0, train_augment=False)
    clean.setup()  # the readers cache the split lists: what a clean run writes too
    before = files_of(cub)
    corruption = Corruption("gauss", 0.2, seed=5)
    dm = FGVCDataModule("cub", str(cub), image_size=16, num_workers=0, train_augment=False, corruption=corruption)
    dm.setup()
    train = dm.sets["train"]
    assert torch.equal(dm.calibration_view([2])[0], train[2][0])  # the scan sees what training sees
    assert not torch.equal(train[2][0], clean.sets["train"][2][0])
    # the same file listed in another split, at another place, gets the same corruption
    other = ImageListDataset([dm.sets["test"].items[0], train.items[2]], classification_transform(16, False),
                             corruption=bind(corruption, cub))
    assert torch.equal(other[1][0], train[2][0])
    assert not torch.equal(other[0][0], train[2][0])
    # the same in every epoch and batch: the loader's order does not enter the draw
    for _ in range(2):  # two epochs, each in its own shuffled order and batches
        batches = list(dm.train_dataloader())
        indices = torch.cat([b[2] for b in batches])
        assert torch.equal(torch.cat([b[0] for b in batches]), torch.stack([train[int(i)][0] for i in indices]))
    # the caches key on the view: another corruption is another fingerprint, none keeps the clean one's
    assert dm.view_fingerprint("val") != clean.view_fingerprint("val")
    assert files_of(cub) == before


def test_ade20k_training_and_calibration_views_are_corrupted_per_image(tmp_path):
    from aselect_bench.data.ade20k_datamodule import ADE20KDataModule
    from aselect_bench.data.synth_ade20k import write_ade20k

    root = write_ade20k(tmp_path / "ade", num_train=8, num_val=2, image_size=16, num_classes=4)
    args = dict(crop_size=16, scale=(64, 16), num_workers=0, num_classes=4, selection_size=2)
    clean = ADE20KDataModule(str(root), **args)
    clean.setup()
    before = files_of(root)
    dm = ADE20KDataModule(str(root), corruption=Corruption("gauss", 0.2), **args)
    assert torch.equal(dm.calibration_images(3), dm.calibration_images(3))
    assert not torch.equal(dm.calibration_images(3), clean.calibration_images(3))
    assert torch.equal(dm.sets["test"][0][0], dm.sets["test"][0][0])
    assert not torch.equal(dm.sets["test"][0][0], clean.sets["test"][0][0])
    assert dm.view_fingerprint("test") != clean.view_fingerprint("test")
    assert files_of(root) == before


# ------------------------------------------------------------------------------------------ presets and CLI

def test_a_preset_section_and_the_command_line_set_the_corruption_and_the_fingerprint(tmp_path):
    from aselect_bench.cli import build_parser
    from aselect_bench.commands.options import preset_from_args
    from aselect_bench.config import CONFIG_DIR
    from aselect_bench.settings import load_bench_preset

    demo = load_bench_preset("demo")
    assert demo.corruption is None and "corruption" not in demo.to_json()
    path = tmp_path / "noisy.yaml"
    path.write_text(yaml.safe_dump({"_base_": str(CONFIG_DIR / "presets" / "demo.yaml"),
                                    "corruption": {"kind": "gauss", "level": 0.1}}))
    noisy = load_bench_preset(str(path))
    assert noisy.corruption == Corruption("gauss", 0.1)
    assert noisy.fingerprint() != load_bench_preset("demo").override(name=None).fingerprint()
    args = build_parser().parse_args(["compare", "--corruption", "blur:1.5"])
    preset = preset_from_args(args, "fgvc")
    assert preset.corruption == Corruption("blur", 1.5) and preset.overrides["corruption"]["kind"] == "blur"
    assert preset.fingerprint() != demo.fingerprint()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"_base_": str(CONFIG_DIR / "presets" / "demo.yaml"),
                                   "corruption": {"kind": "gauss"}}))
    with pytest.raises(UserError, match="corruption: missing key 'level'"):
        load_bench_preset(str(bad))


@pytest.mark.parametrize("text, fragment", [("gauss", "write KIND:LEVEL"), ("gauss:x", "must be numbers"),
                                            ("salt:0.1", "is not a corruption"), ("jpeg:2", "outside jpeg's scale")])
def test_a_bad_corruption_option_is_a_usage_line(text, fragment):
    from aselect_bench.commands.options import corruption_option

    with pytest.raises(argparse.ArgumentTypeError, match=fragment):
        corruption_option(text)


def test_the_committed_ladder_preset_is_the_demo_without_grain_on_its_grid():
    from aselect_bench.settings import load_bench_preset

    ladder, demo = load_bench_preset("ladder"), load_bench_preset("demo")
    assert ladder.synth.fgvc.grain == 0 and ladder.seeds == 3 and ladder.backbone == demo.backbone
    assert ladder.hfr.candidates == (0, 25, 50, 75, 100, 150, 200, 300, 400, 600, 999)
    assert ladder.data_root != demo.data_root  # its grain-free stand-ins never replace the demo's


# ------------------------------------------------------------------------------------------ the matched timestep

def schedule_ratio(backbone, t: int) -> float:
    """The backbone's own noise-to-signal ratio at ``t``, read off its noising (x0 = 1, noise = 0 and vice versa)."""
    one, zero = torch.ones(1), torch.zeros(1)
    process = backbone.noise.for_tokens((backbone.image_size // backbone.patch_size) ** 2)
    signal, noise = float(process.add_noise(one, t, zero)), float(process.add_noise(zero, t, one))
    return noise / signal if signal > 0 else float("inf")


@pytest.mark.parametrize("name", ["tiny-dit", "tiny-sd3"])
def test_the_matched_timestep_is_the_nearest_of_the_backbones_own_schedule(name):
    from aselect_bench.analyses.ladder import matched_for
    from aselect_bench.backbones import load_backbone

    backbone = load_backbone(name)
    match, reason = matched_for(backbone, "gauss")
    assert reason is None
    ratios = [schedule_ratio(backbone, t) for t in range(backbone.num_train_timesteps)]
    picks = [match(sigma) for sigma in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert picks[0] == 0 and picks == sorted(picks) and len(set(picks)) == 5
    for sigma, t in zip((0.05, 0.1, 0.2, 0.3), picks[1:]):
        errors = [abs(r - 2 * sigma) for r in ratios]
        assert errors[t] == min(errors)
        assert ratios[t - 1] <= 2 * sigma <= ratios[t + 1]


def test_latent_backbones_and_kinds_without_a_known_answer_have_none_and_say_why():
    from aselect_bench.analyses.ladder import matched_for
    from aselect_bench.backbones import load_backbone

    match, reason = matched_for(load_backbone("tiny-dit-latent"), "gauss")
    assert match is None and "latent space" in reason
    match, reason = matched_for(load_backbone("tiny-dit"), "blur")
    assert match is None and "blur has no known answer" in reason


def rung(best: int, matched, picks: dict) -> dict:
    """A ladder level as :func:`~aselect_bench.analyses.ladder.level_entry` writes it: ``picks`` ``{name: (t, regret,
    tied)}`` (``t`` None and regret None: a search that could not pick)."""
    rows = [{"name": n, "timestep": t, "regret": r, "regret_se": None if r is None else 1.0, "tied_with_best": tied}
            for n, (t, r, tied) in picks.items()]
    return {"matched_timestep": matched, "exhaustive": {"best_timestep": best}, "selectors": rows[:-1],
            "searches": rows[-1:]}


def test_tracking_says_who_follows_the_best_and_who_cannot_move():
    from aselect_bench.analyses.ladder import tracking

    levels = [rung(0, 0, {"hfr": (0, 0.0, True), "t0": (0, 0.0, True), "halving": (None, None, None)}),
              rung(50, 57, {"hfr": (50, 1.0, True), "t0": (0, 4.0, False), "halving": (50, 0.0, True)}),
              rung(150, 170, {"hfr": (100, 2.0, True), "t0": (0, 9.0, False), "halving": (150, 0.0, True)})]
    track = tracking(levels)
    assert track["hfr"]["spearman"] == pytest.approx(1.0) and track["hfr"]["spearman_matched"] == pytest.approx(1.0)
    assert track["hfr"]["tied_share"] == 1 and track["hfr"]["mean_regret"] == pytest.approx(1.0)
    lo, hi = track["hfr"]["mean_regret_ci"]
    assert lo < 1.0 < hi
    assert track["t0"]["spearman"] is None and track["t0"]["picks"] == [0, 0, 0]  # a rule that cannot move
    assert track["t0"]["tied_share"] == pytest.approx(1 / 3) and track["t0"]["mean_regret"] == pytest.approx(13 / 3)
    halving = track["halving"]  # no pick at the first level: left out of its shares, no Spearman
    assert halving["levels"] == 2 and halving["spearman"] is None and halving["mean_regret"] == 0



def test_the_figure_draws_coinciding_picks_once_searches_dashed_on_a_timestep_axis_linear_up_to_100():
    from aselect_bench.analyses.ladder import tracking
    from aselect_bench.plots import ladder_figure

    levels = [rung(0, 0, {"hfr": (0, 0.0, True), "hfr-K1": (0, 0.0, True), "t0": (0, 0.0, True),
                          "halving": (50, 1.0, True)}),
              rung(50, 57, {"hfr": (50, 1.0, True), "hfr-K1": (50, 1.0, True), "t0": (0, 4.0, False),
                            "halving": (999, 9.0, False)})]
    for lv, level in zip(levels, (0.0, 0.1)):
        lv["level"] = level
    ladder = {"levels": levels, "tracking": tracking(levels), "candidates": [0, 50, 999], "kind": "gauss",
              "level_scale": "std", "task": "fgvc", "dataset": "cub", "preset": "p"}
    ax = ladder_figure(ladder).axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["hfr = hfr-K1"] == ":" and styles["halving"] == "--" and "t0" in styles
    assert not any(label in styles for label in ("hfr", "hfr-K1"))
    assert ax.get_yscale() == "symlog" and list(ax.get_yticks()) == [0, 50, 999]


def test_a_pick_repeated_over_seeds_is_the_comparisons_seed_pick_ties_to_the_earliest_seed():
    from aselect_bench.analyses.ladder import pick_of

    assert pick_of({"timestep": None, "timesteps": [850, 950, 50]}) == 850
    assert pick_of({"timestep": None, "timesteps": [950, 850, 50]}) == 950
    assert pick_of({"timestep": None, "timesteps": [50, 950, 950]}) == 950
    assert pick_of({"timestep": 300, "timesteps": [300, 100, 300]}) == 300
    assert pick_of({"timestep": None}) is None  # the random rule


# ------------------------------------------------------------------------------------------ a tiny ladder

@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """``aselect-bench ladder`` in this process: 2 levels, 2 candidates, tiny data, 1 epoch, two selectors."""
    from aselect_bench.cli import build_parser, run_command
    from tests.test_faults_second_round import custom_preset

    tmp = tmp_path_factory.mktemp("ladder")
    preset = custom_preset(tmp)
    argv = ["ladder", "--preset", str(preset), "--kind", "gauss", "--levels", "0,0.3", "--selectors", "t0",
            "--out", str(tmp / "out"), "--state", str(tmp / "state"), "--runs", str(tmp / "runs")]
    run_command(build_parser().parse_args(argv))
    return tmp


def test_a_tiny_ladder_writes_levels_tracking_figure_and_tensorboard(ladder):
    out = ladder / "out"
    data = json.loads((out / "fgvc-cub-mine-gauss.json").read_text())
    assert [lv["level"] for lv in data["levels"]] == [0.0, 0.3]
    assert [lv["matched_timestep"] for lv in data["levels"]][0] == 0 and data["matched"]["reason"] is None
    assert data["levels"][1]["matched_timestep"] > 0
    assert data["levels"][0]["fingerprint"] != data["levels"][1]["fingerprint"]  # the corruption is in it
    for lv in data["levels"]:
        assert lv["exhaustive"]["best_timestep"] in (0, 500)
        assert set(lv["exhaustive"]["tied_with_best"]) <= {0, 500}
        assert [r["name"] for r in lv["selectors"]] == ["hfr", "t0"]
        assert all(len(r["regret_ci"]) == 2 for r in lv["selectors"])
    track = data["tracking"]
    searches = {r["name"] for r in data["levels"][0].get("searches", [])}  # when the comparisons carry searches
    assert set(track) == {"hfr", "t0"} | searches
    assert track["t0"]["picks"] == [0, 0] and track["t0"]["spearman"] is None  # 2 levels: undefined
    assert 0 <= track["hfr"]["tied_share"] <= 1 and len(track["hfr"]["mean_regret_ci"]) == 2
    assert data["run"]["preset"] == "mine" and data["run"]["code_version"]
    md = (out / "fgvc-cub-mine-gauss.md").read_text()
    assert "Tracking over the levels" in md and "level 0.3" in md and "| 0.3 |" in md
    assert (out / "fgvc-cub-mine-gauss.png").stat().st_size > 0
    assert list((ladder / "runs" / "reports" / "fgvc-cub-mine-gauss").rglob("events.out.tfevents.*"))
    labels = sorted(p.name for p in (ladder / "state").iterdir())
    assert labels == ["fgvc-cub-mine-gauss0", "fgvc-cub-mine-gauss0.3"]  # each level its own pieces


def test_every_level_is_a_job_of_one_sweep(tmp_path, capsys):
    """``--launcher local --dry-run``: each level's pieces (every candidate and A-SelecT's side) listed, none run."""
    from tests.test_faults import run_in_process
    from tests.test_faults_second_round import custom_preset

    argv = ["ladder", "--preset", str(custom_preset(tmp_path)), "--levels", "0,0.1,0.3", "--selectors", "t0",
            "--state", str(tmp_path / "state"), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
            "--launcher", "local", "--jobs", "2", "--dry-run"]
    status, out, err = run_in_process(argv, capsys)
    assert status == 0, err
    assert "dry run: 9 of 9 jobs to submit (local)" in out  # 3 levels x (2 candidates + A-SelecT's side)
    for level in ("gauss0", "gauss0.1", "gauss0.3"):  # each job says which level it is of
        assert f"fgvc/cub {level} t=500" in out and f"fgvc/cub {level} A-SelecT" in out
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_corrupted_comparison_is_written_under_its_own_label_not_the_clean_one(ladder, tmp_path, capsys):
    """``compare --corruption gauss:0.3`` wrote ``fgvc-cub-mine.json``, the clean comparison's file, and fed the
    leaderboard with it. Here it reuses the ladder's level-0.3 pieces (no training) and writes its own label."""
    from tests.test_faults import run_in_process

    argv = ["compare", "--preset", str(ladder / "mine.yaml"), "--corruption", "gauss:0.3", "--selectors", "t0",
            "--state", str(ladder / "state"), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    status, out, err = run_in_process(argv, capsys)
    assert status == 0, err
    assert "exhaustive: t=0" in out and sorted(p.name for p in (tmp_path / "out").glob("*.json")) == [
        "fgvc-cub-mine-gauss0.3.json"]
    data = json.loads((tmp_path / "out" / "fgvc-cub-mine-gauss0.3.json").read_text())
    assert data["label"] == "fgvc-cub-mine-gauss0.3" and data["corruption"]["kind"] == "gauss"
    assert data["corruption"]["level"] == 0.3 and not (tmp_path / "out" / "selectors.json").exists()
    assert (tmp_path / "runs" / "reports" / "fgvc-cub-mine-gauss0.3").is_dir()
