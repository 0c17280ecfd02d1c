"""FGVC readers on layouts written file for file like the originals (by hand and by the generator)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from aselect_bench import UserError
from aselect_bench.data.fgvc import (
    DATASETS,
    HubSplit,
    class_names,
    num_classes,
    read_split,
    read_splits,
    resolve_root,
)
from aselect_bench.data.synth_fgvc import render_samples, write_layout


def jpg(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 20, 30)).save(path)


def lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in rows))


def cell(strings, shape):
    """A MATLAB cell array of strings, as the real .mat files hold them."""
    arr = np.empty(len(strings), dtype=object)
    for j, s in enumerate(strings):
        arr[j] = np.array([s])
    return arr.reshape(shape)


# ------------------------------------------------------------------ hand-written minimal original layouts
# Each returns the expected {split: [(path relative to root, label)]} (val: None = carved out of train)
# and the class names in label order.
def hand_cub(root):
    base = root / "CUB_200_2011"
    rel = ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
           "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
           "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
           "002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg",
           "001.Black_footed_Albatross/Black_Footed_Albatross_0074_59.jpg",
           "002.Laysan_Albatross/Laysan_Albatross_0033_658.jpg"]
    for r in rel:
        jpg(base / "images" / r)
    lines(base / "images.txt", [f"{i + 1} {r}" for i, r in enumerate(rel)])
    lines(base / "image_class_labels.txt", ["1 1", "2 1", "3 2", "4 2", "5 1", "6 2"])
    lines(base / "train_test_split.txt", ["1 1", "2 0", "3 1", "4 0", "5 1", "6 1"])
    lines(base / "classes.txt", ["1 001.Black_footed_Albatross", "2 002.Laysan_Albatross"])
    images = [f"CUB_200_2011/images/{r}" for r in rel]
    return ({"train": [(images[0], 0), (images[2], 1), (images[4], 0), (images[5], 1)], "val": None,
             "test": [(images[1], 0), (images[3], 1)]}, ["001.Black_footed_Albatross", "002.Laysan_Albatross"])


def hand_nabirds(root):
    base = root / "nabirds"
    ids = ["0000139e-21dc-4d0c-bfe1-4cae3c85c829", "0000d9fc-4e02-4c06-a0af-a55cfb16b12b",
           "00019306-9d83-4334-b255-a447742edce3", "0001afd4-99a1-4a67-b940-d419413e23b3"]
    rel = [f"{c:04d}/{i.replace('-', '')}.jpg" for c, i in zip((817, 860, 900, 817), ids)]
    for r in rel:
        jpg(base / "images" / r)
    lines(base / "images.txt", [f"{i} {r}" for i, r in zip(ids, rel)])
    lines(base / "image_class_labels.txt", [f"{i} {c}" for i, c in zip(ids, (817, 860, 900, 817))])
    lines(base / "train_test_split.txt", [f"{i} {t}" for i, t in zip(ids, (1, 1, 0, 1))])
    # inner nodes (0, 1, 22) and a leaf (950) that no image uses are not classes
    lines(base / "classes.txt", ["0 Birds", "1 Perching Birds", "22 Tits and Chickadees", "817 Oak Titmouse",
                                 "860 Tree Swallow", "900 Yellow Warbler", "950 Unused Leaf"])
    lines(base / "hierarchy.txt", ["1 0", "22 1", "817 22", "860 1", "900 1", "950 1"])
    images = [f"nabirds/images/{r}" for r in rel]
    return ({"train": [(images[0], 0), (images[1], 1), (images[3], 0)], "val": None, "test": [(images[2], 2)]},
            ["Oak Titmouse", "Tree Swallow", "Yellow Warbler"])


def hand_flowers(root):
    for i in range(1, 7):
        jpg(root / "jpg" / f"image_{i:05d}.jpg")
    savemat(root / "imagelabels.mat", {"labels": np.array([[77, 77, 1, 1, 102, 102]], dtype=np.uint8)})
    savemat(root / "setid.mat", {"trnid": np.array([[5, 1, 3]], np.uint16), "valid": np.array([[2, 6]], np.uint16),
                                 "tstid": np.array([[4]], np.uint16)})
    img = [f"jpg/image_{i:05d}.jpg" for i in range(1, 7)]
    return ({"train": [(img[4], 101), (img[0], 76), (img[2], 0)], "val": [(img[1], 76), (img[5], 101)],
             "test": [(img[3], 0)]}, [f"flower_{k:03d}" for k in range(1, 103)])


def hand_dogs(root):
    rel = ["n02085620-Chihuahua/n02085620_5927.jpg", "n02085620-Chihuahua/n02085620_10074.jpg",
           "n02085782-Japanese_spaniel/n02085782_2874.jpg", "n02085782-Japanese_spaniel/n02085782_1059.jpg",
           "n02085620-Chihuahua/n02085620_1152.jpg"]
    for r in rel:
        jpg(root / "Images" / r)
    train, test = [rel[0], rel[1], rel[2], rel[3]], [rel[4]]
    (root / "lists").mkdir(parents=True)
    for name, files, labels in (("train_list.mat", train, [1, 1, 2, 2]), ("test_list.mat", test, [1])):
        savemat(root / "lists" / name, {"file_list": cell(files, (-1, 1)),
                                        "annotation_list": cell([f[:-4] for f in files], (-1, 1)),
                                        "labels": np.array(labels, dtype=np.float64)[:, None]})
    return ({"train": [(f"Images/{r}", y) for r, y in zip(train, [0, 0, 1, 1])], "val": None,
             "test": [(f"Images/{rel[4]}", 0)]}, ["Chihuahua", "Japanese_spaniel"])


def cars_annotations(rows):
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, (fname, c) in enumerate(rows):
        for f, v in zip(fields, [39, 116, 569, 375, c, fname]):
            arr[0, j][f] = np.array([v]) if f == "fname" else np.array([[v]], dtype=np.uint16)
    return arr


def hand_cars(root):
    for name in ("00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"):
        jpg(root / "cars_train" / name)
    jpg(root / "cars_test" / "00001.jpg")
    train = [("00001.jpg", 14), ("00002.jpg", 3), ("00003.jpg", 14), ("00004.jpg", 3)]
    (root / "devkit").mkdir(parents=True)
    savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": cars_annotations(train)})
    savemat(root / "cars_test_annos_withlabels.mat", {"annotations": cars_annotations([("00001.jpg", 196)])})
    names = [f"Car {k + 1} 2012" for k in range(196)]
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": cell(names, (1, -1))})
    return ({"train": [(f"cars_train/{f}", c - 1) for f, c in train], "val": None,
             "test": [("cars_test/00001.jpg", 195)]}, names)


def hand_aircraft(root):
    base = root / "fgvc-aircraft-2013b" / "data"
    for i in ("1025794", "1340192", "0056978", "0062287"):
        jpg(base / "images" / f"{i}.jpg")
    lines(base / "variants.txt", ["707-320", "F/A-18", "Cessna 172"])  # not alphabetical: order is the file's
    lines(base / "images_variant_train.txt", ["1025794 707-320", "1340192 F/A-18"])
    lines(base / "images_variant_val.txt", ["0056978 Cessna 172"])
    lines(base / "images_variant_test.txt", ["0062287 F/A-18"])
    img = "fgvc-aircraft-2013b/data/images/{}.jpg".format
    return ({"train": [(img("1025794"), 0), (img("1340192"), 1)], "val": [(img("0056978"), 2)],
             "test": [(img("0062287"), 1)]}, ["707-320", "F/A-18", "Cessna 172"])


HAND = {"cub": hand_cub, "nabirds": hand_nabirds, "flowers": hand_flowers, "dogs": hand_dogs, "cars": hand_cars,
        "aircraft": hand_aircraft}


@pytest.mark.parametrize("name", list(DATASETS))
def test_hand_written_original_layouts(tmp_path, name):
    expect, names = HAND[name](tmp_path)
    splits = read_splits(name, tmp_path)
    assert {s: read_split(name, tmp_path, s) for s in splits} == splits
    got = {s: [(str(p.relative_to(tmp_path)), y) for p, y in rows] for s, rows in splits.items()}
    assert all(p.is_file() for rows in splits.values() for p, _ in rows)
    assert got["test"] == expect["test"]
    if expect["val"] is not None:  # official val, index order kept
        assert got["train"] == expect["train"] and got["val"] == expect["val"]
    else:  # val: a class-stratified part of the official train split, together the same images and labels
        assert sorted(got["train"] + got["val"]) == sorted(expect["train"]) and got["val"]
        assert not set(got["train"]) & set(got["val"])
    assert class_names(name, tmp_path) == names and num_classes(name, tmp_path) == len(names)


@pytest.mark.parametrize("name", list(DATASETS))
def test_generated_layouts_load_unchanged_with_the_right_labels(tmp_path, name):
    write_layout(name, tmp_path, num_classes=10, train_per_class=10, test_per_class=3, image_size=32, seed=1)
    splits = read_splits(name, tmp_path)
    sizes = {s: len(rows) for s, rows in splits.items()}
    assert sizes["test"] == 30 and sizes["train"] + sizes["val"] == 100 and sizes["val"] >= 10
    for rows in splits.values():
        assert sorted(set(y for _, y in rows)) == list(range(10))
    assert num_classes(name, tmp_path) == 10
    # every test image is (up to JPEG) one of the rendered images of its label's class: label order is right
    rendered, labels = render_samples(13, 10, 32, seed=1)
    rendered = rendered.reshape(10, 13, 32, 32, 3)[:, 10:].astype(np.float32)  # the 3 test images per class
    for path, label in splits["test"]:
        image = np.asarray(Image.open(path), dtype=np.float32)
        error = np.abs(rendered - image).mean(axis=(2, 3, 4))  # [class, image]
        assert error.min() < 15 and error[label].min() == error.min(), (path, label)


def test_label_order_follows_class_ids_not_file_order(tmp_path):
    hand_cub(tmp_path)
    base = tmp_path / "CUB_200_2011"
    lines(base / "classes.txt", ["2 002.Laysan_Albatross", "1 001.Black_footed_Albatross"])
    assert class_names("cub", tmp_path) == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    assert dict((p.name, y) for p, y in read_split("cub", tmp_path, "test")) == {
        "Black_Footed_Albatross_0009_34.jpg": 0, "Laysan_Albatross_0003_1033.jpg": 1}


def test_val_split_is_stratified_deterministic_and_cached(tmp_path):
    write_layout("cub", tmp_path / "a", num_classes=10, train_per_class=20, test_per_class=2, image_size=32)
    write_layout("cub", tmp_path / "b", num_classes=10, train_per_class=20, test_per_class=2, image_size=32)
    val = read_split("cub", tmp_path / "a", "val")
    assert (np.bincount([y for _, y in val], minlength=10) == 2).all()  # 10% of 20 in every class
    rel = lambda rows, root: {str(p.relative_to(root)): y for p, y in rows}  # noqa: E731
    assert rel(read_split("cub", tmp_path / "b", "val"), tmp_path / "b") == rel(val, tmp_path / "a")  # deterministic
    cache = tmp_path / "a" / ".aselect_splits" / "cub"
    assert json.loads((cache / "val.json").read_text()) == rel(val, tmp_path / "a")
    assert set(json.loads((cache / "test.json").read_text())) == set(rel(read_split("cub", tmp_path / "a", "test"),
                                                                          tmp_path / "a"))
    # the cached partition is reused (swap one val and one train image of class 0 by hand) ...
    train_json, val_json = json.loads((cache / "train.json").read_text()), json.loads((cache / "val.json").read_text())
    moved_in = next(k for k, y in train_json.items() if y == 0)
    moved_out = next(k for k, y in val_json.items() if y == 0)
    train_json[moved_out] = val_json.pop(moved_out)
    val_json[moved_in] = train_json.pop(moved_in)
    (cache / "train.json").write_text(json.dumps(train_json))
    (cache / "val.json").write_text(json.dumps(val_json))
    assert rel(read_split("cub", tmp_path / "a", "val"), tmp_path / "a") == val_json
    # ... until the official files change: then a new one is generated
    (cache / "test.json").write_text("{broken")
    assert rel(read_split("cub", tmp_path / "a", "val"), tmp_path / "a") == rel(val, tmp_path / "a")


def test_split_cache_falls_back_to_the_suite_cache_when_root_is_not_writable(tmp_path, monkeypatch):
    hand_dogs(tmp_path / "dogs")
    (tmp_path / "dogs" / ".aselect_splits").write_text("a file where the cache folder would go")
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path / "cache"))
    val = read_split("dogs", tmp_path / "dogs", "val")
    cached = list((tmp_path / "cache" / "splits" / "dogs").glob("*/val.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())) == len(val)
    assert read_split("dogs", tmp_path / "dogs", "val") == val


def test_loadmat_squeeze_shapes_of_single_entries(tmp_path):
    """One image in a list or struct array squeezes to a 0-d array; the readers still see one row."""
    hand_cars(tmp_path)
    ann = loadmat(tmp_path / "cars_test_annos_withlabels.mat", squeeze_me=True)["annotations"]
    assert ann.shape == () and str(ann["fname"]) == "00001.jpg"
    assert read_split("cars", tmp_path, "test") == [(tmp_path / "cars_test" / "00001.jpg", 195)]


@pytest.mark.parametrize("name", list(DATASETS))
def test_data_root_as_users_pass_it(tmp_path, name, monkeypatch):
    """The parent or the distributed top folder (CUB, NABirds, Aircraft); the folder holding the items else."""
    top = DATASETS[name].top
    root = tmp_path / "data" if top else tmp_path / "data" / f"stanford_{name}"
    HAND[name](root)
    expected = read_splits(name, root)
    if top is None:  # several top-level items: the folder holding them is the root, its parent is not
        assert resolve_root(name, root) == root
        with pytest.raises(UserError, match=f"expected {DATASETS[name].marker} under"):
            read_splits(name, root.parent)
        return
    for spelling in (root / top, f"{root / top}/"):
        assert resolve_root(name, spelling) == root
        assert read_splits(name, spelling) == expected and class_names(name, spelling) == class_names(name, root)
    if not DATASETS[name].official_val:  # one cached split for both spellings, next to the data
        assert [p.relative_to(root) for p in root.rglob("val.json")] == [Path(f".aselect_splits/{name}/val.json")]
    monkeypatch.chdir(root / top)  # "." inside the top folder
    assert resolve_root(name, ".") == root and read_splits(name, ".") == expected


# ------------------------------------------------------------------ bad input: one UserError naming the file
def test_missing_root_and_wrong_root_name_the_expected_layout(tmp_path):
    with pytest.raises(UserError, match=r"expected CUB_200_2011/images.txt under .*nope .*does not exist"):
        read_split("cub", tmp_path / "nope", "train")
    hand_dogs(tmp_path / "dogs")
    with pytest.raises(UserError, match=f"under {tmp_path / 'dogs'}: pass that folder"):
        read_split("dogs", tmp_path / "dogs" / "lists", "train")
    hand_cub(tmp_path)
    (tmp_path / "CUB_200_2011").rename(tmp_path / "birds")
    with pytest.raises(UserError, match="holds the files of CUB_200_2011/ under another name: rename the folder"):
        read_split("cub", tmp_path / "birds", "train")
    (tmp_path / "birds").rename(tmp_path / "CUB_200_2011")
    with pytest.raises(UserError, match=r"expected fgvc-aircraft-2013b/data/variants.txt .*images_variant"):
        read_split("aircraft", tmp_path, "train")
    with pytest.raises(UserError, match="unknown FGVC dataset 'imagenet'; use one of cub, nabirds, flowers, dogs"):
        read_split("imagenet", tmp_path, "train")
    with pytest.raises(UserError, match="unknown split 'validation'"):
        read_split("cub", tmp_path, "validation")


@pytest.mark.parametrize("name, missing", [("cub", "CUB_200_2011/train_test_split.txt"),
                                           ("nabirds", "nabirds/hierarchy.txt"),
                                           ("flowers", "setid.mat"), ("dogs", "lists/test_list.mat"),
                                           ("cars", "cars_test_annos_withlabels.mat"),
                                           ("aircraft", "fgvc-aircraft-2013b/data/images_variant_val.txt")])
def test_missing_index_file_is_named(tmp_path, name, missing):
    HAND[name](tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(UserError, match=f"file {tmp_path / missing} is missing"):
        read_split(name, tmp_path, "train")


@pytest.mark.parametrize("name, image, where", [
    ("cub", "CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", "images.txt line 4"),
    ("nabirds", "nabirds/images/0900/000193069d834334b255a447742edce3.jpg", "images.txt line 3"),
    ("flowers", "jpg/image_00004.jpg", "setid.mat tstid entry 1"),
    ("dogs", "Images/n02085620-Chihuahua/n02085620_1152.jpg", "test_list.mat entry 1"),
    ("cars", "cars_test/00001.jpg", "cars_test_annos_withlabels.mat entry 1"),
    ("aircraft", "fgvc-aircraft-2013b/data/images/0062287.jpg", "images_variant_test.txt line 1")])
def test_index_line_pointing_to_a_missing_image_names_line_and_file(tmp_path, name, image, where):
    HAND[name](tmp_path)
    (tmp_path / image).unlink()
    with pytest.raises(UserError, match=f"{where}.* lists {tmp_path / image}, which does not exist"):
        read_split(name, tmp_path, "test")


def test_labels_outside_the_class_range(tmp_path):
    hand_cub(tmp_path / "cub")
    lines(tmp_path / "cub" / "CUB_200_2011" / "image_class_labels.txt", ["1 1", "2 1", "3 7", "4 2", "5 1", "6 2"])
    with pytest.raises(UserError, match=r"image_class_labels.txt line 3 has class id 7, which is not in .*classes.txt"):
        read_split("cub", tmp_path / "cub", "train")
    hand_flowers(tmp_path / "flowers")
    savemat(tmp_path / "flowers" / "imagelabels.mat", {"labels": np.array([[0, 77, 1, 1, 102, 102]], np.uint8)})
    with pytest.raises(UserError, match=r"setid.mat trnid entry 2 .* has label 0, outside the class range 1..102"):
        read_split("flowers", tmp_path / "flowers", "train")
    savemat(tmp_path / "flowers" / "imagelabels.mat", {"labels": np.array([[1, 77, 1, 1, 103, 102]], np.uint8)})
    with pytest.raises(UserError, match=r"imagelabels.mat has label 103, outside the class range 1..102"):
        read_split("flowers", tmp_path / "flowers", "train")
    hand_cars(tmp_path / "cars")
    savemat(tmp_path / "cars" / "cars_test_annos_withlabels.mat", {"annotations": cars_annotations([("00001.jpg", 197)])})
    with pytest.raises(UserError, match=r"cars_test_annos_withlabels.mat entry 1 has label 197, outside .*1..196"):
        read_split("cars", tmp_path / "cars", "test")
    hand_aircraft(tmp_path / "air")
    lines(tmp_path / "air" / "fgvc-aircraft-2013b" / "data" / "images_variant_val.txt", ["0056978 Boeing 999"])
    with pytest.raises(UserError, match=r"images_variant_val.txt line 1 names variant 'Boeing 999', which is not in"):
        read_split("aircraft", tmp_path / "air", "val")


def test_empty_split_damaged_and_malformed_files(tmp_path):
    hand_aircraft(tmp_path / "air")
    lines(tmp_path / "air" / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt", [])
    with pytest.raises(UserError, match="the test split under .* is empty"):
        read_split("aircraft", tmp_path / "air", "test")
    hand_flowers(tmp_path / "f")
    (tmp_path / "f" / "setid.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match="cannot parse .*setid.mat"):
        read_split("flowers", tmp_path / "f", "train")
    savemat(tmp_path / "f" / "setid.mat", {"trnid": np.array([[1]], np.uint16)})
    with pytest.raises(UserError, match="setid.mat has no variable 'valid'"):
        read_split("flowers", tmp_path / "f", "train")
    hand_cub(tmp_path / "cub")
    lines(tmp_path / "cub" / "CUB_200_2011" / "train_test_split.txt", ["1 1", "2 0", "3 yes", "4 0", "5 1", "6 1"])
    with pytest.raises(UserError, match="train_test_split.txt line 3 has 'yes'"):
        read_split("cub", tmp_path / "cub", "train")
    lines(tmp_path / "cub" / "CUB_200_2011" / "train_test_split.txt", ["1 1", "2 0"])
    with pytest.raises(UserError, match=r"images.txt line 3\) has no line in .*train_test_split.txt"):
        read_split("cub", tmp_path / "cub", "train")


# ------------------------------------------------------------------ hub datasets
def test_hub_dataset_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"cannot load dataset 'aselect-nobody/no-such-fgvc'.*HF_HUB_OFFLINE is set"):
        HubSplit("aselect-nobody/no-such-fgvc", "train")
    assert time.perf_counter() - start < 10


def test_hub_split_from_a_local_datasets_folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images, labels = render_samples(10, 3, 16, seed=0)
    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["a", "b", "c"])})

    def table(rows):
        return datasets.Dataset.from_dict({"img": [Image.fromarray(images[i]) for i in rows],
                                           "fine_label": [int(labels[i]) for i in rows]}, features=features)

    folder = tmp_path / "hubset"
    datasets.DatasetDict({"train": table(range(0, 30, 2)), "test": table(range(1, 30, 2))}).save_to_disk(folder)
    train, val = (HubSplit(str(folder), s, image_column="img", label_column="fine_label") for s in ("train", "val"))
    assert len(train) + len(val) == 15 and len(val) == 3 and sorted(val.labels) == [0, 1, 2]  # stratified 10%
    image, label = val[0]
    assert image.mode == "RGB" and image.size == (16, 16) and label == val.labels[0]
    assert train.class_names == ["a", "b", "c"] and len(HubSplit(str(folder), "test", "img", "fine_label")) == 15
    with pytest.raises(UserError, match="has no column 'image'.*img, fine_label"):
        HubSplit(str(folder), "train")
