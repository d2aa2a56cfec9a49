"""`build_engine`: the one entry point that turns an edgeseg ONNX model into what the robot runs.

It picks the backend (`choose_backend`: TensorRT when it imports and a GPU is present, else
ONNX Runtime on the CPU, or the one asked for), says which and why in its first output line,
builds (`trt_build` / `ort_build`), and writes the engine and its manifest (`OUT.json`)
atomically: a failed build leaves neither behind, and an existing engine stays untouched.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeseg import __version__
from edgeseg.calib.quantize import DEFAULT_FRAMES, DEFAULT_METHOD, METHODS
from edgeseg.engine.manifest import (
    CalibrationInfo,
    EngineManifest,
    ProfileShapes,
    manifest_path,
    utc_now,
)
from edgeseg.engine.ort_build import OrtJob, build_onnxruntime_model
from edgeseg.engine.trt_build import TENSORRT_INSTALL_HINT, BatchRange, TrtJob, build_tensorrt_engine
from edgeseg.errors import DataError, EdgesegError, EngineError, SpecError
from edgeseg.fileio import atomic_path, file_sha256
from edgeseg.runtime import cuda_buffers
from edgeseg.runtime.backends import check_spec_matches_model
from edgeseg.runtime.cuda_buffers import GpuInfo
from edgeseg.spec import ONNX_METADATA_KEY, ModelSpec

BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime")
ENGINE_SUFFIXES = (".engine", ".plan")
QUANT_METADATA_KEY = "edgeseg.quantization"

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    """Everything `edgeseg build-engine` takes (see `edgeseg build-engine --help`).

    Attributes:
        onnx_path: the model exported by `edgeseg export` (float, or Q/DQ / QOperator INT8).
        output: the engine file; default `model.engine` (TensorRT) or `model.cpu.onnx` (ONNX
            Runtime) beside the ONNX.
        backend: "auto", "tensorrt" or "onnxruntime".
        int8, fp16: the precisions asked for.
        calib: calibration frames for `--int8` on a float model: an image folder or a video.
        calib_method, calib_frames: how to calibrate.
        calib_cache: a legacy TensorRT calibration cache (TensorRT 8.5-10.x, float model).
        batch, shape: the TensorRT profile (`--batch`, `--shape HxW`).
        workspace: TensorRT workspace limit in bytes.
        timing_cache: TensorRT timing cache file (read and updated).
        dla_core: build for this DLA core, GPU fallback on.
        device: CUDA device index.
        progress: show calibration progress.
    """

    onnx_path: Path
    output: Path | None = None
    backend: str = "auto"
    int8: bool = False
    fp16: bool = False
    calib: Path | None = None
    calib_method: str = DEFAULT_METHOD
    calib_frames: int = DEFAULT_FRAMES
    calib_cache: Path | None = None
    batch: BatchRange | None = None
    shape: tuple[int, int] | None = None
    workspace: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    device: int = 0
    progress: bool = True

    def tensorrt_only_options(self) -> list[str]:
        """The given options that only the TensorRT backend understands."""
        given = {
            "--calib-cache": self.calib_cache, "--batch": self.batch, "--shape": self.shape,
            "--workspace": self.workspace, "--timing-cache": self.timing_cache, "--dla": self.dla_core,
        }
        return [flag for flag, value in given.items() if value is not None]


@dataclass(frozen=True)
class Environment:
    """What this machine offers the TensorRT backend.

    Attributes:
        tensorrt_version: the importable TensorRT's version, or None.
        tensorrt_problem: why TensorRT cannot be used ("" when it can).
        gpu: the CUDA device, or None.
        gpu_problem: why there is no usable GPU ("" when there is one).
    """

    tensorrt_version: str | None
    tensorrt_problem: str
    gpu: GpuInfo | None
    gpu_problem: str


NOT_PROBED = Environment(None, "not looked for", None, "not looked for")


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str

    def line(self) -> str:
        return f"backend: {self.name} ({self.reason})"


@dataclass
class BuildReport:
    """What `build_engine` wrote."""

    choice: BackendChoice
    output: Path
    manifest_path: Path
    manifest: EngineManifest
    seconds: float = 0.0

    def summary(self) -> str:
        m = self.manifest
        lines = [
            f"precision {m.precision} ({m.built_on()})",
        ]
        if m.profile is not None:
            lines.append(f"input     {m.profile.describe()}")
        if m.dla_core is not None:
            lines.append(f"dla       core {m.dla_core}, GPU fallback")
        if m.calibration is not None:
            frames = f", {m.calibration.frames} frames" if m.calibration.frames else ""
            lines.append(f"int8      scales from {m.calibration.source}{frames}")
        lines.append(f"wrote     {self.output} ({m.engine_bytes / 1e6:.1f} MB) and {self.manifest_path.name} "
                     f"in {self.seconds:.1f} s")
        return "\n".join(lines)


# --- choosing the backend ---------------------------------------------------------------------


def _module_present(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def probe_environment(device: int = 0) -> Environment:
    """Look for TensorRT and a GPU (imports tensorrt only if it is installed)."""
    version, problem = None, ""
    if not _module_present("tensorrt"):
        problem = f"TensorRT not installed: {TENSORRT_INSTALL_HINT}"
    else:
        try:
            version = str(importlib.import_module("tensorrt").__version__)
        except (ImportError, OSError) as err:
            problem = f"TensorRT is installed but does not import ({err}); reinstall it: {TENSORRT_INSTALL_HINT}"
    gpu, gpu_problem = None, ""
    try:
        gpu = cuda_buffers.find_gpu(device)
    except EngineError as err:
        gpu_problem = str(err)
    return Environment(version, problem, gpu, gpu_problem)


def choose_backend(requested: str, env: Environment) -> BackendChoice:
    """The backend to build for, and why.

    Raises:
        EngineError: an unknown backend, or TensorRT asked for but unusable here.
    """
    if requested not in BACKEND_CHOICES:
        raise EngineError(f"--backend {requested!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    trt_problem = env.tensorrt_problem or (
        f"TensorRT {env.tensorrt_version} is installed but cannot run here: {env.gpu_problem}" if env.gpu is None else ""
    )
    if requested == "onnxruntime":
        return BackendChoice("onnxruntime", "asked for with --backend onnxruntime")
    if requested == "tensorrt":
        if trt_problem:
            raise EngineError(f"--backend tensorrt: {trt_problem}; or build for the CPU with --backend onnxruntime")
        return BackendChoice("tensorrt", f"asked for: TensorRT {env.tensorrt_version} on {env.gpu.describe()}")
    if trt_problem:
        return BackendChoice("onnxruntime", trt_problem)
    return BackendChoice("tensorrt", f"TensorRT {env.tensorrt_version} on {env.gpu.describe()}")


# --- helpers ----------------------------------------------------------------------------------


def default_output(onnx_path: Path, backend: str) -> Path:
    """`model.onnx` -> `model.engine` (TensorRT) or `model.cpu.onnx` (ONNX Runtime), same folder."""
    suffix = ".engine" if backend == "tensorrt" else ".cpu.onnx"
    return onnx_path.with_name(onnx_path.stem + suffix)


def check_output(output: Path, onnx_path: Path, choice: BackendChoice) -> None:
    """Fail before building if the output name does not fit the backend or cannot be written."""
    if output.resolve() == onnx_path.resolve():
        raise EdgesegError(f"-o {output} would overwrite the source model; choose another output path")
    if choice.name == "tensorrt" and output.suffix.lower() not in ENGINE_SUFFIXES:
        raise EdgesegError(
            f"-o {output}: TensorRT engines are named .engine or .plan, so the runtime knows how to open them"
        )
    if choice.name == "onnxruntime" and output.suffix.lower() != ".onnx":
        raise EdgesegError(
            f"-o {output}: the {choice.name} backend ({choice.reason}) writes an ONNX model, so the name must "
            f"end in .onnx, e.g. {default_output(onnx_path, 'onnxruntime').name}"
        )
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise EdgesegError(f"cannot write {output}: {folder} is not a writable folder; choose a writable -o")


def read_spec(onnx_path: Path) -> ModelSpec:
    """The spec embedded in the model (read with `onnx` when installed: a model with ops ONNX
    Runtime lacks, e.g. TensorRT plugins, still has a readable spec).

    Raises:
        EngineError: the file is not a valid ONNX model.
        SpecError: it has no spec, or a malformed one.
    """
    from edgeseg.onnxmeta import spec_from_metadata

    spec = spec_from_metadata(onnx_metadata(onnx_path), onnx_path)
    if spec is None:
        raise SpecError(
            f"{onnx_path} carries no edgeseg spec ({ONNX_METADATA_KEY} metadata), so the engine's runtime could "
            "not preprocess frames; export it with `edgeseg export`"
        )
    return spec


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ONNX metadata map (the `onnx` package if installed, else ONNX Runtime).

    Raises:
        EngineError: the file is not a valid ONNX model (names it).
    """
    from edgeseg.onnxmeta import invalid_onnx_error, read_spec_from_onnx_file

    if not _module_present("onnx"):
        read_spec_from_onnx_file(path)  # validates the file through ONNX Runtime
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError) as err:
        raise invalid_onnx_error(path, err) from None
    if not model.HasField("graph") or not model.graph.node:
        raise invalid_onnx_error(path, "no graph was found in the protobuf")
    return {entry.key: entry.value for entry in model.metadata_props}


