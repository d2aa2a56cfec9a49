"""One picture size type, `Size(height, width)`, and the one parser of size strings.

Inside edgeseg a size is always height first, as numpy shapes and the ModelSpec are. Text is
read height first too (`--size 256x320` is 256 rows, 320 columns), except where people write
camera sizes width first: a stream source's `size=320x240` (as OpenCV, GStreamer and camera
data sheets do). Those callers say so with `width_first=True`, and every message names the order
it expected, so a size in the other order is never guessed.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

from edgeseg.errors import EdgesegError

_SIZE_TEXT = re.compile(r"\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*")


class Size(NamedTuple):
    """A picture size in pixels, height first; unpacks as `height, width = size`."""

    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


def parse_size(text: str | Sequence[int], *, width_first: bool = False) -> Size:
    """A Size from "HEIGHTxWIDTH" text (or "WIDTHxHEIGHT" if `width_first`), or one number for a square.

    A Size passes through unchanged; another pair of numbers is read in the same order as text.

    Raises:
        EdgesegError: not one or two positive whole numbers; the message names the expected order.
    """
    if isinstance(text, Size):
        return text
    if isinstance(text, str):
        match = _SIZE_TEXT.fullmatch(text)
        values = [int(v) for v in match.groups() if v is not None] if match else []
    else:
        values = [int(v) for v in text]
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        order = "WIDTHxHEIGHT (width first, as cameras are given), e.g. 320x240" if width_first else (
            "HEIGHTxWIDTH (height first), e.g. 256x320")
        raise EdgesegError(f"size {text!r} is not {order}; one number means a square")
    first, second = values
    return Size(height=second, width=first) if width_first else Size(height=first, width=second)
