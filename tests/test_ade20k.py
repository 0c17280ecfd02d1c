"""ADE20K: the reader on the ADEChallengeData2016 layout, masks, bad inputs, the synthetic generator, the
mmseg-protocol transforms (against mmcv/mmseg where installed), the data module and slide inference."""

from __future__ import annotations

import random
import time
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from aselect_bench.data.ade20k import CLASS_NAMES, PALETTE, load_mask, load_pair, read_split, resolve_root
from aselect_bench.data.ade20k_datamodule import ADE20KDataModule, selection_size
from aselect_bench.data.seg_transforms import (
    SegEvalTransform,
    SegTrainTransform,
    photometric_distortion,
    random_crop,
    rescale_size,
    resize_pair,
    sample_photometric,
)
from aselect_bench.data.synth_ade20k import render_scenes, synthetic_class_names, write_ade20k
from aselect_bench.errors import UserError
from aselect_bench.heads.inference import slide_inference, whole_inference
from tests.mmseg_reference import import_mmseg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def hand_layout(root, n=2, size=(40, 30)):
    """ADEChallengeData2016 written file for file: left half class ``i``, the rest 'other', one pixel 150."""
    base = root / "ADEChallengeData2016"
    for split, prefix in (("training", "train"), ("validation", "val")):
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for i in range(n, 0, -1):  # written in reverse: the reader sorts
            stem = f"ADE_{prefix}_{i:08d}"
            Image.new("RGB", size, (i * 20, 0, 0)).save(base / "images" / split / f"{stem}.jpg")
            mask = np.zeros(size[::-1], np.uint8)
            mask[:, : size[0] // 2] = i
            mask[0, 0] = 150
            Image.fromarray(mask).save(base / "annotations" / split / f"{stem}.png")
        (base / "annotations" / split / f"ADE_{prefix}_99999999.png").write_bytes(b"")  # no image: ignored
    return base


# ----------------------------------------------------------------------------------------------- reader

def test_reader_pairs_by_stem_sorted_and_mask_convention(tmp_path):
    base = hand_layout(tmp_path)
    pairs = read_split(base, "train")
    assert [p.name for p, _ in pairs] == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg"]
    assert all(a.stem == p.stem and a.parent.name == "training" and a.suffix == ".png" for p, a in pairs)
    mask = load_mask(pairs[1][1])
    assert mask.dtype == np.int64 and mask.shape == (30, 40)
    assert mask[0, 0] == 149 and mask[5, 1] == 1 and mask[5, 30] == 255  # 150 -> 149, k -> k-1, 0 -> 255
    assert [p.name for p, _ in read_split(str(base), "val")] == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]
    image, mask = load_pair(*pairs[0])
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8 and mask.shape == (30, 40)


def test_class_names_and_palette():
    assert len(CLASS_NAMES) == 150 == len(PALETTE) and CLASS_NAMES[:3] == ("wall", "building", "sky")
    assert CLASS_NAMES[-1] == "flag" and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


def test_class_names_and_palette_equal_mmseg():
    meta = import_mmseg().ADE20KDataset.METAINFO
    assert CLASS_NAMES == tuple(meta["classes"])
    assert PALETTE == tuple(tuple(c) for c in meta["palette"])


def test_bad_layouts_stop_with_one_clear_message(tmp_path):
    with pytest.raises(UserError, match="data root .*nowhere does not exist.*ADEChallengeData2016"):
        read_split(tmp_path / "nowhere", "train")
    with pytest.raises(UserError, match="images/training is missing"):
        read_split(tmp_path, "train")
    with pytest.raises(UserError, match="unknown ADE20K split 'test'"):
        read_split(tmp_path, "test")
    base = hand_layout(tmp_path)
    for p in (base / "annotations" / "validation").iterdir():
        p.unlink()
    (base / "annotations" / "validation").rmdir()
    with pytest.raises(UserError, match="annotations/validation is missing"):
        read_split(base, "val")
    (base / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(UserError, match="ADE_train_00000002.jpg has no annotation .*ADE_train_00000002.png"):
        read_split(base, "train")
    (base / "annotations" / "validation").mkdir()
    for p in (base / "images" / "validation").glob("*.jpg"):
        p.unlink()
    with pytest.raises(UserError, match="the val split is empty"):
        read_split(base, "val")


def test_bad_masks_stop_with_one_clear_message(tmp_path):
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((4, 4), 151, np.uint8)).save(bad)
    with pytest.raises(UserError, match="bad.png holds class 151, above the 150 classes"):
        load_mask(bad)
    assert load_mask(bad, num_classes=200)[0, 0] == 150
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(bad)
    with pytest.raises(UserError, match="bad.png is 5x4 but its image is 8x8"):
        load_mask(bad, image_size=(8, 8))
    Image.new("RGB", (4, 4)).save(bad)
    with pytest.raises(UserError, match="single-channel PNG"):
        load_mask(bad)
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read annotation .*bad.png"):
        load_mask(bad)
    with pytest.raises(UserError, match="annotation .*missing.png does not exist"):
        load_mask(tmp_path / "missing.png")
    image = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(image)
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(bad)
    with pytest.raises(UserError, match="is 9x8 but its image is 8x8"):
        load_pair(image, bad)


