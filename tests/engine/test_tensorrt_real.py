"""Real TensorRT builds and runs; they need TensorRT, CUDA bindings and an NVIDIA GPU.

Skipped elsewhere (with the reason) and excluded from the default run. On a Jetson:

    python -m pytest -m tensorrt tests/engine

Each test builds an engine from a tiny Conv + Resize ONNX model (class = dominant colour, so
margins are wide) and compares the TensorRT class maps with ONNX Runtime's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeseg.engine import BatchRange, BuildOptions, build_engine, read_manifest
from edgeseg.engine.manifest import manifest_path
from edgeseg.errors import EngineError
from edgeseg.runtime import Segmenter, open_backend

pytestmark = pytest.mark.tensorrt


@pytest.fixture
def model(tmp_path: Path, tiny) -> Path:
    return Path(shutil.copy(tiny.dynamic, tmp_path / "tiny.onnx"))


def build(options: BuildOptions):
    lines: list[str] = []
    report = build_engine(options, log=lines.append)
    return report, lines


def agreement(engine: Path, onnx_path: Path, frames: np.ndarray) -> float:
    with open_backend(engine) as trt_backend, open_backend(onnx_path, providers="cpu") as reference:
        assert trt_backend.name == "tensorrt"
        return float((trt_backend.infer(frames).argmax(-1) == reference.infer(frames).argmax(-1)).mean())


def test_fp32_engine_matches_onnxruntime(model, helpers, tmp_path):
    import tensorrt

    from edgeseg.runtime.cuda_buffers import find_gpu

    timing = tmp_path / "timing.cache"
    report, lines = build(BuildOptions(model, backend="tensorrt", batch=BatchRange(1, 2, 4), workspace=256 << 20,
                                       timing_cache=timing))
    assert lines[0].startswith(f"backend: tensorrt (asked for: TensorRT {tensorrt.__version__} on ")
    manifest = read_manifest(report.output)
    assert manifest.runtime_version == tensorrt.__version__ and manifest.gpu == find_gpu(0)
    assert manifest.precision == "fp32" and manifest.profile.max == (4, 16, 16, 3)
    assert timing.stat().st_size > 0
    frames = np.stack(helpers.colour_frames(3)).astype(np.float32)
    with open_backend(report.output) as engine, open_backend(model, providers="cpu") as reference:
        got, want = engine.infer(frames), reference.infer(frames)
        assert got.shape == want.shape == (3, 16, 16, 3)
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=0.5)  # TF32 convolutions on Ampere and newer
        assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.99
        for batch in (1, 4):  # dynamic batch within the profile
            assert engine.infer(frames[:1].repeat(batch, 0)).shape[0] == batch
        with pytest.raises(EngineError, match=r"\(batch 1\.\.4\), got \[5, 16, 16, 3\]"):
            engine.infer(frames[:1].repeat(5, 0))


def test_fp16_engine_matches_onnxruntime(model, helpers):
    report, _ = build(BuildOptions(model, fp16=True))
    assert report.manifest.precision == "fp16"
    frames = np.stack(helpers.colour_frames(4, seed=1)).astype(np.float32)
    assert agreement(report.output, model, frames[:1]) > 0.98


def test_int8_engine_calibrated_from_a_folder(model, tiny, helpers):
    report, _ = build(BuildOptions(model, int8=True, calib=tiny.calib_dir, progress=False))
    manifest = report.manifest
    assert manifest.precision == "int8" and manifest.calibration.frames == 6
    frames = np.stack(helpers.colour_frames(1, seed=2)).astype(np.float32)
    assert agreement(report.output, model, frames) > 0.9


def test_segmenter_runs_an_engine_on_frames_of_any_size(model, helpers):
    report, _ = build(BuildOptions(model))
    frame = np.zeros((30, 40, 3), np.uint8)
    frame[:, :20] = (20, 220, 30)  # green left half
    frame[:, 20:] = (20, 30, 220)  # blue right half
    with Segmenter.open(report.output) as segmenter:
        result = segmenter.seg(frame)
    assert result.class_map.shape == (30, 40) and result.class_map.dtype == np.uint8
    assert (result.class_map[:, :16] == 1).mean() > 0.95 and (result.class_map[:, 24:] == 2).mean() > 0.95


def test_engine_from_another_tensorrt_version_is_refused_with_the_rebuild_command(model):
    report, _ = build(BuildOptions(model))
    path = manifest_path(report.output)
    data = json.loads(path.read_text())
    data["runtime_version"] = "8.5.2.2"
    path.write_text(json.dumps(data))
    with pytest.raises(EngineError) as info:
        open_backend(report.output)
    assert "was built with TensorRT 8.5.2.2" in str(info.value)
    assert str(info.value).endswith(f"rebuild it on this device: edgeseg build-engine {model} -o {report.output}")


def test_dla_engine_on_a_jetson_with_dla(model, helpers):
    import tensorrt as trt

    if trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores == 0:
        pytest.skip("this device has no DLA cores")
    report, _ = build(BuildOptions(model, fp16=True, dla_core=0))
    assert report.manifest.dla_core == 0
    frames = np.stack(helpers.colour_frames(1, seed=4)).astype(np.float32)
    assert agreement(report.output, model, frames) > 0.98


def test_dla_on_a_gpu_without_dla_is_refused(model):
    import tensorrt as trt

    if trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores > 0:
        pytest.skip("this device has DLA cores")
    with pytest.raises(EngineError, match=r"--dla 0: this device has no DLA cores"):
        build(BuildOptions(model, fp16=True, dla_core=0))
