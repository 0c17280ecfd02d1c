"""A procedurally generated scene-parsing set, written in the ADEChallengeData2016 layout.

Each scene is a partition of the image into regions (a jittered Voronoi tessellation, smoothed by a few
random blobs); each region is one class, and each class is a distinct material: a base colour with
jitter and its own texture (stripes at an orientation, dots, checks, noise, gradients). Annotation
PNGs hold ``1..K`` per pixel and ``0`` for "other" (a textureless grey region type).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from aselect_bench.errors import UserError

MATERIALS = [  # (name, base RGB, texture kind, texture parameter)
    ("synth-brick", (0.62, 0.28, 0.2), "stripes", 0.0),
    ("synth-grass", (0.25, 0.55, 0.2), "noise", 0.35),
    ("synth-water", (0.2, 0.35, 0.7), "stripes", np.pi / 2),
    ("synth-sand", (0.85, 0.75, 0.5), "dots", 0.0),
    ("synth-wood", (0.5, 0.33, 0.18), "stripes", np.pi / 4),
    ("synth-tile", (0.8, 0.8, 0.82), "checks", 0.0),
    ("synth-sky", (0.55, 0.75, 0.95), "gradient", 0.0),
    ("synth-foliage", (0.15, 0.4, 0.15), "dots", 1.0),
    ("synth-metal", (0.55, 0.57, 0.6), "stripes", 3 * np.pi / 4),
    ("synth-fabric", (0.7, 0.25, 0.55), "checks", 1.0),
    ("synth-rock", (0.45, 0.42, 0.38), "noise", 0.6),
    ("synth-snow", (0.95, 0.95, 0.97), "gradient", 1.0),
]


def synthetic_class_names(k: int) -> list[str]:
    return [name for name, *_ in MATERIALS[:k]]


def _texture(kind: str, param: float, xx, yy, rng) -> np.ndarray:
    """A texture field in [-1, 1] over the pixel grid (scale follows the image size)."""
    if kind == "stripes":
        return np.cos(2 * np.pi * 6 * (np.cos(param) * xx + np.sin(param) * yy) + rng.uniform(0, 6.3))
    if kind == "dots":
        f = 7 + 3 * param
        return np.cos(2 * np.pi * f * xx) * np.cos(2 * np.pi * f * yy)
    if kind == "checks":
        f = 4 + 2 * param
        return np.sign(np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy))
    if kind == "noise":
        return rng.uniform(-1, 1, xx.shape) * (0.5 + param)
    return 2 * (yy if param == 0 else xx) - 1  # gradient


def render_scene(size: int, num_classes: int, rng: np.random.Generator):
    """One scene: ``(uint8 [S, S, 3], uint8 labels [S, S])`` with labels in ``0..num_classes``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    n_regions = rng.integers(3, 7)
    seeds = rng.uniform(0, 1, (n_regions, 2))
    dist = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    dist += 0.01 * np.sin(2 * np.pi * (2 * xx[..., None] + rng.uniform(0, 1, n_regions)))  # wavy borders
    region = dist.argmin(-1)
    classes = rng.choice(np.arange(num_classes + 1), size=n_regions, replace=n_regions > num_classes + 1)
    labels = classes[region].astype(np.uint8)
    img = np.zeros((size, size, 3), np.float32)
    for c in np.unique(labels):
        mask = labels == c
        if c == 0:
            img[mask] = 0.5 + rng.uniform(-0.1, 0.1)
            continue
        _, base, kind, param = MATERIALS[c - 1]
        colour = np.clip(np.array(base) + rng.uniform(-0.07, 0.07, 3), 0, 1)
        tex = _texture(kind, param, xx, yy, rng)
        img[mask] = colour * (0.8 + 0.2 * tex[mask][:, None])
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), labels


def render_scenes(n: int, image_size: int = 64, seed: int = 0, num_classes: int = 10):
    """``(uint8 [N, S, S, 3], uint8 masks [N, S, S])``, deterministic for ``seed``."""
    if not 1 <= num_classes <= len(MATERIALS):
        raise UserError(f"num_classes must be in 1..{len(MATERIALS)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    scenes = [render_scene(image_size, num_classes, rng) for _ in range(n)]
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def write_ade20k(out_dir, num_train: int = 200, num_val: int = 40, image_size: int = 64, num_classes: int = 10,
                 seed: int = 0) -> Path:
    """Write ``ADEChallengeData2016/`` (JPEG images, PNG annotations, index files) under ``out_dir``."""
    base = Path(out_dir) / "ADEChallengeData2016"
    images, masks = render_scenes(num_train + num_val, image_size, seed, num_classes)
    names = []
    for i, (img, mask) in enumerate(zip(images, masks)):
        split, number = ("training", i + 1) if i < num_train else ("validation", i - num_train + 1)
        stem = f"ADE_{'train' if split == 'training' else 'val'}_{number:08d}"
        for sub in ("images", "annotations"):
            (base / sub / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(base / "images" / split / f"{stem}.jpg", quality=95)
        Image.fromarray(mask, mode="L").save(base / "annotations" / split / f"{stem}.png")
        names.append(f"{stem} synthetic")
    (base / "sceneCategories.txt").write_text("".join(f"{n}\n" for n in names))
    (base / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n"
        + "".join(f"{k + 1}\t0\t0\t0\t{name}\n" for k, name in enumerate(synthetic_class_names(num_classes))))
    return base.parent