# -------------------------------------------------------------------------------------------- generator

def test_generator_writes_the_layout_quickly_and_deterministically(tmp_path):
    start = time.perf_counter()
    out = write_ade20k(tmp_path / "a", num_train=20, num_val=5, image_size=64, num_classes=10, seed=3)
    assert time.perf_counter() - start < 10
    base = out / "ADEChallengeData2016"
    train, val = read_split(base, "train"), read_split(base, "val")
    assert len(train) == 20 and len(val) == 5 and train[0][0].name == "ADE_train_00000001.jpg"
    with Image.open(train[0][0]) as img, Image.open(train[0][1]) as ann:
        assert img.format == "JPEG" and img.size == (64, 64) and ann.format == "PNG" and ann.mode == "L"
    assert (base / "sceneCategories.txt").read_text().splitlines()[0].startswith("ADE_train_00000001 ")
    info = (base / "objectInfo150.txt").read_text().splitlines()
    assert info[0].split("\t") == ["Idx", "Ratio", "Train", "Val", "Name"] and info[1].endswith("synth-brick")
    masks = np.stack([load_mask(a, num_classes=10) for _, a in train])
    assert set(np.unique(masks)) == set(range(10)) | {255}  # every class and 'other' occur
    again = write_ade20k(tmp_path / "b", num_train=20, num_val=5, image_size=64, num_classes=10, seed=3)
    for (i1, a1), (i2, a2) in zip(train, read_split(again / "ADEChallengeData2016", "train")):
        assert i1.read_bytes() == i2.read_bytes() and a1.read_bytes() == a2.read_bytes()


def test_render_scenes_in_memory():
    images, masks = render_scenes(6, image_size=32, seed=0, num_classes=8)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8 and masks.shape == (6, 32, 32)
    assert masks.max() <= 8 and len(np.unique(masks)) > 3
    again, _ = render_scenes(6, image_size=32, seed=0, num_classes=8)
    other, _ = render_scenes(6, image_size=32, seed=1, num_classes=8)
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    # each class is its own material: mean colours of two classes differ clearly
    big_images, big_masks = render_scenes(40, image_size=32, seed=0, num_classes=8)
    means = np.stack([big_images[big_masks == k].mean(0) for k in range(1, 9)])
    gaps = np.abs(means[:, None] - means[None]).sum(-1) + np.eye(8) * 1e9
    assert gaps.min() > 10
    names = synthetic_class_names(10)
    assert len(set(names)) == 10 and all(n.startswith("synth-") for n in names)
    with pytest.raises(UserError, match="1..12 classes"):
        render_scenes(1, num_classes=13)


# ------------------------------------------------------------------------------------------- transforms

def test_rescale_size_equals_mmcv():
    mmcv = pytest.importorskip("mmcv")
    rng = np.random.default_rng(0)
    for h, w in rng.integers(20, 1500, (200, 2)).tolist() + [[512, 683], [300, 400], [64, 64]]:
        for scale in ((2048, 512), (128, 32), (1024, 256)):
            assert rescale_size(h, w, scale) == mmcv.rescale_size((w, h), scale)[::-1]


