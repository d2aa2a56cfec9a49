"""Engine building: ONNX -> what the robot runs, with a manifest beside it.

    from edgeseg.engine import BuildOptions, build_engine

    report = build_engine(BuildOptions("model.onnx", int8=True, calib=Path("calib/")))
    report.output       # model.engine (TensorRT) or model.cpu.onnx (ONNX Runtime)
    report.manifest     # EngineManifest, also written to model.engine.json

TensorRT, ONNX Runtime and onnx are imported only while building.
"""

from edgeseg.engine.build import (
    BackendChoice,
    BuildOptions,
    BuildReport,
    Environment,
    build_engine,
    choose_backend,
    probe_environment,
)
from edgeseg.engine.manifest import (
    CalibrationInfo,
    EngineManifest,
    ProfileShapes,
    check_manifest,
    manifest_path,
    read_manifest,
    write_manifest,
)
from edgeseg.engine.trt_build import BatchRange, TrtVersion

__all__ = [
    "BackendChoice",
    "BatchRange",
    "BuildOptions",
    "BuildReport",
    "CalibrationInfo",
    "EngineManifest",
    "Environment",
    "ProfileShapes",
    "TrtVersion",
    "build_engine",
    "check_manifest",
    "choose_backend",
    "manifest_path",
    "probe_environment",
    "read_manifest",
    "write_manifest",
]
