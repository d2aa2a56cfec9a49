"""The engine manifest: `model.engine.json` beside `model.engine` (or `model.cpu.onnx.json`).

It holds the model's ModelSpec (so the runtime can preprocess without the ONNX file) and how the
engine was built: backend, precision, TensorRT or ONNX Runtime version, GPU name and compute
capability, the source ONNX's sha256, the calibration, the profile shapes, edgeseg's version,
the build time and the command that rebuilds it.

A TensorRT engine runs only on the TensorRT version and GPU architecture it was built with.
`check_manifest` compares the manifest with the device before TensorRT sees the file, so a
mismatch is reported as "built with TensorRT 8.6.1 on Orin (compute 8.7), this device has ...;
rebuild it on this device: edgeseg build-engine ...", never as TensorRT's "version tag does
not match".
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeseg.artifact.spec import ModelSpec
from edgeseg.errors import EdgesegError, EngineError
from edgeseg.fileio import atomic_write_text, file_sha256

MANIFEST_FORMAT = "edgeseg.engine-manifest/1"
MANIFEST_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8", "int8+fp16")
BACKENDS = ("tensorrt", "onnxruntime")


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for or runs on.

    Attributes:
        name: the device name CUDA reports ("Orin", "NVIDIA GeForce RTX 3060", ...).
        compute_capability: "major.minor", e.g. "8.7" for Jetson Orin.
        index: the CUDA device index.
    """

    name: str
    compute_capability: str
    index: int = 0

    def describe(self) -> str:
        return f"{self.name} (compute {self.compute_capability})"