def test_resize_equals_mmcv_cv2_bilinear_and_nearest():
    mmcv = pytest.importorskip("mmcv")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = rng.integers(0, 150, (37, 53)).astype(np.uint8)
    for size in [(18, 26), (74, 106), (50, 71), (23, 31)]:
        img, m = resize_pair(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                             tv_tensors.Mask(torch.from_numpy(mask).long()[None]), size)
        ref_img = mmcv.imresize(image, size[::-1], interpolation="bilinear")
        ref_mask = mmcv.imresize(mask, size[::-1], interpolation="nearest")
        assert np.abs(img.permute(1, 2, 0).numpy().astype(int) - ref_img.astype(int)).max() <= 1
        assert np.array_equal(m[0].numpy(), ref_mask)


def mmseg_draws(params: dict) -> list:
    """The values mmseg's ``PhotoMetricDistortion`` draws (``randint(2)`` gates, then values) for ``params``."""
    def step(value):
        return [int(value is not None)] + ([value] if value is not None else [])

    contrast = step(params["contrast"])
    return (step(params["brightness"]) + [int(params["contrast_first"])]
            + (contrast if params["contrast_first"] else []) + step(params["saturation"]) + step(params["hue"])
            + ([] if params["contrast_first"] else contrast))


def scripted_random(values: list) -> types.SimpleNamespace:
    """A stand-in for ``numpy.random`` whose ``randint`` and ``uniform`` return ``values`` in order."""
    queue = iter(values)
    return types.SimpleNamespace(randint=lambda *a: next(queue), uniform=lambda *a: next(queue), rest=queue)


def test_photometric_distortion_equals_mmseg(monkeypatch):
    mm = import_mmseg()
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ref = mm.transforms.PhotoMetricDistortion()
    seen = set()
    for seed in range(40):
        params = sample_photometric(random.Random(seed))
        fake = scripted_random(mmseg_draws(params))
        monkeypatch.setattr(mm.transforms, "random", fake)
        expected = ref.transform({"img": image[..., ::-1].copy()})["img"][..., ::-1]  # mmseg works in BGR
        assert next(fake.rest, None) is None  # every draw was used: the same steps in mmseg's order
        ours = photometric_distortion(torch.from_numpy(image).permute(2, 0, 1), params).permute(1, 2, 0).numpy()
        diff = np.abs(ours - expected.astype(np.float32))
        if params["saturation"] is None and params["hue"] is None:
            assert diff.max() == 0  # brightness and contrast: exact
        else:  # cv2's uint8 HSV quantises hue to 2 degrees and S to 1/255; ours is exact in float
            assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8
        seen.add((params["saturation"] is not None, params["hue"] is not None, params["contrast_first"]))
    assert len(seen) == 8  # every branch was exercised


def test_train_transform_moves_the_mask_with_the_image():
    mask = torch.randint(0, 6, (1, 20, 30))
    image = (mask * 40).expand(3, -1, -1).to(torch.uint8)  # pixel value encodes its class
    for flip_prob in (0.0, 1.0):
        transform = SegTrainTransform(crop=12, scale=(30, 20), ratio_range=(1.0, 1.0), cat_max_ratio=1.0,
                                      flip_prob=flip_prob, photometric=False)
        for seed in range(5):
            img, m = transform(tv_tensors.Image(image), tv_tensors.Mask(mask), random.Random(seed))
            assert img.shape == (3, 12, 12) and m.shape == (12, 12) and m.dtype == torch.int64
            assert torch.equal(((img[0] + 1) * 127.5).round().long(), m * 40)
    # flipping mirrors: with and without flip, the same window is mirrored
    kwargs = dict(crop=12, scale=(30, 20), ratio_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=False)
    _, m0 = SegTrainTransform(flip_prob=0.0, **kwargs)(tv_tensors.Image(image), tv_tensors.Mask(mask), random.Random(1))
    _, m1 = SegTrainTransform(flip_prob=1.0, **kwargs)(tv_tensors.Image(image), tv_tensors.Mask(mask), random.Random(1))
    assert torch.equal(m0.flip(-1), m1)


