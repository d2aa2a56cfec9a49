"""Drawing class maps: colour lookup tables, blends, side-by-side views and legends.

numpy and OpenCV only (this runs on the robot and in the streaming loop), and LUT-based so a
VGA frame colours in well under a millisecond. Images are RGB uint8; colours are RGB; class ids
without a palette entry (e.g. 255 = ignore) draw black and leave the frame untouched in blends.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runtime.preprocess import check_frame, resize_class_map

Palette = Sequence[Sequence[int]] | np.ndarray


def palette_lut(palette: Palette) -> np.ndarray:
    """A (256, 1, 3) uint8 lookup table: row i is class i's colour, black past the palette."""
    colours = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    if len(colours) > 256:
        raise EdgesegError(f"a palette has at most 256 colours (uint8 class maps), got {len(colours)}")
    lut = np.zeros((256, 1, 3), dtype=np.uint8)
    lut[: len(colours), 0] = np.clip(colours, 0, 255)
    return lut


def colorize(class_map: np.ndarray, palette: Palette) -> np.ndarray:
    """RGB uint8 HxWx3 picture of an HxW uint8 class map."""
    _check_class_map(class_map)
    return cv2.LUT(cv2.merge([class_map, class_map, class_map]), palette_lut(palette))


def overlay(frame: np.ndarray, class_map: np.ndarray, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the class colours over the frame; the class map is resized to the frame if needed.

    Args:
        alpha: weight of the class colours, 0 (frame only) to 1 (colours only).
    """
    check_frame(frame)
    if not 0.0 <= alpha <= 1.0:
        raise EdgesegError(f"overlay alpha must be between 0 and 1, got {alpha}")
    class_map = _fit(class_map, frame)
    blended = cv2.addWeighted(frame, 1.0 - alpha, colorize(class_map, palette), alpha, 0.0)
    unlabelled = class_map >= len(palette)
    if unlabelled.any():
        blended[unlabelled] = frame[unlabelled]
    return blended


def side_by_side(frame: np.ndarray, class_map: np.ndarray, palette: Palette) -> np.ndarray:
    """The frame and its colourised class map next to each other (H x 2W x 3)."""
    check_frame(frame)
    return np.hstack([frame, colorize(_fit(class_map, frame), palette)])


def draw_legend(
    image: np.ndarray, class_names: Sequence[str], palette: Palette, row_height: int = 16
) -> np.ndarray:
    """A copy of `image` with a colour swatch and name per class in the top-left corner."""
    check_frame(image)
    out = image.copy()
    colours = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, row_height / 40.0, 1
    text_width = max((cv2.getTextSize(str(n), font, scale, thickness)[0][0] for n in class_names), default=0)
    box_w = min(out.shape[1], row_height + 8 + text_width + 4)
    box_h = min(out.shape[0], row_height * len(class_names) + 4)
    out[:box_h, :box_w] = (out[:box_h, :box_w] * 0.4).astype(np.uint8)  # darken behind the text
    for row, (name, colour) in enumerate(zip(class_names, colours)):
        top = 2 + row * row_height
        swatch = tuple(int(c) for c in colour)
        cv2.rectangle(out, (2, top + 2), (row_height - 2, top + row_height - 2), swatch, thickness=-1)
        cv2.putText(
            out, str(name), (row_height + 4, top + row_height - 4), font, scale,
            (255, 255, 255), thickness, cv2.LINE_AA,
        )
    return out


def _fit(class_map: np.ndarray, frame: np.ndarray) -> np.ndarray:
    _check_class_map(class_map)
    return resize_class_map(class_map, frame.shape[0], frame.shape[1])


def _check_class_map(class_map: np.ndarray) -> None:
    if not isinstance(class_map, np.ndarray) or class_map.dtype != np.uint8 or class_map.ndim != 2:
        shape = getattr(class_map, "shape", None)
        dtype = getattr(class_map, "dtype", type(class_map).__name__)
        raise EdgesegError(f"expected a uint8 HxW class map, got shape {shape} dtype {dtype}")