def quantization_record(path: Path) -> CalibrationInfo | None:
    """The calibration an `edgeseg calibrate` model records about itself, if any."""
    text = onnx_metadata(path).get(QUANT_METADATA_KEY)
    if not text:
        return None
    try:
        record = json.loads(text)
        return CalibrationInfo(f"Q/DQ scales of {path.name}", str(record["ranges_key"]),
                               int(record.get("frames", 0)), str(record.get("method", "")))
    except (ValueError, KeyError, TypeError):
        return None


def frames_source(path: Path) -> Any:
    """`--calib PATH`: an image folder or a video file, as an edgeseg.calib frame source."""
    from edgeseg.calib import ImageFolder, VideoFile

    if path.is_dir():
        return ImageFolder(path)
    if path.is_file():
        return VideoFile(path)
    raise DataError(f"--calib {path} does not exist; pass a folder of images or a video file from the robot's camera")


def int8_maker(options: BuildOptions, spec: ModelSpec, work_dir: Path, trt_version: str | None) -> Any:
    """A function calibrating a float model into the INT8 layout of a target, or None without --calib."""
    if options.calib is None:
        return None
    if options.calib_method not in METHODS:
        raise EdgesegError(f"--calib-method {options.calib_method!r}: choose one of {', '.join(METHODS)}")

    def make(source: Path, target: str) -> tuple[Path, CalibrationInfo]:
        from edgeseg.calib import CalibrationRanges, calibrate

        output = work_dir / f"{source.stem}.{target}-int8.onnx"
        extra = {"trt_version": trt_version.split("+")[0]} if trt_version else {}
        report = calibrate(
            source, frames_source(options.calib), target=target, method=options.calib_method,
            num_frames=options.calib_frames, output=output, spec=spec, progress=options.progress, **extra,
        )
        key = CalibrationRanges.load(report.ranges_path).key
        return output, CalibrationInfo(report.frames_source, key, report.frames, report.method)

    return make


