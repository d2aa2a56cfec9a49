"""Keras -> ONNX export, and the proof that the ONNX model equals the Keras model.

Importing this package is cheap: TensorFlow, tf2onnx, onnx and ONNX Runtime are imported only
by the functions that need them.
"""

from edgeseg.export.keras_to_onnx import (
    DEFAULT_OPSET,
    ExportReport,
    OutputComparison,
    compare_outputs,
    convert_to_onnx,
    export_onnx,
    synthetic_frames,
    unconverted_nodes,
    verify_onnx,
)
from edgeseg.export.loading import LoadedModel, SpecOverrides, load_model, read_verify_images, resolve_spec

__all__ = [
    "DEFAULT_OPSET",
    "ExportReport",
    "LoadedModel",
    "OutputComparison",
    "SpecOverrides",
    "compare_outputs",
    "convert_to_onnx",
    "export_onnx",
    "load_model",
    "read_verify_images",
    "resolve_spec",
    "synthetic_frames",
    "unconverted_nodes",
    "verify_onnx",
]
