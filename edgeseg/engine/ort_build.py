"""The ONNX Runtime CPU "engine": the model ONNX Runtime runs fastest on this CPU, ready to load.

The output (`model.cpu.onnx`) is the finished model `build_engine` prepared (INT8: a Q/DQ or
QOperator ONNX as given, or calibrated by `edgeseg.calib` with target "cpu"; or float), with
ONNX Runtime's graph optimisations applied once and saved, so loading it on the robot skips
that work. This module only builds: it never calibrates.

Optimisation level: ORT_ENABLE_EXTENDED. It fuses Conv+activation and folds Q/DQ pairs into
QLinearConv and friends. ORT_ENABLE_ALL adds layout transformations (NCHWc) that are specific
to this CPU's instruction set; ONNX Runtime warns that a model saved with them "should only be
used in the same environment the model was optimized in", and the robot's CPU may differ from
the build machine's. The runtime still applies ALL when it loads the saved model.

There is no FP16 on this backend: `--fp16` is an error, never a silent FP32 build.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.artifact.onnxmeta import ort_session
from edgeseg.errors import EngineError

SAVE_LEVEL = "ORT_ENABLE_EXTENDED"


def optimize_for_cpu(source: Path, output: Path) -> None:
    """Apply ONNX Runtime's graph optimisations to `source` and save the result to `output`.

    Raises:
        EngineError: ONNX Runtime cannot load the model, or the saved model does not load back.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    failures = (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph,
                ort_errors.NotImplemented, ort_errors.Fail)
    try:
        ort_session(source, optimization=SAVE_LEVEL, optimized_model_filepath=str(output))
    except failures as err:
        raise EngineError(f"ONNX Runtime {ort.__version__} cannot load {source}: {err}; re-export it with `edgeseg export`") from None
    try:
        ort_session(output)
    except failures as err:
        raise EngineError(f"the optimised model of {source} does not load back in ONNX Runtime ({err}); "
                          "this is a bug: please report it with the model") from None


def build_onnxruntime_model(source: Path, output: Path) -> str:
    """Write the optimised CPU model of the finished ONNX `source` to `output`; returns ONNX Runtime's version.

    Raises:
        EngineError: ONNX Runtime cannot load the model.
    """
    import onnxruntime as ort

    optimize_for_cpu(source, output)
    return str(ort.__version__)