def rebuild_command(options: BuildOptions, backend: str, output: Path) -> str:
    """The `edgeseg build-engine` command line that makes this engine again."""
    args = ["edgeseg", "build-engine", str(options.onnx_path)]
    if options.backend != "auto":
        args += ["--backend", backend]
    args += ["--int8"] * options.int8 + ["--fp16"] * options.fp16
    if options.calib is not None:
        args += ["--calib", str(options.calib)]
        if options.calib_method != DEFAULT_METHOD:
            args += ["--calib-method", options.calib_method]
        if options.calib_frames != DEFAULT_FRAMES:
            args += ["--calib-frames", str(options.calib_frames)]
    for flag, value in (("--calib-cache", options.calib_cache), ("--batch", options.batch),
                        ("--timing-cache", options.timing_cache), ("--dla", options.dla_core)):
        if value is not None:
            args += [flag, str(value)]
    if options.shape is not None:
        args += ["--shape", f"{options.shape[0]}x{options.shape[1]}"]
    if options.workspace is not None:
        args += ["--workspace", f"{options.workspace // (1 << 20)}MiB"]
    args += ["-o", str(output)]
    return shlex.join(args)


# --- the build --------------------------------------------------------------------------------


def build_engine(options: BuildOptions, log: Log = print, environment: Environment | None = None) -> BuildReport:
    """Build the engine for this machine and write it with its manifest.

    Args:
        options: what to build.
        log: receives progress lines; the first says which backend and why.
        environment: what this machine has (default: `probe_environment()`).

    Raises:
        EdgesegError: bad input or an impossible request (the message says what to do).
    """
    started = time.perf_counter()
    onnx_path = Path(options.onnx_path)
    env = environment
    if env is None:  # nothing to probe when the CPU backend is asked for
        env = NOT_PROBED if options.backend == "onnxruntime" else probe_environment(options.device)
    choice = choose_backend(options.backend, env)
    log(choice.line())

    if not onnx_path.is_file():
        raise EngineError(f"no ONNX model at {onnx_path}; export one with `edgeseg export`")
    if options.calib_cache is not None and options.calib is not None:
        raise EdgesegError("--calib and --calib-cache are two sources of INT8 scales; pass one")
    if (options.calib is not None or options.calib_cache is not None) and not options.int8:
        raise EdgesegError("--calib / --calib-cache give INT8 scales; add --int8 to build INT8")
    if choice.name == "onnxruntime":
        _check_cpu_options(options, choice)
    output = Path(options.output) if options.output is not None else default_output(onnx_path, choice.name)
    check_output(output, onnx_path, choice)
    spec = read_spec(onnx_path)
    if options.calib is not None:
        frames_source(options.calib)  # a missing --calib fails now, not after parsing

    source_sha = file_sha256(onnx_path)
    target = manifest_path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        work = tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent)
    except OSError as err:
        raise EdgesegError(f"cannot write into {output.parent}: {err.strerror}; choose a writable -o") from None
    with work as work_name, atomic_path(target) as manifest_tmp, atomic_path(output) as engine_tmp:
        work_dir = Path(work_name)
        make_int8 = int8_maker(options, spec, work_dir, env.tensorrt_version if choice.name == "tensorrt" else None)
        if choice.name == "tensorrt":
            built = _build_tensorrt(options, onnx_path, spec, env, work_dir, make_int8, engine_tmp, log)
        else:
            built = _build_onnxruntime(options, onnx_path, spec, make_int8, engine_tmp, log)
        manifest = EngineManifest(
            **built, engine_file=output.name, engine_bytes=engine_tmp.stat().st_size,
            source_onnx=str(options.onnx_path), source_sha256=source_sha,
            build_command=rebuild_command(options, choice.name, output),
            edgeseg_version=__version__, built_at=utc_now(),
        )
        manifest_tmp.write_text(manifest.to_json())
    # atomic_path renamed the engine first, then the manifest (the inner block exits first).
    return BuildReport(choice, output, target, manifest, time.perf_counter() - started)


