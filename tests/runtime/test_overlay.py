"""Colouring, blending, side-by-side and legends on tiny hand-made class maps."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.runtime.overlay import colorize, draw_legend, overlay, palette_lut, side_by_side

PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
CLASS_MAP = np.array([[0, 1, 2], [2, 255, 0]], dtype=np.uint8)


def test_colorize_looks_up_each_class_and_draws_unknown_ids_black():
    picture = colorize(CLASS_MAP, PALETTE)
    expected = np.array(
        [[PALETTE[0], PALETTE[1], PALETTE[2]], [PALETTE[2], (0, 0, 0), PALETTE[0]]], dtype=np.uint8
    )
    assert picture.dtype == np.uint8
    np.testing.assert_array_equal(picture, expected)
    np.testing.assert_array_equal(colorize(CLASS_MAP, np.array(PALETTE)), expected)


def test_overlay_blends_by_alpha_and_leaves_ignored_pixels_alone():
    frame = np.full((2, 3, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(overlay(frame, CLASS_MAP, PALETTE, alpha=0.0), frame)
    full = overlay(frame, CLASS_MAP, PALETTE, alpha=1.0)
    np.testing.assert_array_equal(full[0], np.array(PALETTE, dtype=np.uint8))
    np.testing.assert_array_equal(full[1, 1], frame[1, 1])  # class 255 = ignore: the frame shows
    half = overlay(frame, CLASS_MAP, PALETTE, alpha=0.5)
    np.testing.assert_allclose(half[0, 0], [178, 50, 50], atol=1)  # (100 + 255) / 2, 100 / 2
    np.testing.assert_array_equal(half[1, 1], frame[1, 1])
    assert frame.max() == 100  # the input is not modified


def test_overlay_resizes_the_class_map_to_the_frame():
    frame = np.zeros((4, 6, 3), dtype=np.uint8)
    blended = overlay(frame, CLASS_MAP, PALETTE, alpha=1.0)
    assert blended.shape == (4, 6, 3)
    np.testing.assert_array_equal(blended[0, 0], PALETTE[0])  # nearest: each class covers 2x2
    np.testing.assert_array_equal(blended[3, 5], PALETTE[0])
    np.testing.assert_array_equal(blended[2, 2], frame[2, 2])  # the ignored block


def test_side_by_side_puts_frame_left_and_colours_right():
    frame = np.random.default_rng(0).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    both = side_by_side(frame, CLASS_MAP, PALETTE)
    assert both.shape == (2, 6, 3)
    np.testing.assert_array_equal(both[:, :3], frame)
    np.testing.assert_array_equal(both[:, 3:], colorize(CLASS_MAP, PALETTE))


def test_draw_legend_draws_swatches_on_a_copy():
    image = np.full((64, 96, 3), 200, dtype=np.uint8)
    drawn = draw_legend(image, ("road", "grass", "wall"), PALETTE)
    assert drawn.shape == image.shape and drawn is not image
    assert (image == 200).all()
    for row, colour in enumerate(PALETTE):
        centre = 2 + row * 16 + 8
        np.testing.assert_array_equal(drawn[centre, 8], colour)
    assert (drawn[60, 90] == 200).all()  # far from the legend: untouched


def test_bad_inputs_raise_edgeseg_errors():
    frame = np.zeros((2, 3, 3), dtype=np.uint8)
    with pytest.raises(EdgesegError, match="alpha must be between 0 and 1, got 1.5"):
        overlay(frame, CLASS_MAP, PALETTE, alpha=1.5)
    with pytest.raises(EdgesegError, match="expected a uint8 HxW class map"):
        colorize(CLASS_MAP.astype(np.int32), PALETTE)
    with pytest.raises(EdgesegError, match="expected an RGB uint8 HxWx3"):
        side_by_side(frame[..., 0], CLASS_MAP, PALETTE)
    with pytest.raises(EdgesegError, match="at most 256 colours"):
        palette_lut([(0, 0, 0)] * 257)
