"""Calibration frames: an image folder, a video file or a dataset, fed to ONNX Runtime.

Each source reads RGB uint8 frames and fits them to the network input with the runtime's own
`resize_frame`; `FrameBatchReader` turns them into input batches with the runtime's own
`preprocess`. Calibration therefore sees exactly what the robot will feed the model.

Frames are kept in memory at network resolution (200 frames of 256x256 are 39 MB), so the
calibrator, the accuracy check and the sensitivity analysis can all reuse them, and their
digest identifies the calibration data in the cached ranges.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from edgeseg.data.base import spread_indices  # also imported from here by bench and sensitivity
from edgeseg.errors import DataError
from edgeseg.runtime.preprocess import preprocess, resize_frame
from edgeseg.spec import ModelSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
RECOMMENDED_FRAMES = 100

Warn = Callable[[str], None]


def warn_on_stderr(message: str) -> None:
    """The default way calibration warns: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class FrameSet:
    """Calibration frames, RGB uint8 at the network input size.

    Attributes:
        frames: the frames, in source order.
        source: what they came from, for reports.
        skipped: files or video frames that could not be read.
    """

    frames: list[np.ndarray]
    source: str
    skipped: int = 0
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def digest(self) -> str:
        """sha256 of the frames' pixels: identifies the calibration data."""
        if self._digest is None:
            digest = hashlib.sha256()
            for frame in self.frames:
                digest.update(str(frame.shape).encode())
                digest.update(np.ascontiguousarray(frame).tobytes())
            self._digest = digest.hexdigest()
        return self._digest


class FrameSource(Protocol):
    """Where calibration frames come from."""

    def describe(self) -> str: ...

    def read(self, count: int, spec: ModelSpec) -> FrameSet:
        """Read up to `count` frames spread over the source, fitted to `spec`'s input size."""
        ...


@dataclass(frozen=True)
class ImageFolder:
    """Images (jpg, png, bmp) in a folder, optionally its subfolders too."""

    path: Path
    recursive: bool = False

    def describe(self) -> str:
        return f"image folder {self.path}" + (" (recursive)" if self.recursive else "")

    def image_paths(self) -> list[Path]:
        folder = Path(self.path)
        if not folder.is_dir():
            raise DataError(f"--images {folder} is not a folder; pass a folder of .jpg/.png/.bmp images")
        pattern = "**/*" if self.recursive else "*"
        return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    def read(self, count: int, spec: ModelSpec) -> FrameSet:
        from edgeseg.data.io import read_rgb

        paths = self.image_paths()
        if not paths:
            hint = "" if self.recursive else " (images in subfolders are read with --recursive)"
            raise DataError(
                f"no images in {self.path}: calibration needs .jpg, .png or .bmp files{hint}"
            )
        frames, skipped = [], 0
        for index in spread_indices(len(paths), count):
            try:
                frames.append(resize_frame(read_rgb(paths[index]), spec))
            except DataError:
                skipped += 1
        if not frames:
            raise DataError(f"none of the {skipped} images in {self.path} could be read; check the files")
        return FrameSet(frames, self.describe(), skipped)


@dataclass(frozen=True)
class VideoFile:
    """Frames sampled evenly across a video file (read with OpenCV, converted BGR -> RGB)."""

    path: Path

    def describe(self) -> str:
        return f"video {self.path}"

    def read(self, count: int, spec: ModelSpec) -> FrameSet:
        import cv2

        path = Path(self.path)
        if not path.is_file():
            raise DataError(f"--video {path} does not exist; pass a video file")
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise DataError(
                    f"cannot open video {path}: OpenCV has no decoder for it or the file is damaged; "
                    "convert it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or pass --images"
                )
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if total > 0:
                frames, skipped = self._read_seeking(capture, spread_indices(total, count), spec)
            else:  # streams that do not report a length: read them through
                frames, skipped = self._read_through(capture, count, spec)
        finally:
            capture.release()
        if not frames:
            raise DataError(f"no frame of video {path} could be decoded; the file is damaged or empty")
        return FrameSet(frames, self.describe(), skipped)

    @staticmethod
    def _read_seeking(capture: Any, indices: Sequence[int], spec: ModelSpec) -> tuple[list[np.ndarray], int]:
        import cv2

        frames, skipped, position = [], 0, 0
        for index in indices:
            if index != position:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            position = index + 1
            if not ok or frame is None:
                skipped += 1
                continue
            frames.append(resize_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), spec))
        return frames, skipped

    @staticmethod
    def _read_through(capture: Any, count: int, spec: ModelSpec) -> tuple[list[np.ndarray], int]:
        import cv2

        everything = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            everything.append(resize_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), spec))
        return [everything[i] for i in spread_indices(len(everything), count)], 0


