"""A procedurally generated, genuinely fine-grained classification set, written in the FGVC layouts.

Every image shows one "bird": an elliptical body with a striped texture, a small head and a wing
patch, on a cluttered background. Classes differ only in small details: the body's stripe frequency
(3 levels), the head's colour (2), the wing's pattern (stripes or dots) and, past 12 classes, the tail
(2). Position, scale, rotation, body hue, background clutter and lighting vary freely (nuisances).
``write_layout`` writes the images and index files exactly as each real dataset ships them, so the
real readers in :mod:`aselect_bench.data.fgvc` load them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from aselect_bench.errors import UserError

MAX_CLASSES = 24
STRIPES = (2.0, 3.5, 5.0)          # body stripe cycles across the body length
HEADS = ((0.85, 0.2, 0.15), (0.2, 0.35, 0.9))  # reddish / bluish head


def class_factors(k: int) -> tuple[int, int, int, int]:
    """(stripe level, head colour, wing pattern, tail) of class ``k``."""
    return k % 3, (k // 3) % 2, (k // 6) % 2, (k // 12) % 2


def render_image(k: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``uint8 [size, size, 3]`` image of class ``k``."""
    stripe, head, wing, tail = class_factors(k)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # background: a smooth colour gradient plus low-contrast clutter (blobs and lines)
    c0, c1 = rng.uniform(0.25, 0.75, 3), rng.uniform(0.25, 0.75, 3)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * xx + np.sin(ang) * yy + 1) / 2
    img = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
    for _ in range(rng.integers(2, 6)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.12)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[mask] = img[mask] * 0.5 + rng.uniform(0.1, 0.9, 3) * 0.5
    for _ in range(rng.integers(1, 4)):
        a, b, c = rng.normal(size=3)
        mask = np.abs(a * (xx - 0.5) + b * (yy - 0.5) + c * 0.2) < 0.012 * np.hypot(a, b)
        img[mask] = rng.uniform(0.1, 0.9, 3)
    # the bird, in its own rotated and scaled frame (u along the body, v across)
    cx, cy = 0.5 + rng.uniform(-0.12, 0.12, 2)
    scale, theta = rng.uniform(0.85, 1.15), rng.uniform(-0.7, 0.7) + np.pi * rng.integers(0, 2)
    a_len, b_len = 0.27 * scale, 0.15 * scale
    dx, dy = xx - cx, yy - cy
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / a_len
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / b_len
    body_colour = np.array([0.55, 0.42, 0.28]) + rng.uniform(-0.12, 0.12, 3)
    if tail:
        tail_mask = (u < -0.8) & (u > -1.45) & (np.abs(v) < 0.25 + 0.5 * (-0.8 - u))
        img[tail_mask] = body_colour * 0.6
    body = u**2 + v**2 <= 1
    texture = 0.7 + 0.3 * np.cos(np.pi * STRIPES[stripe] * (u + 1) + rng.uniform(0, 2 * np.pi))
    img[body] = body_colour * texture[body][:, None]
    wing_mask = ((u + 0.1) / 0.5) ** 2 + (v / 0.55) ** 2 <= 1
    pattern = np.cos(2 * np.pi * 3.0 * v) if wing == 0 else np.cos(2 * np.pi * 2.2 * u) * np.cos(2 * np.pi * 2.2 * v)
    wing_colour = np.array([0.92, 0.9, 0.8]) * (0.6 + 0.4 * (pattern[..., None] > 0.2))
    img[wing_mask & body] = wing_colour[wing_mask & body]
    head_mask = ((u - 1.0) * a_len) ** 2 + (v * b_len) ** 2 <= (0.6 * b_len) ** 2
    img[head_mask] = np.clip(np.array(HEADS[head]) + rng.uniform(-0.08, 0.08, 3), 0, 1)
    # lighting: gain, offset and a colour cast; sensor noise
    img = img * rng.uniform(0.7, 1.25) + rng.uniform(-0.08, 0.08) + rng.uniform(-0.06, 0.06, 3)
    img = img + rng.normal(0, 0.025, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def render_samples(num_per_class: int, num_classes: int = 12, image_size: int = 64, seed: int = 0):
    """``(uint8 [N, S, S, 3], labels [N])``, class-major, deterministic for ``seed``."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise UserError(f"num_classes must be in 2..{MAX_CLASSES}, got {num_classes}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), num_per_class)
    images = np.stack([render_image(int(k), image_size, rng) for k in labels]) if len(labels) else \
        np.zeros((0, image_size, image_size, 3), np.uint8)
    return images, labels


def class_names(num_classes: int) -> list[str]:
    stripes, heads, wings, tails = ("fine", "mid", "bold"), ("red", "blue"), ("barred", "spotted"), ("", "-longtail")
    return [f"Synth_{heads[h]}_{wings[w]}_{stripes[s]}{tails[t]}" for s, h, w, t in map(class_factors, range(num_classes))]


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def _write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _savemat(path: Path, content: dict) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, content)


def _split_counts(train_per_class: int) -> tuple[int, int]:
    val = max(1, train_per_class // 5)
    return train_per_class - val, val


# ------------------------------------------------------------------------- layouts
def _cub(out: Path, imgs, labels, is_train, names):
    base = out / "CUB_200_2011"
    rows, folders = [], [f"{k + 1:03d}.{n}" for k, n in enumerate(names)]
    for i, (img, y) in enumerate(zip(imgs, labels), start=1):
        rel = f"{folders[y]}/{names[y]}_{i:04d}_{1000 + i}.jpg"
        _save(img, base / "images" / rel)
        rows.append((i, rel, y + 1, int(is_train[i - 1])))
    _write_lines(base / "images.txt", (f"{i} {rel}" for i, rel, _, _ in rows))
    _write_lines(base / "image_class_labels.txt", (f"{i} {y}" for i, _, y, _ in rows))
    _write_lines(base / "train_test_split.txt", (f"{i} {t}" for i, _, _, t in rows))
    _write_lines(base / "classes.txt", (f"{k + 1} {f}" for k, f in enumerate(folders)))
    size = imgs.shape[1]
    _write_lines(base / "bounding_boxes.txt", (f"{i} 0.0 0.0 {size}.0 {size}.0" for i, *_ in rows))


def _nabirds(out: Path, imgs, labels, is_train, names):
    base = out / "nabirds"
    leaf_ids = [295 + 3 * k for k in range(len(names))]  # sparse ids, as in the real class tree
    rows = []
    rng = np.random.default_rng(len(imgs))
    for i, (img, y) in enumerate(zip(imgs, labels)):
        hexid = "".join(f"{b:02x}" for b in rng.integers(0, 256, 16))
        uid = f"{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-{hexid[20:]}"
        rel = f"{leaf_ids[y]:04d}/{hexid}.jpg"
        _save(img, base / "images" / rel)
        rows.append((uid, rel, leaf_ids[y], int(is_train[i])))
    _write_lines(base / "images.txt", (f"{u} {rel}" for u, rel, _, _ in rows))
    _write_lines(base / "image_class_labels.txt", (f"{u} {c}" for u, _, c, _ in rows))
    _write_lines(base / "train_test_split.txt", (f"{u} {t}" for u, _, _, t in rows))
    classes = ["0 Birds", "1 Perching Birds"] + [f"{c} {n.replace('_', ' ')}" for c, n in zip(leaf_ids, names)]
    _write_lines(base / "classes.txt", classes)
    _write_lines(base / "hierarchy.txt", ["1 0"] + [f"{c} 1" for c in leaf_ids])
    size = imgs.shape[1]
    _write_lines(base / "bounding_boxes.txt", (f"{u} 0 0 {size} {size}" for u, *_ in rows))


def _flowers(out: Path, imgs, labels, is_train, names, val_mask):
    for i, img in enumerate(imgs, start=1):
        _save(img, out / "jpg" / f"image_{i:05d}.jpg")
    ids = np.arange(1, len(imgs) + 1)
    _savemat(out / "imagelabels.mat", {"labels": (labels + 1).astype(np.uint8)[None, :]})
    train = is_train & ~val_mask
    _savemat(out / "setid.mat", {"trnid": ids[train][None, :].astype(np.uint16),
                                "valid": ids[val_mask][None, :].astype(np.uint16),
                                "tstid": ids[~is_train][None, :].astype(np.uint16)})


def _dogs(out: Path, imgs, labels, is_train, names):
    wnids = [f"n{2085620 + 17 * k:08d}" for k in range(len(names))]
    files = []
    for i, (img, y) in enumerate(zip(imgs, labels)):
        rel = f"{wnids[y]}-{names[y]}/{wnids[y]}_{1000 + i}.jpg"
        _save(img, out / "Images" / rel)
        files.append(rel)

    def cell(strings):
        arr = np.empty((len(strings), 1), dtype=object)
        for j, s in enumerate(strings):
            arr[j, 0] = np.array([s])
        return arr

    for name, mask in (("train_list.mat", is_train), ("test_list.mat", ~is_train),
                       ("file_list.mat", np.ones_like(is_train))):
        sel = [f for f, m in zip(files, mask) if m]
        _savemat(out / "lists" / name, {"file_list": cell(sel), "annotation_list": cell([f[:-4] for f in sel]),
                                       "labels": (labels[mask] + 1).astype(np.float64)[:, None]})


def _cars(out: Path, imgs, labels, is_train, names):
    size = imgs.shape[1]

    def annotations(rows, with_class=True):
        fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_class else []) + ["fname"]
        arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
        for j, (fname, y) in enumerate(rows):
            values = [3, 4, size - 3, size - 5] + ([y + 1] if with_class else []) + [fname]
            for f, v in zip(fields, values):
                arr[0, j][f] = np.array([[v]], dtype=np.uint16) if f != "fname" else np.array([v])
        return arr

    splits = {"train": [], "test": []}
    for img, y, tr in zip(imgs, labels, is_train):
        split = "train" if tr else "test"
        fname = f"{len(splits[split]) + 1:05d}.jpg"
        _save(img, out / f"cars_{split}" / fname)
        splits[split].append((fname, int(y)))
    _savemat(out / "devkit" / "cars_train_annos.mat", {"annotations": annotations(splits["train"])})
    _savemat(out / "devkit" / "cars_test_annos.mat", {"annotations": annotations(splits["test"], with_class=False)})
    _savemat(out / "cars_test_annos_withlabels.mat", {"annotations": annotations(splits["test"])})
    meta = np.empty((1, len(names)), dtype=object)
    for k, n in enumerate(names):
        meta[0, k] = np.array([n.replace("_", " ") + " 2012"])
    _savemat(out / "devkit" / "cars_meta.mat", {"class_names": meta})


def _aircraft(out: Path, imgs, labels, is_train, names, val_mask):
    base = out / "fgvc-aircraft-2013b" / "data"
    variants = [n.replace("_", "-") for n in names]
    variants[-1] = variants[-1] + " A/B"  # real variant names contain spaces and slashes
    ids = [f"{1000000 + 37 * i:07d}" for i in range(len(imgs))]
    for img, i in zip(imgs, ids):
        _save(img, base / "images" / f"{i}.jpg")
    _write_lines(base / "variants.txt", variants)
    _write_lines(base / "families.txt", sorted({v.split("-")[1] for v in variants}))
    _write_lines(base / "manufacturers.txt", ["Synthetic Aero"])
    masks = {"train": is_train & ~val_mask, "val": val_mask, "test": ~is_train}
    for split, mask in masks.items():
        chosen = [(i, variants[y]) for i, y, m in zip(ids, labels, mask) if m]
        _write_lines(base / f"images_variant_{split}.txt", (f"{i} {v}" for i, v in chosen))
        _write_lines(base / f"images_{split}.txt", (i for i, _ in chosen))
    size = imgs.shape[1]
    _write_lines(base / "images_box.txt", (f"{i} 0 0 {size - 1} {size - 1}" for i in ids))


LAYOUTS = {"cub": _cub, "nabirds": _nabirds, "flowers": _flowers, "dogs": _dogs, "cars": _cars, "aircraft": _aircraft}


def write_layout(layout: str, out_dir, num_classes: int = 12, train_per_class: int = 40, test_per_class: int = 20,
                 image_size: int = 64, seed: int = 0) -> Path:
    """Generate the dataset and write it in ``layout``'s original files under ``out_dir``."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    out = Path(out_dir)
    per_class = train_per_class + test_per_class
    imgs, labels = render_samples(per_class, num_classes, image_size, seed)
    position = np.tile(np.arange(per_class), num_classes)
    is_train = position < train_per_class
    n_train, _ = _split_counts(train_per_class)
    val_mask = is_train & (position >= n_train)  # the official val of Flowers and Aircraft
    names = class_names(num_classes)
    writer = LAYOUTS[layout]
    if layout in ("flowers", "aircraft"):
        writer(out, imgs, labels, is_train, names, val_mask)
    else:
        writer(out, imgs, labels, is_train, names)
    return out
