"""The tf.data pipeline on tiny data: TF decoding equals the numpy readers, augmentation keeps
image and mask aligned and never invents classes, and a seed makes it reproducible."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edgeseg.data.base import MASK_BINARY, MASK_INDEX, MASK_PALETTE, ClassInfo, FileDataset
from edgeseg.data.pipeline import AugmentConfig, make_tf_dataset
from edgeseg.errors import DataError
from edgeseg.spec import default_palette

H, W = 16, 24
THREE = ClassInfo(names=("a", "b", "c"))


def _asymmetric_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Left third red with class 1, the rest blue with class 2: a flip is visible in both."""
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 3] = (255, 0, 0)
    image[:, W // 3 :] = (0, 0, 255)
    image[0, 0, 1] = seed  # makes samples distinct
    mask = np.full((H, W), 2, np.uint8)
    mask[:, : W // 3] = 1
    mask[-2:, :] = 255  # an ignored strip must stay ignored
    return image, mask


class MemoryDataset:
    """A rendered dataset (no files), like the synthetic world."""

    def __init__(self, pairs, classes=THREE, name="memory"):
        self.pairs, self.classes, self.name = pairs, classes, name

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int):
        return self.pairs[index]


def _write_files(root: Path, pairs, mask_format=MASK_INDEX, image_suffix=".png", mask_suffix=".png") -> FileDataset:
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "ann").mkdir(parents=True, exist_ok=True)
    images, masks = [], []
    for i, (image, mask) in enumerate(pairs):
        image_path, mask_path = root / "img" / f"{i}{image_suffix}", root / "ann" / f"{i}{mask_suffix}"
        cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if mask_format == MASK_PALETTE:
            pil = Image.fromarray(mask, mode="P")
            pil.putpalette([c for colour in default_palette(256) for c in colour])
            pil.save(mask_path)
        elif mask_format == MASK_BINARY and i % 2:  # colour masks, with colours near the threshold
            colour = np.random.default_rng(i).integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
            cv2.imwrite(str(mask_path), colour)
        elif mask_format == MASK_BINARY:
            cv2.imwrite(str(mask_path), np.where(mask == 1, 255, 0).astype(np.uint8))
        else:
            cv2.imwrite(str(mask_path), mask)
        images.append(image_path)
        masks.append(mask_path)
    classes = ClassInfo(names=("bg", "fg"), task="binary") if mask_format == MASK_BINARY else THREE
    return FileDataset("files", classes, images, masks, mask_format)


def _random_pairs(count: int, values=(0, 1, 2, 255)):
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(count):
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        mask = rng.choice(np.array(values, np.uint8), (H, W))
        pairs.append((image, mask))
    return pairs


def _collect(dataset):
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(masks)


@pytest.mark.parametrize(
    "mask_format, image_suffix, mask_suffix",
    [(MASK_INDEX, ".png", ".png"), (MASK_PALETTE, ".png", ".png"), (MASK_BINARY, ".png", ".png"),
     (MASK_INDEX, ".tif", ".bmp")],  # fmt: skip
)
def test_eval_pipeline_equals_the_numpy_readers(tmp_path, mask_format, image_suffix, mask_suffix):
    values = (0, 1) if mask_format == MASK_BINARY else (0, 1, 2, 255)
    ds = _write_files(tmp_path, _random_pairs(5, values), mask_format, image_suffix, mask_suffix)
    images, masks = _collect(make_tf_dataset(ds, (H, W), batch=2, training=False))
    assert images.dtype == np.float32 and images.shape == (5, H, W, 3)  # eval keeps the last partial batch
    assert masks.dtype == np.uint8 and masks.shape == (5, H, W)
    for i in range(5):
        image, mask = ds.load(i)
        np.testing.assert_array_equal(images[i], image.astype(np.float32))
        np.testing.assert_array_equal(masks[i], mask)


def test_eval_resize_is_bilinear_for_images_and_nearest_for_masks(tmp_path):
    ds = _write_files(tmp_path, _random_pairs(3))
    images, masks = _collect(make_tf_dataset(ds, (8, 12), batch=3, training=False))
    assert images.shape == (3, 8, 12, 3) and masks.shape == (3, 8, 12)
    for i in range(3):
        image, mask = ds.load(i)
        expected = cv2.resize(image, (12, 8), interpolation=cv2.INTER_LINEAR)  # the runtime's resize
        assert np.abs(images[i] - expected.astype(np.float32)).max() <= 1.0
        assert set(np.unique(masks[i])) <= set(np.unique(mask))


def test_training_batches_shapes_and_drop_remainder(tmp_path):
    ds = _write_files(tmp_path, _random_pairs(7))
    batches = list(make_tf_dataset(ds, (12, 20), batch=3, training=True, seed=1))
    assert len(batches) == 2  # 7 samples -> 2 full batches of 3
    for images, masks in batches:
        assert images.shape == (3, 12, 20, 3) and images.dtype == tf.float32
        assert masks.shape == (3, 12, 20) and masks.dtype == tf.uint8
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0


def test_augmentation_never_invents_classes(tmp_path):
    ds = _write_files(tmp_path, _random_pairs(6, values=(0, 2, 255)))
    augment = AugmentConfig(scale=(0.3, 0.9))
    dataset = make_tf_dataset(ds, (20, 28), batch=2, training=True, seed=0, augment=augment)
    seen = set()
    for _ in range(3):  # epochs
        seen |= set(np.unique(_collect(dataset)[1]).tolist())
    assert seen == {0, 2, 255}