@dataclass(frozen=True)
class ProfileShapes:
    """The input shapes an engine accepts: TensorRT's optimization profile (min, opt, max)."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def describe(self) -> str:
        def dims(shape: tuple[int, ...]) -> str:
            return "x".join(str(d) for d in shape)

        if self.is_static:
            return f"{self.input_name} {dims(self.opt)}"
        return f"{self.input_name} min {dims(self.min)}, opt {dims(self.opt)}, max {dims(self.max)}"


@dataclass(frozen=True)
class CalibrationInfo:
    """Where the INT8 scales came from.

    Attributes:
        source: the calibration frames ("image folder calib/", "video drive.mp4", ...) or the
            quantized model whose Q/DQ scales were used.
        sha256: identifies the calibration: edgeseg's ranges key (a hash over the model, the
            frames' pixels, the spec and the method) or the legacy cache file's sha256.
        frames: frames calibrated on (0 if unknown).
        method: "entropy", "minmax", "percentile", or "" if unknown.
    """

    source: str
    sha256: str
    frames: int = 0
    method: str = ""


@dataclass(frozen=True)
class EngineManifest:
    """Everything known about a built engine; JSON round-trip with `to_dict` / `from_dict`.

    Attributes:
        spec: the ModelSpec the runtime preprocesses with.
        backend: "tensorrt" or "onnxruntime".
        precision: "fp32", "fp16", "int8" or "int8+fp16".
        runtime_version: the TensorRT (or ONNX Runtime) version that built it.
        engine_file: the engine's file name.
        engine_bytes: its size, to notice a manifest that belongs to another build.
        source_onnx: the ONNX file it was built from (as given on the command line).
        source_sha256: sha256 of that file.
        build_command: the command line that rebuilds it.
        gpu: the GPU it was built on (None for the CPU backend).
        dla_core: the DLA core it runs on, if built for DLA.
        calibration: where INT8 scales came from, if INT8.
        profile: the input shapes it accepts (TensorRT).
        edgeseg_version: edgeseg's version at build time.
        built_at: UTC time of the build, ISO 8601.
        engine_sha256: sha256 of the engine file, checked by every backend on open
            (`verify_engine`).
        spec_sha256: sha256 of the spec's canonical JSON, checked with it.
    """

    spec: ModelSpec
    backend: str
    precision: str
    runtime_version: str
    engine_file: str
    engine_bytes: int
    source_onnx: str
    source_sha256: str
    build_command: str
    gpu: GpuInfo | None = None
    dla_core: int | None = None
    calibration: CalibrationInfo | None = None
    profile: ProfileShapes | None = None
    edgeseg_version: str = ""
    built_at: str = ""
    engine_sha256: str = ""
    spec_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "backend": self.backend,
            "precision": self.precision,
            "runtime_version": self.runtime_version,
            "engine_file": self.engine_file,
            "engine_bytes": self.engine_bytes,
            "engine_sha256": self.engine_sha256,
            "gpu": asdict(self.gpu) if self.gpu else None,
            "dla_core": self.dla_core,
            "source_onnx": self.source_onnx,
            "source_sha256": self.source_sha256,
            "calibration": asdict(self.calibration) if self.calibration else None,
            "profile": _profile_to_dict(self.profile),
            "edgeseg_version": self.edgeseg_version,
            "built_at": self.built_at,
            "build_command": self.build_command,
            "spec_sha256": self.spec_sha256,
            "spec": self.spec.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "EngineManifest":
        """Raises ValueError / KeyError / TypeError / EdgesegError on malformed data."""
        if not isinstance(data, dict):
            raise ValueError("the manifest is not a JSON object")
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        if data["backend"] not in BACKENDS:
            raise ValueError(f"unknown backend {data['backend']!r}")
        if data["precision"] not in PRECISIONS:
            raise ValueError(f"unknown precision {data['precision']!r}")
        gpu = data.get("gpu")
        calibration = data.get("calibration")
        return cls(
            spec=ModelSpec.from_dict(data["spec"]),
            backend=str(data["backend"]),
            precision=str(data["precision"]),
            runtime_version=str(data["runtime_version"]),
            engine_file=str(data["engine_file"]),
            engine_bytes=int(data["engine_bytes"]),
            source_onnx=str(data["source_onnx"]),
            source_sha256=str(data["source_sha256"]),
            build_command=str(data["build_command"]),
            gpu=GpuInfo(str(gpu["name"]), str(gpu["compute_capability"]), int(gpu.get("index", 0))) if gpu else None,
            dla_core=None if data.get("dla_core") is None else int(data["dla_core"]),
            calibration=CalibrationInfo(
                str(calibration["source"]), str(calibration["sha256"]),
                int(calibration.get("frames", 0)), str(calibration.get("method", "")),
            ) if calibration else None,
            profile=_profile_from_dict(data.get("profile")),
            edgeseg_version=str(data.get("edgeseg_version", "")),
            built_at=str(data.get("built_at", "")),
            engine_sha256=str(data.get("engine_sha256", "")),
            spec_sha256=str(data.get("spec_sha256", "")),
        )

    def built_on(self) -> str:
        """'TensorRT 8.6.1 on Orin (compute 8.7)' — for messages."""
        name = "TensorRT" if self.backend == "tensorrt" else "ONNX Runtime"
        where = f" on {self.gpu.describe()}" if self.gpu else ""
        return f"{name} {self.runtime_version}{where}"


def calibration_from_record(record: dict[str, Any] | None, model_name: str) -> CalibrationInfo | None:
    """The CalibrationInfo of a quantized model's `edgeseg.quantization` record, if it has one."""
    if not record:
        return None
    try:
        return CalibrationInfo(f"Q/DQ scales of {model_name}", str(record["ranges_key"]),
                               int(record.get("frames", 0)), str(record.get("method", "")))
    except (KeyError, TypeError, ValueError):
        return None


