"""FGVC readers on layouts written file for file like the originals (by hand and by the generator)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from aselect_bench import UserError
from aselect_bench.data.fgvc import DATASETS, num_classes, read_split
from aselect_bench.data.synth_fgvc import write_layout


def jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in rows))


def hand_cub(root):
    base = root / "CUB_200_2011"
    rel = ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
           "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
           "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
           "002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg",
           "001.Black_footed_Albatross/Black_Footed_Albatross_0074_59.jpg"]
    for r in rel:
        jpg(base / "images" / r)
    lines(base / "images.txt", [f"{i + 1} {r}" for i, r in enumerate(rel)])
    lines(base / "image_class_labels.txt", ["1 1", "2 1", "3 2", "4 2", "5 1"])
    lines(base / "train_test_split.txt", ["1 1", "2 0", "3 1", "4 0", "5 1"])
    lines(base / "classes.txt", ["1 001.Black_footed_Albatross", "2 002.Laysan_Albatross"])
    return {"train": 3, "test": 2, "classes": 2, "first_test": (base / "images" / rel[1], 0)}


def hand_nabirds(root):
    base = root / "nabirds"
    ids = ["0000139e-21dc-4d0c-bfe1-4cae3c85c829", "0000d9fc-4e02-4c06-a0af-a55cfb16b12b",
           "00019306-9d83-4334-b255-a447742edce3"]
    rel = ["0817/0000139e21dc4d0cbfe14cae3c85c829.jpg", "0860/0000d9fc4e024c06a0afa55cfb16b12b.jpg",
           "0900/000193069d834334b255a447742edce3.jpg"]
    for r in rel:
        jpg(base / "images" / r)
    ids.append("0001afd4-99a1-4a67-b940-d419413e23b3")
    rel.append("0817/0001afd499a14a67b940d419413e23b3.jpg")
    jpg(base / "images" / rel[3])
    lines(base / "images.txt", [f"{i} {r}" for i, r in zip(ids, rel)])
    lines(base / "image_class_labels.txt", [f"{ids[0]} 817", f"{ids[1]} 860", f"{ids[2]} 900", f"{ids[3]} 817"])
    lines(base / "train_test_split.txt", [f"{ids[0]} 1", f"{ids[1]} 1", f"{ids[2]} 0", f"{ids[3]} 1"])
    lines(base / "classes.txt", ["0 Birds", "817 Oak Titmouse", "860 Tree Swallow", "900 Yellow Warbler"])
    lines(base / "hierarchy.txt", ["817 0", "860 0", "900 0"])
    return {"train": 3, "test": 1, "classes": 3, "first_test": (base / "images" / rel[2], 2)}


def hand_flowers(root):
    for i in range(1, 7):
        jpg(root / "jpg" / f"image_{i:05d}.jpg")
    savemat(root / "imagelabels.mat", {"labels": np.array([[77, 77, 1, 1, 102, 102]], dtype=np.uint8)})
    savemat(root / "setid.mat", {"trnid": np.array([[1, 3, 5]], np.uint16), "valid": np.array([[2, 6]], np.uint16),
                                 "tstid": np.array([[4]], np.uint16)})
    return {"train": 3, "val": 2, "test": 1, "classes": 102, "first_test": (root / "jpg" / "image_00004.jpg", 0)}


def hand_dogs(root):
    rel = ["n02085620-Chihuahua/n02085620_5927.jpg", "n02085620-Chihuahua/n02085620_10074.jpg",
           "n02085782-Japanese_spaniel/n02085782_2874.jpg"]
    for r in rel:
        jpg(root / "Images" / r)

    def cell(items):
        arr = np.empty((len(items), 1), dtype=object)
        for j, s in enumerate(items):
            arr[j, 0] = np.array([s])
        return arr

    (root / "lists").mkdir(parents=True)
    savemat(root / "lists" / "train_list.mat", {"file_list": cell(rel[:2]), "annotation_list": cell(rel[:2]),
                                                "labels": np.array([[1.0], [1.0]])})
    savemat(root / "lists" / "test_list.mat", {"file_list": cell(rel[2:]), "annotation_list": cell(rel[2:]),
                                               "labels": np.array([[2.0]])})
    return {"train": 2, "test": 1, "classes": 2, "first_test": (root / "Images" / rel[2], 1)}


def hand_cars(root):
    def annos(rows):
        fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
        arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
        for j, (fname, c) in enumerate(rows):
            for f, v in zip(fields, [39, 116, 569, 375, c, fname]):
                arr[0, j][f] = np.array([v]) if f == "fname" else np.array([[v]], dtype=np.uint16)
        return arr

    for name in ("00001.jpg", "00002.jpg", "00003.jpg"):
        jpg(root / "cars_train" / name)
    jpg(root / "cars_test" / "00001.jpg")
    (root / "devkit").mkdir(parents=True)
    savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": annos([("00001.jpg", 14), ("00002.jpg", 3),
                                                                               ("00003.jpg", 14)])})
    savemat(root / "cars_test_annos_withlabels.mat", {"annotations": annos([("00001.jpg", 196)])})
    names = np.empty((1, 196), dtype=object)
    for k in range(196):
        names[0, k] = np.array([f"Car {k + 1} 2012"])
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    return {"train": 3, "test": 1, "classes": 196, "first_test": (root / "cars_test" / "00001.jpg", 195)}


def hand_aircraft(root):
    base = root / "fgvc-aircraft-2013b" / "data"
    for i in ("1025794", "1340192", "0056978", "0062287"):
        jpg(base / "images" / f"{i}.jpg")
    lines(base / "variants.txt", ["707-320", "F/A-18", "Cessna 172"])
    lines(base / "images_variant_train.txt", ["1025794 707-320", "1340192 F/A-18"])
    lines(base / "images_variant_val.txt", ["0056978 Cessna 172"])
    lines(base / "images_variant_test.txt", ["0062287 F/A-18"])
    return {"train": 2, "val": 1, "test": 1, "classes": 3, "first_test": (base / "images" / "0062287.jpg", 1)}


HAND = {"cub": hand_cub, "nabirds": hand_nabirds, "flowers": hand_flowers, "dogs": hand_dogs, "cars": hand_cars,
        "aircraft": hand_aircraft}


@pytest.mark.parametrize("name", list(DATASETS))
def test_hand_written_original_layouts(tmp_path, name):
    expect = HAND[name](tmp_path)
    test = read_split(name, tmp_path, "test")
    assert test[0] == expect["first_test"] and len(test) == expect["test"]
    train, val = read_split(name, tmp_path, "train"), read_split(name, tmp_path, "val")
    if "val" in expect:  # official val
        assert len(train) == expect["train"] and len(val) == expect["val"]
    else:  # a class-stratified part of the official train split
        assert len(train) + len(val) == expect["train"] and len(val) >= 1
    assert num_classes(name, tmp_path) == expect["classes"]


@pytest.mark.parametrize("name", list(DATASETS))
def test_generated_layouts_load_unchanged(tmp_path, name):
    write_layout(name, tmp_path, num_classes=10, train_per_class=10, test_per_class=3, image_size=32, seed=1)
    sizes = {s: len(read_split(name, tmp_path, s)) for s in ("train", "val", "test")}
    assert sizes["test"] == 30 and sizes["train"] + sizes["val"] == 100 and sizes["val"] >= 10
    labels = [y for _, y in read_split(name, tmp_path, "train")]
    assert sorted(set(labels)) == list(range(10))
    assert num_classes(name, tmp_path) == 10


def test_val_split_is_stratified_deterministic_and_cached(tmp_path):
    write_layout("cub", tmp_path, num_classes=10, train_per_class=20, test_per_class=2, image_size=32)
    val = read_split("cub", tmp_path, "val")
    per_class = np.bincount([y for _, y in val], minlength=10)
    assert (per_class == 2).all()  # 10% of 20 in every class
    cached = tmp_path / ".aselect_splits" / "cub"
    assert json.loads((cached / "val.json").read_text()) == {str(p.relative_to(tmp_path)): y for p, y in val}
    assert read_split("cub", tmp_path, "val") == val
    assert not set(read_split("cub", tmp_path, "train")) & set(val)


def test_missing_folder_and_index_files_name_what_was_expected(tmp_path):
    with pytest.raises(UserError, match="does not exist; expected CUB_200_2011/images.txt"):
        read_split("cub", tmp_path / "nope", "train")
    hand_cub(tmp_path)
    (tmp_path / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(UserError, match="train_test_split.txt"):
        read_split("cub", tmp_path, "train")
    with pytest.raises(UserError, match="unknown FGVC dataset 'imagenet'"):
        read_split("imagenet", tmp_path, "train")


def test_index_line_to_missing_image_and_bad_label(tmp_path):
    expect = hand_aircraft(tmp_path)
    expect["first_test"][0].unlink()
    with pytest.raises(UserError, match="0062287.jpg, which does not exist"):
        read_split("aircraft", tmp_path, "test")
    base = tmp_path / "fgvc-aircraft-2013b" / "data"
    lines(base / "images_variant_val.txt", ["0056978 Boeing 999"])
    with pytest.raises(UserError, match="'Boeing 999' that is not in variants.txt"):
        read_split("aircraft", tmp_path, "val")
    hand_cub(tmp_path / "c")
    lines(tmp_path / "c" / "CUB_200_2011" / "image_class_labels.txt", ["1 1", "2 1", "3 7", "4 2", "5 1"])
    with pytest.raises(UserError, match="label 7 .* outside the class list"):
        read_split("cub", tmp_path / "c", "train")
    hand_flowers(tmp_path / "f")
    savemat(tmp_path / "f" / "imagelabels.mat", {"labels": np.array([[0, 77, 1, 1, 102, 102]], dtype=np.uint8)})
    with pytest.raises(UserError, match="label 0 .* outside the class range"):
        read_split("flowers", tmp_path / "f", "train")


def test_empty_split_and_damaged_mat(tmp_path):
    hand_aircraft(tmp_path)
    lines(tmp_path / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt", [])
    with pytest.raises(UserError, match="test split is empty"):
        read_split("aircraft", tmp_path, "test")
    hand_flowers(tmp_path / "f")
    (tmp_path / "f" / "setid.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match="cannot parse .*setid.mat"):
        read_split("flowers", tmp_path / "f", "train")
