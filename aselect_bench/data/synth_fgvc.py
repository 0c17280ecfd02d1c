"""A procedurally generated, genuinely fine-grained classification set, written in the six FGVC layouts.

Every image shows one "bird": an elliptical striped body, a small head and a wing patch, on a cluttered
background. Classes share the shape and differ only in small details: the body's stripe frequency
(3 levels), the head's colour (2), the wing's pattern (a dark spot or a dark tip) and, past 12 classes,
a tail (2). Position, scale, rotation, facing, body hue, background clutter and lighting vary freely.
All cues stay visible at 32x32 px (the demo DiT's input), yet a linear probe on raw pixels cannot read
most of them (see ``tests/test_synth_fgvc.py``). ``grain > 0`` adds sensor grain of a random strength per
image (per-pixel noise of standard deviation ``0.025 + grain * U(0, 1)`` instead of ``0.025``, as photographs
taken at different ISO settings): fine detail that carries no class information and that no model can
predict. ``grain = 0`` (the default) renders exactly the images of version 2.

``write_layout`` writes the images (JPEG, quality 95) and the index files exactly as each real dataset
ships them, so :func:`aselect_bench.data.fgvc.read_split` loads them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from aselect_bench.data.synth_folder import MARKER, claim_output_folder
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json

GENERATOR_VERSION = 2  # bump when the images change (caches of generated data and demo weights key on it)
GRAIN = 0.0  # the default sensor-grain strength (the noise's standard deviation ranges over 0.025 + [0, GRAIN])
MAX_CLASSES = 24
STRIPES = (2.0, 3.5, 5.0)  # body stripe cycles along the body length
HEADS = ((0.85, 0.2, 0.15), (0.2, 0.35, 0.9))  # reddish / bluish head
WINGS = ("spotted", "tipped")


def class_factors(k: int) -> tuple[int, int, int, int]:
    """(stripe level, head colour, wing pattern, tail) of class ``k``."""
    return k % 3, (k // 3) % 2, (k // 6) % 2, (k // 12) % 2


def class_names(num_classes: int) -> list[str]:
    """``Synth_<head>_<wing>_<stripes>[-longtail]`` per class, e.g. ``Synth_red_spotted_fine``."""
    stripes, heads, tails = ("fine", "mid", "bold"), ("red", "blue"), ("", "-longtail")
    return [f"Synth_{heads[h]}_{WINGS[w]}_{stripes[s]}{tails[t]}"
            for s, h, w, t in map(class_factors, range(num_classes))]


# ------------------------------------------------------------------------- rendering
def _background(xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``float [S, S, 3]``: a colour gradient with blobs and lines (clutter)."""
    c0, c1 = rng.uniform(0.25, 0.75, 3), rng.uniform(0.25, 0.75, 3)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = ((np.cos(ang) * xx + np.sin(ang) * yy + 1) / 2)[..., None]
    img = c0 * (1 - ramp) + c1 * ramp
    for _ in range(rng.integers(2, 6)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.12)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[mask] = img[mask] * 0.5 + rng.uniform(0.1, 0.9, 3) * 0.5
    for _ in range(rng.integers(1, 4)):
        a, b, c = rng.normal(size=3)
        mask = np.abs(a * (xx - 0.5) + b * (yy - 0.5) + c * 0.2) < 0.015 * np.hypot(a, b)
        img[mask] = rng.uniform(0.1, 0.9, 3)
    return img


