"""FGVCDataModule: shapes, range, labels, seeded shuffling, limits, calibration set, unreadable files, hub."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aselect_bench import UserError
from aselect_bench.data.fgvc_datamodule import FGVCDataModule
from aselect_bench.data.synth_fgvc import render_samples, write_layout
from aselect_bench.data.transforms import classification_transform


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers")
    write_layout("flowers", root, num_classes=10, train_per_class=6, test_per_class=2, image_size=48)
    return root


def test_batches_shapes_range_and_labels(flowers):
    dm = FGVCDataModule("flowers", flowers, image_size=32, batch_size=7, num_workers=0)
    assert dm.num_classes is None
    dm.setup("fit")
    assert dm.num_classes == 10 and len(dm.class_names) == 10
    assert [dm.split_size(s) for s in ("train", "val", "test")] == [50, 10, 20]
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        images, labels, indices = next(iter(loader))
        assert images.shape == (7, 3, 32, 32) and images.dtype == torch.float32
        assert images.min() >= -1 and images.max() <= 1 and images.min() < -0.5 and images.max() > 0.5
        assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 10
        assert indices.dtype == torch.int64
    assert dm.view_fingerprint("train") is None and dm.view_fingerprint("val") != dm.view_fingerprint("test")


def test_training_order_is_seeded(flowers):
    def first_epoch(seed):
        dm = FGVCDataModule("flowers", flowers, image_size=16, batch_size=50, num_workers=0, seed=seed,
                            train_augment=False)
        return next(iter(dm.train_dataloader()))[2]

    assert torch.equal(first_epoch(0), first_epoch(0)) and not torch.equal(first_epoch(0), first_epoch(1))


def test_eval_view_is_resize_then_center_crop():
    image = Image.fromarray(np.arange(40 * 80 * 3, dtype=np.uint8).reshape(40, 80, 3))
    out = classification_transform(32, train=False)(image)
    assert out.shape == (3, 32, 32)  # short side 40 -> round(32 * 1.14) = 36, then the central 32 x 32
    train = classification_transform(32, train=True)
    assert train(image).shape == (3, 32, 32)


def test_limit_per_class_keeps_a_seeded_subset_of_train(flowers):
    dm = FGVCDataModule("flowers", flowers, image_size=16, num_workers=0, limit_per_class=2, seed=0)
    dm.setup()
    labels = [y for _, y in dm.sets["train"].items]
    assert np.bincount(labels).tolist() == [2] * 10 and dm.split_size("test") == 20
    other = FGVCDataModule("flowers", flowers, image_size=16, num_workers=0, limit_per_class=2, seed=1)
    other.setup()
    assert other.sets["train"].items != dm.sets["train"].items
    with pytest.raises(UserError, match="limit_per_class"):
        FGVCDataModule("flowers", flowers, limit_per_class=0)


def test_calibration_images_are_deterministic_eval_views(flowers):
    dm = FGVCDataModule("flowers", flowers, image_size=32, num_workers=0, train_augment=True)
    c1, c2 = dm.calibration_images(6, seed=0), dm.calibration_images(6, seed=0)
    assert c1.shape == (6, 3, 32, 32) and torch.equal(c1, c2)
    assert not torch.equal(c1, dm.calibration_images(6, seed=1))
    assert dm.calibration_images(500, seed=0).shape[0] == 50  # at most the whole train split


def test_an_unreadable_image_is_left_out_and_counted_or_stops_when_strict(tmp_path, capsys):
    write_layout("aircraft", tmp_path, num_classes=10, train_per_class=5, test_per_class=2, image_size=32)
    clean = FGVCDataModule("aircraft", tmp_path, image_size=16, num_workers=0)
    clean.setup()
    broken, truncated = clean.sets["test"].items[0], clean.sets["test"].items[7]
    broken[0].write_bytes(b"broken")
    truncated[0].write_bytes(truncated[0].read_bytes()[:40])
    dm = FGVCDataModule("aircraft", tmp_path, image_size=16, batch_size=100, num_workers=2)
    dm.setup()
    err = capsys.readouterr().err
    assert "2 unreadable image(s) of 70 in the aircraft dataset left out" in err and broken[0].name in err
    assert "pass --strict to stop instead" in err
    assert dm.bad_files() == sorted([str(broken[0]), str(truncated[0])])
    assert dm.sets["test"].items == [i for i in clean.sets["test"].items if i not in (broken, truncated)]
    images, labels, _ = next(iter(dm.test_dataloader()))  # no other image stands in for them
    assert len(images) == 18 and labels.tolist() == [y for _, y in dm.sets["test"].items]
    strict = FGVCDataModule("aircraft", tmp_path, image_size=16, batch_size=100, num_workers=0, strict=True)
    with pytest.raises(UserError, match=broken[0].name):
        strict.setup()


def test_hub_dataset_in_place_of_a_folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images, labels = render_samples(10, 2, 24, seed=0)
    table = datasets.Dataset.from_dict({"image": [Image.fromarray(i) for i in images], "label": labels.tolist()},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.ClassLabel(names=["x", "y"])}))
    datasets.DatasetDict({"train": table, "test": table}).save_to_disk(tmp_path / "hub")
    dm = FGVCDataModule(hub_id=str(tmp_path / "hub"), image_size=16, batch_size=4, num_workers=0)
    dm.setup()
    assert dm.num_classes == 2 and [dm.split_size(s) for s in ("train", "val", "test")] == [18, 2, 20]
    batch, labels_batch, _ = next(iter(dm.val_dataloader()))
    assert batch.shape == (2, 3, 16, 16) and labels_batch.tolist() == [0, 1]
    again = FGVCDataModule(hub_id=str(tmp_path / "hub"), image_size=16, num_workers=0)
    again.setup()
    assert again.view_fingerprint("val") == dm.view_fingerprint("val") != dm.view_fingerprint("test")


def test_both_spellings_of_a_data_root_give_one_view(tmp_path):
    """``/data`` and ``/data/CUB_200_2011`` are the same data: the same splits and feature-cache keys."""
    write_layout("cub", tmp_path, num_classes=4, train_per_class=5, test_per_class=2, image_size=32)
    parent = FGVCDataModule("cub", tmp_path, image_size=16, num_workers=0)
    folder = FGVCDataModule("cub", tmp_path / "CUB_200_2011", image_size=16, num_workers=0)
    parent.setup(), folder.setup()
    assert parent.split_sizes() == folder.split_sizes() == {"training": 16, "val": 4, "test": 8}
    for stage in ("val", "test"):
        assert folder.sets[stage].items == parent.sets[stage].items
        assert folder.view_fingerprint(stage) == parent.view_fingerprint(stage)
