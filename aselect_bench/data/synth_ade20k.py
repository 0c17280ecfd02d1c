"""A procedurally generated scene-parsing set, written in the ADEChallengeData2016 layout.

A scene is a jittered Voronoi tessellation with wavy borders (the "stuff": 3-6 regions) with a few
"things" on top (ellipse blobs and random polygons). Each region or thing is one class, and each class
is a distinct material: a base colour with per-scene jitter and its own texture (stripes at an
orientation, dots, checks, noise, a gradient). Annotation PNGs (mode ``L``) hold ``1..K`` per pixel and
``0`` for "other" (a textureless grey), so the ADE20K reader's ``reduce_zero_label`` applies unchanged.
``grain > 0`` adds sensor grain of a random strength per scene (per-pixel noise of standard deviation
``0.02 + grain * U(0, 1)`` instead of ``0.02``): fine detail that belongs to no material and that no model
can predict. ``grain = 0`` (the default) renders exactly the scenes of version 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from aselect_bench.data.synth_folder import MARKER, claim_output_folder
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json

GENERATOR_VERSION = 2  # bump when the scenes change (the demo DiT's recipe keys on it)
GRAIN = 0.0  # the default sensor-grain strength (the noise's standard deviation ranges over 0.02 + [0, GRAIN])

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
MAX_CLASSES = len(MATERIALS)


def synthetic_class_names(k: int) -> list[str]:
    """The names of the first ``k`` synthetic materials (label ``i`` of the reduced mask is name ``i``)."""
    if not 1 <= k <= MAX_CLASSES:
        raise UserError(f"the synthetic scenes have 1..{MAX_CLASSES} classes, got {k}")
    return [name for name, *_ in MATERIALS[:k]]


def _texture(kind: str, param: float, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A texture field in [-1, 1] over the pixel grid ``[S, S]`` (coordinates in [0, 1): scale follows S)."""
    if kind == "stripes":
        return np.cos(2 * np.pi * 6 * (np.cos(param) * xx + np.sin(param) * yy) + rng.uniform(0, 2 * np.pi))
    if kind == "dots":
        f = 7 + 3 * param
        return np.cos(2 * np.pi * f * xx) * np.cos(2 * np.pi * f * yy)
    if kind == "checks":
        f = 4 + 2 * param
        return np.sign(np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy))
    if kind == "noise":
        return rng.uniform(-1, 1, xx.shape) * (0.5 + param)
    return 2 * (yy if param == 0 else xx) - 1  # gradient


def _stuff(size: int, n: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Region index ``[S, S]`` in ``0..n-1``: a Voronoi tessellation of ``n`` random seeds, wavy borders."""
    seeds = rng.uniform(0, 1, (n, 2))
    dist = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    dist += 0.01 * np.sin(2 * np.pi * (2 * xx[..., None] + rng.uniform(0, 1, n)))
    return dist.argmin(-1)


def _thing(size: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean ``[S, S]`` object mask: a rotated ellipse blob or a random star-shaped polygon."""
    cx, cy = rng.uniform(0.15, 0.85, 2)
    if rng.random() < 0.5:
        a, b, theta = rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.18), rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    k = rng.integers(3, 8)
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = rng.uniform(0.08, 0.25, k)
    points = [(float((cx + r * np.cos(t)) * size), float((cy + r * np.sin(t)) * size)) for r, t in zip(radii, angles)]
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def render_scene(size: int, num_classes: int, rng: np.random.Generator, grain: float = GRAIN
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(uint8 image [S, S, 3], uint8 labels [S, S])``, labels in ``0..num_classes`` (0 = other);
    ``grain``: the sensor grain's strength (standard deviation ``0.02 + grain * U(0, 1)``, in [0, 1] units)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    n_regions, n_things = int(rng.integers(3, 7)), int(rng.integers(0, 3))
    classes = rng.choice(num_classes + 1, size=n_regions, replace=n_regions > num_classes + 1)
    labels = classes[_stuff(size, n_regions, xx, yy, rng)].astype(np.uint8)
    for _ in range(n_things):
        labels[_thing(size, xx, yy, rng)] = rng.integers(1, num_classes + 1)
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
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 0.02 + (grain * rng.uniform(0, 1) if grain else 0.0), img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), labels


def render_scenes(n: int, image_size: int = 64, seed: int = 0, num_classes: int = 10, grain: float = GRAIN
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 images [N, S, S, 3], uint8 labels [N, S, S])`` in ``0..num_classes``; deterministic for ``seed``."""
    synthetic_class_names(num_classes)  # validates the class count
    if image_size < 8:
        raise UserError(f"synthetic scenes need image_size >= 8, got {image_size}")
    if not 0 <= grain <= 1:
        raise UserError(f"grain is a noise standard deviation in [0, 1] (pixel range 0-1), got {grain}")
    rng = np.random.default_rng(seed)
    scenes = [render_scene(image_size, num_classes, rng, grain) for _ in range(n)]
    if not scenes:
        return np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros((0, image_size, image_size), np.uint8)
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def write_ade20k(out_dir, num_train: int = 200, num_val: int = 40, image_size: int = 64, num_classes: int = 10,
                 seed: int = 0, grain: float = GRAIN, force: bool = False) -> Path:
    """Write ``<out_dir>/ADEChallengeData2016/`` and return ``out_dir``.

    JPEG images (``images/{training,validation}/ADE_{train,val}_%08d.jpg``), PNG annotations of the same
    stem, ``sceneCategories.txt`` and an ``objectInfo150.txt`` naming the synthetic classes; ``out_dir`` gets
    the generator's marker. ``out_dir`` must be new or empty, or (with ``force``, replaced) a folder the
    generators wrote before (:func:`~aselect_bench.data.synth_folder.claim_output_folder`).
    """
    if num_train < 1 or num_val < 1:
        raise UserError(f"write_ade20k needs at least one training and one validation image, got "
                        f"num_train={num_train}, num_val={num_val}")
    base = claim_output_folder(out_dir, force) / "ADEChallengeData2016"
    images, masks = render_scenes(num_train + num_val, image_size, seed, num_classes, grain)
    for sub in ("images", "annotations"):
        for split in ("training", "validation"):
            (base / sub / split).mkdir(parents=True, exist_ok=True)
    scenes = []
    for i, (img, mask) in enumerate(zip(images, masks)):
        split, prefix, number = ("training", "train", i + 1) if i < num_train else ("validation", "val", i - num_train + 1)
        stem = f"ADE_{prefix}_{number:08d}"
        Image.fromarray(img).save(base / "images" / split / f"{stem}.jpg", quality=95)
        Image.fromarray(mask).save(base / "annotations" / split / f"{stem}.png")  # 2-D uint8: mode L
        scenes.append(f"{stem} synthetic_scene\n")
    (base / "sceneCategories.txt").write_text("".join(scenes))
    (base / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n"
        + "".join(f"{k + 1}\t{(masks == k + 1).mean():.4f}\t{int((masks[:num_train] == k + 1).any((1, 2)).sum())}\t"
                  f"{int((masks[num_train:] == k + 1).any((1, 2)).sum())}\t{name}\n"
                  for k, name in enumerate(synthetic_class_names(num_classes))))
    atomic_write_json(Path(out_dir) / MARKER, {
        "generator_version": GENERATOR_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val,
        "image_size": image_size, "num_classes": num_classes, "grain": grain})
    return Path(out_dir)