def _check_cpu_options(options: BuildOptions, choice: BackendChoice) -> None:
    if options.fp16:
        raise EngineError(
            f"--fp16: the onnxruntime CPU backend ({choice.reason}) has no FP16; it builds FP32, or INT8 with "
            "--int8. Drop --fp16, or build on a device with TensorRT"
        )
    tensorrt_only = options.tensorrt_only_options()
    if tensorrt_only:
        raise EngineError(
            f"{', '.join(tensorrt_only)}: TensorRT build option(s), but the backend is onnxruntime ({choice.reason}); "
            "drop them for a CPU build"
        )


def _build_tensorrt(
    options: BuildOptions, onnx_path: Path, spec: ModelSpec, env: Environment, work_dir: Path,
    make_int8: Any, engine_tmp: Path, log: Log,
) -> dict[str, Any]:
    """Build with TensorRT into `engine_tmp`; returns the manifest fields that describe the build."""
    job = TrtJob(
        onnx_path=onnx_path, work_dir=work_dir, layout=spec.layout, input_size=spec.input_size,
        int8=options.int8, fp16=options.fp16, make_int8=make_int8, calib_cache=options.calib_cache,
        batch=options.batch, size=options.shape, workspace=options.workspace,
        timing_cache=options.timing_cache, dla_core=options.dla_core,
    )
    result = build_tensorrt_engine(job, log)
    if options.shape is not None:
        spec = spec.replace(input_height=options.shape[0], input_width=options.shape[1])
    _check_profile_matches_spec(spec, onnx_path, result.profile)
    engine_tmp.write_bytes(result.engine)
    calibration = result.calibration
    if calibration is None and result.precision.int8:
        calibration = quantization_record(onnx_path)
    return {
        "spec": spec, "backend": "tensorrt", "precision": result.precision.label,
        "runtime_version": env.tensorrt_version, "gpu": env.gpu, "dla_core": options.dla_core,
        "calibration": calibration, "profile": result.profile,
    }


def _check_profile_matches_spec(spec: ModelSpec, onnx_path: Path, profile: ProfileShapes) -> None:
    shape = tuple(None if i == 0 else d for i, d in enumerate(profile.opt))
    check_spec_matches_model(spec, onnx_path, profile.input_name, shape)


def _build_onnxruntime(
    options: BuildOptions, onnx_path: Path, spec: ModelSpec, make_int8: Any, engine_tmp: Path, log: Log,
) -> dict[str, Any]:
    """Build the CPU model into `engine_tmp`; returns the manifest fields that describe the build."""
    result = build_onnxruntime_model(OrtJob(onnx_path, engine_tmp, options.int8, make_int8), log)
    calibration = result.calibration
    if calibration is None and result.precision == "int8":
        calibration = quantization_record(onnx_path)
    if result.precision == "int8":
        from edgeseg.calib.op_profile import read_account

        account = read_account(engine_tmp)  # where the time goes, measured when it was calibrated
        for line in account.lines() if account is not None else ():
            log(line)
    return {
        "spec": spec, "backend": "onnxruntime", "precision": result.precision,
        "runtime_version": result.version, "calibration": calibration,
    }
