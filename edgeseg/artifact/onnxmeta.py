"""What an ONNX file says about itself: metadata (spec, quantization record), I/O, precision.

`export`, `spec` and `calibrate` write the spec into the model's `metadata_props` (key
`edgeseg.spec`) with `write_spec_metadata`. Every reader goes through `read_onnx`, the one
place that opens an ONNX file for facts: it uses the `onnx` package when installed (a model
with ops ONNX Runtime lacks, e.g. TensorRT plugins, still has readable metadata) and ONNX
Runtime otherwise, so a robot without `onnx` can still find the spec of the model it runs
(only the precision is then "unknown").
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgeseg.artifact.spec import ONNX_METADATA_KEY, ModelSpec
from edgeseg.errors import EngineError, SpecError

QUANT_METADATA_KEY = "edgeseg.quantization"

# Op types that only a quantized graph has.
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger",
})
QOPERATOR_PREFIXES = ("QLinear",)
QOPERATOR_OPS = frozenset({"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})

Dim = int | str | None  # a fixed size, a symbolic name ("batch", "height"), or unknown


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: its name, dims and element type ("float", "float16", ...)."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype}[{dims}]"

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if not isinstance(d, int) or d <= 0)


@dataclass(frozen=True)
class OnnxFacts:
    """Everything edgeseg reads from an ONNX file without running it.

    Attributes:
        metadata: the metadata_props map.
        inputs, outputs: graph inputs (without initializers) and outputs.
        opset: the default-domain opset, None if unknown (read through ONNX Runtime).
        precision: "int8", "fp16", "fp32", or "unknown" without the `onnx` package.
        quant_format: "qdq", "qoperator" or None (float, or unknown).
        producers: graph output name -> the op type that makes it (empty through ONNX Runtime).
    """

    path: Path
    metadata: dict[str, str]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    opset: int | None
    precision: str
    quant_format: str | None
    producers: dict[str, str] = field(default_factory=dict)

    def output(self, name: str) -> TensorInfo:
        """The output called `name` (raises SpecError naming the outputs there are)."""
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        names = ", ".join(repr(t.name) for t in self.outputs)
        raise SpecError(f"{self.path} has no output {name!r}; its outputs are {names}: pass one of them to --output")


def write_spec_metadata(model_proto: Any, spec: ModelSpec) -> Any:
    """Embed `spec` in an `onnx.ModelProto` (in place, replacing any earlier spec); returns it."""
    return write_metadata(model_proto, {ONNX_METADATA_KEY: spec.to_json()})


def write_metadata(model_proto: Any, entries: Mapping[str, str]) -> Any:
    """Set metadata entries on an `onnx.ModelProto` (in place, replacing same keys); returns it."""
    props = {entry.key: entry.value for entry in model_proto.metadata_props}
    props.update(entries)
    del model_proto.metadata_props[:]
    for key, value in props.items():
        model_proto.metadata_props.add(key=key, value=value)
    return model_proto


def spec_from_metadata(metadata: Mapping[str, str], source: str | Path) -> ModelSpec | None:
    """The spec in an ONNX metadata map, or None if the model carries none.

    Raises:
        SpecError: the entry exists but is not a valid spec (names `source`).
    """
    text = metadata.get(ONNX_METADATA_KEY)
    if text is None:
        return None
    try:
        return ModelSpec.from_json(text)
    except SpecError as err:
        raise SpecError(
            f"{source}: the embedded {ONNX_METADATA_KEY} metadata is not a valid spec ({err}); "
            "write a new one with `edgeseg spec MODEL.onnx --classes ... -o OUT.onnx` or pass --spec FILE"
        ) from None


def quantization_from_metadata(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The record `edgeseg calibrate` leaves in a quantized model (target, method, frames, ...)."""
    text = metadata.get(QUANT_METADATA_KEY)
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def invalid_onnx_error(path: str | Path, reason: object) -> EngineError:
    """The one message for an ONNX file that cannot be parsed."""
    return EngineError(
        f"{path} is not a valid ONNX model (truncated or corrupt?): {reason}; "
        "re-export it (`edgeseg export`, or torch.onnx.export for a PyTorch model)"
    )


