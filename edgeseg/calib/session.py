"""Calibration's ONNX Runtime CPU session (timing, checks, sensitivity): `artifact.onnxmeta.ort_session`'s defaults.

Calibration runs the float and quantized models on the CPU with ONNX Runtime's warnings off; the
modules that do (quantize, prepare, sensitivity) share this one builder rather than borrowing a
private one from each other (which made import circles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.artifact.onnxmeta import ort_session


def cpu_session(path: str | Path, threads: int | None = None) -> Any:
    """An `onnxruntime.InferenceSession` on the CPU, warnings off; `threads` sets the intra-op thread count."""
    return ort_session(path, threads=threads)
