"""INT8 quantization with ONNX Runtime's tools: one calibration, two layouts.

`calibrate()` runs ONNX Runtime's calibrator (MinMax, Entropy or Percentile) once over frames
preprocessed by the runtime's own `preprocess`, stores the tensor ranges as JSON beside the
output (`model.calib.json`, keyed by a hash of the model, the frames, the spec and the method),
and quantizes from those ranges with `quantize_static(..., calibration_cache_path=...)`, ONNX
Runtime 1.31's way to quantize from precomputed ranges. A later run on the same model and
frames (e.g. the other target) reuses the ranges instead of calibrating again, so the CPU
model, the TensorRT model and the legacy TensorRT cache all come from the same numbers.

The two layouts:

* `cpu`: uint8 activations (asymmetric), int8 per-channel symmetric weights (zero point 0,
  which selects MLAS's symmetric-weight convolution kernels: asymmetric weights, uint8 weights
  or int8 activations run 1.1x-2x slower here), every op ONNX Runtime can quantize except the
  tail after the class convolution (the final resize, see `tail_nodes`), Concat inputs sharing
  their output's range (see `shared_concat_ranges`), and the class convolution too unless
  `float_head`; Softmax and the nodes reading its output stay in float, and so does each op type
  that measures faster in float on this machine (`op_profile.choose_float_ops`, which also
  writes the per-op account into the metadata). ONNX Runtime fuses both forms, QDQ and QOperator, into the same NHWC
  QLinearConv kernels; they differ around them (QOperator's uint8 Resize took 1.1 ms where
  QDQ's float one took 0.25), and which one wins depends on the model, the CPU and the ONNX
  Runtime version (ARCHITECTURE.md once measured QOperator faster; on this machine QDQ wins,
  see benchmarks/int8_cpu.py). So `--format auto` builds both and keeps the faster by a short
  timing (a second or two); `qdq` / `qoperator` force one. `reduce_range` (7-bit weights) is
  on only for x86 CPUs without VNNI, where 8-bit products can saturate.
* `tensorrt`: symmetric int8 Q/DQ (all zero points 0), per-channel weights, only Conv,
  ConvTranspose, residual Add and pooling quantized, Q/DQ on their inputs only (the placement
  TensorRT fuses best), the head (last weighted layer and the final resize) kept in float.
  TensorRT 8.5-10.x can instead build from the float model and the legacy cache
  (`model.calib.cache`, see `trt_cache`), written from the same ranges.

Both layouts quantize the same prepared float graph (`edgeseg.calib.prepare`: BatchNorm folding,
PRelu -> LeakyRelu, ... checked against the original before it is used).

Every output is written atomically at the end: a failed run leaves none behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.calib import trt_cache
from edgeseg.calib.op_profile import OpAccount, choose_float_ops, kernel_latency, quantized_ops
from edgeseg.calib.prepare import PREPARE_VERSION, PrepareReport, check_prepared, prepare_graph
from edgeseg.calib.readers import (
    FrameBatchReader,
    FrameSet,
    FrameSource,
    Warn,
    load_calibration_frames,
    warn_on_stderr,
)
from edgeseg.artifact.onnxmeta import (
    QUANT_METADATA_KEY,
    claim_denormals_as_zero,
    invalid_onnx_error,
    ort_session,
    write_metadata,
)
from edgeseg.artifact.spec import ONNX_METADATA_KEY, ModelSpec
from edgeseg.errors import EdgesegError, EngineError, ModelError, SpecError
from edgeseg.fileio import file_sha256, temporary_dir

TARGETS = ("cpu", "tensorrt")
METHODS = ("entropy", "minmax", "percentile")
FORMATS = ("auto", "qdq", "qoperator")
DEFAULT_FRAMES = 200
DEFAULT_EVAL_FRAMES = 100
RANGES_FORMAT = "edgeseg.calib-ranges/1"
CHUNK_FRAMES = 8  # frames per calibrator pass: histogram calibration keeps all their tensors (~1 GB at 256x256)

# ONNX Runtime CalibrationMethod names, and the calibrator options edgeseg uses. Percentile
# defaults to a symmetric range in ONNX Runtime, which wastes half of uint8 on ReLU outputs.
# Entropy keeps ONNX Runtime's defaults (128 histogram bins, 128 quantized bins), which clip
# little: on MobileNetV2-DeepLabV3+ 96% of the tensors keep their min-max range (percentile
# 99.999 narrows 89% of them, to a median 84% of the width). 512 bins clip far more (median
# 57%) at twice the time; on the test model every method agreed with float on 99.85% of pixels.
# Histogram methods (entropy, percentile) take about 3x the time of minmax.
# The default method, by measurement on trained models (edgeseg verify, held-out frames): percentile
# agreed with float on 99.81% of synthetic-world pixels (entropy 99.77%) and 99.04% on CamVid
# (entropy 98.86%), at the same mean IoU; see benchmarks/camvid_int8.py and docs/results.md.
DEFAULT_METHOD = "percentile"
_ORT_METHODS = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}
_CALIBRATOR_OPTIONS: dict[str, dict[str, Any]] = {
    "entropy": {},
    "minmax": {},
    "percentile": {"symmetric": False, "percentile": 99.999},
}

TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Add", "AveragePool", "MaxPool", "GlobalAveragePool")
WEIGHTED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ops whose quantized output reuses their input's scale and zero point in ONNX Runtime's quantizer
RANGE_PRESERVING_OP_TYPES = ("Resize", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "MaxPool")


@dataclass(frozen=True)
class QuantLayout:
    """One quantized graph layout: the `quantize_static` arguments that define it.

    Attributes:
        target: "cpu" or "tensorrt".
        quant_format: "qdq" or "qoperator".
        activation_type: "uint8" or "int8".
        activation_symmetric: zero point 0 for activations (TensorRT requires it).
        op_types: op types to quantize; None means every op ONNX Runtime can quantize.
        inputs_only: put Q/DQ only on the inputs of quantized ops, never on their outputs.
        reduce_range: 7-bit weights (x86 without VNNI).
        per_channel: per-output-channel weight scales.
        shared_concat_ranges: give a Concat's inputs the range of its output, so its INT8
            kernel is a plain copy instead of a per-byte requantisation.
    """

    target: str
    quant_format: str
    activation_type: str
    activation_symmetric: bool
    op_types: tuple[str, ...] | None
    inputs_only: bool = False
    reduce_range: bool = False
    per_channel: bool = True
    shared_concat_ranges: bool = False

    def with_format(self, quant_format: str) -> "QuantLayout":
        return replace(self, quant_format=quant_format)

    def describe(self) -> str:
        activations = f"{'symmetric' if self.activation_symmetric else 'asymmetric'} {self.activation_type}"
        weights = f"int8 {'per-channel' if self.per_channel else 'per-tensor'}{' 7-bit' if self.reduce_range else ''}"
        return f"{self.quant_format.upper()}, {activations} activations, {weights} weights"


def cpu_has_vnni() -> bool | None:
    """True if this x86 CPU has VNNI (avx512_vnni / avx_vnni), None if it cannot tell."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def default_reduce_range() -> bool:
    """7-bit weights only on x86 without VNNI, where u8*s8 pairs can saturate in 16 bits."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return cpu_has_vnni() is False


def cpu_layout(quant_format: str, reduce_range: bool | None = None) -> QuantLayout:
    return QuantLayout(
        target="cpu",
        quant_format=quant_format,
        activation_type="uint8",
        activation_symmetric=False,
        op_types=None,
        reduce_range=default_reduce_range() if reduce_range is None else reduce_range,
        shared_concat_ranges=True,
    )


def tensorrt_layout() -> QuantLayout:
    return QuantLayout(
        target="tensorrt",
        quant_format="qdq",
        activation_type="int8",
        activation_symmetric=True,
        op_types=TENSORRT_OP_TYPES,
        inputs_only=True,
    )


# --------------------------------------------------------------------------------------------
# Ranges


@dataclass(frozen=True)
class CalibrationRanges:
    """Tensor ranges from one calibration, and what they were computed from.

    Attributes:
        tensors: tensor name -> (min, max) over the calibration frames.
        method: "entropy", "minmax" or "percentile".
        key: sha256 over the model, the frames, the spec and the method; a file whose key
            matches is reused instead of calibrating again.
        frames: frames calibrated on.
        source: where the frames came from.
        model_sha256: of the float ONNX file.
        minmax_tensors: tensors a histogram method could not bin (constant, all-zero, tiny or
            non-finite: see `edgeseg.calib.histogram`), ranged by their min/max instead.
    """

    tensors: dict[str, tuple[float, float]]
    method: str
    key: str
    frames: int
    source: str
    model_sha256: str
    minmax_tensors: tuple[str, ...] = ()

    def to_json(self) -> str:
        """JSON with one line per tensor, so the file reads (and diffs) well."""
        header = {
            "format": RANGES_FORMAT,
            "key": self.key,
            "method": self.method,
            "frames": self.frames,
            "source": self.source,
            "model_sha256": self.model_sha256,
            "minmax_tensors": list(self.minmax_tensors),
        }
        lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()] + [' "tensors": {']
        items = sorted(self.tensors.items())
        for index, (name, (low, high)) in enumerate(items):
            comma = "," if index < len(items) - 1 else ""
            lines.append(f"  {json.dumps(name)}: [{json.dumps(low)}, {json.dumps(high)}]{comma}")
        return "\n".join(lines + [" }", "}"]) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str | Path = "ranges file") -> "CalibrationRanges":
        try:
            data = json.loads(text)
            if data.get("format") != RANGES_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {RANGES_FORMAT!r}")
            tensors = {str(k): (float(v[0]), float(v[1])) for k, v in data["tensors"].items()}
            return cls(tensors, str(data["method"]), str(data["key"]), int(data["frames"]),
                       str(data["source"]), str(data["model_sha256"]),
                       tuple(str(name) for name in data.get("minmax_tensors", ())))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise EngineError(f"{source} is not an edgeseg ranges file ({err}); delete it to recalibrate") from None

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationRanges":
        path = Path(path)
        return cls.from_json(path.read_text(), path)

    def scale(self, tensor: str) -> float:
        """TensorRT's symmetric int8 scale of a tensor: max(|min|, |max|) / 127."""
        low, high = self.tensors[tensor]
        return trt_cache.scale_from_range(low, high)


