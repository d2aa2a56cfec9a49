"""What runs on the robot: backends, the Segmenter, preprocessing and overlays.

Importing this package needs only numpy and OpenCV. ONNX Runtime is imported when an `.onnx`
model is opened, Keras only when a `.keras` model is; TensorFlow, Keras, `onnx` and TensorRT are
never imported on the ONNX path.

Preprocessing lives in `edgeseg.runtime.preprocess` and drawing in `edgeseg.runtime.overlay`;
their functions are not re-exported here, so the functions named `preprocess` and `overlay`
never shadow the modules of the same name.
"""

from edgeseg.runtime.backends import (
    Backend,
    BackendBase,
    BackendEntry,
    available_backends,
    backend_entries,
    open_backend,
    register_backend,
)
from edgeseg.runtime.segmenter import Segmentation, Segmenter

__all__ = [
    "Backend",
    "BackendBase",
    "BackendEntry",
    "Segmentation",
    "Segmenter",
    "available_backends",
    "backend_entries",
    "open_backend",
    "register_backend",
]
