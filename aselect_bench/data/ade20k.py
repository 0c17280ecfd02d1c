"""ADE20K (ADEChallengeData2016): the reader, the mask convention, class names and palette.

``read_split(root, split)`` pairs ``images/{training,validation}/*.jpg`` with
``annotations/{training,validation}/*.png`` by file stem; ``load_mask`` applies ``reduce_zero_label``
(0 "other" -> 255 ignore, class ``k`` -> ``k - 1``), as mmsegmentation's ADE20K protocol does.
:func:`check_annotations` reads every annotation once before training, so a bad one stops the run before
the first step. ``CLASS_NAMES`` and ``PALETTE`` are mmsegmentation's ``ADE20KDataset`` metainfo (``'bed '`` keeps its
trailing space, as there), indexed by the reduced label ``0..149``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aselect_bench.cache import cache_dir
from aselect_bench.data.images import load_rgb
from aselect_bench.data.manifest import manifest, manifest_digest
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json

NUM_CLASSES = 150
IGNORE_INDEX = 255
SPLIT_FOLDERS = {"train": "training", "val": "validation"}
TOP_FOLDER = "ADEChallengeData2016"  # what ADEChallengeData2016.zip unpacks to

CLASS_NAMES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair',
    'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair',
    'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box',
    'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
    'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table', 'pillow',
    'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind', 'coffee table', 'toilet', 'flower',
    'book', 'hill', 'bench', 'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair',
    'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track', 'apparel', 'pole',
    'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship',
    'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel',
    'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket',
    'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen',
    'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag',
)
PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7),
    (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224),
    (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6),
    (10, 255, 71), (255, 41, 10), (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20),
    (0, 163, 255), (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200),
    (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0),
    (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102),
    (255, 173, 0), (255, 0, 20), (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204),
    (0, 255, 194), (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0),
    (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160),
    (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235),
    (133, 255, 0), (255, 0, 235), (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212),
    (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204),
    (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184),
    (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)


def _layout_hint(folder: str) -> str:
    return (f"expected the ADEChallengeData2016 layout (images/{folder}/*.jpg and annotations/{folder}/*.png); "
            f"point the data root at the ADEChallengeData2016/ folder of the official ADEChallengeData2016.zip "
            f"(or at the folder holding it)")


def resolve_root(root) -> Path:
    """The ``ADEChallengeData2016/`` folder from itself or from its parent (both spellings users pass)."""
    root = Path(root).expanduser()
    inside = root / TOP_FOLDER
    if not (root / "images").is_dir() and inside.is_dir():
        return inside
    return root


def read_split(root, split: str) -> list[tuple[Path, Path]]:
    """``[(image path, annotation path)]`` of ``split`` (``train`` or ``val``), paired by stem, sorted by name.

    ``root`` is the ``ADEChallengeData2016/`` folder or its parent (:func:`resolve_root`). Raises
    :class:`UserError` for an unknown split, a missing root or subfolder, an image without its annotation,
    or an empty split. Annotations without an image are ignored (as mmseg does).
    """
    if split not in SPLIT_FOLDERS:
        raise UserError(f"unknown ADE20K split {split!r}; use 'train' or 'val' (the test annotations are not public)")
    root = resolve_root(root)
    folder = SPLIT_FOLDERS[split]
    if not root.is_dir():
        raise UserError(f"ADE20K: the data root {root} does not exist; {_layout_hint(folder)}")
    images_dir, annotations_dir = root / "images" / folder, root / "annotations" / folder
    for d in (images_dir, annotations_dir):
        if not d.is_dir():
            raise UserError(f"ADE20K: the folder {d} is missing; {_layout_hint(folder)}")
    annotations = {p.stem: p for p in annotations_dir.glob("*.png")}
    pairs = []
    for image in sorted(images_dir.glob("*.jpg")):
        if image.stem not in annotations:
            raise UserError(f"ADE20K: image {image} has no annotation {annotations_dir / (image.stem + '.png')}; "
                            f"restore the annotation or remove the image")
        pairs.append((image, annotations[image.stem]))
    if not pairs:
        raise UserError(f"ADE20K: the {split} split is empty: no .jpg images in {images_dir}; {_layout_hint(folder)}")
    return pairs


def load_mask(path, num_classes: int = NUM_CLASSES, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Class map ``int64 [H, W]`` of an annotation PNG: 0 -> 255 (ignore), ``k`` -> ``k - 1``.

    Values above ``num_classes`` are refused; ``image_size`` ``(width, height)``, when given, must be the
    mask's size (the mask belongs to that image).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            raw = np.asarray(img)
    except FileNotFoundError:
        raise UserError(f"ADE20K: annotation {path} does not exist; restore it or remove its image") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise UserError(f"ADE20K: cannot read annotation {path} ({err}); restore the file") from None
    if raw.ndim != 2:
        raise UserError(f"ADE20K: annotation {path} has shape {raw.shape}; expected a single-channel PNG of "
                        f"class ids (0 = other, 1..{num_classes}); restore the original annotation")
    if image_size is not None and (raw.shape[1], raw.shape[0]) != tuple(image_size):
        raise UserError(f"ADE20K: annotation {path} is {raw.shape[1]}x{raw.shape[0]} but its image is "
                        f"{image_size[0]}x{image_size[1]}; the pair does not belong together: restore the "
                        f"original image or annotation")
    peak = int(raw.max(initial=0))
    if peak > num_classes:
        raise UserError(f"ADE20K: annotation {path} holds class {peak}, above the {num_classes} classes "
                        f"(0 = other, 1..{num_classes}); is this an ADE20K annotation (not a colour rendering)?")
    mask = raw.astype(np.int64) - 1
    mask[raw == 0] = IGNORE_INDEX
    return mask


def load_pair(image_path, mask_path, num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 RGB [H, W, 3], int64 mask [H, W])`` of one sample, sizes checked (see :func:`load_mask`)."""
    image = load_rgb(image_path)
    mask = load_mask(mask_path, num_classes, image_size=image.size)
    return np.asarray(image), mask


def check_annotations(pairs, num_classes: int = NUM_CLASSES, root=None) -> None:
    """Check every ``(image, annotation)`` pair before training: the annotation is readable, single-channel, the
    size of its image (read from the image's header) and within ``num_classes`` (:func:`load_mask`'s checks).

    A bad annotation anywhere (the official validation split included, which is only read at the end) stops
    the run now with one :class:`UserError`, not after a whole training. An unreadable image is left to the
    data module (left out with a warning, or refused under ``strict``). A set that passed is remembered in
    ``cache_dir()/ade20k-checks/`` by what its files hold (paths relative to ``root``, sizes, digests:
    :func:`~aselect_bench.data.manifest.manifest`), so a rerun, or the same data copied elsewhere, does not decode
    the annotations again.
    """
    digest = manifest_digest(manifest(pairs, root), f"num_classes={num_classes}")
    marker = cache_dir() / "ade20k-checks" / f"{digest[:24]}.json"
    if marker.exists():
        return
    for image, mask in pairs:
        try:
            with Image.open(image) as img:
                size = img.size  # the header only
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            size = None
        load_mask(mask, num_classes, image_size=size)
    try:
        atomic_write_json(marker, {"num_classes": num_classes, "pairs": len(pairs)})
    except OSError:
        pass  # a read-only cache: check again next time
