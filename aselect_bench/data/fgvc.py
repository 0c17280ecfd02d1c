"""Readers of the six FGVC datasets, each from its own files as distributed, and hub datasets.

``read_split(name, root, split) -> [(image Path, label)]`` with labels ``0..C-1`` in the order of the
original class ids. ``test`` is the official test split. Flowers and Aircraft have an official ``val``;
for CUB, NABirds, Dogs and Cars ``val`` is a deterministic class-stratified ~10% of the official train
split and ``train`` the rest (the VPT protocol), cached as VPT-style ``train.json``/``val.json``/
``test.json`` ({path relative to root: label}) in ``<root>/.aselect_splits/<name>/`` (or, when root is
read-only, under :func:`aselect_bench.cache.cache_dir`) and reused while the official files are unchanged.

:class:`HubSplit` reads a Hugging Face ``datasets`` dataset instead of a folder.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aselect_bench.cache import cache_dir
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json, hf_offline, read_json, read_text

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.1
SPLIT_SEED = 0

Row = tuple[str, int, str]  # (image path relative to root, label 0..C-1, where it is listed: "file line n")


@dataclass
class RawDataset:
    """What a reader found: ``splits`` {split: [Row]} (official splits only) and the class names."""

    splits: dict[str, list[Row]]
    class_names: list[str]


# ---------------------------------------------------------------- shared helpers of the readers
def _need(path: Path, name: str, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{name}: {what} {path} is missing; restore it from the dataset's archive (the data "
                        f"root must hold the files as distributed)")
    return path


def _index(path: Path, name: str) -> list[tuple[str, str, str]]:
    """Lines ``"<key> <value...>"`` of an index file as ``[(key, value, "file line n")]``."""
    _need(path, name, "index file")
    rows = []
    for n, line in enumerate(read_text(path, f"the {name} index file").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) != 2 or not parts[1].strip():
            raise UserError(f"{name}: line {n} of {path} reads {line!r}, expected '<id> <value>'")
        rows.append((parts[0], parts[1].strip(), f"{path} line {n}"))
    return rows


def _int(text: str, where: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name}: {where} has {text!r} where an integer was expected") from None


def _mat(path: Path, name: str, keys: tuple[str, ...]) -> dict:
    """``scipy.io.loadmat(squeeze_me=True)`` of a MATLAB index file, each of ``keys`` as a 1-D array."""
    from scipy.io import loadmat

    _need(path, name, "MATLAB index file")
    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as err:  # noqa: BLE001 - any parse failure means a damaged file
        raise UserError(f"{name}: cannot parse {path} ({err}); the file is damaged, restore it") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise UserError(f"{name}: {path} has no variable {missing[0]!r} (it has {', '.join(sorted(k for k in mat if not k.startswith('__')))})")
    return {k: np.atleast_1d(mat[k]).ravel() for k in keys}


def _mat_rows(path: Path, name: str, rels, labels) -> list[Row]:
    """Rows from parallel arrays of a .mat file (labels 1-based as stored)."""
    if len(rels) != len(labels):
        raise UserError(f"{name}: {path} lists {len(rels)} images but {len(labels)} labels")
    return [(str(r), int(y) - 1, f"{path} entry {j + 1}") for j, (r, y) in enumerate(zip(rels, labels))]


def _counted_names(stem: str, count: int, real: int, source: Path, name: str) -> list[str]:
    """Flowers and Dogs have no class list: the count is the largest label, at most the real dataset's."""
    if count > real:
        raise UserError(f"{name}: {source} has label {count}, outside the class range 1..{real} of {name}")
    return [f"{stem}_{k + 1:03d}" for k in range(count)]


def _by_id(rows, where_file: Path, name: str) -> dict[str, tuple[str, str]]:
    out = {}
    for key, value, where in rows:
        if key in out:
            raise UserError(f"{name}: image id {key} appears twice in {where_file} ({where})")
        out[key] = (value, where)
    return out


