"""Build a TensorRT engine from an edgeseg ONNX model, on every supported TensorRT version.

Supported: TensorRT 8.5/8.6 (JetPack 5), 10.x (JetPack 6 = 10.3, desktops) and 11.x.
The versions differ in a few places, each handled by one small function here:

* `network_flags`: 8.x needs `EXPLICIT_BATCH`; 10.x ignores it (explicit batch is the only
  mode); 11.x removed it and is always strongly typed, so it takes no flag.
* `apply_precision`: 8.5-10.x are weakly typed: FP16 / INT8 are builder flags (INT8 is also
  needed for Q/DQ models). 11.x removed those flags: precision comes from the network's types.
* `supports_implicit_int8`: the legacy calibrators (`IInt8EntropyCalibrator2`, the
  calibration cache) exist up to 10.x; 11.x removed them.
* `max_onnx_opset`: JetPack 5's parser reads ONNX opsets up to 17.

INT8 (chosen design): every version builds INT8 from a Q/DQ model (explicit quantization).
A float model with `--int8 --calib DIR` is first calibrated by `edgeseg.calib` with target
"tensorrt" (symmetric int8 Q/DQ, the layout TensorRT fuses) in `build_engine`'s prepare step,
and this module builds the finished Q/DQ model: one path on every version, TensorRT's
recommended one and the only one on 11.x. It never calibrates or converts itself. On 8.5-10.x, a legacy
calibration cache (`--calib-cache`, written by `edgeseg calibrate --target tensorrt`) can be
used instead with a float model: an `IInt8EntropyCalibrator2` hands TensorRT the cache and
has no data of its own, so TensorRT never calibrates with made-up scales (the classic INT8
path, e.g. for DLA on JetPack 5).

FP16: a builder flag on 8.5-10.x; on 11.x `build_engine` converts the ONNX to mixed precision
first (`convert_to_fp16`: `onnxconverter-common`, float32 inputs and outputs kept).

`tensorrt` is imported only inside functions; everything that does not call TensorRT is pure
and tested without it.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeseg.artifact.manifest import CalibrationInfo, ProfileShapes
from edgeseg.errors import EngineError
from edgeseg.fileio import atomic_write_bytes, file_sha256
from edgeseg.runtime.tensorrt_backend import import_tensorrt

logger = logging.getLogger(__name__)

QDQ_LAYER_TYPES = ("QUANTIZE", "DEQUANTIZE")

Log = Callable[[str], None]


# --- versions ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version, parsed from `tensorrt.__version__` ("8.6.1.6", "10.3.0.30", "11.1.0")."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    @classmethod
    def parse(cls, text: str) -> "TrtVersion":
        match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not match:
            raise EngineError(f"cannot read the TensorRT version {text!r}; expected MAJOR.MINOR.PATCH like 10.3.0")
        return cls(*(int(group or 0) for group in match.groups()))

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}.{self.build}" if self.build else text


MIN_VERSION = TrtVersion(8, 5)


def check_supported(version: TrtVersion) -> None:
    if version < MIN_VERSION:
        raise EngineError(
            f"TensorRT {version} is too old: edgeseg builds engines with TensorRT 8.5 or newer "
            "(JetPack 5.1+, or pip install tensorrt on a desktop)"
        )


def is_strongly_typed(version: TrtVersion) -> bool:
    """TensorRT 11 builds every network strongly typed: precision comes from tensor types."""
    return version.major >= 11


def supports_precision_flags(version: TrtVersion) -> bool:
    """BuilderFlag.FP16 / INT8 exist up to 10.x (removed in 11)."""
    return version.major < 11


def supports_implicit_int8(version: TrtVersion) -> bool:
    """Calibrators and calibration caches (implicit quantization) exist up to 10.x."""
    return version.major < 11


def max_onnx_opset(version: TrtVersion) -> int | None:
    """The highest ONNX opset this TensorRT's parser reads, where edgeseg checks it (8.x)."""
    return 17 if version.major < 10 else None


def network_flags(trt: Any, version: TrtVersion) -> int:
    """The `create_network` flags: EXPLICIT_BATCH before 10; nothing from 10 on.

    10.x ignores EXPLICIT_BATCH (deprecated: explicit batch is the only mode) and 11.x removed
    it; 11.x is always strongly typed, its STRONGLY_TYPED flag is kept only for compatibility.
    """
    if version.major < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


