"""Segmenter: the embedding API. Frames in (RGB uint8, any size), class maps out.

    from edgeseg.runtime import Segmenter

    with Segmenter.open("model.onnx") as segmenter:
        result = segmenter.seg(frame)
        result.class_map        # uint8 HxW at the frame's size
        result.timings          # seconds: preprocess, infer, postprocess, total
        picture = result.overlay(frame)

Preprocessing is the shared `preprocess` function built from the model's spec, the same one
calibration and verification use; the backend is whatever the registry picks for the file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.runtime.backends import Backend, open_backend
from edgeseg.runtime.overlay import overlay as draw_overlay
from edgeseg.runtime.preprocess import (
    class_map_from_output,
    preprocess,
    probabilities_from_output,
    resize_class_map,
)
from edgeseg.spec import ModelSpec


@dataclass(eq=False)  # holds arrays: compare fields explicitly
class Segmentation:
    """The result for one frame.

    Attributes:
        class_map: uint8 HxW class ids at the frame's resolution.
        probabilities: float32 HxWxC per-class probabilities at the model's output resolution
            (the network input size for edgeseg models), only when requested.
        timings: seconds per stage ("preprocess", "infer", "postprocess", "total"). Frames
            segmented together by `seg_batch` share their batch's timings.
        spec: the model's spec (class names and palette for drawing).
    """

    class_map: np.ndarray
    probabilities: np.ndarray | None
    timings: dict[str, float]
    spec: ModelSpec = field(repr=False, compare=False)

    def overlay(self, frame: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The frame with the class colours blended over it."""
        return draw_overlay(frame, self.class_map, self.spec.palette, alpha)


class Segmenter:
    """Runs a segmentation model on frames; a context manager that closes its backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def open(
        cls, path: str | Path, backend: str = "auto", spec: ModelSpec | None = None, **options: Any
    ) -> "Segmenter":
        """Open a model file (`.onnx`, `.keras`, a run folder, ...) with the registry's backend.

        Args:
            backend: "auto" or a backend name from `available_backends()`.
            spec: overrides the spec stored with the model.
            **options: backend options, e.g. `threads=2` for onnxruntime.
        """
        return cls(open_backend(path, backend=backend, spec=spec, **options))

    @property
    def spec(self) -> ModelSpec:
        return self.backend.input_spec

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def seg(self, frame: np.ndarray, probabilities: bool = False) -> Segmentation:
        """Segment one RGB uint8 HxWx3 frame of any size."""
        return self.seg_batch([frame], probabilities=probabilities)[0]

    def seg_batch(self, frames: Sequence[np.ndarray], probabilities: bool = False) -> list[Segmentation]:
        """Segment several frames (sizes may differ) in one forward pass per model batch."""
        if len(frames) == 0:
            return []
        start = time.perf_counter()
        batch = preprocess(list(frames), self.spec)
        preprocessed = time.perf_counter()
        output = self._infer(batch)
        inferred = time.perf_counter()
        class_maps = class_map_from_output(output, self.spec)
        probs = probabilities_from_output(output, self.spec) if probabilities else None
        full_maps = [
            resize_class_map(class_map, frame.shape[0], frame.shape[1])
            for class_map, frame in zip(class_maps, frames)
        ]
        done = time.perf_counter()
        timings = {
            "preprocess": preprocessed - start,
            "infer": inferred - preprocessed,
            "postprocess": done - inferred,
            "total": done - start,
        }
        return [
            Segmentation(
                class_map=class_map,
                probabilities=None if probs is None else probs[index],
                timings=dict(timings),
                spec=self.spec,
            )
            for index, class_map in enumerate(full_maps)
        ]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the batch, in chunks (the last one zero-padded) if the model has a fixed batch size."""
        fixed = self.backend.input_shape[0]
        if fixed is None or fixed == len(batch):
            return self.backend.infer(batch)
        outputs = []
        for begin in range(0, len(batch), fixed):
            chunk = batch[begin : begin + fixed]
            real = len(chunk)
            if real < fixed:
                padding = np.zeros((fixed - real,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            outputs.append(self.backend.infer(chunk)[:real])
        return np.concatenate(outputs)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        spec = self.spec
        return (
            f"<Segmenter {self.backend_name} {spec.input_height}x{spec.input_width} "
            f"{spec.num_classes} classes>"
        )
