"""edgeseg: train Keras segmentation models and put them on robots.

Importing the package is cheap: TensorFlow, ONNX Runtime and TensorRT are imported only by
the functions that need them.
"""

__version__ = "0.1.0"

from edgeseg.errors import EdgesegError
from edgeseg.spec import ModelSpec

__all__ = ["EdgesegError", "ModelSpec", "__version__"]