def read_spec_from_onnx_file(path: str | Path) -> ModelSpec | None:
    """The spec embedded in the ONNX file at `path`, or None if it has none.

    Raises:
        EngineError: the file is missing, not a valid ONNX model, or neither library is installed.
        SpecError: the embedded spec is malformed.
    """
    path = Path(path)
    return spec_from_metadata(read_metadata(path), path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata map of an ONNX file (ONNX Runtime when installed, else `onnx`): cheap."""
    path = Path(path)
    _check_file(path)
    if importlib.util.find_spec("onnxruntime") is not None:
        return dict(_ort_session(path).get_modelmeta().custom_metadata_map)
    if importlib.util.find_spec("onnx") is not None:
        return {entry.key: entry.value for entry in load_onnx_model(path).metadata_props}
    raise _no_library(path)


def read_onnx(path: str | Path) -> OnnxFacts:
    """Metadata, inputs, outputs, opset and precision of an ONNX file, parsed once.

    Raises:
        EngineError: the file is missing, not a valid ONNX model, or neither library is installed.
    """
    path = Path(path)
    _check_file(path)
    if importlib.util.find_spec("onnx") is not None:
        model = load_onnx_model(path)
        return facts_from_proto(model, path)
    if importlib.util.find_spec("onnxruntime") is not None:
        session = _ort_session(path)
        return OnnxFacts(
            path=path,
            metadata=dict(session.get_modelmeta().custom_metadata_map),
            inputs=tuple(_ort_tensor(t) for t in session.get_inputs()),
            outputs=tuple(_ort_tensor(t) for t in session.get_outputs()),
            opset=None,
            precision="unknown",
            quant_format=None,
        )
    raise _no_library(path)


def facts_from_proto(model: Any, path: str | Path) -> OnnxFacts:
    """OnnxFacts of a loaded `onnx.ModelProto`."""
    import onnx

    initializers = {init.name for init in model.graph.initializer}
    outputs = {value.name for value in model.graph.output}
    producers = {name: node.op_type for node in model.graph.node for name in node.output if name in outputs}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return OnnxFacts(
        path=Path(path),
        metadata={entry.key: entry.value for entry in model.metadata_props},
        inputs=tuple(_proto_tensor(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_proto_tensor(v) for v in model.graph.output),
        opset=int(opset) if opset is not None else None,
        precision=graph_precision(model.graph, onnx.TensorProto.FLOAT16),
        quant_format=graph_quant_format(model.graph),
        producers=producers,
    )


def graph_precision(graph: Any, float16: int = 10) -> str:
    """int8 if any node is a quantized operator, fp16 if any initializer is float16, else fp32."""
    if any(node.op_type in QUANTIZED_OPS for node in graph.node):
        return "int8"
    if any(init.data_type == float16 for init in graph.initializer):
        return "fp16"
    return "fp32"


def graph_quant_format(graph: Any) -> str | None:
    """"qoperator", "qdq" or None (a float graph), from its op types."""
    ops = {node.op_type for node in graph.node}
    if any(op.startswith(QOPERATOR_PREFIXES) for op in ops) or ops & QOPERATOR_OPS:
        return "qoperator"
    if ops & QDQ_OPS:
        return "qdq"
    return None


def load_onnx_model(path: str | Path, load_weights: bool = False) -> Any:
    """The ModelProto (weights left external unless asked), or a clear error for a corrupt file."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except (DecodeError, ValueError) as err:
        raise invalid_onnx_error(path, err) from None
    if not model.HasField("graph") or not model.graph.node:
        raise invalid_onnx_error(path, "no graph was found in the protobuf")
    return model


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise EngineError(f"no ONNX model at {path}; check the path")


def _no_library(path: Path) -> EngineError:
    return EngineError(f"cannot read {path}: neither onnxruntime nor onnx is installed; pip install 'edgeseg[onnx]'")


# ONNX Runtime's flush-to-zero and denormals-as-zero mode (see `ort_session`)
DENORMALS_AS_ZERO = {"session.set_denormal_as_zero": "1"}


@functools.cache  # once a process: only its first session decides
def claim_denormals_as_zero() -> None:
    """Create a tiny session with `ort_session` now, so that this process's first ONNX Runtime
    session is one of ours and the calling thread computes denormals as zero too.

    ONNX Runtime sets the calling thread's mode once, from the first session of a process; its
    own quantization tools (`quant_pre_process`, the calibrators) create sessions without the
    option. Calibration calls this first: otherwise the per-op account timed FP32 TwinLiteNet with
    denormals on the calling thread (385 ms at 2 threads instead of 68). Does nothing for the
    calling thread when a session already exists.
    """
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "claim",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    ort_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())