def test_train_transform_range_resize_and_padding():
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    mask = torch.randint(0, 150, (1, 40, 60))
    transform = SegTrainTransform(crop=24, scale=(120, 40))  # short side 20..80 after the random ratio
    for seed in range(10):
        img, m = transform(tv_tensors.Image(image), tv_tensors.Mask(mask), random.Random(seed))
        assert img.shape == (3, 24, 24) and m.shape == (24, 24) and img.dtype == torch.float32
        assert img.min() >= -1 and img.max() <= 1 and ((m >= 0) & (m < 150) | (m == 255)).all()
    small = SegTrainTransform(crop=32, scale=(40, 10), ratio_range=(1.0, 1.0), photometric=False)
    img, m = small(tv_tensors.Image(image), tv_tensors.Mask(mask), random.Random(0))  # resized to 10x15
    assert img.shape == (3, 32, 32) and (m[10:] == 255).all() and (m[:, 15:] == 255).all() and (m[:10, :15] < 150).all()
    assert (img[:, 10:] == 0).all() and (img[:, :, 15:] == 0).all()  # mmseg pads normalised images with 0


def test_eval_transform_resizes_the_image_only():
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    img, m = SegEvalTransform(scale=(128, 32))(tv_tensors.Image(image), tv_tensors.Mask(torch.zeros(1, 48, 64)))
    assert img.shape == (3, 32, 43) and m.shape == (48, 64) and m.dtype == torch.int64


def test_cat_max_ratio_avoids_crops_dominated_by_one_class():
    mask = torch.zeros(1, 64, 64, dtype=torch.int64)
    mask[:, :, :20] = 1  # two classes split at column 20
    mask[:, :4] = 255  # ignored pixels do not count

    def balanced(m):
        labelled = m[m != 255]
        share = (labelled == 1).float().mean().item()
        return 0.25 < share < 0.75

    image = torch.zeros(3, 64, 64)
    with_ratio = sum(balanced(random_crop(image, mask, 16, 0.75, random.Random(s))[1]) for s in range(30))
    plain = sum(balanced(random_crop(image, mask, 16, 1.0, random.Random(s))[1]) for s in range(30))
    assert with_ratio >= 25 and plain < 15
    one_class = torch.zeros(1, 64, 64, dtype=torch.int64)  # impossible to satisfy: 10 retries, then any crop
    img, m = random_crop(image, one_class, (16, 24), 0.75, random.Random(0))
    assert m.shape == (1, 16, 24) and img.shape == (3, 16, 24)


# -------------------------------------------------------------------------------------------- inference

@pytest.mark.parametrize("size", [(37, 50), (16, 16), (10, 40), (9, 7)])
def test_slide_inference_equals_whole_inference_for_a_pointwise_predictor(size):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 1)
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        whole = whole_inference(conv, images)
        for pad in (True, False):
            slide = slide_inference(conv, images, crop=16, stride=11, num_classes=5, pad_to_crop=pad)
            torch.testing.assert_close(slide, whole, atol=1e-5, rtol=1e-5)


def test_slide_inference_pads_small_windows_to_the_crop():
    shapes = []

    def predict(x):
        shapes.append(tuple(x.shape[-2:]))
        return x[:, :2] * 2

    images = torch.randn(1, 3, 10, 40)
    out = slide_inference(predict, images, crop=16, stride=12, num_classes=2)
    assert set(shapes) == {(16, 16)} and out.shape == (1, 2, 10, 40)
    torch.testing.assert_close(out, images[:, :2] * 2)
    out = whole_inference(predict, images[..., :9, :30], multiple=8)
    assert shapes[-1] == (16, 32) and out.shape == (1, 2, 9, 30)


def test_slide_inference_equals_mmseg():
    mm = import_mmseg()
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)  # not translation-equivariant at window borders

    def predict(x):  # window-dependent: border effects plus the window's mean
        return conv(x) + x.mean((2, 3), keepdim=True)[:, :1]

    for size, crop, stride, pad in [((37, 50), 16, 11, True), ((64, 48), (24, 20), (16, 12), True),
                                    ((10, 40), 16, 12, False), ((9, 7), 16, 8, False)]:
        fake = types.SimpleNamespace(test_cfg=types.SimpleNamespace(
            crop_size=crop if isinstance(crop, tuple) else (crop, crop),
            stride=stride if isinstance(stride, tuple) else (stride, stride)),
            out_channels=4, encode_decode=lambda x, metas: predict(x))
        images = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = mm.EncoderDecoder.slide_inference(fake, images, [{}])
            ours = slide_inference(predict, images, crop, stride, num_classes=4, pad_to_crop=pad)
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------------------ data module