def render_image(k: int, size: int, rng: np.random.Generator, grain: float = GRAIN
                 ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One image of class ``k``: ``(uint8 [size, size, 3], bird box (x1, y1, x2, y2), 0-based inclusive)``;
    ``grain``: the sensor grain's strength (its standard deviation is ``0.025 + grain * U(0, 1)``, in [0, 1] units)."""
    stripe, head, wing, tail = class_factors(k)
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    img = _background(xx, yy, rng)
    # the bird in its own frame: u along the body (head at u = +1), v across; scaled, rotated, either facing
    cx, cy = 0.5 + rng.uniform(-0.12, 0.12, 2)
    scale, theta = rng.uniform(0.85, 1.15), rng.uniform(-0.6, 0.6) + np.pi * rng.integers(0, 2)
    a_len, b_len = 0.27 * scale, 0.16 * scale
    dx, dy = xx - cx, yy - cy
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / a_len
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / b_len
    body_colour = np.array([0.55, 0.42, 0.28]) + rng.uniform(-0.12, 0.12, 3)
    bird = np.zeros((size, size), bool)
    if tail:
        tail_mask = (u < -0.8) & (u > -1.5) & (np.abs(v) < 0.25 + 0.6 * (-0.8 - u))
        img[tail_mask] = body_colour * 0.55
        bird |= tail_mask
    body = u**2 + v**2 <= 1
    texture = 0.65 + 0.35 * np.cos(np.pi * STRIPES[stripe] * (u + 1) + rng.uniform(0, 2 * np.pi))
    img[body] = body_colour * texture[body][:, None]
    bird |= body
    wu, wv = (u + 0.25) / 0.5, v / 0.62  # the wing patch's own coordinates, [-1, 1] inside it
    wing_mask = body & (wu**2 + wv**2 <= 1)
    dark = wu**2 + wv**2 <= 0.3 if wing == 0 else wu < -0.35  # a central spot / a dark rear tip
    shade = np.where(dark, 0.3, 0.92)[..., None] * np.array([1.0, 0.97, 0.85])
    img[wing_mask] = shade[wing_mask]
    head_mask = ((u - 1.0) * a_len) ** 2 + (v * b_len) ** 2 <= (0.6 * b_len) ** 2
    img[head_mask] = np.clip(np.array(HEADS[head]) + rng.uniform(-0.08, 0.08, 3), 0, 1)
    bird |= head_mask
    # lighting (gain, offset, colour cast) and sensor grain of a random strength (ISO)
    img = img * rng.uniform(0.7, 1.25) + rng.uniform(-0.08, 0.08) + rng.uniform(-0.06, 0.06, 3)
    img = img + rng.normal(0, 0.025 + (grain * rng.uniform(0, 1) if grain else 0.0), img.shape)
    ys, xs = np.nonzero(bird)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), box


def _render_all(num_per_class: int, num_classes: int, image_size: int, seed: int, grain: float = GRAIN):
    """``(uint8 [N, S, S, 3], labels [N], boxes int [N, 4])``, class-major; image ``j`` of class ``k`` has
    its own random stream ``(seed, k, j)``, so a larger ``num_per_class`` keeps the first images."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise UserError(f"num_classes must be in 2..{MAX_CLASSES}, got {num_classes}")
    if num_per_class < 0 or image_size < 16:
        raise UserError(f"need num_per_class >= 0 and image_size >= 16, got {num_per_class} and {image_size}")
    if not 0 <= grain <= 1:
        raise UserError(f"grain is a noise standard deviation in [0, 1] (pixel range 0-1), got {grain}")
    labels = np.repeat(np.arange(num_classes), num_per_class)
    images = np.zeros((len(labels), image_size, image_size, 3), np.uint8)
    boxes = np.zeros((len(labels), 4), np.int64)
    for i, k in enumerate(labels):
        rng = np.random.default_rng([seed, int(k), i % max(num_per_class, 1)])
        images[i], boxes[i] = render_image(int(k), image_size, rng, grain)
    return images, labels, boxes


def render_samples(num_per_class: int, num_classes: int = 12, image_size: int = 64, seed: int = 0,
                   grain: float = GRAIN):
    """``(uint8 [N, S, S, 3], int labels [N])`` with ``N = num_per_class * num_classes``, class-major,
    deterministic for ``seed`` (in memory; e.g. the demo DiT's pretraining data)."""
    images, labels, _ = _render_all(num_per_class, num_classes, image_size, seed, grain)
    return images, labels


# ------------------------------------------------------------------------- file helpers
def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format="JPEG", quality=95)


def _write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


MAT_HEADER = b"MATLAB 5.0 MAT-file, written by aselect-bench synth".ljust(116)


def _savemat(path: Path, content: dict) -> None:
    """A MATLAB v5 file as ``scipy.io.savemat`` writes it, with a fixed header text (no date: same bytes)."""
    import io

    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, content)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(MAT_HEADER + buffer.getvalue()[len(MAT_HEADER):])


def _cell(strings, shape) -> np.ndarray:
    """A MATLAB cell array of char rows (what ``savemat`` writes as ``{'a'; 'b'}``)."""
    arr = np.empty(len(strings), dtype=object)
    for j, s in enumerate(strings):
        arr[j] = np.array([s])
    return arr.reshape(shape)


