"""Shared fixtures for the streaming tests: a tiny real ONNX model, video files, fake captures.

The model is a 32x32 Keras conv net exported through `edgeseg.export` (the shared
`export_tiny_model` fixture of tests/conftest.py), its spec embedded; built once per session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime.segmenter import Segmentation
from edgeseg.spec import ModelSpec

CLASSES = ("floor", "obstacle", "wall", "background")


@dataclass(frozen=True)
class StreamModels:
    spec: ModelSpec
    onnx_path: Path  # spec embedded, floor traversable
    no_traversable: Path  # same network, spec without traversable classes
    no_spec: Path  # same network, no spec at all


@pytest.fixture(scope="session")
def stream_models(export_tiny_model, tiny_net) -> StreamModels:
    spec = ModelSpec(class_names=CLASSES, input_height=32, input_width=32, traversable=("floor",), model="tiny")
    exported = export_tiny_model(tiny_net(len(CLASSES)), spec, "stream_models")
    folder = exported.onnx_path.parent
    return StreamModels(
        spec,
        exported.onnx_path,
        exported.with_spec(spec.replace(traversable=()), folder / "no_traversable.onnx"),
        exported.with_spec(None, folder / "no_spec.onnx"),
    )


def frame_colour(index: int) -> tuple[int, int, int]:
    """A distinct RGB colour per frame index, far enough apart to survive JPEG."""
    return ((index * 40) % 256, 255 - (index * 40) % 256, 128)


def write_video(path: Path, frames: int, width: int = 48, height: int = 40, fps: float = 10.0) -> Path:
    """A real MJPG .avi: frame i is a solid frame_colour(i) with a white square that moves."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for index in range(frames):
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[:] = frame_colour(index)
        rgb[4:12, 4 + index:12 + index] = 255
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi", frames=6)


def count_video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """(frames decoded, (width, height)) of a video, by decoding every frame with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"OpenCV cannot open {path}"
    count, size = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        size = (frame.shape[1], frame.shape[0])
    capture.release()
    return count, size


class FakeCapture:
    """Stands in for cv2.VideoCapture: yields the given (ok, image) pairs, then (False, None)."""

    def __init__(self, reads: list, opened: bool = True) -> None:
        self.reads = list(reads)
        self.opened = opened
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened and not self.released

    def read(self):
        if self.reads:
            return self.reads.pop(0)
        return False, None

    def release(self) -> None:
        self.released = True


def bgr(height: int = 24, width: int = 32, value: int = 100) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


class SlowSegmenter:
    """A fake segmenter that takes `delay_s` per frame (for our own control flow: dropping)."""

    def __init__(self, spec: ModelSpec, delay_s: float) -> None:
        self.spec = spec
        self.delay_s = delay_s
        self.calls = 0

    def seg(self, frame: np.ndarray, probabilities: bool = False) -> Segmentation:
        self.calls += 1
        time.sleep(self.delay_s)
        class_map = np.zeros(frame.shape[:2], np.uint8)
        class_map[: frame.shape[0] // 2] = 2  # wall on top, floor below
        timings = {"preprocess": 0.0, "infer": self.delay_s, "postprocess": 0.0, "total": self.delay_s}
        return Segmentation(class_map=class_map, probabilities=None, timings=timings, spec=self.spec)


def leftover_temp_files(folder: Path) -> list[Path]:
    """Hidden temporary files atomic writes leave only when something went wrong."""
    return [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def kit():
    """The helpers above, for test modules (conftest modules cannot be imported by name here)."""
    import types

    return types.SimpleNamespace(
        write_video=write_video, count_video_frames=count_video_frames, FakeCapture=FakeCapture, bgr=bgr,
        SlowSegmenter=SlowSegmenter, frame_colour=frame_colour, leftover_temp_files=leftover_temp_files,
    )