@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_ade20k(tmp_path_factory.mktemp("ade"), num_train=12, num_val=3, image_size=48, num_classes=8, seed=0)


def test_datamodule_batches(synthetic_root):
    dm = ADE20KDataModule(synthetic_root / "ADEChallengeData2016", crop_size=16, scale=(64, 32), batch_size=4,
                          val_batch_size=3, num_workers=0, num_classes=8)
    images, masks, indices = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and -1 <= images.min() < images.max() <= 1
    assert masks.shape == (4, 16, 16) and masks.dtype == torch.int64 and indices.shape == (4,)
    assert set(masks.unique().tolist()) <= set(range(8)) | {255}
    images, masks, _ = next(iter(dm.val_dataloader()))
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 48, 48)  # ground truth at its own size
    assert dm.calibration_images(4).shape == (4, 3, 16, 16) and dm.split_size("val") == 5 == dm.split_size("test") + 2
    # training views: reproducible for a seed and epoch, new in the next epoch
    again = ADE20KDataModule(synthetic_root / "ADEChallengeData2016", crop_size=16, scale=(64, 32), batch_size=4,
                             num_workers=0, num_classes=8)
    first = next(iter(again.train_dataloader()))[0]
    torch.testing.assert_close(first, next(iter(ADE20KDataModule(
        synthetic_root / "ADEChallengeData2016", crop_size=16, scale=(64, 32), batch_size=4, num_workers=0,
        num_classes=8).train_dataloader()))[0])
    again.set_epoch(1)
    assert not torch.equal(first, next(iter(again.train_dataloader()))[0])
    assert dm.view_fingerprint("val") and dm.view_fingerprint("train") is None


def test_datamodule_evaluates_images_of_different_sizes_one_by_one(tmp_path):
    base = hand_layout(tmp_path, n=3)
    Image.new("RGB", (30, 40)).save(base / "images" / "validation" / "ADE_val_00000002.jpg")
    Image.fromarray(np.ones((40, 30), np.uint8)).save(base / "annotations" / "validation" / "ADE_val_00000002.png")
    dm = ADE20KDataModule(base, crop_size=16, scale=(64, 32), batch_size=2, val_batch_size=3, num_workers=0,
                          selection_size=1)
    shapes = [(tuple(i.shape), tuple(m.shape)) for i, m, _ in dm.test_dataloader()]
    assert shapes == [((1, 3, 32, 43), (1, 30, 40)), ((1, 3, 43, 32), (1, 40, 30)), ((1, 3, 32, 43), (1, 30, 40))]
    assert [tuple(i.shape) for i, _, _ in dm.val_dataloader()] == [(1, 3, 32, 43)]  # one batch size for both
    same = ADE20KDataModule(base, crop_size=16, scale=(64, 32), val_batch_size=3, num_workers=0, selection_size=1)
    (base / "images" / "validation" / "ADE_val_00000002.jpg").unlink()
    assert same.eval_batch_size() == 3