def test_flip_moves_image_and_mask_together():
    pairs = [_asymmetric_pair(i) for i in range(8)]
    augment = AugmentConfig(flip=True, scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    dataset = make_tf_dataset(MemoryDataset(pairs), (H, W), batch=4, training=True, seed=2, augment=augment)
    flipped = kept = 0
    for _ in range(2):
        images, masks = _collect(dataset)
        for image, mask in zip(images, masks):
            red, blue = image[..., 0] > 128, image[..., 2] > 128
            labelled = mask != 255
            np.testing.assert_array_equal(red[labelled], mask[labelled] == 1)  # red exactly where class 1
            np.testing.assert_array_equal(blue[labelled], mask[labelled] == 2)
            assert (mask[-2:] == 255).all()  # flips are horizontal: the ignored bottom strip stays
            flipped += int(mask[0, -1] == 1)
            kept += int(mask[0, 0] == 1)
    assert flipped > 0 and kept > 0 and flipped + kept == 16


def test_scale_crop_keeps_image_and_mask_aligned():
    pairs = [_asymmetric_pair(i) for i in range(4)]
    augment = AugmentConfig(flip=True, scale=(0.4, 0.8), brightness=0, contrast=0, saturation=0, hue=0)
    dataset = make_tf_dataset(MemoryDataset(pairs), (H, W), batch=4, training=True, seed=3, augment=augment)
    for _ in range(3):
        images, masks = _collect(dataset)
        for image, mask in zip(images, masks):
            # away from the class boundary (bilinear blends one pixel there) colour follows the class
            inner = (mask == 1) & (np.roll(mask, 1, axis=1) == 1) & (np.roll(mask, -1, axis=1) == 1)
            assert (image[..., 0][inner] > image[..., 2][inner]).all()
            inner = (mask == 2) & (np.roll(mask, 1, axis=1) == 2) & (np.roll(mask, -1, axis=1) == 2)
            assert (image[..., 2][inner] > image[..., 0][inner]).all()


def test_colour_jitter_changes_images_but_not_masks(tmp_path):
    ds = _write_files(tmp_path, _random_pairs(4))
    jitter = AugmentConfig(flip=False, scale=(1.0, 1.0), brightness=0.3, contrast=0.5, saturation=0.5, hue=0.1)
    # a shuffle buffer of 1 keeps the order, so training and evaluation batches line up
    train = make_tf_dataset(ds, (H, W), batch=4, training=True, seed=4, augment=jitter, shuffle_buffer=1)
    plain = make_tf_dataset(ds, (H, W), batch=4, training=False)
    (jittered, train_masks), (images, masks) = _collect(train), _collect(plain)
    np.testing.assert_array_equal(train_masks, masks)
    assert np.abs(jittered - images).mean() > 5.0


def test_same_seed_same_batches_new_epoch_new_augmentation(tmp_path):
    ds = _write_files(tmp_path, _random_pairs(6))

    def build(seed):
        return make_tf_dataset(ds, (H, W), batch=6, training=True, seed=seed, augment=AugmentConfig())

    first, again, other = build(7), build(7), build(8)
    epoch1, repeat = _collect(first), _collect(again)
    np.testing.assert_array_equal(epoch1[0], repeat[0])
    np.testing.assert_array_equal(epoch1[1], repeat[1])
    assert not np.array_equal(epoch1[0], _collect(first)[0])  # the next epoch differs
    assert not np.array_equal(epoch1[0], _collect(other)[0])


def test_augment_off_and_config_errors(tmp_path):
    off = AugmentConfig.off()
    assert not off.enabled and AugmentConfig().enabled
    ds = _write_files(tmp_path, _random_pairs(3))
    images, masks = _collect(make_tf_dataset(ds, (H, W), batch=3, training=True, augment=off, shuffle_buffer=1))
    plain = _collect(make_tf_dataset(ds, (H, W), batch=3, training=False))
    np.testing.assert_array_equal(images, plain[0])
    np.testing.assert_array_equal(masks, plain[1])
    unaugmented = _collect(make_tf_dataset(ds, (H, W), batch=3, training=True, augment=False, shuffle_buffer=1))
    np.testing.assert_array_equal(unaugmented[0], plain[0])
    with pytest.raises(DataError, match="augment scale"):
        AugmentConfig(scale=(0.0, 1.0))
    with pytest.raises(DataError, match="augment hue"):
        AugmentConfig(hue=0.7)


def test_pipeline_refuses_bad_data_before_tensorflow_sees_it(tmp_path):
    ds = _write_files(tmp_path, _random_pairs(3))
    with pytest.raises(DataError, match="fewer than the batch size 8"):
        make_tf_dataset(ds, (H, W), batch=8, training=True)
    cv2.imwrite(str(ds.mask_paths[1]), np.full((H, W), 9, np.uint8))
    with pytest.raises(DataError, match=r"1\.png has values 9"):
        make_tf_dataset(ds, (H, W), batch=1, training=False)


def test_file_cache(tmp_path):
    ds = _write_files(tmp_path / "data", _random_pairs(3))
    cache = tmp_path / "cache" / "train"
    first = _collect(make_tf_dataset(ds, (H, W), batch=3, training=False, cache=str(cache)))
    assert any(p.name.startswith("train") for p in cache.parent.iterdir())
    second = _collect(make_tf_dataset(ds, (H, W), batch=3, training=False, cache=str(cache)))
    np.testing.assert_array_equal(first[1], second[1])


def test_synthetic_world_through_the_pipeline():
    from edgeseg.data import open_dataset

    ds = open_dataset("synthetic://?n=8", "train", size=(32, 32))
    images, masks = _collect(make_tf_dataset(ds, (24, 24), batch=4, training=True, seed=0))
    assert images.shape == (8, 24, 24, 3) and masks.shape == (8, 24, 24)
    valid = set(range(len(ds.classes.names))) | {ds.classes.ignore_index}
    assert set(np.unique(masks).tolist()) <= valid
