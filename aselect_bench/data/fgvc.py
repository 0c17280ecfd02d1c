"""Readers of the six FGVC datasets, each from its own files as distributed.

``read_split(name, root, split) -> list[(Path, label)]`` with labels ``0..C-1`` in the order of the
original class ids. ``test`` is the official test split. Flowers and Aircraft have an official ``val``;
for CUB, NABirds, Dogs and Cars ``val`` is a deterministic class-stratified ~10% of the official train
split and ``train`` the rest (the VPT protocol), cached as VPT-style ``train.json``/``val.json``/
``test.json`` ({relative path: label}) and reused.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json, cache_dir, read_json

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.1
SPLIT_SEED = 0


# ---------------------------------------------------------------- small shared helpers
def _need(path: Path, dataset: str, what: str = "") -> Path:
    if not path.exists():
        raise UserError(f"{dataset}: expected {path}{' (' + what + ')' if what else ''} but it is missing; "
                        f"point the data root at the folder that holds the dataset's files as distributed")
    return path


def _lines(path: Path, dataset: str) -> list[list[str]]:
    """Non-empty lines of an index file, split on the first space: ``[[first, rest], ...]``."""
    _need(path, dataset, "an index file")
    return [line.split(" ", 1) for line in path.read_text().splitlines() if line.strip()]


def _loadmat(path: Path, dataset: str) -> dict:
    from scipy.io import loadmat

    _need(path, dataset, "a MATLAB index file")
    try:
        return loadmat(path, squeeze_me=True)
    except Exception as err:  # noqa: BLE001 - any parse failure is a malformed file
        raise UserError(f"{dataset}: cannot parse {path} ({err}); the file is damaged, restore it") from None


def _int(value: str, path: Path, line: int, dataset: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{dataset}: line {line} of {path} has {value!r} where an integer was expected") from None


# ---------------------------------------------------------------- the six datasets
def _cub(root: Path):
    base = _need(root / "CUB_200_2011", "cub", "the CUB_200_2011 folder")
    images = {i: p.strip() for i, p in _lines(base / "images.txt", "cub")}
    labels = {i: _int(c, base / "image_class_labels.txt", n + 1, "cub")
              for n, (i, c) in enumerate(_lines(base / "image_class_labels.txt", "cub"))}
    is_train = {i: f.strip() == "1" for i, f in _lines(base / "train_test_split.txt", "cub")}
    class_ids = sorted(_int(c, base / "classes.txt", n + 1, "cub") for n, (c, _) in enumerate(_lines(base / "classes.txt", "cub")))
    return _official(base / "images", images, labels, is_train, class_ids, base / "image_class_labels.txt", "cub")


def _nabirds(root: Path):
    base = _need(root / "nabirds", "nabirds", "the nabirds folder")
    images = {i: p.strip() for i, p in _lines(base / "images.txt", "nabirds")}
    labels = {i: _int(c, base / "image_class_labels.txt", n + 1, "nabirds")
              for n, (i, c) in enumerate(_lines(base / "image_class_labels.txt", "nabirds"))}
    is_train = {i: f.strip() == "1" for i, f in _lines(base / "train_test_split.txt", "nabirds")}
    _need(base / "classes.txt", "nabirds", "the class names")
    class_ids = sorted(set(labels.values()))  # only the leaf classes that images use (555 in the real set)
    return _official(base / "images", images, labels, is_train, class_ids, base / "image_class_labels.txt", "nabirds")


def _official(image_dir: Path, images: dict, labels: dict, is_train: dict, class_ids: list[int], label_file: Path,
              dataset: str):
    """``{"train": [...], "test": [...]}`` from id -> path / class id / is-train maps."""
    index = {c: k for k, c in enumerate(class_ids)}
    out = {"train": [], "test": [], "num_classes": len(class_ids)}
    for image_id, rel in images.items():
        if image_id not in labels or image_id not in is_train:
            raise UserError(f"{dataset}: image id {image_id} ({rel}) has no label or no train/test flag; "
                            f"the index files disagree, restore them")
        if labels[image_id] not in index:
            raise UserError(f"{dataset}: label {labels[image_id]} of image {rel} in {label_file} is outside the "
                            f"class list ({class_ids[0]}..{class_ids[-1]})")
        out["train" if is_train[image_id] else "test"].append((image_dir / rel, index[labels[image_id]]))
    return out


def _flowers(root: Path):
    labels = _loadmat(root / "imagelabels.mat", "flowers")["labels"]
    setid = _loadmat(root / "setid.mat", "flowers")
    _need(root / "jpg", "flowers", "the jpg/ folder")
    out = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ids = [int(i) for i in np.atleast_1d(setid[key]).ravel()]
        for i in ids:
            if not 1 <= i <= len(labels):
                raise UserError(f"flowers: image id {i} in setid.mat/{key} is outside imagelabels.mat (1..{len(labels)})")
        out[split] = [(root / "jpg" / f"image_{i:05d}.jpg", int(labels[i - 1]) - 1) for i in ids]
    return out


def _dogs(root: Path):
    out = {}
    for split, name in (("train", "train_list.mat"), ("test", "test_list.mat")):
        mat = _loadmat(root / "lists" / name, "dogs")
        files = [str(f) for f in np.atleast_1d(mat["file_list"]).ravel()]
        out[split] = [(root / "Images" / f, int(y) - 1) for f, y in zip(files, np.atleast_1d(mat["labels"]).ravel())]
    return out


def _cars(root: Path):
    meta = _loadmat(root / "devkit" / "cars_meta.mat", "cars")
    out = {}
    for split, folder, annos in (("train", "cars_train", root / "devkit" / "cars_train_annos.mat"),
                                 ("test", "cars_test", root / "cars_test_annos_withlabels.mat")):
        ann = _loadmat(annos, "cars")["annotations"]
        out[split] = [(root / folder / str(f), int(c) - 1) for f, c in zip(np.atleast_1d(ann["fname"]).ravel(), np.atleast_1d(ann["class"]).ravel())]
    out["num_classes"] = len(np.atleast_1d(meta["class_names"]).ravel())
    return out


def _aircraft(root: Path):
    base = _need(root / "fgvc-aircraft-2013b" / "data", "aircraft", "fgvc-aircraft-2013b/data")
    variants = [line.strip() for line in _need(base / "variants.txt", "aircraft").read_text().splitlines() if line.strip()]
    index = {v: k for k, v in enumerate(variants)}
    out = {"num_classes": len(variants)}
    for split in SPLITS:
        path = base / f"images_variant_{split}.txt"
        rows = []
        for n, parts in enumerate(_lines(path, "aircraft")):
            if len(parts) != 2 or parts[1].strip() not in index:
                raise UserError(f"aircraft: line {n + 1} of {path} names variant "
                                f"{parts[1].strip() if len(parts) > 1 else '?'!r} that is not in variants.txt")
            rows.append((base / "images" / f"{parts[0]}.jpg", index[parts[1].strip()]))
        out[split] = rows
    return out


@dataclass(frozen=True)
class DatasetInfo:
    """A catalog entry: the reader, the file that marks the layout, the real dataset's class count."""

    reader: Callable
    marker: str
    num_classes: int
    official_val: bool