def ranges_key(model_sha256: str, frames_digest: str, spec: ModelSpec, method: str) -> str:
    """The hash that identifies a calibration: same key, same ranges."""
    import onnxruntime

    identity = {
        "format": RANGES_FORMAT,
        "model": model_sha256,
        "frames": frames_digest,
        "spec": spec.to_dict(),
        "method": method,
        "options": _CALIBRATOR_OPTIONS[method],
        "prepare": PREPARE_VERSION,  # the ranges are of the prepared graph's tensors
        "onnxruntime": onnxruntime.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def compute_ranges(
    model_path: Path, reader: FrameBatchReader, method: str, work_dir: Path
) -> tuple[dict[str, tuple[float, float]], tuple[str, ...]]:
    """Run ONNX Runtime's calibrator over every float tensor of the model.

    Collects in chunks of CHUNK_FRAMES frames: the histogram calibrators keep every
    intermediate output of a pass in memory, and merge histograms across passes. Tensors a
    histogram cannot bin (constant, all-zero, tiny) get their min/max range instead of
    crashing ONNX Runtime (`edgeseg.calib.histogram`).

    Returns:
        the ranges, and the names of the tensors ranged by min/max instead of `method`.
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    from edgeseg.calib.histogram import safe_collector

    chatter = io.StringIO()  # the histogram calibrators print progress lines on stdout
    with contextlib.redirect_stdout(chatter):
        calibrator = create_calibrator(
            Path(model_path),
            None,  # every float tensor: both layouts take what they need from one calibration
            augmented_model_path=str(work_dir / "augmented.onnx"),
            calibrate_method=CalibrationMethod[_ORT_METHODS[method]],
            extra_options=dict(_CALIBRATOR_OPTIONS[method]),
        )
        collector = safe_collector(calibrator)
        chunk = max(1, CHUNK_FRAMES // reader.batch_size)
        for start in range(0, len(reader), chunk):
            reader.set_range(start, start + chunk)
            calibrator.collect_data(reader)
        data = calibrator.compute_data()
    reader.rewind()
    ranges = {}
    for name, tensor_data in data.items():
        low, high = float(np.min(tensor_data.range_value[0])), float(np.max(tensor_data.range_value[1]))
        ranges[name] = (low, high)
    return ranges, tuple(sorted(collector.degenerate)) if collector is not None else ()


def _ort_tensors_data(method: str, tensors: dict[str, tuple[float, float]]) -> Any:
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    return TensorsData(
        CalibrationMethod[_ORT_METHODS[method]],
        {
            name: TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
            for name, (low, high) in tensors.items()
        },
    )


# --------------------------------------------------------------------------------------------
# Graph helpers


@dataclass(frozen=True)
class ModelInput:
    name: str
    batch_size: int  # the fixed batch, or 1 for a dynamic batch


def model_input(model: Any) -> ModelInput:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(
            f"edgeseg models have one input, this one has {len(inputs)} ({[v.name for v in inputs]})"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1
    return ModelInput(inputs[0].name, int(batch))


def head_nodes(model: Any) -> list[str]:
    """Nodes from the graph outputs back to (and including) the last weighted layer(s).

    For a segmentation model this is the class convolution, the final resize and any
    transpose or activation after them: the part kept in float for accuracy.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    stack = [value.name for value in model.graph.output]
    seen: set[str] = set()
    names = []
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.append(node.name)
        if node.op_type not in WEIGHTED_OP_TYPES:
            stack.extend(name for name in node.input if name in producers)
    return names


def tail_nodes(model: Any) -> list[str]:
    """The head minus its weighted layers: the final resize (and transpose) after the class conv.

    The CPU target keeps them in float. ONNX Runtime 1.31 does not run a linear Resize on
    uint8 in Q/DQ models (it keeps DequantizeLinear -> float Resize -> QuantizeLinear), so
    quantizing the tail only adds a quantize/dequantize pair over the full-resolution logits
    (0.3 ms of 7 on MobileNetV2-DeepLabV3+, 21 classes); QOperator's uint8 Resize is slower
    still (3.3 ms against 1.0 in float). Float logits are also the more accurate ones.
    """
    weighted = {node.name for node in model.graph.node if node.op_type in WEIGHTED_OP_TYPES}
    return [name for name in head_nodes(model) if name not in weighted]


def softmax_and_readers(model: Any) -> list[str]:
    """Softmax nodes and the nodes that read their output (attention weights): the cpu target keeps them in float.

    Attention weights over n positions are about 1/n each: past a few hundred positions they
    are under uint8's step (range / 255) and round to 0 (a 24x40 attention block agreed with
    float on 54% of pixels with its MatMul quantized, 94% without).
    """
    reached: set[str] = set()
    names = []
    for node in model.graph.node:  # graph order: a Transpose/Reshape of the weights passes them on
        if node.op_type == "Softmax" or reached & set(node.input):
            names.append(node.name)
            if node.op_type == "Softmax" or node.op_type in RANGE_PRESERVING_OP_TYPES:
                reached.update(node.output)
    return names


def shared_concat_ranges(
    model: Any, tensors: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """Ranges where every Concat's inputs share its output's range (the union of them all).

    ONNX Runtime's QLinearConcat copies an input whose scale and zero point equal the output's
    and requantises any other byte by byte through a lookup table (0.18 ms against 0.05 for
    the two concats of MobileNetV2-DeepLabV3+). TFLite's INT8 spec requires the same of
    Concatenation. The shared range reaches back through ops that keep their input's range
    (Resize, Transpose, Reshape, ...), so those stay free of requantisation too. Ranges are
    only widened, and never where that would undo an activation: ONNX Runtime drops a Relu or
    Clip after a quantized op and lets the output range do the clipping, so a Relu output
    must keep a range that starts at 0 or above and a Clip output its own range. A Concat
    where the union would break that (a ConvTranspose output with negative values beside a
    Relu skip connection, as in a U-Net) keeps its separate ranges.
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    shared = dict(tensors)
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        names = [node.output[0]]
        for name in node.input:
            names.append(name)
            producer = producers.get(name)
            while producer is not None and producer.op_type in RANGE_PRESERVING_OP_TYPES:
                names.append(producer.input[0])
                producer = producers.get(producer.input[0])
        names = [name for name in names if name in shared]
        if len(names) < 2:
            continue
        union = (min(shared[name][0] for name in names), max(shared[name][1] for name in names))
        if all(_may_widen(producers.get(name), shared[name], union) for name in names):
            for name in names:
                shared[name] = union
    return shared


def _may_widen(producer: Any, own: tuple[float, float], union: tuple[float, float]) -> bool:
    """Whether a tensor's range may grow to `union` without undoing the activation that made it."""
    if producer is None:
        return True
    if producer.op_type == "Relu":
        return union[0] >= 0.0
    if producer.op_type == "Clip":
        return union == own
    return True


def constant_input_nodes(model: Any, op_types: Sequence[str] = ("Add", "Mul")) -> list[str]:
    """Add/Mul nodes with a constant operand (input normalisation, bias adds), not residuals."""
    constants = {init.name for init in model.graph.initializer}
    constants.update(o for node in model.graph.node if node.op_type == "Constant" for o in node.output)
    return [
        node.name for node in model.graph.node
        if node.op_type in op_types and any(name in constants for name in node.input)
    ]


def _name_unnamed_nodes(model: Any) -> None:
    """nodes_to_exclude works by node name: give every node one."""
    used = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


# --------------------------------------------------------------------------------------------
# Quantizing one layout


def quantize_layout(
    prepared_model: Path,
    ranges: CalibrationRanges,
    layout: QuantLayout,
    output: Path,
    nodes_to_exclude: Sequence[str],
    work_dir: Path,
) -> Path:
    """Write the quantized model of `layout` from precomputed `ranges` (no calibration run)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    tensors = ranges.tensors
    if layout.shared_concat_ranges:
        import onnx

        tensors = shared_concat_ranges(onnx.load(str(prepared_model), load_external_data=False), tensors)
    cache = work_dir / f"ort-ranges-{ranges.key[:16]}{'-concat' if layout.shared_concat_ranges else ''}.json"
    if not cache.exists():
        save_tensors_data(_ort_tensors_data(ranges.method, tensors), cache)
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra: dict[str, Any] = {
        "ActivationSymmetric": layout.activation_symmetric,
        "WeightSymmetric": True,
        # A BatchNormalization left unfused has rank-1 scale and bias: its channels are axis 0
        # (ONNX Runtime's default axis 1 is out of range there, and it warns once per node).
        "QDQOpTypePerChannelSupportToAxis": {"BatchNormalization": 0},
    }
    if layout.inputs_only:
        extra["OpTypesToExcludeOutputQuantization"] = list(layout.op_types or ())
        extra["ForceQuantizeNoInputCheck"] = True  # pooling inputs get Q/DQ even after a float op
    quantize_static(
        str(prepared_model),
        str(output),
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ if layout.quant_format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=list(layout.op_types) if layout.op_types else None,
        per_channel=layout.per_channel,
        reduce_range=layout.reduce_range,
        activation_type=types[layout.activation_type],
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=CalibrationMethod[_ORT_METHODS[ranges.method]],
        extra_options=extra,
        calibration_cache_path=str(cache),
    )
    return output


def _finish_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Put the spec and the quantization record on `path`; drop opset imports no node uses.

    ONNX Runtime's pre-processing declares every contrib domain it knows (com.microsoft,
    org.pytorch.aten, ...); stricter readers such as TensorRT's parser need not see them.
    """
    import onnx

    model = onnx.load(str(path))
    used = {node.domain or "" for node in model.graph.node}
    kept = [opset for opset in model.opset_import if (opset.domain or "") in used | {"", "ai.onnx"}]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    write_metadata(model, metadata)
    onnx.save(model, str(path))


def _check_loads(path: Path, source: Path) -> None:
    """Refuse to write a quantized model ONNX Runtime cannot load (never a broken file reported as done)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        ort_session(path)
    except (ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NotImplemented, ort_errors.Fail) as err:
        raise EngineError(
            f"the INT8 model quantized from {source} does not load in ONNX Runtime ({err}); nothing written. "
            "Try --format qdq, or re-export the model with a recent opset (17)"
        ) from None


def measure_latency(
    paths: dict[str, Path], batch: np.ndarray, rounds: int = 3, block: int = 5, warmup: int = 2
) -> dict[str, float]:
    """Latency in ms of each model on `batch`: its fastest run, timed in interleaved blocks.

    Blocks, not alternate runs: each session's thread pool keeps spinning a while after a
    run, so alternating sessions run by run makes them fight over the cores (on this 2-core
    machine that inflated every time 4-5x). The first run of a block pays for the switch and
    is not counted. The fastest run, not the median: background load only ever adds time, and
    on a busy machine the medians of two models 10% apart swapped places (the choice of
    format picked the slower one).
    """
    sessions = {key: ort_session(path) for key, path in paths.items()}
    names = {key: session.get_inputs()[0].name for key, session in sessions.items()}
    for key, session in sessions.items():
        for _ in range(warmup):
            session.run(None, {names[key]: batch})
    times: dict[str, list[float]] = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            session.run(None, {names[key]: batch})
            for _ in range(block):
                start = time.perf_counter()
                session.run(None, {names[key]: batch})
                times[key].append((time.perf_counter() - start) * 1000)
    return {key: min(values) for key, values in times.items()}


# --------------------------------------------------------------------------------------------
# The whole job


@dataclass
class CalibrationReport:
    """What `calibrate` did.

    Attributes:
        model: the float input model.
        output: the quantized model.
        ranges_path: the ranges JSON (reusable by the other target).
        trt_cache: the legacy TensorRT cache (tensorrt target), else None.
        target, format, method: what was built and how.
        layout: the layout in words.
        frames, frames_source: the calibration data.
        ranges_reused: the ranges came from an earlier run's JSON.
        excluded_nodes: every node kept in float (head, constant adds, sensitivity).
        minmax_tensors: tensors the histogram method could not bin (constant, all-zero, tiny),
            ranged by their min/max instead.
        sensitive_nodes: the nodes the mIoU budget moved back to float, in order.
        latency_ms: fastest measured run per format when the format was chosen by timing.
        float_miou, int8_miou: mean IoU (0..1) when --max-miou-drop evaluated them.
        max_miou_drop: the budget in percentage points, if one was given.
        miou_reference: what the mean IoU was measured against: the masks of a dataset, or the
            float model's class maps on frames without masks (then float_miou is 1).
        seconds: wall time.
        preparation: what graph preparation changed (`edgeseg.calib.prepare`).
        account: per-op time in float and INT8 and the speed-up (cpu target), measured here.
        int8_ops: op type -> nodes running on INT8 inputs (for TensorRT: where Q/DQ sits).
    """

    model: Path
    output: Path
    ranges_path: Path
    trt_cache: Path | None
    target: str
    format: str
    method: str
    layout: str
    frames: int
    frames_source: str
    ranges_reused: bool
    excluded_nodes: tuple[str, ...]
    minmax_tensors: tuple[str, ...] = ()
    sensitive_nodes: tuple[str, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)
    float_miou: float | None = None
    int8_miou: float | None = None
    max_miou_drop: float | None = None
    miou_reference: str = ""
    search_steps: list = field(default_factory=list)
    seconds: float = 0.0
    preparation: PrepareReport | None = None
    account: OpAccount | None = None
    int8_ops: dict[str, int] = field(default_factory=dict)

    @property
    def miou_drop(self) -> float | None:
        """The drop in percentage points of mean IoU (float - int8), if evaluated."""
        if self.float_miou is None or self.int8_miou is None:
            return None
        return (self.float_miou - self.int8_miou) * 100

    @property
    def within_budget(self) -> bool | None:
        if self.max_miou_drop is None or self.miou_drop is None:
            return None
        return self.miou_drop <= self.max_miou_drop + 1e-9

    def summary(self, written: bool = True) -> str:
        """A few aligned lines for the CLI; `written=False` leaves out the files line."""
        lines = [
            f"model     {self.model}",
            f"target    {self.target}: {self.layout}",
            f"frames    {self.frames} from {self.frames_source}, {self.method} ranges"
            + (" (reused)" if self.ranges_reused else ""),
        ]
        if self.minmax_tensors:
            lines.append(f"ranges    {len(self.minmax_tensors)} constant or near-constant tensor(s) could not be "
                         f"binned by {self.method}: min/max used for them")
        if self.latency_ms:
            timing = ", ".join(f"{fmt.upper()} {ms:.1f} ms" for fmt, ms in self.latency_ms.items())
            lines.append(f"format    {self.format.upper()} (measured: {timing})")
        if self.preparation is not None:
            lines.append(f"prepared  {self.preparation.describe()}")
        if self.int8_ops:
            lines.append("int8 ops  " + ", ".join(f"{op} {n}" for op, n in self.int8_ops.items()))
        lines.append(f"float     {len(self.excluded_nodes)} node(s) kept in float"
                     + (f", {len(self.sensitive_nodes)} of them for accuracy: {', '.join(self.sensitive_nodes)}"
                        if self.sensitive_nodes else ""))
        if self.miou_drop is not None:
            verdict = "" if self.within_budget is None else (
                " (within budget)" if self.within_budget else f" (over the {self.max_miou_drop:g} pp budget)")
            lines.append(
                f"accuracy  mIoU float {self.float_miou:.2%}, int8 {self.int8_miou:.2%}, "
                f"drop {self.miou_drop:.2f} pp{verdict}"
                + (f"; against {self.miou_reference}" if self.miou_reference else "")
            )
        if self.account is not None:
            lines += self.account.lines()
        if written:
            files = [str(self.output), str(self.ranges_path)] + ([str(self.trt_cache)] if self.trt_cache else [])
            lines.append(f"wrote     {', '.join(files)} in {self.seconds:.1f} s")
        return "\n".join(lines)


class MiouBudgetError(ModelError):
    """The INT8 model stays over the mIoU budget even with the most sensitive layers in float.

    Attributes:
        report: the report of the best attempt (nothing was written).
    """

    def __init__(self, message: str, report: CalibrationReport) -> None:
        super().__init__(message)
        self.report = report


def default_output(model_path: Path, target: str) -> Path:
    suffix = ".int8.onnx" if target == "cpu" else ".trt-int8.onnx"
    return model_path.with_name(model_path.stem + suffix)


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise EdgesegError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")


@dataclass(frozen=True)
class CalibrationOptions:
    """How `calibrate` quantizes: every setting except the model, its frames, its spec and `warn`.

    Attributes:
        target: "cpu" (ONNX Runtime on this CPU) or "tensorrt" (symmetric Q/DQ + legacy cache).
        method: "entropy", "minmax" or "percentile" (ONNX Runtime's calibration methods).
        num_frames: calibration frames to read (spread over the source).
        output: the quantized model; default `model.int8.onnx` (cpu) or `model.trt-int8.onnx`
            (tensorrt) beside the input.
        fmt: "auto" (time QDQ and QOperator; QOperator only if 3% faster), "qdq" or "qoperator"; the
            tensorrt target is always QDQ.
        float_head: keep the head (class convolution, final resize) in float. Default: yes
            for tensorrt; no for cpu, where the float head costs about a fifth of the INT8
            latency of MobileNetV2-DeepLabV3+ (the mIoU budget search can still move it back).
        trt_version: the TensorRT version the legacy cache header names.
        measure_ops: cpu target: time each op type in float against INT8 on this machine and keep
            in float what is faster there (`op_profile.choose_float_ops`), and account for it.
        progress: show a progress bar while calibrating.
        max_miou_drop: accuracy budget in percentage points of mean IoU (0.5 means 72.0% ->
            71.5% is acceptable). Over budget, the most sensitive layers are kept in float a few
            at a time. Measured against the masks of `data`; without `data`, against the float
            model's class maps on `eval_source` (no masks needed).
        data: a `--data` string or a SegDataset with masks, for the accuracy check.
        eval_source: frames without masks for the accuracy check (readers.ImageFolder or
            VideoFile), when there is no `data`; default: the calibration frames.
        eval_subset: the subset of `data` to evaluate on.
        eval_frames: images of `data` to evaluate on (spread over the subset).
        split: train/val/test fractions of a folder dataset without its own split (use training's).
        max_rounds: quantize-and-evaluate rounds the budget search may take.
        exclude_step: layers moved back to float per round.
    """

    target: str = "cpu"
    method: str = DEFAULT_METHOD
    num_frames: int = DEFAULT_FRAMES
    output: str | Path | None = None
    fmt: str = "auto"
    float_head: bool | None = None
    trt_version: str = trt_cache.DEFAULT_TRT_VERSION
    measure_ops: bool = True
    progress: bool = True
    max_miou_drop: float | None = None
    data: Any = None
    eval_source: FrameSource | None = None
    eval_subset: str = "val"
    eval_frames: int = DEFAULT_EVAL_FRAMES
    split: Sequence[float] = (0.8, 0.1, 0.1)
    max_rounds: int = 8
    exclude_step: int = 2

    def check(self) -> None:
        """Refuse bad settings before any work is done."""
        _check_choice(self.target, TARGETS, "target")
        _check_choice(self.method, METHODS, "calibration method")
        _check_choice(self.fmt, FORMATS, "format")
        if self.target == "tensorrt":
            if self.fmt == "qoperator":
                raise EdgesegError("--format qoperator is a CPU layout; TensorRT reads Q/DQ models (use qdq or auto)")
            trt_cache.version_code(self.trt_version)
        if self.max_miou_drop is not None:
            if self.max_rounds < 1:
                raise EdgesegError(f"--max-rounds {self.max_rounds} must be at least 1")
            if self.data is not None and self.eval_source is not None:
                raise EdgesegError("measure the mIoU on a dataset with masks (--data) or on frames without masks "
                                   "(--eval-images/--eval-video), not both")
            if not self.max_miou_drop >= 0:
                raise EdgesegError(
                    f"--max-miou-drop {self.max_miou_drop} must be >= 0 (percentage points of mean IoU)")


@dataclass(frozen=True)
class _Destinations:
    """Where a calibration's files go: the INT8 model, the ranges JSON, the TensorRT cache (or None)."""

    output: Path
    ranges: Path
    cache: Path | None


def calibrate(
    onnx_path: str | Path,
    frames_source: FrameSource,
    options: CalibrationOptions | None = None,
    *,
    spec: ModelSpec | None = None,
    warn: Warn = warn_on_stderr,
    **settings: Any,
) -> CalibrationReport:
    """Calibrate a float edgeseg ONNX model and write its INT8 model for `options.target`.

    Settings come as a `CalibrationOptions`, or as its fields by keyword (`target="tensorrt"`),
    which override `options`: a one-off call stays one line, a command that maps many flags
    builds the dataclass.

    Args:
        onnx_path: the float model (exported by `edgeseg export`, spec embedded).
        frames_source: where the calibration frames come from (readers.ImageFolder,
            VideoFile or DatasetImages).
        options: how to quantize (see `CalibrationOptions`); default: its defaults.
        spec: the ModelSpec, for a model without one embedded.
        warn: receives warnings (few frames, skipped files).
        **settings: `CalibrationOptions` fields that replace those of `options`.

    Raises:
        EdgesegError: bad input (its message says what to do).
        MiouBudgetError: the budget cannot be met; `.report` says how close it came.
    """
    import onnx

    started = time.perf_counter()
    unknown = sorted(set(settings) - {f.name for f in fields(CalibrationOptions)})
    if unknown:
        raise TypeError(f"calibrate() got unexpected keyword argument(s) {', '.join(unknown)}")
    options = replace(options or CalibrationOptions(), **settings)
    options.check()
    model_path = Path(onnx_path)
    if not model_path.is_file():
        raise EngineError(f"no ONNX model at {model_path}; export one with `edgeseg export`")
    spec = spec or _embedded_spec(model_path)
    where = _destinations(model_path, options)
    claim_denormals_as_zero()  # before ONNX Runtime's quantization tools create their sessions

    with temporary_dir(where.output) as work_dir:  # everything is made here and moved into place at the very end
        prepared, preparation = _prepare(model_path, work_dir)
        prepared_model = onnx.load(str(prepared), load_external_data=False)
        model_in = model_input(prepared_model)
        frames = load_calibration_frames(frames_source, options.num_frames, spec, model_in.batch_size, warn)
        check_prepared(model_path, prepared, frames.frames, spec, model_in.batch_size, preparation)
        ranges, reused = _ranges(model_path, prepared, where.ranges, frames, spec, model_in, options.method,
                                 work_dir, options.progress)
        always_float = _always_float(prepared_model, options)

        def build(chosen: QuantLayout, excluded: Sequence[str], name: str) -> Path:
            return quantize_layout(prepared, ranges, chosen, work_dir / name, [*always_float, *excluded], work_dir)

        sample = FrameBatchReader(frames.frames, spec, model_in.name, model_in.batch_size).batch(0)
        layout, candidate, latency = _fastest_layout(options, build, sample)
        account = None
        if options.target == "cpu" and options.measure_ops:  # keep in float what is faster in float, and account for it
            readers = set(softmax_and_readers(prepared_model))
            reasons = {n: "attention weights (Softmax) under the uint8 step" if n in readers else
                       "kept for accuracy: head and final resize" for n in always_float}
            choice = choose_float_ops(
                model_path, candidate, lambda extra, name: build(layout, extra, name), prepared_model, sample,
                reasons, kernel_latency,
            )
            candidate, account = choice.model, choice.account
            always_float += list(choice.float_nodes)

        int8_ops = quantized_ops(onnx.load(str(candidate), load_external_data=False), always_float)
        report = CalibrationReport(
            model=model_path, output=where.output, ranges_path=where.ranges, trt_cache=where.cache,
            target=options.target, format=layout.quant_format, method=options.method, layout=layout.describe(),
            frames=len(frames), frames_source=frames.source, ranges_reused=reused,
            excluded_nodes=tuple(always_float), minmax_tensors=ranges.minmax_tensors, latency_ms=latency,
            max_miou_drop=options.max_miou_drop, preparation=preparation, account=account, int8_ops=int8_ops,
        )
        if options.max_miou_drop is not None:
            candidate = _meet_budget(report, model_path, prepared, candidate, layout, build, spec, model_in,
                                     options, options.eval_source or frames_source)
            report.excluded_nodes = tuple(always_float) + report.sensitive_nodes
            if report.within_budget is False:
                report.seconds = time.perf_counter() - started
                raise MiouBudgetError(
                    f"INT8 mIoU drop {report.miou_drop:.2f} pp stays over the {options.max_miou_drop:g} pp budget "
                    f"with {len(report.sensitive_nodes)} sensitive layer(s) in float after "
                    f"{len(report.search_steps)} round(s); nothing written. Calibrate on more, or more "
                    "representative, frames, try another --method, or allow a larger --max-miou-drop",
                    report,
                )
        _finish_metadata(candidate, {
            ONNX_METADATA_KEY: spec.to_json(),
            QUANT_METADATA_KEY: json.dumps({
                "target": options.target, "format": layout.quant_format, "method": options.method,
                "frames": len(frames), "ranges_key": ranges.key, "float_model_sha256": ranges.model_sha256,
                "float_nodes": list(report.excluded_nodes), "prepare": preparation.to_dict(),
                **({"op_account": account.to_dict()} if account is not None else {}),
            }),
        })
        _check_loads(candidate, model_path)
        _write_outputs(where, candidate, ranges, model_path, prepared_model, report.excluded_nodes,
                       options.trt_version, work_dir)
    report.seconds = time.perf_counter() - started
    return report


def _destinations(model_path: Path, options: CalibrationOptions) -> _Destinations:
    """The output paths, refusing an output that would overwrite the float model."""
    output = Path(options.output) if options.output is not None else default_output(model_path, options.target)
    if output.resolve() == model_path.resolve():
        raise EdgesegError(f"-o {output} would overwrite the float model; choose another output path")
    cache = output.parent / f"{model_path.stem}.calib.cache" if options.target == "tensorrt" else None
    return _Destinations(output, output.parent / f"{model_path.stem}.calib.json", cache)


def _always_float(prepared_model: Any, options: CalibrationOptions) -> list[str]:
    """The nodes the layout keeps in float whatever the measurements say (head, tail, constant inputs)."""
    float_head = options.target == "tensorrt" if options.float_head is None else options.float_head
    always_float = list(dict.fromkeys(head_nodes(prepared_model))) if float_head else []
    if options.target == "cpu":
        always_float += [n for n in tail_nodes(prepared_model) if n not in always_float]
        always_float += [n for n in softmax_and_readers(prepared_model) if n not in always_float]
    if options.target == "tensorrt":
        always_float += [n for n in constant_input_nodes(prepared_model) if n not in always_float]
    return always_float


FORMAT_MARGIN = 0.03  # QOperator must be this much faster than QDQ to be chosen


def choose_format(latency: dict[str, float]) -> str:
    """QDQ unless QOperator measured at least FORMAT_MARGIN faster.

    The two often run within a few percent of each other (ONNX Runtime fuses Q/DQ pairs into
    the same QLinear kernels), and then the faster one is whichever the background load
    favoured: two calibrations of one model wrote different files. QDQ wins ties: it is the
    form ONNX Runtime recommends and the one other runtimes (TensorRT, OpenVINO) read.
    """
    return "qoperator" if latency["qoperator"] < latency["qdq"] * (1 - FORMAT_MARGIN) else "qdq"


def _fastest_layout(
    options: CalibrationOptions, build: Callable[[QuantLayout, Sequence[str], str], Path], sample: np.ndarray,
) -> tuple[QuantLayout, Path, dict[str, float]]:
    """The target's layout and its first INT8 model; with `--format auto` both formats are built
    and timed on `sample`, and `choose_format` picks. Returns the layout, the model and the timings."""
    fmt = options.fmt
    layout = tensorrt_layout() if options.target == "tensorrt" else cpu_layout("qdq" if fmt == "auto" else fmt)
    if options.target == "cpu" and fmt == "auto":
        candidates = {f: build(layout.with_format(f), (), f"{f}.onnx") for f in ("qdq", "qoperator")}
        latency = measure_latency(candidates, sample)
        layout = layout.with_format(choose_format(latency))
        return layout, candidates[layout.quant_format], latency
    return layout, build(layout, (), "int8.onnx"), {}


def _write_outputs(
    where: _Destinations, candidate: Path, ranges: CalibrationRanges, model_path: Path, prepared_model: Any,
    excluded_nodes: Sequence[str], trt_version: str, work_dir: Path,
) -> None:
    """Stage the ranges JSON (and the TensorRT cache) beside the finished model, then move all into place."""
    import onnx

    staged = {where.ranges: work_dir / "ranges.json"}
    staged[where.ranges].write_text(ranges.to_json())
    if where.cache is not None:
        float_names = _tensor_names(onnx.load(str(model_path), load_external_data=False))
        kept = _cache_tensors(ranges, prepared_model, excluded_nodes, float_names)
        staged[where.cache] = work_dir / "calib.cache"
        staged[where.cache].write_text(trt_cache.format_cache(kept, trt_version))
    staged[where.output] = candidate
    for destination, source in staged.items():
        os.replace(source, destination)  # same folder: each file appears whole


def _ranges(
    model_path: Path,
    prepared: Path,
    ranges_path: Path,
    frames: FrameSet,
    spec: ModelSpec,
    model_in: "ModelInput",
    method: str,
    work_dir: Path,
    progress: bool,
) -> tuple[CalibrationRanges, bool]:
    """The ranges of an earlier run on the same model, frames, spec and method, or new ones."""
    model_sha = file_sha256(model_path)
    key = ranges_key(model_sha, frames.digest, spec, method)
    earlier = _load_matching_ranges(ranges_path, key)
    if earlier is not None:
        return earlier, True
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), desc="calibrating", unit="frame", leave=False)
    reader = FrameBatchReader(frames.frames, spec, model_in.name, model_in.batch_size, progress=bar)
    try:
        tensors, minmax_tensors = compute_ranges(prepared, reader, method, work_dir)
    finally:
        if bar is not None:
            bar.close()
    return CalibrationRanges(tensors, method, key, len(frames), frames.source, model_sha, minmax_tensors), False


def _embedded_spec(model_path: Path) -> ModelSpec:
    from edgeseg.artifact import describe

    found = describe(model_path)
    if found.spec is None:
        raise SpecError(
            f"{model_path} carries no edgeseg spec ({ONNX_METADATA_KEY} metadata), so calibration cannot "
            "preprocess frames the way the model expects; missing " + "; ".join(found.missing)
            + "; pass them as flags or --spec FILE, or write them in with `edgeseg spec` (`edgeseg export` for a Keras model)"
        )
    return found.spec


def _prepare(model_path: Path, work_dir: Path) -> tuple[Path, PrepareReport]:
    """The float graph both targets quantize: `edgeseg.calib.prepare`'s exact rewrites and
    ONNX Runtime's pre-processing, with every node named (nodes_to_exclude works by name)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        onnx.checker.check_model(str(model_path))
    except (DecodeError, onnx.checker.ValidationError) as err:
        raise invalid_onnx_error(model_path, err) from None
    prepared = work_dir / "prepared.onnx"
    report = prepare_graph(model_path, prepared)
    model = onnx.load(str(prepared))
    _name_unnamed_nodes(model)
    onnx.save(model, str(prepared))
    return prepared, report


def _load_matching_ranges(path: Path, key: str) -> CalibrationRanges | None:
    """The ranges in `path` if they were computed from the same inputs, else None."""
    if not path.is_file():
        return None
    try:
        ranges = CalibrationRanges.load(path)
    except EngineError:
        return None  # a damaged or foreign file: recalibrate and replace it
    return ranges if ranges.key == key else None


def _tensor_names(model: Any) -> set[str]:
    names = {value.name for value in model.graph.input}
    names.update(output for node in model.graph.node for output in node.output)
    return names


def _cache_tensors(
    ranges: CalibrationRanges, prepared_model: Any, float_nodes: Sequence[str], float_model_names: set[str]
) -> dict[str, tuple[float, float]]:
    """The tensors of the legacy cache.

    Only names that exist in the float model TensorRT parses; without the outputs of nodes
    kept in float, so TensorRT (which has no scale for them) runs those layers in float too.
    """
    float_set = set(float_nodes)
    float_outputs = {o for node in prepared_model.graph.node if node.name in float_set for o in node.output}
    return {
        name: value for name, value in ranges.tensors.items()
        if name in float_model_names and name not in float_outputs
    }


def _meet_budget(
    report: CalibrationReport,
    model_path: Path,
    prepared: Path,
    candidate: Path,
    layout: QuantLayout,
    build: Callable[[QuantLayout, Sequence[str], str], Path],
    spec: ModelSpec,
    model_in: ModelInput,
    options: CalibrationOptions,
    eval_source: FrameSource,
) -> Path:
    """Evaluate float vs INT8 and move sensitive layers to float until within budget.

    With `options.data` the mIoU is measured against its masks; without, against the float
    model's class maps on `eval_source` (float then scores 1).
    """
    from edgeseg.calib import sensitivity

    data, eval_subset, eval_frames = options.data, options.eval_subset, options.eval_frames

    if data is not None:
        samples = sensitivity.load_eval_samples(data, spec, eval_subset, eval_frames, options.split)
        float_miou = sensitivity.evaluate_miou(model_path, samples, spec, model_in.batch_size)
        name = data if isinstance(data, str) else getattr(data, "name", "dataset")
        report.miou_reference = f"the masks of {name} [{eval_subset}], {len(samples)} images"
    else:
        samples = sensitivity.load_reference_samples(model_path, eval_source, spec, eval_frames, model_in.batch_size)
        float_miou = 1.0
        report.miou_reference = f"the float model's class maps on {len(samples)} frames of {eval_source.describe()}"

    def evaluate(path: Path) -> float:
        return sensitivity.evaluate_miou(path, samples, spec, model_in.batch_size)

    def ranking() -> list[str]:
        qdq = candidate if layout.quant_format == "qdq" else build(layout.with_format("qdq"), (), "rank-qdq.onnx")
        # rank on evaluation images: where the drop was measured (calibration frames fit their
        # own ranges, so they cannot show a range that misses the real data)
        images = [sample.image for sample in samples[:: max(1, len(samples) // sensitivity.RANK_FRAMES)]]
        images = images[: max(sensitivity.RANK_FRAMES, model_in.batch_size)]
        images += [images[-1]] * (-len(images) % model_in.batch_size)
        reader = FrameBatchReader(images, spec, model_in.name, model_in.batch_size)
        allowed = set(layout.op_types) if layout.op_types else None
        scores = sensitivity.rank_nodes(prepared, qdq, reader, allowed, set(report.excluded_nodes))
        return [score.node for score in scores]

    def quantize(excluded: Sequence[str]) -> Path:
        return candidate if not excluded else build(layout, excluded, f"int8-{len(excluded)}.onnx")

    result = sensitivity.search_exclusions(
        quantize=quantize, evaluate=evaluate, float_miou=float_miou, rank=ranking,
        max_drop_pp=report.max_miou_drop, step=options.exclude_step, max_rounds=options.max_rounds,
    )
    report.float_miou = float_miou
    report.int8_miou = result.int8_miou
    report.sensitive_nodes = tuple(result.excluded)
    report.search_steps = result.steps
    return result.model