def test_datamodule_reports_a_mismatched_pair(tmp_path):
    base = hand_layout(tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(base / "annotations" / "training" / "ADE_train_00000001.png")
    dm = ADE20KDataModule(base, crop_size=16, scale=(64, 32), batch_size=2, num_workers=0, selection_size=1)
    with pytest.raises(UserError, match="ADE_train_00000001.png is 5x5 but its image is 40x30"):
        for loader in (dm.train_dataloader(), dm.val_dataloader()):  # the pair is in one of the two
            list(loader)


def test_an_unreadable_image_is_left_out_and_counted_or_stops_when_strict(tmp_path):
    base = hand_layout(tmp_path, n=3)
    broken = base / "images" / "validation" / "ADE_val_00000002.jpg"
    broken.write_bytes(broken.read_bytes()[:30])  # a truncated JPEG
    dm = ADE20KDataModule(base, crop_size=16, scale=(64, 32), val_batch_size=3, num_workers=2, selection_size=1)
    masks = [m for _, m, _ in dm.test_dataloader()]
    assert sum(len(m) for m in masks) == 2 and dm.bad_files() == [str(broken)]  # no other pair stands in
    assert [p[0].name for p in dm.sets["test"].pairs] == ["ADE_val_00000001.jpg", "ADE_val_00000003.jpg"]
    strict = ADE20KDataModule(base, crop_size=16, scale=(64, 32), val_batch_size=1, num_workers=0, strict=True,
                              selection_size=1)
    with pytest.raises(UserError, match="ADE_val_00000002.jpg"):
        strict.setup()


def test_selection_split_is_a_fixed_held_out_slice_of_training(synthetic_root):
    """Selection (stage val): a seed-independent slice of the training images, never trained on; the
    official validation split is the test stage."""
    assert selection_size(20210) == 1000 and selection_size(160) == 8 and selection_size(12) == 5
    base = synthetic_root / "ADEChallengeData2016"
    official = read_split(base, "train")
    dms = [ADE20KDataModule(base, crop_size=16, scale=(64, 32), num_workers=0, num_classes=8, seed=seed)
           for seed in (0, 1)]
    for dm in dms:
        dm.setup()
    train, selection = dms[0].sets["train"].pairs, dms[0].sets["val"].pairs
    assert len(selection) == 5 and not set(train) & set(selection) and sorted(train + selection) == official
    assert dms[1].sets["val"].pairs == selection and dms[1].sets["train"].pairs == train  # whatever the run seed
    assert dms[0].sets["test"].pairs == read_split(base, "val")
    assert dms[0].split_sizes() == {"training": 7, "selection": 5, "validation": 3}
    assert ADE20KDataModule.SPLIT_NAMES["val"] == "selection" and ADE20KDataModule.SPLIT_NAMES["test"] == "validation"
    assert len(dms[0].calibration_images(100)) == 7  # the HFR scan draws from the training part only
    images, masks, indices = next(iter(dms[0].val_dataloader()))  # the evaluation view of the selection images
    assert images.shape[-2:] == (32, 32) and masks.shape[-2:] == (48, 48) and indices.tolist() == [0]
    other = ADE20KDataModule(base, crop_size=16, scale=(64, 32), num_workers=0, num_classes=8, selection_size=3)
    other.setup()
    assert len(other.sets["val"]) == 3 and len(other.sets["train"]) == 9
    with pytest.raises(UserError, match="cannot hold out 12 of 12 training images"):
        ADE20KDataModule(base, num_workers=0, num_classes=8, selection_size=12).setup()


def test_data_root_is_the_folder_or_its_parent(synthetic_root, tmp_path):
    folder = synthetic_root / "ADEChallengeData2016"
    assert resolve_root(synthetic_root) == folder == resolve_root(folder) == resolve_root(f"{folder}/")
    for split in ("train", "val"):
        assert read_split(synthetic_root, split) == read_split(folder, split)
    dms = [ADE20KDataModule(root, crop_size=16, scale=(64, 32), num_workers=0, num_classes=8)
           for root in (synthetic_root, folder)]
    for stage in ("val", "test"):
        assert dms[0].view_fingerprint(stage) == dms[1].view_fingerprint(stage)
    with pytest.raises(UserError, match="the folder .*images/training is missing.*or at the folder holding it"):
        read_split(tmp_path, "train")


def test_scene_grain_is_fine_detail_over_the_same_scene():
    clean, masks = render_scenes(4, image_size=64, seed=0, num_classes=8, grain=1e-6)  # same draws, no grain
    grainy, same_masks = render_scenes(4, image_size=64, seed=0, num_classes=8, grain=0.3)
    assert np.array_equal(masks, same_masks)
    fine = [np.abs(np.diff(x.astype(np.float32) / 255, axis=2)).mean() for x in (clean, grainy)]
    assert fine[1] > 1.5 * fine[0]
    coarse = [x.astype(np.float32).reshape(4, 8, 8, 8, 8, 3).mean((2, 4)) / 255 for x in (clean, grainy)]
    assert np.abs(coarse[1] - coarse[0]).mean() < 0.03
    with pytest.raises(UserError, match="grain"):
        render_scenes(1, grain=-0.1)


@pytest.mark.parametrize("args, line", [
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"crop_size": 0}, "crop_size must be >= 1, got 0"),
    ({"num_classes": 1}, "num_classes must be >= 2, got 1"),
])
def test_the_datamodule_refuses_a_bad_size_when_built(tmp_path, args, line):
    with pytest.raises(UserError, match=f"^{line}$"):
        ADE20KDataModule(tmp_path, **args)
