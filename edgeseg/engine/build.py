"""`build_engine`: the one entry point that turns an edgeseg ONNX model into what the robot runs.

Plan -> prepare -> build, as Polygraphy separates loaders:

1. plan (`plan_build`): pick the backend (`choose_backend`: TensorRT when it imports and a GPU
   is present, else ONNX Runtime on the CPU, or the one asked for; the first output line says
   which and why), resolve the spec (embedded, --spec FILE, flags), and decide the precision
   and the steps, checking every option before any work;
2. prepare (`prepare`): fix dynamic input dims and prune to the head that drives
   (`engine.prepare`), calibrate a float model for `--int8` (`edgeseg.calib`) or convert it
   to FP16 (strongly typed TensorRT), giving ONE finished ONNX;
3. build: `trt_build` / `ort_build` only build that ONNX; they never calibrate.

The engine and its manifest (`OUT.json`) are written atomically: a failed build leaves neither
behind, and an existing engine stays untouched.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from edgeseg import __version__
from edgeseg.artifact.manifest import (
    CalibrationInfo,
    EngineManifest,
    GpuInfo,
    ProfileShapes,
    calibration_from_record,
    manifest_path,
    spec_sha256,
    utc_now,
)
from edgeseg.calib.quantize import DEFAULT_FRAMES, DEFAULT_METHOD, METHODS
from edgeseg.artifact.formats import TENSORRT_INSTALL_HINT, runner_suffixes
from edgeseg.artifact.onnxmeta import OnnxFacts, quantization_from_metadata, read_onnx, spec_from_metadata
from edgeseg.artifact.spec import ModelSpec, spec_flags_argv
from edgeseg.engine.ort_build import build_onnxruntime_model
from edgeseg.engine.prepare import prepare_graph
from edgeseg.engine.trt_build import (
    BatchRange,
    TrtJob,
    TrtVersion,
    _fp16_with_int8_error,
    build_tensorrt_engine,
    check_opset,
    convert_to_fp16,
    is_strongly_typed,
)
from edgeseg.errors import DataError, EdgesegError, EngineError
from edgeseg.fileio import atomic_path, file_sha256, temporary_dir
from edgeseg.runtime import cuda_buffers
from edgeseg.runtime.backends import check_spec_matches_model

BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime")
ENGINE_SUFFIXES = runner_suffixes("tensorrt")

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
        batch: `--batch`: N fixes a dynamic batch (both backends); MIN,OPT,MAX is TensorRT's profile.
        shape: `--size HxW` for a model with a dynamic height and width (same as spec_flags' size).
        spec: a complete spec to build with, instead of the one embedded in the model.
        spec_flags: spec fields given as flags or in --spec FILE (ModelSpec field names), over
            the embedded spec (or completing a model that has none).
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
    spec: ModelSpec | None = None
    spec_flags: Mapping[str, Any] | None = None
    workspace: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    device: int = 0
    progress: bool = True

    def tensorrt_only_options(self) -> list[str]:
        """The given options that only the TensorRT backend understands."""
        given = {
            "--calib-cache": self.calib_cache,
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


def frames_source(path: Path) -> Any:
    """`--calib PATH`: an image folder or a video file, as an edgeseg.calib frame source."""
    from edgeseg.calib import ImageFolder, VideoFile

    if path.is_dir():
        return ImageFolder(path)
    if path.is_file():
        return VideoFile(path)
    raise DataError(f"--calib {path} does not exist; pass a folder of images or a video file from the robot's camera")


def rebuild_command(options: BuildOptions, backend: str, output: Path) -> str:
    """The `edgeseg build-engine` command line that makes this engine again."""
    args = ["edgeseg", "build-engine", str(options.onnx_path)]
    args += spec_flags_argv(dict(options.spec_flags or {}))
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
    if options.shape is not None and not (options.spec_flags or {}).get("input_height"):
        args += ["--size", f"{options.shape[0]}x{options.shape[1]}"]
    if options.workspace is not None:
        args += ["--workspace", f"{options.workspace // (1 << 20)}MiB"]
    args += ["-o", str(output)]
    return shlex.join(args)


# --- plan -> prepare -> build -------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """What `build_engine` will do, decided before any work (Polygraphy's loaders, in words).

    Attributes:
        choice: the backend and why.
        output: the engine file.
        facts: what the source ONNX says about itself (read once).
        spec: the spec the engine runs with (embedded, --spec FILE, flags; size and head included).
        batch: the batch to fix a dynamic batch to (None: keep it dynamic, TensorRT's profile).
        int8: the engine is INT8.
        calibrate: calibrate the float model for this target ("cpu" / "tensorrt") first.
        fp16_convert: convert to FP16 first (strongly typed TensorRT 11).
        trt_version: the TensorRT version built with (None for the CPU).
    """

    choice: BackendChoice
    output: Path
    facts: OnnxFacts
    spec: ModelSpec
    batch: int | None
    int8: bool
    calibrate: str | None
    fp16_convert: bool
    trt_version: str | None


def plan_build(options: BuildOptions, env: Environment, log: Log) -> BuildPlan:
    """Check everything and decide precision and preparation steps; nothing is written.

    Raises:
        EdgesegError: bad input or an impossible request (the message says what to do).
    """
    from edgeseg.artifact.describe import resolve_spec

    onnx_path = Path(options.onnx_path)
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
    facts = read_onnx(onnx_path)
    flags = dict(options.spec_flags or {})
    if options.shape is not None:
        flags.setdefault("input_height", options.shape[0])
        flags.setdefault("input_width", options.shape[1])
    base = options.spec or spec_from_metadata(facts.metadata, onnx_path)
    spec = resolve_spec(facts, base, flags)
    _check_spec_fits(spec, facts, onnx_path)

    already_int8 = facts.quant_format is not None
    calibrate_for = None
    if options.int8 and not already_int8 and options.calib_cache is None:
        if options.calib is None:
            raise EngineError(_needs_calibration(onnx_path, choice.name))
        if options.calib_method not in METHODS:
            raise EdgesegError(f"--calib-method {options.calib_method!r}: choose one of {', '.join(METHODS)}")
        frames_source(options.calib)  # a missing --calib fails now, not after preparing
        calibrate_for = "cpu" if choice.name == "onnxruntime" else "tensorrt"
    if already_int8 and not options.int8:
        log(f"precision: {onnx_path.name} is already quantized ({facts.quant_format.upper()}), so the CPU model is INT8"
            if choice.name == "onnxruntime" else
            f"precision: {onnx_path.name} has Q/DQ nodes, so the engine is INT8 with their scales")
    strongly_typed = False
    if choice.name == "tensorrt":
        version = TrtVersion.parse(env.tensorrt_version)
        check_opset(version, facts.opset, onnx_path)  # before calibrating, naming the user's file
        strongly_typed = is_strongly_typed(version)
    int8 = already_int8 or options.int8
    if options.fp16 and options.int8 and strongly_typed:
        raise _fp16_with_int8_error(version)
    batch = None
    if options.batch is not None and options.batch.min == options.batch.max:
        batch = options.batch.min
    elif choice.name == "onnxruntime" and options.batch is not None:
        raise EngineError(f"--batch {options.batch}: the onnxruntime backend takes one batch size (--batch N)")
    if 0 in facts.inputs[0].dynamic_axes and options.batch is None:
        cpu = choice.name == "onnxruntime"
        log("input: dynamic batch kept (ONNX Runtime runs any batch; --batch N fixes it)" if cpu
            else "input: dynamic batch; the engine takes batch 1 (--batch N, or MIN,OPT,MAX for a range)")
    return BuildPlan(
        choice=choice, output=output, facts=facts, spec=spec, batch=batch, int8=int8, calibrate=calibrate_for,
        fp16_convert=choice.name == "tensorrt" and options.fp16 and strongly_typed and not int8,
        trt_version=env.tensorrt_version if choice.name == "tensorrt" else None,
    )


def _check_spec_fits(spec: ModelSpec, facts: OnnxFacts, onnx_path: Path) -> None:
    """Refuse, before any work, a spec whose size, layout or classes contradict the model."""
    from edgeseg.runtime.backends import chosen_output, normalize_shape

    head = facts.output(chosen_output(spec, [t.name for t in facts.outputs], onnx_path))
    check_spec_matches_model(spec, onnx_path, facts.inputs[0].name, normalize_shape(facts.inputs[0].shape),
                             normalize_shape(head.shape))


def _needs_calibration(onnx_path: Path, backend: str) -> str:
    if backend == "onnxruntime":
        return (f"--int8: {onnx_path} is a float model, so its INT8 scales must come from calibration; pass "
                "--calib DIR (a folder of images or a video from the robot's camera), or build from a model "
                "quantized by `edgeseg calibrate --target cpu`")
    return (f"--int8: {onnx_path} has no Q/DQ nodes, so its INT8 scales must come from calibration; "
            "pass --calib DIR (a folder of images or a video from the robot's camera), or build from a "
            "model quantized by `edgeseg calibrate --target tensorrt`")


def prepare(plan: BuildPlan, options: BuildOptions, work_dir: Path, log: Log) -> tuple[Path, CalibrationInfo | None]:
    """Turn the source into the one finished ONNX the builder builds: fixed dims, pruned head,
    calibrated (INT8) or converted (FP16). Returns it and where its INT8 scales came from."""
    source = Path(options.onnx_path)
    finished = prepare_graph(source, plan.facts, plan.spec, plan.batch, work_dir / f"{source.stem}.prepared.onnx", log)
    calibration = None
    if plan.calibrate is not None:
        from edgeseg.calib import CalibrationOptions, CalibrationRanges, calibrate

        quantized = work_dir / f"{source.stem}.{plan.calibrate}-int8.onnx"
        extra = {"trt_version": plan.trt_version.split("+")[0]} if plan.trt_version else {}
        settings = CalibrationOptions(target=plan.calibrate, method=options.calib_method,
                                      num_frames=options.calib_frames, output=quantized, progress=options.progress,
                                      **extra)
        report = calibrate(finished, frames_source(options.calib), settings, spec=plan.spec)
        key = CalibrationRanges.load(report.ranges_path).key
        calibration = CalibrationInfo(report.frames_source, key, report.frames, report.method)
        log(f"precision: calibrated {source.name} ({report.method}, {report.frames} frames) for {plan.calibrate}")
        finished = quantized
    elif plan.int8 and options.calib_cache is None:
        calibration = calibration_from_record(quantization_from_metadata(plan.facts.metadata), source.name)
    if plan.fp16_convert:
        log(f"precision: converting {source.name} to FP16 (TensorRT {plan.trt_version} is strongly typed)")
        finished = convert_to_fp16(finished, work_dir / f"{source.stem}.fp16.onnx")
    return finished, calibration


def build_engine(options: BuildOptions, log: Log = print, environment: Environment | None = None) -> BuildReport:
    """Plan, prepare and build the engine for this machine; write it with its manifest.

    Args:
        options: what to build.
        log: receives progress lines; the first says which backend and why.
        environment: what this machine has (default: `probe_environment()`).

    Raises:
        EdgesegError: bad input or an impossible request (the message says what to do).
    """
    started = time.perf_counter()
    env = environment
    if env is None:  # nothing to probe when the CPU backend is asked for
        env = NOT_PROBED if options.backend == "onnxruntime" else probe_environment(options.device)
    plan = plan_build(options, env, log)
    output = plan.output
    source_sha = file_sha256(options.onnx_path)
    target = manifest_path(output)
    with temporary_dir(output) as work_dir, atomic_path(target) as manifest_tmp, atomic_path(output) as engine_tmp:
        finished, calibration = prepare(plan, options, work_dir, log)
        if plan.choice.name == "tensorrt":
            built = _build_tensorrt(options, plan, finished, env, work_dir, engine_tmp, log)
        else:
            version = build_onnxruntime_model(finished, engine_tmp)
            built = {"spec": plan.spec, "backend": "onnxruntime", "precision": "int8" if plan.int8 else "fp32",
                     "runtime_version": version}
            if plan.int8:
                _log_op_account(engine_tmp, log)
        built["calibration"] = built.get("calibration") or calibration
        manifest = EngineManifest(
            **built, engine_file=output.name, engine_bytes=engine_tmp.stat().st_size,
            engine_sha256=file_sha256(engine_tmp), spec_sha256=spec_sha256(built["spec"]),
            source_onnx=str(options.onnx_path), source_sha256=source_sha,
            build_command=rebuild_command(options, plan.choice.name, output),
            edgeseg_version=__version__, built_at=utc_now(),
        )
        manifest_tmp.write_text(manifest.to_json())
    # atomic_path renamed the engine first, then the manifest (the inner block exits first).
    return BuildReport(plan.choice, output, target, manifest, time.perf_counter() - started)


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
    options: BuildOptions, plan: BuildPlan, finished: Path, env: Environment, work_dir: Path, engine_tmp: Path,
    log: Log,
) -> dict[str, Any]:
    """Build the finished ONNX with TensorRT into `engine_tmp`; returns the manifest fields of the build."""
    job = TrtJob(
        onnx_path=finished, work_dir=work_dir, layout=plan.spec.layout, input_size=plan.spec.input_size,
        int8=plan.int8, fp16=options.fp16, calib_cache=options.calib_cache,
        batch=options.batch, workspace=options.workspace, timing_cache=options.timing_cache,
        dla_core=options.dla_core, opset=plan.facts.opset,
    )
    result = build_tensorrt_engine(job, log)
    _check_profile_matches_spec(plan.spec, finished, result.profile)
    engine_tmp.write_bytes(result.engine)
    return {
        "spec": plan.spec, "backend": "tensorrt", "precision": result.precision.label,
        "runtime_version": env.tensorrt_version, "gpu": env.gpu, "dla_core": options.dla_core,
        "calibration": result.calibration, "profile": result.profile,
    }


def _check_profile_matches_spec(spec: ModelSpec, onnx_path: Path, profile: ProfileShapes) -> None:
    shape = tuple(None if i == 0 else d for i, d in enumerate(profile.opt))
    check_spec_matches_model(spec, onnx_path, profile.input_name, shape)


def _log_op_account(engine: Path, log: Log) -> None:
    """Where an INT8 CPU engine's time goes, as measured when it was calibrated (its metadata)."""
    from edgeseg.calib.op_profile import read_account

    account = read_account(engine)
    for line in account.lines() if account is not None else ():
        log(line)
