"""ONNX metadata moved to `edgeseg.artifact.onnxmeta`; this module re-exports it for existing imports."""

import importlib  # noqa: F401  (tests patch onnxmeta.importlib.util)

from edgeseg.artifact.onnxmeta import (  # noqa: F401
    invalid_onnx_error,
    load_onnx_model,
    read_spec_from_onnx_file,
    spec_from_metadata,
    write_spec_metadata,
)
