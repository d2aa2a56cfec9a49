"""The engine manifest (write, read, check against the device) and the choice of backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.engine import BuildOptions, Environment, choose_backend
from edgeseg.engine.build import rebuild_command
from edgeseg.engine.manifest import (
    CalibrationInfo,
    EngineManifest,
    ProfileShapes,
    check_manifest,
    manifest_path,
    read_manifest,
    write_manifest,
)
from edgeseg.engine.trt_build import BatchRange
from edgeseg.errors import EngineError
from edgeseg.runtime.cuda_buffers import GpuInfo

ORIN = GpuInfo("Orin", "8.7")
REBUILD = "edgeseg build-engine model.onnx --int8 --calib calib -o model.engine"


@pytest.fixture
def engine(tmp_path: Path, helpers) -> tuple[Path, EngineManifest]:
    path = tmp_path / "model.engine"
    path.write_bytes(b"x" * 1234)
    manifest = EngineManifest(
        spec=helpers.spec, backend="tensorrt", precision="int8", runtime_version="8.6.2.3",
        engine_file="model.engine", engine_bytes=1234, source_onnx="model.onnx", source_sha256="ab" * 32,
        build_command=REBUILD, gpu=ORIN, calibration=CalibrationInfo("image folder calib", "cd" * 32, 200, "entropy"),
        profile=ProfileShapes("image", (1, 16, 16, 3), (2, 16, 16, 3), (4, 16, 16, 3)),
        edgeseg_version="0.1.0", built_at="2026-01-01T00:00:00+00:00",
    )
    write_manifest(manifest, manifest_path(path))
    return path, manifest


def test_manifest_round_trip(engine):
    path, manifest = engine
    assert manifest_path(path).name == "model.engine.json"
    assert read_manifest(path) == manifest
    data = json.loads(manifest_path(path).read_text())
    assert data["format"] == "edgeseg.engine-manifest/1"
    assert data["gpu"] == {"name": "Orin", "compute_capability": "8.7", "index": 0}
    assert data["profile"]["max"] == [4, 16, 16, 3]
    assert data["spec"]["class_names"] == ["red", "green", "blue"]
    assert manifest.built_on() == "TensorRT 8.6.2.3 on Orin (compute 8.7)"


def test_missing_or_malformed_manifest_says_how_to_rebuild(tmp_path):
    engine = tmp_path / "lonely.engine"
    engine.write_bytes(b"x")
    with pytest.raises(EngineError, match=r"lonely\.engine has no manifest \(lonely\.engine\.json beside it\).*"
                                          r"rebuild it on this device: edgeseg build-engine model\.onnx -o lonely\.engine"):
        read_manifest(engine)
    manifest_path(engine).write_text('{"format": "something else"}')
    with pytest.raises(EngineError, match=r"lonely\.engine\.json is not a valid edgeseg engine manifest"):
        read_manifest(engine)
    manifest_path(engine).write_text("{not json")
    with pytest.raises(EngineError, match="not a valid edgeseg engine manifest"):
        read_manifest(engine)


def test_check_accepts_the_same_device(engine):
    path, manifest = engine
    assert check_manifest(manifest, path, "8.6.2.3", ORIN) == []


def test_check_refuses_another_tensorrt_version_with_the_rebuild_command(engine):
    path, manifest = engine
    with pytest.raises(EngineError) as info:
        check_manifest(manifest, path, "10.3.0.30", ORIN)
    message = str(info.value)
    assert "was built with TensorRT 8.6.2.3 on Orin (compute 8.7), but this device has TensorRT 10.3.0.30" in message
    assert message.endswith(f"rebuild it on this device: {REBUILD}")
    assert "version tag" not in message


def test_check_refuses_another_gpu_architecture(engine):
    path, manifest = engine
    with pytest.raises(EngineError, match=r"this device has TensorRT 8\.6\.2\.3 on NVIDIA GeForce RTX 3060 "
                                          r"\(compute 8\.6\).*GPU architecture.*rebuild it on this device: edgeseg"):
        check_manifest(manifest, path, "8.6.2.3", GpuInfo("NVIDIA GeForce RTX 3060", "8.6"))


def test_same_architecture_other_board_only_warns(engine):
    path, manifest = engine
    warnings = check_manifest(manifest, path, "8.6.2.3", GpuInfo("Orin Nano", "8.7"))
    assert len(warnings) == 1 and "built on Orin and runs on Orin Nano" in warnings[0]


def test_check_refuses_a_manifest_of_another_build_or_backend(engine):
    path, manifest = engine
    path.write_bytes(b"y" * 999)
    with pytest.raises(EngineError, match=r"describes a 1234-byte engine but .*model\.engine has 999 bytes"):
        check_manifest(manifest, path, "8.6.2.3", ORIN)
    cpu = EngineManifest(**{**manifest.__dict__, "backend": "onnxruntime", "engine_bytes": 999})
    with pytest.raises(EngineError, match="built for the onnxruntime backend, not TensorRT"):
        check_manifest(cpu, path, "8.6.2.3", ORIN)


# --- backend choice ---------------------------------------------------------------------------

NO_TRT = Environment(None, "TensorRT not installed: pip install tensorrt", None, "no cuda")
TRT_NO_GPU = Environment("10.3.0", "", None, "no NVIDIA GPU found (CUDA reports 0 devices)")
TRT_GPU = Environment("10.3.0", "", ORIN, "")


def test_auto_prefers_tensorrt_with_a_gpu_and_says_why():
    assert choose_backend("auto", TRT_GPU).line() == "backend: tensorrt (TensorRT 10.3.0 on Orin (compute 8.7))"
    assert choose_backend("auto", NO_TRT).line() == "backend: onnxruntime (TensorRT not installed: pip install tensorrt)"
    assert choose_backend("auto", TRT_NO_GPU).line() == (
        "backend: onnxruntime (TensorRT 10.3.0 is installed but cannot run here: no NVIDIA GPU found "
        "(CUDA reports 0 devices))")


def test_explicit_backend():
    assert choose_backend("onnxruntime", TRT_GPU).reason == "asked for with --backend onnxruntime"
    assert choose_backend("tensorrt", TRT_GPU).name == "tensorrt"
    with pytest.raises(EngineError, match=r"--backend tensorrt: TensorRT not installed: pip install tensorrt; "
                                          r"or build for the CPU with --backend onnxruntime"):
        choose_backend("tensorrt", NO_TRT)
    with pytest.raises(EngineError, match=r"--backend tensorrt: TensorRT 10\.3\.0 is installed but cannot run here: no"):
        choose_backend("tensorrt", TRT_NO_GPU)
    with pytest.raises(EngineError, match=r"--backend 'tflite': choose one of auto, tensorrt, onnxruntime"):
        choose_backend("tflite", TRT_GPU)


def test_rebuild_command_repeats_the_build_options():
    options = BuildOptions(Path("models/m.onnx"), int8=True, calib=Path("calib dir"), batch=BatchRange(1, 2, 4),
                           shape=(32, 32), workspace=512 << 20, dla_core=0)
    assert rebuild_command(options, "tensorrt", Path("m.engine")) == (
        "edgeseg build-engine models/m.onnx --int8 --calib 'calib dir' --batch 1,2,4 --dla 0 "
        "--size 32x32 --workspace 512MiB -o m.engine")
    assert rebuild_command(BuildOptions(Path("m.onnx"), backend="onnxruntime"), "onnxruntime", Path("m.cpu.onnx")) == (
        "edgeseg build-engine m.onnx --backend onnxruntime -o m.cpu.onnx")
