"""Still images as frames: a folder, a glob or one image file."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2

from edgeseg.errors import DataError
from edgeseg.sources.base import (
    IMAGE_SUFFIXES,
    Read,
    ReadStatus,
    Source,
    as_bool,
    natural_key,
)


class ImageFolderSource(Source):
    """Still images as frames. URI: a folder, a glob (`shots/*.png`) or one image file.

    | option | default | meaning                                                     |
    |--------|---------|-------------------------------------------------------------|
    | loop   | false   | start again after the last image instead of returning END   |
    | fps    | none    | nominal frame rate (for recordings); images are not paced   |

    Files are sorted by name with numbers compared as numbers (frame2 before frame10). Files
    OpenCV cannot decode are skipped and counted in `stats.corrupt`.
    """

    OPTIONS = ("loop", "fps")

    def __init__(self, pattern: str | Path, loop: bool = False, fps: float | None = None) -> None:
        text = str(pattern)
        path = Path(text).expanduser()
        if path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            where = f"folder {path}"
        elif path.is_file():
            files = [path]
            where = str(path)
        else:
            files = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()
                     and Path(p).suffix.lower() in IMAGE_SUFFIXES]
            where = f"glob {text!r}"
        if not files:
            raise DataError(f"no images in {where} (looked for {' '.join(IMAGE_SUFFIXES)})")
        self.files = sorted(files, key=lambda p: natural_key(str(p)))
        self.loop = as_bool(loop, "loop")
        self.last_path: Path | None = None  # the file of the last frame delivered, for reports
        self._next = 0
        self._delivered_this_pass = 0
        super().__init__(text, float(fps) if fps else None)

    def _read(self, timeout: float | None) -> Read:
        while True:
            if self._next >= len(self.files):
                if not self.loop:
                    return Read(ReadStatus.END, message=f"end of {self.uri} ({len(self.files)} images)")
                if self._delivered_this_pass == 0:
                    return Read(ReadStatus.ERROR, message=f"none of the {len(self.files)} images in {self.uri} "
                                "can be decoded")
                self._next = 0
                self._delivered_this_pass = 0
            path = self.files[self._next]
            self._next += 1
            frame = self._to_rgb(cv2.imread(str(path), cv2.IMREAD_COLOR))
            if frame is not None:
                self._delivered_this_pass += 1
                self.last_path = path
                return self._deliver(frame)
