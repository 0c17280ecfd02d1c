"""ADE20K: the reader on the ADEChallengeData2016 layout, masks, the protocol's transforms, inference."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from aselect_bench import UserError
from aselect_bench.data.ade20k import load_mask, read_split
from aselect_bench.data.ade20k_datamodule import ADE20KDataModule
from aselect_bench.data.seg_transforms import SegTrainTransform, random_crop, rescale_size
from aselect_bench.data.synth_ade20k import write_ade20k
from aselect_bench.heads.inference import slide_inference, whole_inference


def hand_layout(root, n=2, size=(40, 30)):
    base = root / "ADEChallengeData2016"
    for split, prefix in (("training", "train"), ("validation", "val")):
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for i in range(1, n + 1):
            stem = f"ADE_{prefix}_{i:08d}"
            Image.new("RGB", size, (i * 20, 0, 0)).save(base / "images" / split / f"{stem}.jpg")
            mask = np.zeros(size[::-1], np.uint8)
            mask[:, : size[0] // 2] = i
            mask[0, 0] = 150
            Image.fromarray(mask, mode="L").save(base / "annotations" / split / f"{stem}.png")
    return base


def test_reader_pairs_by_stem_and_mask_convention(tmp_path):
    base = hand_layout(tmp_path)
    pairs = read_split(base, "train")
    assert [p.name for p, _ in pairs] == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg"]
    assert all(a.stem == p.stem and a.suffix == ".png" for p, a in pairs)
    mask = load_mask(pairs[1][1])
    assert mask[0, 0] == 149 and mask[5, 1] == 1 and mask[5, 30] == 255  # k -> k-1, 0 -> 255
    assert len(read_split(base, "val")) == 2


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="images/training"):
        read_split(tmp_path, "train")
    base = hand_layout(tmp_path)
    (base / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(UserError, match="ADE_train_00000002.jpg has no annotation"):
        read_split(base, "train")
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((4, 4), 151, np.uint8), mode="L").save(bad)
    with pytest.raises(UserError, match="class 151, above the 150 classes"):
        load_mask(bad)
    Image.fromarray(np.zeros((4, 5), np.uint8), mode="L").save(bad)
    with pytest.raises(UserError, match="is 5x4 but its image is 8x8"):
        load_mask(bad, image_size=(8, 8))
    for p in (base / "images" / "validation").glob("*.jpg"):
        p.unlink()
    with pytest.raises(UserError, match="val split is empty"):
        read_split(base, "val")


def test_generated_layout_loads_with_the_real_reader(tmp_path):
    write_ade20k(tmp_path, num_train=6, num_val=3, image_size=32, num_classes=8, seed=0)
    pairs = read_split(tmp_path / "ADEChallengeData2016", "train")
    assert len(pairs) == 6
    masks = np.stack([load_mask(a) for _, a in pairs])
    assert set(np.unique(masks)) <= set(range(8)) | {255} and len(np.unique(masks)) > 3


def test_rescale_keeps_the_aspect_ratio_like_mmcv():
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert rescale_size(300, 400, (2048, 512)) == (512, 683)
    assert rescale_size(64, 64, (128, 32)) == (32, 32)


def test_train_transform_moves_the_mask_with_the_image():
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    image[:, :, :20] = 255  # left half white
    mask = torch.zeros(1, 40, 40, dtype=torch.int64)
    mask[:, :, :20] = 3
    transform = SegTrainTransform(crop=16, scale=(80, 40), cat_max_ratio=1.0)
    for seed in range(8):
        img, m = transform(tv_tensors.Image(image), tv_tensors.Mask(mask), random.Random(seed))
        white = img.mean(0) > img.mean()  # the brighter of the two halves, whatever the distortion
        assert img.shape == (3, 16, 16) and m.shape == (1, 16, 16)
        assert ((m[0] == 3) == white).float().mean() > 0.9  # same pixels, flipped or not


def test_cat_max_ratio_avoids_crops_dominated_by_one_class():
    mask = torch.zeros(1, 64, 64, dtype=torch.int64)
    mask[:, :, :20] = 1  # two classes split at column 20

    def balanced(m):
        share = (m == 1).float().mean().item()
        return 0.25 < share < 0.75

    image = torch.zeros(3, 64, 64)
    with_ratio = sum(balanced(random_crop(image, mask, 16, 0.75, random.Random(s))[1]) for s in range(30))
    plain = sum(balanced(random_crop(image, mask, 16, 1.0, random.Random(s))[1]) for s in range(30))
    assert with_ratio >= 25 and plain < 15


def test_slide_inference_equals_whole_inference_for_a_pointwise_predictor():
    conv = torch.nn.Conv2d(3, 5, 1)
    images = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        whole = whole_inference(conv, images)
        slide = slide_inference(conv, images, crop=16, stride=11, num_classes=5)
    torch.testing.assert_close(slide, whole, atol=1e-5, rtol=1e-5)


def test_datamodule_batches(tmp_path):
    write_ade20k(tmp_path, num_train=6, num_val=3, image_size=48, num_classes=8, seed=0)
    dm = ADE20KDataModule(tmp_path / "ADEChallengeData2016", crop_size=16, scale=(64, 32), batch_size=4,
                          val_batch_size=3, num_workers=0, num_classes=150)
    images, masks, indices = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and masks.shape == (4, 16, 16) and images.abs().max() <= 1
    images, masks, _ = next(iter(dm.val_dataloader()))
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 48, 48)  # ground truth at its own size
    assert dm.calibration_images(4).shape == (4, 3, 16, 16)
