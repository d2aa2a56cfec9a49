"""Artifacts on the ground floor: what a model file is, and the contract it carries.

    from edgeseg.artifact import describe
    print(describe("model.onnx").text())

ModelSpec (`spec`), the ONNX metadata and graph facts (`onnxmeta`), the engine manifest and the
quantization record (`manifest`), the format table (`formats`) and `describe`. This package
imports nothing from runtime, calib, engine, data or train, and no heavy library at import
time: every other layer may ask it.
"""

from edgeseg.artifact.describe import Description, describe, resolve_spec
from edgeseg.artifact.formats import ArtifactFormat, format_for_path, format_table
from edgeseg.artifact.manifest import (
    CalibrationInfo,
    EngineManifest,
    GpuInfo,
    ProfileShapes,
    manifest_path,
    read_manifest,
)
from edgeseg.artifact.onnxmeta import OnnxFacts, TensorInfo, read_onnx, write_spec_metadata
from edgeseg.artifact.spec import ModelSpec

__all__ = [
    "ArtifactFormat",
    "CalibrationInfo",
    "Description",
    "EngineManifest",
    "GpuInfo",
    "ModelSpec",
    "OnnxFacts",
    "ProfileShapes",
    "TensorInfo",
    "describe",
    "format_for_path",
    "format_table",
    "manifest_path",
    "read_manifest",
    "read_onnx",
    "resolve_spec",
    "write_spec_metadata",
]