@dataclass
class _Synth:
    """The generated samples: images ``[N, S, S, 3]``, labels ``[N]``, boxes ``[N, 4]`` (x1, y1, x2, y2,
    0-based inclusive), split ``[N]`` ('train', 'val' = official val of Flowers/Aircraft, 'test'), names."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    split: np.ndarray
    names: list[str]

    @property
    def is_train(self) -> np.ndarray:
        """Official train of the datasets without an official val (their val is carved out by the reader)."""
        return self.split != "test"


# ------------------------------------------------------------------------- the six layouts
def _cub(out: Path, d: _Synth) -> None:
    base = out / "CUB_200_2011"
    folders = [f"{k + 1:03d}.{n}" for k, n in enumerate(d.names)]
    rel = [f"{folders[y]}/{d.names[y]}_{i:04d}_{1000 + i}.jpg" for i, y in enumerate(d.labels, start=1)]
    for img, r in zip(d.images, rel):
        _save(img, base / "images" / r)
    ids = range(1, len(rel) + 1)
    _write_lines(base / "images.txt", (f"{i} {r}" for i, r in zip(ids, rel)))
    _write_lines(base / "image_class_labels.txt", (f"{i} {y + 1}" for i, y in zip(ids, d.labels)))
    _write_lines(base / "train_test_split.txt", (f"{i} {int(t)}" for i, t in zip(ids, d.is_train)))
    _write_lines(base / "classes.txt", (f"{k + 1} {f}" for k, f in enumerate(folders)))
    _write_lines(base / "bounding_boxes.txt",
                 (f"{i} {x1:.1f} {y1:.1f} {x2 - x1 + 1:.1f} {y2 - y1 + 1:.1f}" for i, (x1, y1, x2, y2) in zip(ids, d.boxes)))


def _nabirds(out: Path, d: _Synth) -> None:
    base = out / "nabirds"
    leaf_ids = [295 + 3 * k for k in range(len(d.names))]  # sparse leaf ids under inner nodes, as in the real tree
    hexids = [np.random.default_rng([7, i]).bytes(16).hex() for i in range(len(d.images))]
    uids = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexids]
    rel = [f"{leaf_ids[y]:04d}/{h}.jpg" for h, y in zip(hexids, d.labels)]
    for img, r in zip(d.images, rel):
        _save(img, base / "images" / r)
    _write_lines(base / "images.txt", (f"{u} {r}" for u, r in zip(uids, rel)))
    _write_lines(base / "image_class_labels.txt", (f"{u} {leaf_ids[y]}" for u, y in zip(uids, d.labels)))
    _write_lines(base / "train_test_split.txt", (f"{u} {int(t)}" for u, t in zip(uids, d.is_train)))
    inner = ["0 Birds", "1 Perching Birds", "2 Synthetic Finches"]
    _write_lines(base / "classes.txt", inner + [f"{c} {n.replace('_', ' ')}" for c, n in zip(leaf_ids, d.names)])
    _write_lines(base / "hierarchy.txt", ["1 0", "2 1"] + [f"{c} 2" for c in leaf_ids])
    _write_lines(base / "bounding_boxes.txt",
                 (f"{u} {x1} {y1} {x2 - x1 + 1} {y2 - y1 + 1}" for u, (x1, y1, x2, y2) in zip(uids, d.boxes)))


def _flowers(out: Path, d: _Synth) -> None:
    for i, img in enumerate(d.images, start=1):
        _save(img, out / "jpg" / f"image_{i:05d}.jpg")
    ids = np.arange(1, len(d.images) + 1, dtype=np.uint16)
    _savemat(out / "imagelabels.mat", {"labels": (d.labels + 1).astype(np.uint8)[None, :]})
    _savemat(out / "setid.mat", {key: ids[d.split == split][None, :]
                                 for key, split in (("trnid", "train"), ("valid", "val"), ("tstid", "test"))})


def _dogs(out: Path, d: _Synth) -> None:
    wnids = [f"n{2085620 + 17 * k:08d}" for k in range(len(d.names))]
    rel = [f"{wnids[y]}-{d.names[y]}/{wnids[y]}_{1000 + i}.jpg" for i, y in enumerate(d.labels)]
    for img, r in zip(d.images, rel):
        _save(img, out / "Images" / r)
    for name, mask in (("train_list.mat", d.is_train), ("test_list.mat", ~d.is_train),
                       ("file_list.mat", np.ones(len(rel), bool))):
        chosen = [r for r, m in zip(rel, mask) if m]
        _savemat(out / "lists" / name, {"file_list": _cell(chosen, (-1, 1)),
                                        "annotation_list": _cell([r[:-4] for r in chosen], (-1, 1)),
                                        "labels": (d.labels[mask] + 1).astype(np.float64)[:, None]})


def _cars_annotations(rows, with_class: bool) -> np.ndarray:
    """The ``annotations`` 1xN struct array of the Cars devkit (1-based pixel boxes)."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_class else []) + ["fname"]
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, (fname, label, box) in enumerate(rows):
        values = [int(b) + 1 for b in box] + ([label + 1] if with_class else [])
        for f, value in zip(fields, values):
            arr[0, j][f] = np.array([[value]], dtype=np.uint16 if f.startswith("bbox") else np.uint8)
        arr[0, j]["fname"] = np.array([fname])
    return arr