@dataclass(frozen=True)
class DatasetImages:
    """The images of one subset of a dataset (`--data SPEC`, or an opened dataset)."""

    data: Any  # a `--data` string or a SegDataset
    subset: str = "train"
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # for folders without their own split: training's

    def describe(self) -> str:
        name = self.data if isinstance(self.data, str) else getattr(self.data, "name", "dataset")
        return f"dataset {name} [{self.subset}]"

    def open(self, spec: ModelSpec) -> Any:
        if not isinstance(self.data, str):
            return self.data
        from edgeseg.data.sources import open_dataset

        return open_dataset(self.data, subset=self.subset, split=self.split, seed=self.seed, size=spec.input_size)

    def read(self, count: int, spec: ModelSpec) -> FrameSet:
        dataset = self.open(spec)
        if len(dataset) == 0:
            raise DataError(f"{self.describe()} has no images; choose another --data or subset")
        frames, skipped = [], 0
        for index in spread_indices(len(dataset), count):
            try:
                image, _ = dataset.load(index)
            except DataError:
                skipped += 1
                continue
            frames.append(resize_frame(image, spec))
        if not frames:
            raise DataError(f"none of the {skipped} images of {self.describe()} could be read")
        return FrameSet(frames, self.describe(), skipped)


def load_calibration_frames(
    source: FrameSource, count: int, spec: ModelSpec, batch_size: int = 1, warn: Warn = warn_on_stderr
) -> FrameSet:
    """Read the calibration frames and check there are enough.

    Warns (through `warn`) below RECOMMENDED_FRAMES frames and when files were skipped; drops
    the frames beyond the last whole batch.

    Raises:
        DataError: `count` is not positive, or fewer frames than one batch could be read.
    """
    if count < 1:
        raise DataError(f"-n {count}: the number of calibration frames must be at least 1")
    frame_set = source.read(count, spec)
    if frame_set.skipped:
        warn(f"skipped {frame_set.skipped} unreadable item(s) of {frame_set.source}")
    if len(frame_set) < batch_size:
        raise DataError(
            f"{frame_set.source} gave {len(frame_set)} calibration frame(s), fewer than the model's "
            f"batch size {batch_size}; add images or export the model with a smaller batch"
        )
    whole = len(frame_set) - len(frame_set) % batch_size
    if whole != len(frame_set):
        frame_set = FrameSet(frame_set.frames[:whole], frame_set.source, frame_set.skipped)
    if len(frame_set) < RECOMMENDED_FRAMES:
        warn(
            f"only {len(frame_set)} calibration frames; INT8 ranges may be poor, "
            f"{RECOMMENDED_FRAMES}+ recommended"
        )
    return frame_set


class FrameBatchReader:
    """ONNX Runtime's `CalibrationDataReader` over in-memory frames.

    ONNX Runtime's abstract reader recognises any class with `get_next` as a subclass (its
    `__subclasshook__`), so this module does not import onnxruntime. `set_range` limits the
    reader to a range of batches, which lets the calibrator collect in chunks and keeps the
    memory of histogram calibration bounded.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        spec: ModelSpec,
        input_name: str,
        batch_size: int = 1,
        progress: Any = None,
    ) -> None:
        """
        Args:
            frames: RGB uint8 frames.
            spec: the model's spec; batches are `preprocess(frames, spec)`.
            input_name: the model input the batches feed.
            batch_size: frames per batch (the model's fixed batch, or 1).
            progress: a tqdm-like bar (`update(n)`), advanced by the frames of each batch.
        """
        self.frames = list(frames)
        self.spec = spec
        self.input_name = input_name
        self.batch_size = batch_size
        self.progress = progress
        self._start, self._end = 0, len(self)
        self._next = 0

    def __len__(self) -> int:
        return len(self.frames) // self.batch_size

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only batches [start_index, end_index) from now on, starting at the first."""
        self._start, self._end = max(0, start_index), min(end_index, len(self))
        self._next = self._start

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def batch(self, index: int) -> np.ndarray:
        start = index * self.batch_size
        return preprocess(self.frames[start : start + self.batch_size], self.spec)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        batch = self.batch(self._next)
        self._next += 1
        if self.progress is not None:
            self.progress.update(self.batch_size)
        return {self.input_name: batch}

    def __iter__(self):
        while (inputs := self.get_next()) is not None:
            yield inputs