def _profile_to_dict(profile: ProfileShapes | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {"input": profile.input_name, "min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)}


def _profile_from_dict(data: Any) -> ProfileShapes | None:
    if data is None:
        return None
    return ProfileShapes(
        str(data["input"]),
        tuple(int(d) for d in data["min"]),
        tuple(int(d) for d in data["opt"]),
        tuple(int(d) for d in data["max"]),
    )


def manifest_path(engine_path: str | Path) -> Path:
    """`model.engine` -> `model.engine.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + MANIFEST_SUFFIX)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_manifest(manifest: EngineManifest, path: str | Path) -> Path:
    """Write the manifest JSON to `path` atomically."""
    return atomic_write_text(path, manifest.to_json())


def read_manifest(engine_path: str | Path) -> EngineManifest:
    """The manifest beside `engine_path`.

    Raises:
        EngineError: it is missing or malformed (says how to rebuild).
    """
    engine_path = Path(engine_path)
    path = manifest_path(engine_path)
    rebuild = f"edgeseg build-engine model.onnx -o {engine_path.name}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EngineError(
            f"{engine_path} has no manifest ({path.name} beside it), so edgeseg cannot tell which model "
            f"spec, TensorRT version and GPU it belongs to; rebuild it on this device: {rebuild}"
        ) from None
    try:
        return EngineManifest.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError, EdgesegError) as err:
        raise EngineError(f"{path} is not a valid edgeseg engine manifest ({err}); rebuild it: {rebuild}") from None


def check_manifest(
    manifest: EngineManifest,
    engine_path: str | Path,
    tensorrt_version: str,
    gpu: GpuInfo,
) -> list[str]:
    """Refuse an engine built for another TensorRT version or GPU architecture.

    TensorRT engines are specific to the exact TensorRT version and to the GPU's compute
    capability. A different GPU name with the same compute capability (two boards of one
    family) still loads, with a warning: TensorRT advises against it for speed.

    Returns:
        warnings to show (possibly none).

    Raises:
        EngineError: a mismatch, with the command that rebuilds the engine on this device.
    """
    engine_path = Path(engine_path)
    rebuild = f"rebuild it on this device: {manifest.build_command}"
    if manifest.backend != "tensorrt":
        raise EngineError(f"{engine_path} was built for the {manifest.backend} backend, not TensorRT; {rebuild}")
    size = engine_path.stat().st_size
    if size != manifest.engine_bytes:
        raise EngineError(
            f"{manifest_path(engine_path).name} describes a {manifest.engine_bytes}-byte engine but "
            f"{engine_path} has {size} bytes: the manifest belongs to another build; {rebuild}"
        )
    here = f"TensorRT {tensorrt_version} on {gpu.describe()}"
    if manifest.runtime_version != tensorrt_version:
        raise EngineError(
            f"{engine_path} was built with {manifest.built_on()}, but this device has {here}; "
            f"a TensorRT engine only runs on the TensorRT version it was built with: {rebuild}"
        )
    if manifest.gpu is None or manifest.gpu.compute_capability != gpu.compute_capability:
        raise EngineError(
            f"{engine_path} was built with {manifest.built_on()}, but this device has {here}; "
            f"a TensorRT engine only runs on the GPU architecture it was built for: {rebuild}"
        )
    if manifest.gpu.name != gpu.name:
        return [
            f"{engine_path} was built on {manifest.gpu.name} and runs on {gpu.name} (same compute "
            f"capability {gpu.compute_capability}); it works but may be slower: {rebuild}"
        ]
    return []


SKIP_VERIFY_HINT = "--no-verify-engine (verify=False) opens it anyway, if you know why it changed"


def spec_sha256(spec: ModelSpec) -> str:
    """sha256 of the spec as canonical JSON (sorted keys, no spaces): what the manifest records."""
    text = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_engine(engine_path: str | Path) -> bool:
    """Engine integrity: an engine runs only if it is the file its manifest describes.

    `edgeseg build-engine` records the sha256 of the engine file and of its spec. Every backend
    calls this on open, so a float model copied over the INT8 engine, an engine with changed
    weights of the same size, or a manifest whose spec was edited is refused with the command that
    rebuilds it. Hashing costs under 2 ms per MB (docs/deployment.md, benchmarks/engine_verify.py).

    Returns:
        True if the engine matches its manifest; False if there is no manifest beside it (a plain
        model, not an engine: nothing to check).

    Raises:
        EngineError: the manifest is unreadable, records no hashes (built by an older edgeseg), or
            the engine's or the spec's sha256 differs from it.
    """
    engine_path = Path(engine_path)
    if not manifest_path(engine_path).is_file():
        return False
    manifest = read_manifest(engine_path)
    rebuild = manifest.build_command or f"edgeseg build-engine model.onnx -o {engine_path.name}"
    if not manifest.engine_sha256 or not manifest.spec_sha256:
        raise EngineError(
            f"{manifest_path(engine_path).name} records no sha256 of {engine_path.name} (it was built by an older "
            f"edgeseg), so edgeseg cannot tell whether the file is the engine that was built; rebuild it: "
            f"{rebuild}; or {SKIP_VERIFY_HINT}"
        )
    actual = file_sha256(engine_path)
    if actual != manifest.engine_sha256:
        raise EngineError(
            f"{engine_path} is not the engine its manifest describes: its sha256 is {actual[:12]}..., the manifest "
            f"records {manifest.engine_sha256[:12]}... (the file was replaced or changed after the build); rebuild "
            f"it: {rebuild}; or {SKIP_VERIFY_HINT}"
        )
    if spec_sha256(manifest.spec) != manifest.spec_sha256:
        raise EngineError(
            f"the spec in {manifest_path(engine_path)} was changed after the build (its sha256 differs from the "
            f"one recorded), so the engine would be preprocessed and navigated with a spec nobody built it for; "
            f"rebuild it: {rebuild}; or {SKIP_VERIFY_HINT}"
        )
    return True
