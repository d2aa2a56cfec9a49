"""The ONNX Runtime CPU "engine": the model ONNX Runtime runs fastest on this CPU, ready to load.

The output (`model.cpu.onnx`) is the INT8 model (`--int8`: a Q/DQ or QOperator ONNX as given,
or a float model calibrated first by `edgeseg.calib` with target "cpu") or the float model,
with ONNX Runtime's graph optimisations applied once and saved, so loading it on the robot
skips that work.

Optimisation level: ORT_ENABLE_EXTENDED. It fuses Conv+activation and folds Q/DQ pairs into
QLinearConv and friends. ORT_ENABLE_ALL adds layout transformations (NCHWc) that are specific
to this CPU's instruction set; ONNX Runtime warns that a model saved with them "should only be
used in the same environment the model was optimized in", and the robot's CPU may differ from
the build machine's. The runtime still applies ALL when it loads the saved model.

There is no FP16 on this backend: `--fp16` is an error, never a silent FP32 build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeseg.engine.manifest import CalibrationInfo
from edgeseg.errors import EngineError

QOPERATOR_PREFIXES = ("QLinear",)
QOPERATOR_OPS = ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SAVE_LEVEL = "ORT_ENABLE_EXTENDED"

MakeInt8 = Callable[[Path, str], "tuple[Path, CalibrationInfo]"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class OrtJob:
    """What to build.

    Attributes:
        onnx_path: the source ONNX.
        output: where the optimised model goes (a temporary path: the caller renames it).
        int8: `--int8` was given.
        make_int8: calibrates a float model (None when no --calib was given).
    """

    onnx_path: Path
    output: Path
    int8: bool = False
    make_int8: MakeInt8 | None = None


@dataclass(frozen=True)
class OrtResult:
    version: str
    precision: str
    calibration: CalibrationInfo | None


def quantization_format(path: Path) -> str | None:
    """"qoperator", "qdq" or None (a float model), from the ONNX's op types.

    Raises:
        EngineError: the `onnx` package is missing.
    """
    try:
        import onnx
    except ImportError:
        raise EngineError("building for ONNX Runtime needs the onnx package: pip install 'edgeseg[onnx]'") from None
    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    if any(op.startswith(QOPERATOR_PREFIXES) for op in ops) or ops & set(QOPERATOR_OPS):
        return "qoperator"
    if ops & set(QDQ_OPS):
        return "qdq"
    return None


def optimize_for_cpu(source: Path, output: Path) -> None:
    """Apply ONNX Runtime's graph optimisations to `source` and save the result to `output`.

    Raises:
        EngineError: ONNX Runtime cannot load the model, or the saved model does not load back.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, SAVE_LEVEL)
    options.optimized_model_filepath = str(output)
    options.log_severity_level = 3
    failures = (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph,
                ort_errors.NotImplemented, ort_errors.Fail)
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except failures as err:
        raise EngineError(f"ONNX Runtime {ort.__version__} cannot load {source}: {err}; re-export it with `edgeseg export`") from None
    check = ort.SessionOptions()
    check.log_severity_level = 3
    try:
        ort.InferenceSession(str(output), check, providers=["CPUExecutionProvider"])
    except failures as err:
        raise EngineError(f"the optimised model of {source} does not load back in ONNX Runtime ({err}); "
                          "this is a bug: please report it with the model") from None


def build_onnxruntime_model(job: OrtJob, log: Log) -> OrtResult:
    """Write the optimised CPU model of `job.onnx_path` to `job.output`.

    Raises:
        EngineError: `--int8` on a float model without calibration data, or ONNX Runtime fails.
    """
    import onnxruntime as ort

    source = job.onnx_path
    quantized = quantization_format(source)
    calibration = None
    if quantized is not None:
        if not job.int8:
            log(f"precision: {source.name} is already quantized ({quantized.upper()}), so the CPU model is INT8")
    elif job.int8:
        if job.make_int8 is None:
            raise EngineError(
                f"--int8: {source} is a float model, so its INT8 scales must come from calibration; pass "
                "--calib DIR (a folder of images or a video from the robot's camera), or build from a model "
                "quantized by `edgeseg calibrate --target cpu`"
            )
        source, calibration = job.make_int8(source, "cpu")
        quantized = quantization_format(source)
    optimize_for_cpu(source, job.output)
    return OrtResult(ort.__version__, "int8" if quantized else "fp32", calibration)