def _id_files(base: Path, rel_images: str, name: str, class_index: Callable[[int, str], int]) -> dict[str, list[Row]]:
    """CUB and NABirds: images.txt + image_class_labels.txt + train_test_split.txt -> official splits."""
    images = _by_id(_index(base / "images.txt", name), base / "images.txt", name)
    labels = _by_id(_index(base / "image_class_labels.txt", name), base / "image_class_labels.txt", name)
    flags = _by_id(_index(base / "train_test_split.txt", name), base / "train_test_split.txt", name)
    out = {"train": [], "test": []}
    for image_id, (rel, where) in images.items():
        for table, file in ((labels, "image_class_labels.txt"), (flags, "train_test_split.txt")):
            if image_id not in table:
                raise UserError(f"{name}: image id {image_id} ({where}) has no line in {base / file}; the index "
                                f"files disagree, restore them")
        label_text, label_where = labels[image_id]
        flag, flag_where = flags[image_id]
        if flag not in ("0", "1"):
            raise UserError(f"{name}: {flag_where} has {flag!r}; is_training_image must be 0 or 1")
        label = class_index(_int(label_text, label_where, name), label_where)
        out["train" if flag == "1" else "test"].append((f"{rel_images}/{rel}", label, where))
    return out


def _class_index(ids: list[int], classes_file: Path, name: str) -> Callable[[int, str], int]:
    """Class id -> 0..C-1 in sorted id order; an unknown id is an error naming its line."""
    index = {c: k for k, c in enumerate(sorted(ids))}

    def lookup(class_id: int, where: str) -> int:
        if class_id not in index:
            raise UserError(f"{name}: {where} has class id {class_id}, which is not in {classes_file} "
                            f"(the class range is {min(index)}..{max(index)})")
        return index[class_id]

    return lookup


# ---------------------------------------------------------------- the six datasets
def _cub(root: Path) -> RawDataset:
    base = root / "CUB_200_2011"
    classes = {_int(k, w, "cub"): v for k, v, w in _index(base / "classes.txt", "cub")}
    splits = _id_files(base, "CUB_200_2011/images", "cub", _class_index(list(classes), base / "classes.txt", "cub"))
    return RawDataset(splits, [classes[c] for c in sorted(classes)])


def _nabirds(root: Path) -> RawDataset:
    """Labels: only the class ids images use (the leaves of the tree, 555 in the real set), in id order."""
    base = root / "nabirds"
    classes = {_int(k, w, "nabirds"): v for k, v, w in _index(base / "classes.txt", "nabirds")}
    _need(base / "hierarchy.txt", "nabirds", "index file")
    used = sorted({_int(v, w, "nabirds") for _, v, w in _index(base / "image_class_labels.txt", "nabirds")})
    unknown = sorted(set(used) - set(classes))
    if unknown:
        raise UserError(f"nabirds: {base / 'image_class_labels.txt'} uses class id {unknown[0]}, which is not in "
                        f"{base / 'classes.txt'}")
    splits = _id_files(base, "nabirds/images", "nabirds", _class_index(used, base / "image_class_labels.txt", "nabirds"))
    return RawDataset(splits, [classes[c] for c in used])


def _flowers(root: Path) -> RawDataset:
    labels = _mat(root / "imagelabels.mat", "flowers", ("labels",))["labels"].astype(np.int64)
    setid = _mat(root / "setid.mat", "flowers", ("trnid", "valid", "tstid"))
    splits = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        rows = []
        for j, i in enumerate(setid[key].astype(np.int64)):
            where = f"{root / 'setid.mat'} {key} entry {j + 1}"
            if not 1 <= i <= len(labels):
                raise UserError(f"flowers: {where} is image {i}, outside imagelabels.mat (1..{len(labels)})")
            rows.append((f"jpg/image_{i:05d}.jpg", int(labels[i - 1]) - 1, f"{where} (imagelabels.mat entry {i})"))
        splits[split] = rows
    return RawDataset(splits, _counted_names("flower", int(labels.max(initial=0)), 102, root / "imagelabels.mat", "flowers"))


def _dogs(root: Path) -> RawDataset:
    splits, folders = {}, {}
    for split, file in (("train", "train_list.mat"), ("test", "test_list.mat")):
        path = root / "lists" / file
        mat = _mat(path, "dogs", ("file_list", "labels"))
        rows = _mat_rows(path, "dogs", [str(f) for f in mat["file_list"]], mat["labels"])
        splits[split] = [(f"Images/{rel}", y, where) for rel, y, where in rows]
        folders.update((y, rel.split("/")[0]) for rel, y, _ in rows)
    names = _counted_names("class", 1 + max(folders, default=-1), 120, root / "lists", "dogs")
    return RawDataset(splits, [folders.get(k, n).split("-", 1)[-1] for k, n in enumerate(names)])  # n02085620-Chihuahua


