"""One ONNX Runtime CPU session builder for calibration's own runs (timing, checks, sensitivity).

Calibration runs the float and quantized models on the CPU with ONNX Runtime's warnings off; the
modules that do (quantize, prepare, sensitivity) share this one builder rather than borrowing a
private one from each other (which made import circles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: str | Path, threads: int | None = None) -> Any:
    """An `onnxruntime.InferenceSession` on the CPU; `threads` sets the intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
