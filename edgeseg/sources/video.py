"""Video files decoded by OpenCV (FFmpeg): `clip.mp4`, `drive.avi`, ..."""

from __future__ import annotations

from pathlib import Path

import cv2

from edgeseg.errors import DataError
from edgeseg.sources.base import as_bool
from edgeseg.sources.capture import CaptureSource


class VideoFileSource(CaptureSource):
    """A video file decoded by OpenCV (FFmpeg). URI: a path such as `clip.mp4` or `drive.avi`.

    | option | default | meaning                                                            |
    |--------|---------|--------------------------------------------------------------------|
    | loop   | false   | start again at the end instead of returning END                    |
    | fps    | file's  | nominal frame rate (recordings); files are read as fast as needed |

    Every frame is delivered (a file is not live): a pipeline waits for each instead of dropping.
    """

    OPTIONS = ("loop", "fps")

    def __init__(self, path: str | Path, loop: bool = False, fps: float | None = None) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"no video file at {path}; check the path")
        self.path = path
        self.frame_count = 0
        super().__init__(
            str(path),
            lambda: cv2.VideoCapture(str(path)),
            live=False,
            loop=as_bool(loop, "loop"),
            fps=float(fps) if fps else None,
            open_error=lambda: (
                f"OpenCV cannot decode {path}; convert it (e.g. ffmpeg -i {path.name} out.mp4) or check "
                "that the file is complete"
            ),
        )
        if self._capture is not None and hasattr(self._capture, "get"):
            self.frame_count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))

    def _end_message(self) -> str:
        """Says so when the decoder stopped before the frame count the container states."""
        read = self.stats.frames + self.stats.corrupt
        if not self.loop and 0 < read < self.frame_count:
            return (f"{self.uri} ended after {read} of the {self.frame_count} frames its container lists: "
                    "decoder errors or a truncated file")
        return f"end of {self.uri}"