def _cars(root: Path) -> RawDataset:
    names = [str(n) for n in _mat(root / "devkit" / "cars_meta.mat", "cars", ("class_names",))["class_names"]]
    splits = {}
    for split, folder, path in (("train", "cars_train", root / "devkit" / "cars_train_annos.mat"),
                                ("test", "cars_test", root / "cars_test_annos_withlabels.mat")):
        annotations = _mat(path, "cars", ("annotations",))["annotations"]
        for field in ("fname", "class"):
            if annotations.dtype.names is None or field not in annotations.dtype.names:
                raise UserError(f"cars: the annotations in {path} have no field {field!r}; restore the file")
        rows = _mat_rows(path, "cars", [str(f) for f in annotations["fname"]], annotations["class"])
        splits[split] = [(f"{folder}/{rel}", y, where) for rel, y, where in rows]
    return RawDataset(splits, names)


def _aircraft(root: Path) -> RawDataset:
    base = root / "fgvc-aircraft-2013b" / "data"
    _need(base / "variants.txt", "aircraft", "class list")
    variants = [line.strip() for line in read_text(base / "variants.txt", "the aircraft class list").splitlines()
                if line.strip()]
    index = {v: k for k, v in enumerate(variants)}
    splits = {}
    for split in SPLITS:
        rows = []
        for image_id, variant, where in _index(base / f"images_variant_{split}.txt", "aircraft"):
            if variant not in index:
                raise UserError(f"aircraft: {where} names variant {variant!r}, which is not in {base / 'variants.txt'}")
            rows.append((f"fgvc-aircraft-2013b/data/images/{image_id}.jpg", index[variant], where))
        splits[split] = rows
    return RawDataset(splits, variants)


@dataclass(frozen=True)
class DatasetInfo:
    """A catalog entry: the reader, the file that marks the layout (relative to the data root), what the
    layout holds, the real dataset's class count, whether it ships its own val split, and the top folder
    its archive unpacks to (``None``: the archive holds several top-level items, the root holds them)."""

    reader: Callable[[Path], RawDataset]
    marker: str
    layout: str
    num_classes: int
    official_val: bool
    top: str | None = None


DATASETS: dict[str, DatasetInfo] = {
    "cub": DatasetInfo(_cub, "CUB_200_2011/images.txt", "CUB_200_2011/{images.txt, image_class_labels.txt, "
                       "train_test_split.txt, classes.txt, images/}", 200, False, "CUB_200_2011"),
    "nabirds": DatasetInfo(_nabirds, "nabirds/images.txt", "nabirds/{images.txt, image_class_labels.txt, "
                           "train_test_split.txt, classes.txt, hierarchy.txt, images/}", 555, False, "nabirds"),
    "flowers": DatasetInfo(_flowers, "imagelabels.mat", "jpg/, imagelabels.mat, setid.mat", 102, True),
    "dogs": DatasetInfo(_dogs, "lists/train_list.mat", "Images/, lists/{train_list.mat, test_list.mat}", 120, False),
    "cars": DatasetInfo(_cars, "devkit/cars_meta.mat", "cars_train/, cars_test/, devkit/{cars_meta.mat, "
                        "cars_train_annos.mat}, cars_test_annos_withlabels.mat", 196, False),
    "aircraft": DatasetInfo(_aircraft, "fgvc-aircraft-2013b/data/variants.txt", "fgvc-aircraft-2013b/data/"
                            "{images/, variants.txt, images_variant_{train,val,test}.txt}", 100, True,
                            "fgvc-aircraft-2013b"),
}


#: The real datasets' published split sizes (images): official train, official val (``None``: none ships), test.
PUBLISHED_SIZES: dict[str, tuple[int, int | None, int]] = {
    "cub": (5994, None, 5794), "nabirds": (23929, None, 24633), "flowers": (1020, 1020, 6149),
    "dogs": (12000, None, 8580), "cars": (8144, None, 8041), "aircraft": (3334, 3333, 3333),
}


def protocol_sizes(name: str) -> dict[str, int]:
    """``{"train", "val", "test"}``: images per split of the real dataset ``name`` as this suite splits it (no
    files read). The official val where one ships (Flowers, Aircraft); else :data:`VAL_FRACTION` of the official
    train held out (the VPT protocol; :func:`stratified_split` rounds per class, this rounds the total)."""
    _info(name)  # an unknown name is one clear error
    train, val, test = PUBLISHED_SIZES[name]
    if val is None:
        val = round(VAL_FRACTION * train)
        train -= val
    return {"train": train, "val": val, "test": test}


