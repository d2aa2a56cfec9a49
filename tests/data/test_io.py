"""Reading images and masks: colour order, mask formats and the errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeseg.data.base import MASK_BINARY, MASK_INDEX, MASK_PALETTE
from edgeseg.data.io import file_is_truncated, read_mask, read_rgb, write_rgb
from edgeseg.errors import DataError
from edgeseg.spec import default_palette


def _rgb(height: int = 12, width: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 0)  # pure red in RGB
    return image


def _write_palette_png(path, indices: np.ndarray) -> None:
    image = Image.fromarray(indices, mode="P")
    flat = [c for colour in default_palette(256) for c in colour]
    image.putpalette(flat)
    image.save(path)


def test_read_rgb_returns_rgb_order(tmp_path):
    image = _rgb()
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    loaded = read_rgb(tmp_path / "a.png")
    assert loaded.dtype == np.uint8 and loaded.shape == (12, 16, 3)
    np.testing.assert_array_equal(loaded, image)
    assert tuple(loaded[0, 0]) == (255, 0, 0)


def test_read_rgb_expands_grayscale_and_reads_jpeg(tmp_path):
    gray = np.tile(np.arange(0, 160, 10, dtype=np.uint8), (12, 1))
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    loaded = read_rgb(tmp_path / "g.png")
    assert loaded.shape == (12, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)
    cv2.imwrite(str(tmp_path / "c.jpg"), np.full((8, 8, 3), (0, 0, 200), np.uint8))  # BGR red
    jpeg = read_rgb(tmp_path / "c.jpg")
    assert jpeg[..., 0].mean() > 180 and jpeg[..., 2].mean() < 20


def test_read_rgb_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.png does not exist"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jpg is empty"):
        read_rgb(tmp_path / "empty.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot decode image .*text\.png"):
        read_rgb(tmp_path / "text.png")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_images_are_refused(tmp_path, suffix):
    ok, encoded = cv2.imencode(suffix, _rgb(32, 32))
    data = encoded.tobytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) * 2 // 3])
    assert file_is_truncated(path)
    with pytest.raises(DataError, match=rf"cut\{suffix} is truncated.*re-copy"):
        read_rgb(path)
    whole = tmp_path / f"whole{suffix}"
    whole.write_bytes(data)
    assert not file_is_truncated(whole)
    # a complete image with data appended (a phone's motion photo) is not truncated
    appended = tmp_path / f"appended{suffix}"
    appended.write_bytes(data + bytes(range(256)) * 20)
    assert not file_is_truncated(appended)
    assert read_rgb(appended).shape == (32, 32, 3)


def test_index_mask_single_and_equal_three_channels(tmp_path):
    mask = np.array([[0, 1, 2], [11, 255, 3]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", MASK_INDEX), mask)
    cv2.imwrite(str(tmp_path / "m3.png"), np.stack([mask] * 3, axis=-1))
    loaded = read_mask(tmp_path / "m3.png", MASK_INDEX)
    assert loaded.shape == (2, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, mask)


def test_index_mask_rejects_colour_palette_and_16_bit(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (0, 0, 128)
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(DataError, match=r"colour\.png is a colour image"):
        read_mask(tmp_path / "colour.png", MASK_INDEX)
    _write_palette_png(tmp_path / "pal.png", np.ones((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"pal\.png is a palettised PNG.*voc:DIR"):
        read_mask(tmp_path / "pal.png", MASK_INDEX)
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((4, 4), 300, np.uint16))
    with pytest.raises(DataError, match=r"deep\.png is uint16 \(16-bit\)"):
        read_mask(tmp_path / "deep.png", MASK_INDEX)


def test_palette_mask_reads_indices_not_colours(tmp_path):
    indices = np.array([[0, 1, 15], [20, 255, 5]], np.uint8)
    _write_palette_png(tmp_path / "voc.png", indices)
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png", MASK_PALETTE), indices)
    # OpenCV would have given colours: make sure the test data really is a palette image.
    assert cv2.imread(str(tmp_path / "voc.png")).ndim == 3


def test_palette_mask_refuses_a_non_palette_png(tmp_path):
    cv2.imwrite(str(tmp_path / "gray.png"), np.ones((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"gray\.png is not a palettised PNG \(Pillow mode 'L'.*index:IMAGES,MASKS"):
        read_mask(tmp_path / "gray.png", MASK_PALETTE)


def test_binary_mask_thresholds_gray_and_colour(tmp_path):
    gray = np.array([[0, 127, 128, 255]], np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png", MASK_BINARY), [[0, 0, 1, 1]])
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0] = 255  # white foreground row
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png", MASK_BINARY), [[1, 1], [0, 0]])


def test_unknown_mask_format(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="unknown mask format 'rgb'"):
        read_mask(tmp_path / "m.png", "rgb")


def test_write_rgb_round_trip_is_atomic(tmp_path):
    image = _rgb()
    out = write_rgb(tmp_path / "sub" / "out.png", image)
    np.testing.assert_array_equal(read_rgb(out), image)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.png"]  # no temp file left
    with pytest.raises(DataError, match="RGB uint8 HxWx3"):
        write_rgb(tmp_path / "bad.png", image.astype(np.float32))
    with pytest.raises(DataError, match="no writer for '.xyz'"):
        write_rgb(tmp_path / "bad.xyz", image)
    assert not any(p.name.startswith(".bad") for p in tmp_path.iterdir())