def _cars(out: Path, d: _Synth) -> None:
    rows = {"train": [], "test": []}
    for img, y, box, train in zip(d.images, d.labels, d.boxes, d.is_train):
        split = "train" if train else "test"
        fname = f"{len(rows[split]) + 1:05d}.jpg"
        _save(img, out / f"cars_{split}" / fname)
        rows[split].append((fname, int(y), box))
    _savemat(out / "devkit" / "cars_train_annos.mat", {"annotations": _cars_annotations(rows["train"], True)})
    _savemat(out / "devkit" / "cars_test_annos.mat", {"annotations": _cars_annotations(rows["test"], False)})
    _savemat(out / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(rows["test"], True)})
    _savemat(out / "devkit" / "cars_meta.mat",
             {"class_names": _cell([f"{n.replace('_', ' ')} 2012" for n in d.names], (1, -1))})


def aircraft_variants(names: list[str]) -> list[str]:
    """Variant names as in ``variants.txt``: with spaces, and one with a slash (as ``F/A-18``)."""
    variants = [n.replace("_", "-") for n in names]
    variants[-1] += " A/B"
    return variants


def _aircraft(out: Path, d: _Synth) -> None:
    base = out / "fgvc-aircraft-2013b" / "data"
    variants = aircraft_variants(d.names)
    ids = [f"{1000000 + 37 * i:07d}" for i in range(len(d.images))]
    for img, i in zip(d.images, ids):
        _save(img, base / "images" / f"{i}.jpg")
    _write_lines(base / "variants.txt", variants)
    _write_lines(base / "families.txt", ["Synth Family"])
    _write_lines(base / "manufacturers.txt", ["Synthetic Aero"])
    for split in ("train", "val", "test"):
        chosen = [(i, variants[y]) for i, y, s in zip(ids, d.labels, d.split) if s == split]
        _write_lines(base / f"images_variant_{split}.txt", (f"{i} {v}" for i, v in chosen))
        _write_lines(base / f"images_family_{split}.txt", (f"{i} Synth Family" for i, _ in chosen))
        _write_lines(base / f"images_manufacturer_{split}.txt", (f"{i} Synthetic Aero" for i, _ in chosen))
        _write_lines(base / f"images_{split}.txt", (i for i, _ in chosen))
    _write_lines(base / "images_box.txt",
                 (f"{i} {x1 + 1} {y1 + 1} {x2 + 1} {y2 + 1}" for i, (x1, y1, x2, y2) in zip(ids, d.boxes)))


LAYOUTS = {"cub": _cub, "nabirds": _nabirds, "flowers": _flowers, "dogs": _dogs, "cars": _cars, "aircraft": _aircraft}


def write_layout(layout: str, out_dir, num_classes: int = 12, train_per_class: int = 40, test_per_class: int = 20,
                 image_size: int = 64, seed: int = 0, grain: float = GRAIN, force: bool = False) -> Path:
    """Generate the set and write it under ``out_dir`` in ``layout``'s original files; returns ``out_dir``.

    ``out_dir`` must be new or empty, or (with ``force``, replaced) a folder the generators wrote before: never
    a folder holding anything else (:func:`~aselect_bench.data.synth_folder.claim_output_folder`).

    Per class, the first ``train_per_class`` images form the official train split (Flowers and Aircraft:
    its last fifth is their official val) and the next ``test_per_class`` the test split.
    A ``.aselect_synth.json`` records the generator version and arguments.
    """
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if train_per_class < 2 or test_per_class < 1:
        raise UserError(f"need train_per_class >= 2 and test_per_class >= 1, got {train_per_class}, {test_per_class}")
    out = claim_output_folder(out_dir, force)
    per_class = train_per_class + test_per_class
    images, labels, boxes = _render_all(per_class, num_classes, image_size, seed, grain)
    position = np.tile(np.arange(per_class), num_classes)
    n_val = max(1, train_per_class // 5)
    split = np.where(position >= train_per_class, "test", np.where(position >= train_per_class - n_val, "val", "train"))
    LAYOUTS[layout](out, _Synth(images, labels, boxes, split, class_names(num_classes)))
    atomic_write_json(out / MARKER, {
        "generator_version": GENERATOR_VERSION, "layout": layout, "num_classes": num_classes,
        "train_per_class": train_per_class, "test_per_class": test_per_class, "image_size": image_size, "seed": seed,
        "grain": grain})
    return out