# ---------------------------------------------------------------- public API
def read_split(name: str, root, split: str) -> list[tuple[Path, int]]:
    """``[(image path, label)]`` of ``split`` (``train``/``val``/``test``) of dataset ``name`` under ``root``."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return read_splits(name, root)[split]


def read_splits(name: str, root) -> dict[str, list[tuple[Path, int]]]:
    """All three splits at once (one pass over the index files): ``{split: [(image path, label)]}``."""
    root, raw = _read(name, root)
    splits = {s: {rel: y for rel, y, _ in rows} for s, rows in raw.splits.items()}
    if not DATASETS[name].official_val:
        splits["train"], splits["val"] = _cached_val_split(name, root, splits["train"], splits["test"])
    for split in SPLITS:
        if not splits[split]:
            raise UserError(f"{name}: the {split} split under {root} is empty; check the dataset's index files")
    return {s: [(root / rel, y) for rel, y in splits[s].items()] for s in SPLITS}


def class_names(name: str, root) -> list[str]:
    """Names of the classes, index = label (from the dataset's class list; Flowers has none: ``flower_001``...)."""
    return _read(name, root, check_files=False)[1].class_names


def num_classes(name: str, root) -> int:
    """Number of classes of the dataset at ``root`` (its class list, not the real dataset's count)."""
    return len(class_names(name, root))


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UserError(f"unknown FGVC dataset {name!r}; use one of {', '.join(DATASETS)}")
    return DATASETS[name]


def resolve_root(name: str, root) -> Path:
    """The data root of ``name`` as the readers use it: ``root``, or its parent when ``root`` is the
    dataset's own top folder (``/data/CUB_200_2011`` -> ``/data``), so both spellings read the same files
    and share one cached split. Datasets without a top folder (Flowers, Dogs, Cars) take ``root`` as is."""
    info, root = _info(name), Path(root).expanduser()
    here = root.absolute()
    if info.top and here.name == info.top and not (root / info.marker).is_file() \
            and (here.parent / info.marker).is_file():
        return here.parent
    return root


def _read(name: str, root, check_files: bool = True) -> tuple[Path, RawDataset]:
    """Check the layout, run the reader, check every label and (``check_files``) that every image exists."""
    info, root = _info(name), resolve_root(name, root)
    if not (root / info.marker).is_file():
        hint = ""
        if (root.parent / info.marker).is_file():
            hint = f" (it is under {root.parent}: pass that folder)"
        elif info.top and (root / Path(info.marker).relative_to(info.top)).is_file():
            hint = f" ({root} holds the files of {info.top}/ under another name: rename the folder to {info.top})"
        elif not root.is_dir():
            hint = f" ({root} does not exist)"
        itself = f" (or be its {info.top}/ folder)" if info.top else ""
        raise UserError(f"{name}: expected {info.marker} under {root}{hint}; the data root must hold {info.layout}"
                        f"{itself}")
    raw = info.reader(root)
    classes = len(raw.class_names)
    for rows in raw.splits.values():
        for rel, label, where in rows:
            if not 0 <= label < classes:
                raise UserError(f"{name}: {where} has label {label + 1}, outside the class range 1..{classes}")
            if check_files and not (root / rel).is_file():
                raise UserError(f"{name}: {where} lists {root / rel}, which does not exist; restore the image or "
                                f"remove the line")
    return root, raw


def _split_dirs(name: str, root: Path) -> list[Path]:
    """Where the generated split may be cached: next to the data, else in the suite's cache (by root)."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [root / ".aselect_splits" / name, cache_dir() / "splits" / name / key]


def _cached_val_split(name: str, root: Path, train: dict[str, int], test: dict[str, int]):
    """``(train, val)``: a cached VPT-style split if it matches the official files, else a new one (cached)."""
    for folder in _split_dirs(name, root):
        try:
            cached = {s: read_json(folder / f"{s}.json") for s in SPLITS}
        except (OSError, ValueError):
            continue
        if {**cached["train"], **cached["val"]} == train and not set(cached["train"]) & set(cached["val"]) \
                and cached["test"] == test:
            return cached["train"], cached["val"]
    new_train, val = stratified_split(train, VAL_FRACTION, SPLIT_SEED)
    for folder in _split_dirs(name, root):
        try:
            for split, content in (("train", new_train), ("val", val), ("test", test)):
                atomic_write_json(folder / f"{split}.json", content)
            break
        except OSError:
            continue
    return new_train, val


def stratified_split(items: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    """``{key: label}`` -> ``(rest, held out)``: ~``fraction`` of each class (>= 1 if it has 2+), by ``seed``."""
    by_class = defaultdict(list)
    for key, label in sorted(items.items()):
        by_class[label].append(key)
    rng = random.Random(seed)
    rest, held = {}, {}
    for label in sorted(by_class):
        keys = by_class[label]
        rng.shuffle(keys)
        k = max(1, round(fraction * len(keys))) if len(keys) > 1 else 0
        held.update((key, label) for key in keys[:k])
        rest.update((key, label) for key in keys[k:])
    return dict(sorted(rest.items())), dict(sorted(held.items()))


# ---------------------------------------------------------------- hub datasets
def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint: the ``datasets`` client would otherwise retry for ~25 s."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(hub_id: str):
    """The ``DatasetDict`` of ``hub_id`` (a hub id, a ``save_to_disk`` folder or a data folder); offline or with
    the hub unreachable only from local files, failing at once with a :class:`UserError`."""
    import datasets
    import huggingface_hub.constants as hub_constants

    local = Path(hub_id).expanduser()
    offline = hf_offline() or (not local.exists() and not _hub_reachable())
    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    try:
        if offline:  # the libraries read HF_HUB_OFFLINE at import; honour it (and an unreachable hub) now
            datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            table = datasets.load_from_disk(str(local))  # a save_to_disk folder
        else:
            table = datasets.load_dataset(str(local) if local.exists() else hub_id)
        return table if isinstance(table, datasets.DatasetDict) else datasets.DatasetDict({"train": table})
    except Exception as err:  # noqa: BLE001 - network, cache and format failures become one message
        reason = ("offline (HF_HUB_OFFLINE is set)" if hf_offline() else "the hub is unreachable") if offline else "loading failed"
        raise UserError(f"cannot load dataset {hub_id!r}: {reason}, and it is not in the local cache "
                        f"({type(err).__name__}: {str(err)[:200]}); download it where the hub is reachable "
                        f"(same HF_HOME), or pass a local folder") from None
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


class HubSplit(Sequence):
    """One split of a ``datasets`` dataset as a lazy sequence of ``(PIL image, label)``.

    ``split``: ``train``/``val``/``test``; ``val`` is the dataset's ``validation``/``val`` split, or, when it
    has none, a class-stratified ~10% of ``train`` (then ``train`` is the rest), as for the folder readers.
    ``labels`` ``[N]`` and ``class_names`` are read without decoding images.
    """

    def __init__(self, hub_id: str, split: str, image_column: str = "image", label_column: str = "label"):
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        tables = _load_hub(hub_id)
        self.hub_id, self.split, self.image_column = hub_id, split, image_column
        names = {"train": ["train"], "val": ["validation", "val", "valid"], "test": ["test"]}
        found = {s: next((n for n in names[s] if n in tables), None) for s in SPLITS}
        source = found[split] or (found["train"] if split == "val" else None)
        if source is None:
            raise UserError(f"dataset {hub_id!r} has no {split} split (it has {', '.join(tables)})")
        table = tables[source]
        for column in (image_column, label_column):
            if column not in table.column_names:
                raise UserError(f"dataset {hub_id!r} has no column {column!r} (columns: {', '.join(table.column_names)}); "
                                f"pass image_column/label_column")
        labels = [int(y) for y in table[label_column]]
        if any(y < 0 for y in labels):
            raise UserError(f"dataset {hub_id!r} split {source!r} has unlabeled rows ({label_column} = -1); "
                            f"it cannot be used for training or evaluation")
        rows = list(range(len(labels)))
        if found["val"] is None and split in ("train", "val"):
            rest, held = stratified_split(dict(enumerate(labels)), VAL_FRACTION, SPLIT_SEED)
            rows = sorted(held if split == "val" else rest)
        feature = table.features[label_column]
        self.class_names = list(getattr(feature, "names", None) or [str(k) for k in range(1 + max(labels, default=-1))])
        self.table, self.rows, self.labels = table, rows, [labels[i] for i in rows]
        self.fingerprint = hashlib.sha256(json.dumps([hub_id, source, getattr(table, "_fingerprint", ""),
                                                      rows]).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from aselect_bench.data.images import to_rgb

        return to_rgb(self.table[self.rows[i]][self.image_column]), self.labels[i]

    def subset(self, indices) -> HubSplit:
        """The same split restricted to ``indices`` (positions in this sequence)."""
        out = object.__new__(HubSplit)
        out.__dict__.update(self.__dict__)
        out.rows, out.labels = [self.rows[i] for i in indices], [self.labels[i] for i in indices]
        out.fingerprint = hashlib.sha256(f"{self.fingerprint}{out.rows}".encode()).hexdigest()[:16]
        return out
