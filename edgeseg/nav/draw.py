"""Drawing a navigation command on a frame, kept apart from the planner (which never draws)."""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.nav.navigator import Command


def draw_command(image: np.ndarray, command: Command, *, max_heading: float = 0.8) -> np.ndarray:
    """A copy of an RGB uint8 frame with the command drawn on it.

    An arrow from the bottom centre shows the steering (green while driving, red when stopped;
    its length is the throttle), a bar on the left the clearance, and the text the reason,
    throttle and confidence.

    Args:
        image: RGB uint8 HxWx3 frame.
        command: what `Navigator.step` returned for it.
        max_heading: the navigator's NavConfig.max_heading, so the arrow points where the planner
            looked.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise EdgesegError(f"draw_command expects an RGB uint8 HxWx3 image, got shape {shape}")
    out = image.copy()
    height, width = out.shape[:2]
    colour = (230, 40, 40) if command.stop else (40, 220, 60)
    thickness = max(1, width // 160)
    base = (width // 2, height - 1)
    length = 0.15 + 0.45 * command.throttle  # fraction of the height, visible even when stopped
    tip = (
        int(base[0] + command.steering * max_heading * width / 2 * length * 2),
        int(base[1] - length * height),
    )
    cv2.arrowedLine(out, base, tip, colour, thickness, cv2.LINE_AA, tipLength=0.2)
    bar = int(command.clearance * (height - 1))
    cv2.rectangle(out, (0, height - 1 - bar), (max(2, width // 40), height - 1), (240, 200, 40), -1)
    text = f"{command.reason} thr {command.throttle:.2f} conf {command.confidence:.2f}"
    font, scale, weight = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, width / 900), max(1, thickness // 2)
    (text_width, text_height), baseline = cv2.getTextSize(text, font, scale, weight)
    x, y = max(4, width // 30), max(12, height // 14)
    pad = max(2, text_height // 3)
    # A darkened box behind the text, so it reads over light walls and floor too.
    rows = slice(max(0, y - text_height - pad), min(height, y + baseline + pad))
    out[rows, max(0, x - pad):min(width, x + text_width + pad)] //= 3
    cv2.putText(out, text, (x, y), font, scale, colour, weight, cv2.LINE_AA)
    return out
