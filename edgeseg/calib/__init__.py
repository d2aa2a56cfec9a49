"""INT8 calibration: frame readers, ONNX Runtime quantization, the legacy TensorRT cache.

    from edgeseg.calib import CalibrationOptions, ImageFolder, calibrate
    report = calibrate("model.onnx", ImageFolder(Path("frames")), target="cpu")
    report = calibrate("model.onnx", ImageFolder(Path("frames")), CalibrationOptions(target="tensorrt"))

ONNX Runtime and `onnx` are imported only when a function needs them.
"""

from edgeseg.calib.quantize import (
    DEFAULT_FRAMES,
    DEFAULT_METHOD,
    FORMATS,
    METHODS,
    TARGETS,
    CalibrationOptions,
    CalibrationRanges,
    CalibrationReport,
    MiouBudgetError,
    calibrate,
    default_output,
)
from edgeseg.calib.readers import DatasetImages, FrameBatchReader, FrameSet, ImageFolder, VideoFile

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_METHOD",
    "FORMATS",
    "METHODS",
    "TARGETS",
    "CalibrationOptions",
    "CalibrationRanges",
    "CalibrationReport",
    "DatasetImages",
    "FrameBatchReader",
    "FrameSet",
    "ImageFolder",
    "MiouBudgetError",
    "VideoFile",
    "calibrate",
    "default_output",
]