def ort_session(
    model: str | Path | bytes,
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int | None = None,
    optimization: str | None = None,
    quiet: bool = True,
    config: Mapping[str, str] | None = None,
    **settings: Any,
) -> Any:
    """An `onnxruntime.InferenceSession`: the one place edgeseg configures a session.

    It lives on the ground floor so that runtime, calibration, export and engine building all
    open models the same way; callers that need something special (profiling, saving the
    optimised graph, spinning off) pass just that. ONNX Runtime's load errors pass through: what
    a failure means (a corrupt file, a bug of ours) is the caller's to say.

    Denormal floats (under 1.2e-38) are computed as zero (`DENORMALS_AS_ZERO`), as TensorFlow
    does in its own threads: x86 CPUs compute with them many times slower, and PyTorch exports
    make them (PRelu with tiny slopes, attention branches trained to ~1e-41). TwinLiteNet's FP32
    ran 389 ms with them and 68 ms without on a 2-core Xeon with AMX (docs/results.md). ONNX
    Runtime applies it to its pool threads, and to the calling thread only from the first session
    a process creates (`claim_denormals_as_zero`); pass config={"session.set_denormal_as_zero":
    "0"} to keep IEEE denormals.

    Args:
        model: the ONNX file, or a serialized model.
        providers: execution providers, preferred first.
        threads: intra-op threads; None (or 0) leaves ONNX Runtime's default.
        optimization: a `GraphOptimizationLevel` name ("ORT_DISABLE_ALL" ...); None: its default.
        quiet: errors only in ONNX Runtime's log (no warnings on stderr).
        config: session config entries, e.g. {"session.intra_op.allow_spinning": "0"}.
        **settings: other `SessionOptions` attributes (enable_profiling, optimized_model_filepath).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if optimization is not None:
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    if threads:
        options.intra_op_num_threads = threads
    if quiet:
        options.log_severity_level = 3
    for key, value in {**DENORMALS_AS_ZERO, **(config or {})}.items():
        options.add_session_config_entry(key, value)
    for name, value in settings.items():
        setattr(options, name, value)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=list(providers))


def _ort_session(path: Path) -> Any:
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    try:
        return ort_session(path, optimization="ORT_DISABLE_ALL")
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph) as err:
        raise invalid_onnx_error(path, err) from None


def _ort_tensor(value: Any) -> TensorInfo:
    dtype = str(value.type).removeprefix("tensor(").removesuffix(")")
    return TensorInfo(value.name, tuple(_dim(d) for d in value.shape), dtype)


def _dim(value: Any) -> Dim:
    if isinstance(value, int):
        return value if value > 0 else None
    return str(value) if value else None


def _proto_tensor(value: Any) -> TensorInfo:
    import onnx

    tensor = value.type.tensor_type
    dims = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
        for d in tensor.shape.dim
    )
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "unknown"
    return TensorInfo(value.name, dims, {"float32": "float"}.get(dtype, dtype))