@dataclass(frozen=True)
class Precision:
    """The reduced precisions an engine uses (FP32 is always allowed)."""

    int8: bool = False
    fp16: bool = False

    @property
    def label(self) -> str:
        if self.int8 and self.fp16:
            return "int8+fp16"
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


def apply_precision(trt: Any, config: Any, version: TrtVersion, precision: Precision) -> None:
    """Enable INT8 / FP16 kernels on weakly typed TensorRT (8.5-10.x).

    TensorRT 11 has no precision flags: a strongly typed network takes INT8 from its Q/DQ nodes
    and FP16 from its FP16 tensors, so there is nothing to set.
    """
    if not supports_precision_flags(version):
        return
    if precision.int8:
        config.set_flag(trt.BuilderFlag.INT8)
    if precision.fp16:
        config.set_flag(trt.BuilderFlag.FP16)


def check_opset(version: TrtVersion, opset: int | None, path: Path) -> None:
    limit = max_onnx_opset(version)
    if limit is not None and opset is not None and opset > limit:
        raise EngineError(
            f"{path} uses ONNX opset {opset}, but TensorRT {version} reads opsets up to {limit}; "
            f"re-export it with `edgeseg export --opset {limit}`"
        )


# --- shapes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRange:
    """`--batch`: the smallest, most frequent and largest batch the engine must run."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        """`4` -> 4,4,4 (a fixed batch); `1,4,8` -> min 1, opt 4, max 8."""
        parts = [part.strip() for part in str(text).split(",")]
        if len(parts) == 1:
            parts *= 3
        if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise EngineError(f"--batch {text!r} is not N or MIN,OPT,MAX with positive integers, e.g. 1,4,8")
        low, opt, high = (int(part) for part in parts)
        if not low <= opt <= high:
            raise EngineError(f"--batch {text}: needs MIN <= OPT <= MAX, e.g. 1,4,8")
        return cls(low, opt, high)

    def __str__(self) -> str:
        return f"{self.min},{self.opt},{self.max}"


def profile_shapes(
    input_name: str,
    dims: Sequence[int | None],
    layout: str,
    default_size: tuple[int, int],
    batch: BatchRange | None = None,
    size: tuple[int, int] | None = None,
    path: Path | str = "the model",
) -> tuple[ProfileShapes, bool]:
    """The optimization profile for an image input, and whether one is needed (dynamic dims).

    Args:
        dims: the input's dims from the ONNX / TensorRT network; None or <= 0 is dynamic.
        layout: "NHWC" or "NCHW" (from the spec).
        default_size: (height, width) used for dynamic spatial dims: the spec's input size.
        batch: `--batch`; default 1 for a dynamic batch.
        size: `--size HxW` for a model with dynamic height and width.

    Raises:
        EngineError: the input is not 4-D, or --batch / --size contradict fixed dims.
    """
    dims = [d if isinstance(d, int) and d > 0 else None for d in dims]
    if len(dims) != 4:
        raise EngineError(f"{path} input {input_name!r} has {len(dims)} dims {dims}; edgeseg models take 4-D images")
    h_axis, w_axis, c_axis = (1, 2, 3) if layout == "NHWC" else (2, 3, 1)
    dynamic = any(d is None for d in dims)

    fixed_batch = dims[0]
    if fixed_batch is not None:
        if batch is not None and (batch.min, batch.opt, batch.max) != (fixed_batch,) * 3:
            raise EngineError(
                f"{path} has a fixed batch of {fixed_batch}, so --batch {batch} cannot apply; "
                "re-export it with `edgeseg export --batch dynamic`, or drop --batch"
            )
        batches = (fixed_batch,) * 3
    else:
        chosen = batch or BatchRange(1, 1, 1)
        batches = (chosen.min, chosen.opt, chosen.max)

    fixed_hw = (dims[h_axis], dims[w_axis])
    if None not in fixed_hw:
        if size is not None and tuple(size) != fixed_hw:
            raise EngineError(
                f"{path} has a fixed input size {fixed_hw[0]}x{fixed_hw[1]}, so --size {size[0]}x{size[1]} "
                "cannot apply; drop --size (it is for models exported with a dynamic size)"
            )
        height, width = fixed_hw
    else:
        height, width = size if size is not None else default_size
        height = dims[h_axis] or height
        width = dims[w_axis] or width
    channels = dims[c_axis] or 3

    def shape(batch_size: int) -> tuple[int, ...]:
        out = [batch_size, 0, 0, 0]
        out[h_axis], out[w_axis], out[c_axis] = height, width, channels
        return tuple(out)

    return ProfileShapes(input_name, *(shape(b) for b in batches)), dynamic


# --- TensorRT objects -------------------------------------------------------------------------


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps error messages (for our error text) and forwards the rest."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
                logger.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                logger.warning("TensorRT: %s", msg)
            else:
                logger.debug("TensorRT: %s", msg)

    return CollectingLogger()


@dataclass
class ParsedNetwork:
    """A TensorRT network parsed from one ONNX file (the parser must outlive the network)."""

    source: Path
    network: Any
    parser: Any

    @property
    def input(self) -> Any:
        return self.network.get_input(0)


def onnx_node_names(path: Path) -> list[str]:
    """Node names of an ONNX file, for parser errors that only give a node index (TensorRT 8.x)."""
    try:
        import onnx
    except ImportError:
        return []
    model = onnx.load(str(path), load_external_data=False)
    return [node.name or f"{node.op_type}#{index}" for index, node in enumerate(model.graph.node)]


def describe_parser_error(error: Any, node_names: Sequence[str]) -> str:
    """One parser error as 'node NAME (OP): description'."""
    desc = str(error.desc())
    name = error.node_name() if hasattr(error, "node_name") else ""
    operator = error.node_operator() if hasattr(error, "node_operator") else ""
    index = error.node() if hasattr(error, "node") else -1
    if not name and 0 <= index < len(node_names):
        name = node_names[index]
    if not name and index >= 0:
        name = f"#{index}"
    where = f"node {name}" + (f" ({operator})" if operator else "") if name else "the graph"
    return f"{where}: {desc}"


def parse_onnx(trt: Any, builder: Any, trt_logger: Any, path: Path, version: TrtVersion) -> ParsedNetwork:
    """Parse `path` into a new network.

    Raises:
        EngineError: the parser failed; lists every error with its node name.
    """
    network = builder.create_network(network_flags(trt, version))
    parser = trt.OnnxParser(network, trt_logger)
    if parser.parse_from_file(str(path)):
        if network.num_inputs != 1:
            raise EngineError(f"{path} has {network.num_inputs} inputs; edgeseg models take one image input")
        return ParsedNetwork(path, network, parser)
    names = onnx_node_names(path)
    errors = [describe_parser_error(parser.get_error(i), names) for i in range(parser.num_errors)]
    text = "; ".join(errors) or "; ".join(trt_logger.errors) or "no details"
    hint = "re-export it with `edgeseg export` (opset 17)"
    if "QLinear" in text or "Integer" in text:
        hint = (
            "this is a CPU (QOperator) INT8 model; TensorRT reads Q/DQ models: build from the float model "
            "with --int8 --calib DIR, or from `edgeseg calibrate --target tensorrt`"
        )
    raise EngineError(f"TensorRT {version} cannot parse {path}: {text}; {hint}")


def network_has_qdq(trt: Any, network: Any) -> bool:
    """True if the network has Quantize/Dequantize layers (an explicitly quantized model)."""
    qdq = {getattr(trt.LayerType, name) for name in QDQ_LAYER_TYPES}
    return any(network.get_layer(i).type in qdq for i in range(network.num_layers))


def apply_workspace(trt: Any, config: Any, nbytes: int) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))


def add_profile(builder: Any, config: Any, shapes: ProfileShapes) -> None:
    profile = builder.create_optimization_profile()
    profile.set_shape(shapes.input_name, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(profile)


def check_dla_core(builder: Any, core: int) -> None:
    """Raise EngineError unless this device has DLA core `core` (only some Jetsons have DLA)."""
    cores = int(builder.num_DLA_cores)
    if cores == 0:
        raise EngineError(
            f"--dla {core}: this device has no DLA cores (DLA exists on Jetson AGX Orin, Orin NX and "
            "Xavier); drop --dla to build for the GPU"
        )
    if not 0 <= core < cores:
        raise EngineError(f"--dla {core}: this device has {cores} DLA core(s), numbered 0..{cores - 1}")


def apply_dla(trt: Any, builder: Any, config: Any, core: int, precision: Precision) -> None:
    """Run layers on DLA core `core`, the rest on the GPU (GPU fallback).

    Raises:
        EngineError: this device has no such DLA core, or the precision is FP32 (DLA runs
            FP16 and INT8 only).
    """
    check_dla_core(builder, core)
    if not (precision.int8 or precision.fp16):
        raise EngineError(f"--dla {core}: DLA runs FP16 or INT8 only; add --fp16 or --int8")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def attach_timing_cache(config: Any, path: Path) -> Any:
    """Load `path` (or start an empty cache) and give it to the builder.

    Raises:
        EngineError: TensorRT rejects the file (another TensorRT version or GPU).
    """
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        raise EngineError(
            f"--timing-cache {path} was written by another TensorRT version or GPU (or is damaged); "
            "delete it or pass another file"
        )
    return cache


def save_timing_cache(config: Any, path: Path) -> None:
    atomic_write_bytes(path, bytes(config.get_timing_cache().serialize()))


def cache_calibrator(trt: Any, cache: bytes) -> Any:
    """An IInt8EntropyCalibrator2 that only hands TensorRT a finished calibration cache.

    It has no calibration data (`get_batch` returns None), so TensorRT takes every scale from
    the cache and never calibrates on its own.
    """

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Any, *args: Any) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            return None

    return CacheCalibrator()


def load_legacy_cache(path: Path, version: TrtVersion, log: Log) -> bytes:
    """The cache at `path`, its header re-targeted at this TensorRT version if needed.

    The scales do not depend on the TensorRT version, but TensorRT skips a cache whose header
    names another one (and would then calibrate with no data).
    """
    from edgeseg.calib import trt_cache

    text = path.read_text() if path.is_file() else None
    if text is None:
        raise EngineError(f"--calib-cache {path} does not exist; write one with `edgeseg calibrate --target tensorrt`")
    cache = trt_cache.parse_cache(text, path)
    wanted = trt_cache.version_code(f"{version.major}.{version.minor}.{version.patch}")
    if cache.version_code != wanted:
        log(f"calibration cache {path.name} names TensorRT code {cache.version_code}; using it with {version} "
            f"(header rewritten to {wanted}, scales unchanged)")
        text = trt_cache.rewrite_header(text, f"{version.major}.{version.minor}.{version.patch}")
    return text.encode()


def convert_to_fp16(source: Path, output: Path) -> Path:
    """Write `source` as a mixed-precision FP16 model (float32 inputs and outputs kept).

    TensorRT 11 is strongly typed and has no FP16 flag: FP16 kernels run where the ONNX says
    float16.

    Raises:
        EngineError: `onnxconverter-common` (or `onnx`) is not installed.
    """
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as err:
        raise EngineError(
            f"--fp16 with TensorRT 11 converts the model to FP16 first (TensorRT 11 is strongly typed and "
            f"has no FP16 builder flag), which needs onnxconverter-common ({err}): "
            "pip install onnxconverter-common onnx; or convert it yourself (NVIDIA ModelOpt AutoCast) "
            "and build the converted model without --fp16"
        ) from None
    model = onnx.load(str(source))
    with warnings.catch_warnings(record=True) as clamped:  # one line per weight outside FP16's range
        warnings.simplefilter("always", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    if clamped:
        logger.info("FP16: %d weights outside float16's range were clamped (tiny ones to +-1e-7)", len(clamped))
    onnx.save(converted, str(output))
    return output


# --- the build --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrtJob:
    """What to build (the TensorRT part of BuildOptions, paths resolved).

    Attributes:
        onnx_path: the finished ONNX (prepared by `build_engine`: calibrated, converted, pruned).
        work_dir: a scratch folder.
        layout, input_size: from the spec, for the profile.
        int8, fp16: the precisions (int8: the model has Q/DQ nodes, or calib_cache is given).
        calib_cache: a legacy TensorRT calibration cache (8.5-10.x).
        batch, size: `--batch`, and `--size` for a graph whose height and width are still dynamic.
        opset: the model's opset (read once by `build_engine`; None when unknown).
        workspace: workspace pool limit in bytes (None: TensorRT's default).
        timing_cache: file to read and update.
        dla_core: DLA core to build for.
    """

    onnx_path: Path
    work_dir: Path
    layout: str
    input_size: tuple[int, int]
    int8: bool = False
    fp16: bool = False
    calib_cache: Path | None = None
    batch: BatchRange | None = None
    size: tuple[int, int] | None = None
    workspace: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    opset: int | None = None


@dataclass(frozen=True)
class TrtResult:
    engine: bytes
    version: TrtVersion
    precision: Precision
    profile: ProfileShapes
    calibration: CalibrationInfo | None


def _fp16_with_int8_error(version: TrtVersion) -> EngineError:
    return EngineError(
        f"--fp16 with INT8 on TensorRT {version}: strongly typed TensorRT takes both precisions from the "
        "model itself; build INT8 alone, or mix them in the ONNX (NVIDIA ModelOpt) and build without flags"
    )


def build_tensorrt_engine(job: TrtJob, log: Log, trt: Any = None) -> TrtResult:
    """Parse, configure and build; returns the serialized engine (nothing is written but the timing cache).

    Raises:
        EngineError: a parser error, a missing calibration, an option this TensorRT or device
            cannot honour, or a failed build.
    """
    trt = trt if trt is not None else import_tensorrt()
    version = TrtVersion.parse(trt.__version__)
    check_supported(version)
    check_opset(version, job.opset, job.onnx_path)
    if job.fp16 and job.int8 and is_strongly_typed(version):
        raise _fp16_with_int8_error(version)
    trt_logger = make_logger(trt)
    builder = trt.Builder(trt_logger)
    if job.dla_core is not None:
        check_dla_core(builder, job.dla_core)
    parsed = parse_onnx(trt, builder, trt_logger, job.onnx_path, version)

    int8, legacy_cache, calibration = False, None, None
    if network_has_qdq(trt, parsed.network):
        int8 = True
    elif job.int8:
        if job.calib_cache is not None:
            if not supports_implicit_int8(version):
                raise EngineError(
                    f"--calib-cache: TensorRT {version} removed calibration caches (implicit quantization); "
                    "pass --calib DIR to build from a Q/DQ model instead"
                )
            legacy_cache = load_legacy_cache(job.calib_cache, version, log)
            calibration = CalibrationInfo(f"TensorRT calibration cache {job.calib_cache}", file_sha256(job.calib_cache))
            int8 = True
        else:
            raise EngineError(
                f"--int8: {job.onnx_path} has no Q/DQ nodes, so its INT8 scales must come from calibration; "
                "pass --calib DIR (a folder of images or a video from the robot's camera), or build from a "
                "model quantized by `edgeseg calibrate --target tensorrt`"
            )

    if job.fp16 and is_strongly_typed(version) and int8:
        raise _fp16_with_int8_error(version)

    precision = Precision(int8=int8, fp16=job.fp16)
    network_input = parsed.input
    profile, dynamic = profile_shapes(
        network_input.name, list(network_input.shape), job.layout, job.input_size, job.batch, job.size, job.onnx_path
    )

    config = builder.create_builder_config()
    if job.workspace is not None:
        apply_workspace(trt, config, job.workspace)
    apply_precision(trt, config, version, precision)
    if legacy_cache is not None:
        config.int8_calibrator = cache_calibrator(trt, legacy_cache)
    if dynamic:
        add_profile(builder, config, profile)
    if job.dla_core is not None:
        apply_dla(trt, builder, config, job.dla_core, precision)
    if job.timing_cache is not None:
        attach_timing_cache(config, job.timing_cache)

    serialized = builder.build_serialized_network(parsed.network, config)
    if serialized is None:
        details = "; ".join(trt_logger.errors[-5:]) or "see the TensorRT log above"
        raise EngineError(f"TensorRT {version} could not build an engine from {job.onnx_path}: {details}")
    if job.timing_cache is not None:
        save_timing_cache(config, job.timing_cache)
    return TrtResult(bytes(memoryview(serialized)), version, precision, profile, calibration)