DATASETS: dict[str, DatasetInfo] = {
    "cub": DatasetInfo(_cub, "CUB_200_2011/images.txt", 200, False),
    "nabirds": DatasetInfo(_nabirds, "nabirds/images.txt", 555, False),
    "flowers": DatasetInfo(_flowers, "imagelabels.mat", 102, True),
    "dogs": DatasetInfo(_dogs, "lists/train_list.mat", 120, False),
    "cars": DatasetInfo(_cars, "devkit/cars_meta.mat", 196, False),
    "aircraft": DatasetInfo(_aircraft, "fgvc-aircraft-2013b/data/variants.txt", 100, True),
}


# ---------------------------------------------------------------- public API
def read_split(name: str, root, split: str) -> list[tuple[Path, int]]:
    """``[(image path, label)]`` of ``split`` (train/val/test) of dataset ``name`` under ``root``."""
    if name not in DATASETS:
        raise UserError(f"unknown FGVC dataset {name!r}; use one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root = Path(root).expanduser()
    info = DATASETS[name]
    if not root.is_dir():
        raise UserError(f"{name}: dataset folder {root} does not exist; expected {info.marker} under it")
    splits = _cached_splits(name, root, info)
    items = [(root / rel, label) for rel, label in splits[split].items()]
    _check(name, split, items, num_classes(name, root, splits))
    return items


def num_classes(name: str, root, splits: dict | None = None) -> int:
    """The number of classes of the dataset at ``root`` (from its class list, not the real dataset's count)."""
    splits = splits or _cached_splits(name, Path(root), DATASETS[name])
    return int(splits.get("num_classes") or 1 + max(max(s.values()) for k, s in splits.items() if k in SPLITS))


def _check(name: str, split: str, items, classes: int) -> None:
    if not items:
        raise UserError(f"{name}: the {split} split is empty; check the dataset's index files")
    for path, label in items:
        if not 0 <= label < classes:
            raise UserError(f"{name}: label {label + 1} of {path} is outside the class range 1..{classes}")
        if not path.exists():
            raise UserError(f"{name}: the index lists {path}, which does not exist; restore the image or the index")


def _split_dir(name: str, root: Path) -> Path:
    local = root / ".aselect_splits" / name
    if os.access(root, os.W_OK):
        return local
    return cache_dir() / "splits" / name / str(abs(hash(str(root.resolve()))))


def _cached_splits(name: str, root: Path, info: DatasetInfo) -> dict:
    """The dataset's splits as ``{split: {relative path: label}}``, generated once and cached (VPT style)."""
    raw = info.reader(root)
    classes = raw.pop("num_classes", None)
    rel = {s: {str(p.relative_to(root)): y for p, y in rows} for s, rows in raw.items()}
    if info.official_val:
        return {**rel, "num_classes": classes}
    folder = _split_dir(name, root)
    files = {s: folder / f"{s}.json" for s in SPLITS}
    if all(f.exists() for f in files.values()):
        cached = {s: read_json(f) for s, f in files.items()}
        if set(cached["train"]) | set(cached["val"]) == set(rel["train"]) and cached["test"] == rel["test"]:
            return {**cached, "num_classes": classes}
    train, val = stratified_split(rel["train"], VAL_FRACTION, SPLIT_SEED)
    out = {"train": train, "val": val, "test": rel["test"]}
    for s in SPLITS:
        atomic_write_json(files[s], out[s])
    return {**out, "num_classes": classes}


def stratified_split(items: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    """Deterministically move ~``fraction`` of each class (at least one if it has 2+) to a second dict."""
    by_class = defaultdict(list)
    for path, label in sorted(items.items()):
        by_class[label].append(path)
    rng = random.Random(seed)
    train, val = {}, {}
    for label in sorted(by_class):
        paths = by_class[label]
        rng.shuffle(paths)
        k = max(1, round(fraction * len(paths))) if len(paths) > 1 else 0
        val.update((p, label) for p in paths[:k])
        train.update((p, label) for p in paths[k:])
    return dict(sorted(train.items())), dict(sorted(val.items()))
