"""The runtime's preprocessing against numbers worked out by hand, one spec field at a time.

Foreign models are the ones with BGR input, mean/std normalisation and NCHW layout, so each of
those is checked here on a 2x2 picture whose expected tensor is written out literally, never
computed with the code under test. Order: resize, channel order, scale, then mean, then std
(mean and std are in the tensor's channel order), then layout.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime.preprocess import preprocess, resize_frame
from edgeseg.spec import ModelSpec

# a 2x2 RGB picture: top-left (10, 20, 30), top-right (40, 50, 60), bottom-left (70, 80, 90), ...
PICTURE = np.array([[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]], np.uint8)


def spec(**fields) -> ModelSpec:
    return ModelSpec(class_names=("a", "b"), input_height=2, input_width=2, **fields)


def test_defaults_pass_the_pixels_through_as_float_nhwc():
    batch = preprocess(PICTURE, spec())
    assert batch.dtype == np.float32 and batch.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(batch[0], [[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]])


def test_bgr_reverses_the_channels():
    batch = preprocess(PICTURE, spec(channel_order="bgr"))
    np.testing.assert_array_equal(batch[0], [[[30, 20, 10], [60, 50, 40]], [[90, 80, 70], [120, 110, 100]]])


def test_scale():
    batch = preprocess(PICTURE, spec(scale=0.01))
    np.testing.assert_allclose(batch[0, 0, 0], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(batch[0, 1, 1], [1.0, 1.1, 1.2], rtol=1e-6)


def test_mean_is_subtracted_after_scaling():
    batch = preprocess(PICTURE, spec(scale=0.01, mean=(0.5, 0.4, 0.3)))
    np.testing.assert_allclose(batch[0, 0, 0], [-0.4, -0.2, 0.0], atol=1e-6)  # (0.1-0.5, 0.2-0.4, 0.3-0.3)
    np.testing.assert_allclose(batch[0, 1, 1], [0.5, 0.7, 0.9], atol=1e-6)  # (1.0-0.5, 1.1-0.4, 1.2-0.3)


def test_std_divides_after_the_mean():
    batch = preprocess(PICTURE, spec(scale=0.01, mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 2.0)))
    np.testing.assert_allclose(batch[0, 0, 0], [-0.8, -0.8, 0.0], atol=1e-6)
    np.testing.assert_allclose(batch[0, 1, 1], [1.0, 2.8, 0.45], atol=1e-6)


def test_bgr_mean_and_std_apply_to_the_swapped_channels():
    """Mean/std are given in the tensor's order: for a BGR model, mean[0] is blue's."""
    batch = preprocess(PICTURE, spec(channel_order="bgr", scale=0.01, mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 2.0)))
    # top-left (10, 20, 30) -> BGR (30, 20, 10) -> (0.3, 0.2, 0.1) -> -mean (-0.2, -0.2, -0.2) -> /std
    np.testing.assert_allclose(batch[0, 0, 0], [-0.4, -0.8, -0.1], atol=1e-6)


def test_imagenet_normalisation_of_one_pixel():
    """The usual PyTorch input: x / 255, then ImageNet mean and std, NCHW."""
    imagenet = spec(layout="NCHW", scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    white = np.full((2, 2, 3), 255, np.uint8)
    batch = preprocess(white, imagenet)
    # (1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225
    np.testing.assert_allclose(batch[0, :, 0, 0], [2.2489083, 2.4285714, 2.64], rtol=1e-5)


def test_nchw_puts_the_channels_first():
    batch = preprocess(PICTURE, spec(layout="NCHW"))
    assert batch.shape == (1, 3, 2, 2) and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batch[0, 0], [[10, 40], [70, 100]])  # red
    np.testing.assert_array_equal(batch[0, 1], [[20, 50], [80, 110]])  # green
    np.testing.assert_array_equal(batch[0, 2], [[30, 60], [90, 120]])  # blue


def test_nchw_bgr_puts_blue_first():
    batch = preprocess(PICTURE, spec(layout="NCHW", channel_order="bgr"))
    np.testing.assert_array_equal(batch[0, 0], [[30, 60], [90, 120]])


def test_stretch_resize_is_bilinear_with_pixel_centres():
    """The only resize mode, "stretch": bilinear, pixel centres aligned (OpenCV's INTER_LINEAR)."""
    assert ModelSpec.__dataclass_fields__["resize"].default == "stretch"
    # down by 2 exactly: each output pixel is the mean of a 2x2 block
    wide = np.zeros((4, 4, 3), np.uint8)
    wide[:2, :2], wide[:2, 2:], wide[2:, :2], wide[2:, 2:] = 0, 100, 40, 200
    wide[0, 0] = 8  # block mean (8 + 0 + 0 + 0) / 4 = 2
    np.testing.assert_array_equal(resize_frame(wide, spec())[..., 0], [[2, 100], [40, 200]])
    # up by 2 in width: source positions -0.25 (edge), 0.25, 0.75, 1.25 (edge) between 0 and 200
    row = np.zeros((2, 2, 3), np.uint8)
    row[:, 1] = 200
    up = resize_frame(row, ModelSpec(class_names=("a", "b"), input_height=2, input_width=4))
    np.testing.assert_array_equal(up[0, :, 0], [0, 50, 150, 200])


def test_a_frame_of_another_size_is_resized_before_normalising():
    big = np.repeat(np.repeat(PICTURE, 2, axis=0), 2, axis=1)  # 4x4, each pixel doubled
    batch = preprocess(big, spec(channel_order="bgr", scale=0.01))
    np.testing.assert_allclose(batch[0, 0, 0], [0.3, 0.2, 0.1], atol=1e-6)
    np.testing.assert_allclose(batch[0, 1, 1], [1.2, 1.1, 1.0], atol=1e-6)


@pytest.mark.parametrize("frames", ["list", "array"])
def test_a_batch_keeps_frame_order(frames):
    second = PICTURE[::-1].copy()
    given = [PICTURE, second] if frames == "list" else np.stack([PICTURE, second])
    batch = preprocess(given, spec())
    assert batch.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(batch[1, 0, 0], [70, 80, 90])
