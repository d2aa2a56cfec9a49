"""edgeseg's TensorRT control flow per version, against a fake `tensorrt` module and fake CUDA.

The fake records the TensorRT API calls; these tests check which calls edgeseg makes on
8.5, 8.6, 10.3, 10.x and 11.x, and that engines and manifests are written (or not) as they
should. Real builds and runs are in test_tensorrt_real.py (`@pytest.mark.tensorrt`).
"""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

from edgeseg.engine import BatchRange, BuildOptions, Environment, build_engine, read_manifest
from edgeseg.engine.manifest import manifest_path, write_manifest
from edgeseg.errors import EdgesegError, EngineError
from edgeseg.runtime import open_backend
from edgeseg.runtime.cuda_buffers import GpuInfo
from edgeseg.runtime.tensorrt_backend import open_tensorrt

ORIN = GpuInfo("Orin", "8.7")
ALL_VERSIONS = ("8.5.2.2", "8.6.2.3", "10.3.0.30", "10.13.0.35", "11.1.0.8")


def env(version: str) -> Environment:
    return Environment(version, "", ORIN, "")


def build(trt, options: BuildOptions):
    lines: list[str] = []
    report = build_engine(options, log=lines.append, environment=env(trt.__version__))
    return report, lines


def calls(trt, name: str) -> list[tuple]:
    return [call[1:] for call in trt.calls if call[0] == name]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_fp32_build_per_version(work, install_fake_tensorrt, version):
    trt = install_fake_tensorrt(version)
    report, lines = build(trt, BuildOptions(work / "tiny.onnx", batch=BatchRange(1, 2, 4)))
    assert lines[0] == f"backend: tensorrt (TensorRT {version} on Orin (compute 8.7))"
    explicit_batch = 1 if version.startswith("8.") else 0
    assert calls(trt, "create_network") == [(explicit_batch,)]
    assert calls(trt, "set_flag") == []
    assert calls(trt, "profile.set_shape") == [("image", (1, 16, 16, 3), (2, 16, 16, 3), (4, 16, 16, 3))]
    assert report.output == work / "tiny.engine"
    manifest = read_manifest(report.output)
    assert (manifest.backend, manifest.precision, manifest.runtime_version) == ("tensorrt", "fp32", version)
    assert manifest.gpu == ORIN and manifest.profile.max == (4, 16, 16, 3)
    assert manifest.engine_bytes == report.output.stat().st_size


@pytest.mark.parametrize("version", ["8.6.2.3", "10.3.0.30"])
def test_fp16_and_int8_are_builder_flags_on_weakly_typed_versions(work, install_fake_tensorrt, version):
    trt = install_fake_tensorrt(version)
    report, lines = build(trt, BuildOptions(work / "tiny.qdq.onnx", int8=True, fp16=True, output=work / "m.engine"))
    assert calls(trt, "set_flag") == [("INT8",), ("FP16",)]
    assert report.manifest.precision == "int8+fp16"


def test_qdq_model_without_int8_flag_still_builds_int8_and_says_so(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("8.5.2.2")
    report, lines = build(trt, BuildOptions(work / "tiny.qdq.onnx", output=work / "m.engine"))
    assert calls(trt, "set_flag") == [("INT8",)]
    assert "precision: tiny.qdq.onnx has Q/DQ nodes, so the engine is INT8 with their scales" in lines
    assert report.manifest.precision == "int8"


def test_tensorrt_11_takes_precision_from_the_network(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("11.1.0.8")
    report, _ = build(trt, BuildOptions(work / "tiny.qdq.onnx", int8=True, output=work / "m.engine"))
    assert calls(trt, "set_flag") == [] and calls(trt, "create_network") == [(0,)]
    assert report.manifest.precision == "int8"
    with pytest.raises(EngineError, match=r"--fp16 with INT8 on TensorRT 11\.1\.0\.8: strongly typed"):
        build(trt, BuildOptions(work / "tiny.qdq.onnx", int8=True, fp16=True, output=work / "m2.engine"))


def test_tensorrt_11_fp16_converts_the_model_first(work, install_fake_tensorrt, monkeypatch):
    trt = install_fake_tensorrt("11.1.0.8")
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)  # as on this machine: not installed
    with pytest.raises(EngineError, match=r"--fp16 with TensorRT 11 converts the model to FP16 first.*"
                                          r"pip install onnxconverter-common"):
        build(trt, BuildOptions(work / "tiny.onnx", fp16=True))
    assert not (work / "tiny.engine").exists() and not (work / "tiny.engine.json").exists()

    converted = []

    def convert_float_to_float16(model, keep_io_types=False):
        converted.append(keep_io_types)
        return model

    float16 = types.SimpleNamespace(convert_float_to_float16=convert_float_to_float16)
    monkeypatch.setitem(sys.modules, "onnxconverter_common", types.SimpleNamespace(float16=float16))
    report, lines = build(trt, BuildOptions(work / "tiny.onnx", fp16=True))
    assert converted == [True], "float32 inputs and outputs must be kept"
    assert calls(trt, "parse_from_file")[-1] == ("tiny.fp16.onnx",)
    assert calls(trt, "build_serialized_network")[-1] == ("tiny.fp16.onnx",)
    assert "precision: converting tiny.onnx to FP16 (TensorRT 11.1.0.8 is strongly typed)" in lines
    assert report.manifest.precision == "fp16" and calls(trt, "set_flag") == []


@pytest.mark.parametrize("version", ["8.6.2.3", "11.1.0.8"])
def test_int8_on_a_float_model_needs_calibration(work, install_fake_tensorrt, version):
    trt = install_fake_tensorrt(version)
    with pytest.raises(EngineError, match=r"--int8: .*tiny\.onnx has no Q/DQ nodes.*pass --calib DIR"):
        build(trt, BuildOptions(work / "tiny.onnx", int8=True))
    assert calls(trt, "build_serialized_network") == []
    assert not (work / "tiny.engine").exists()


def test_int8_calibrates_to_qdq_then_builds(work, tiny, install_fake_tensorrt):
    trt = install_fake_tensorrt("10.3.0.30")
    report, _ = build(trt, BuildOptions(work / "tiny.onnx", int8=True, calib=tiny.calib_dir, progress=False))
    parsed = [name for (name,) in calls(trt, "parse_from_file")]
    assert parsed == ["tiny.tensorrt-int8.onnx"], "the builder parses the one finished model, once"
    assert calls(trt, "build_serialized_network") == [("tiny.tensorrt-int8.onnx",)]
    assert calls(trt, "set_flag") == [("INT8",)]
    manifest = report.manifest
    assert manifest.precision == "int8" and manifest.calibration.frames == 6
    assert str(tiny.calib_dir) in manifest.calibration.source
    assert "--calib" in manifest.build_command
    assert sorted(p.name for p in work.iterdir() if not p.name.endswith(".onnx")) == ["tiny.engine", "tiny.engine.json"]


def test_legacy_calibration_cache_on_10_and_its_absence_on_11(work, install_fake_tensorrt):
    cache = work / "tiny.calib.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\nimage: 3c010204\nc1: 3d4d8b2e\n")
    trt = install_fake_tensorrt("10.3.0.30")
    report, lines = build(trt, BuildOptions(work / "tiny.onnx", int8=True, calib_cache=cache))
    [(handed, batch)] = calls(trt, "int8_calibrator")
    assert handed.startswith(b"TRT-100300-EntropyCalibration2\nimage: 3c010204") and batch is None
    assert any("header rewritten to 100300" in line for line in lines)
    assert calls(trt, "set_flag") == [("INT8",)]
    assert report.manifest.calibration.source.startswith("TensorRT calibration cache")

    trt = install_fake_tensorrt("11.1.0.8")
    with pytest.raises(EngineError, match=r"--calib-cache: TensorRT 11\.1\.0\.8 removed calibration caches"):
        build(trt, BuildOptions(work / "tiny.onnx", int8=True, calib_cache=cache, output=work / "b.engine"))


def test_workspace_timing_cache_and_static_model(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("8.6.2.3")
    timing = work / "timing.cache"
    build(trt, BuildOptions(work / "fixed.onnx", workspace=256 << 20, timing_cache=timing))
    assert calls(trt, "set_memory_pool_limit") == [("WORKSPACE", 256 << 20)]
    assert calls(trt, "profile.set_shape") == [], "a static model needs no optimization profile"
    assert calls(trt, "create_timing_cache") == [(b"",)] and timing.read_bytes() == b"+"
    build(trt, BuildOptions(work / "fixed.onnx", timing_cache=timing))
    assert calls(trt, "create_timing_cache")[-1] == (b"+",) and timing.read_bytes() == b"++"
    timing.write_bytes(b"foreign cache")
    with pytest.raises(EngineError, match=r"--timing-cache .*timing\.cache was written by another TensorRT"):
        build(trt, BuildOptions(work / "fixed.onnx", timing_cache=timing, output=work / "x.engine"))


def test_dynamic_size_model_takes_shape_and_updates_the_spec(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("10.3.0.30")
    report, _ = build(trt, BuildOptions(work / "dynamic_hw.onnx", shape=(32, 48)))
    assert calls(trt, "profile.set_shape") == [("image", (1, 32, 48, 3), (1, 32, 48, 3), (1, 32, 48, 3))]
    assert report.manifest.spec.input_size == (32, 48)


def test_dla_on_a_jetson_and_on_a_gpu_without_dla(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("8.5.2.2", dla_cores=2)
    report, _ = build(trt, BuildOptions(work / "tiny.onnx", fp16=True, dla_core=1))
    assert calls(trt, "default_device_type") == [("DLA",)] and calls(trt, "DLA_core") == [(1,)]
    assert calls(trt, "set_flag") == [("FP16",), ("GPU_FALLBACK",)]
    assert report.manifest.dla_core == 1
    with pytest.raises(EngineError, match=r"--dla 2: this device has 2 DLA core\(s\), numbered 0\.\.1"):
        build(trt, BuildOptions(work / "tiny.onnx", fp16=True, dla_core=2))
    with pytest.raises(EngineError, match=r"--dla 0: DLA runs FP16 or INT8 only; add --fp16 or --int8"):
        build(trt, BuildOptions(work / "tiny.onnx", dla_core=0))
    desktop = install_fake_tensorrt("10.13.0.35", dla_cores=0)
    with pytest.raises(EngineError, match=r"--dla 0: this device has no DLA cores .*drop --dla"):
        build(desktop, BuildOptions(work / "tiny.onnx", fp16=True, dla_core=0, output=work / "d.engine"))
    assert calls(desktop, "parse_from_file") == [], "fails before parsing or calibrating"


@pytest.mark.parametrize("version, where", [("8.6.2.3", "node fancy:"), ("10.3.0.30", "node fancy (FancyOp):")])
def test_parser_errors_list_node_names(work, install_fake_tensorrt, version, where):
    trt = install_fake_tensorrt(version)
    with pytest.raises(EngineError) as info:
        build(trt, BuildOptions(work / "fancy.onnx"))
    assert f"cannot parse {work / 'fancy.onnx'}: {where} No importer registered for op: FancyOp" in str(info.value)
    assert not (work / "fancy.engine").exists() and not (work / "fancy.engine.json").exists()


def test_qoperator_model_gets_a_hint(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("10.3.0.30")
    with pytest.raises(EngineError, match=r"QLinearConv.*this is a CPU \(QOperator\) INT8 model; TensorRT reads Q/DQ"):
        build(trt, BuildOptions(work / "tiny.qop.onnx"))


def test_opset_too_new_for_jetpack_5_and_too_old_tensorrt(work, install_fake_tensorrt):
    with pytest.raises(EngineError, match=r"uses ONNX opset 18, but TensorRT 8\.6\.2\.3 reads opsets up to 17"):
        build(install_fake_tensorrt("8.6.2.3"), BuildOptions(work / "opset18.onnx"))
    build(install_fake_tensorrt("10.3.0.30"), BuildOptions(work / "opset18.onnx"))
    with pytest.raises(EngineError, match=r"TensorRT 8\.4\.3\.1 is too old"):
        build(install_fake_tensorrt("8.4.3.1"), BuildOptions(work / "tiny.onnx"))


def test_failed_build_keeps_the_old_engine_and_writes_nothing_new(work, install_fake_tensorrt):
    good = install_fake_tensorrt("10.3.0.30")
    report, _ = build(good, BuildOptions(work / "tiny.onnx"))
    old = report.output.read_bytes(), manifest_path(report.output).read_text()
    failing = install_fake_tensorrt("10.3.0.30", build_fails=True)
    with pytest.raises(EngineError, match=r"TensorRT 10\.3\.0\.30 could not build an engine from .*tiny\.onnx"):
        build(failing, BuildOptions(work / "tiny.onnx"))
    assert (report.output.read_bytes(), manifest_path(report.output).read_text()) == old
    assert not any(p.name.startswith(".") for p in work.iterdir())


def test_engine_output_name_must_be_an_engine(work, install_fake_tensorrt):
    with pytest.raises(EdgesegError, match=r"-o .*m\.onnx: TensorRT engines are named \.engine or \.plan"):
        build(install_fake_tensorrt(), BuildOptions(work / "tiny.onnx", output=work / "m.onnx"))


# --- the TensorRT backend over the fakes ------------------------------------------------------


@pytest.fixture
def engine(work, install_fake_tensorrt):
    trt = install_fake_tensorrt("10.3.0.30")
    report, _ = build(trt, BuildOptions(work / "tiny.onnx", batch=BatchRange(1, 2, 4)))
    return trt, report.output


def test_backend_runs_a_dynamic_batch_through_pinned_and_device_buffers(engine, fake_cuda, helpers):
    trt, path = engine
    frames = np.stack(helpers.colour_frames(3)).astype(np.float32)
    with open_backend(path) as backend:
        assert backend.name == "tensorrt" and backend.input_shape == (None, 16, 16, 3)
        assert backend.input_spec == helpers.spec and backend.batch_range == (1, 4)
        out = backend.infer(frames)
        np.testing.assert_array_equal(out, helpers.fake_engine_output(frames, 3))
        np.testing.assert_array_equal(backend.infer(frames[:1]), helpers.fake_engine_output(frames[:1], 3))
    assert calls(trt, "set_input_shape")[-2:] == [("image", (3, 16, 16, 3)), ("image", (1, 16, 16, 3))]
    addresses = calls(trt, "set_tensor_address")
    assert [name for name, _ in addresses] == ["image", "logits"], "addresses are set once, at open"
    assert calls(trt, "execute_async_v3") == [(77,), (77,)]
    copies = [e for e in fake_cuda.events if e[0] in ("htod", "dtoh", "synchronize")]
    assert copies[:3] == [("htod", addresses[0][1], frames.nbytes), ("dtoh", addresses[1][1], out.nbytes), ("synchronize",)]


def test_backend_close_frees_everything_in_reverse_order_once(engine, fake_cuda):
    _, path = engine
    backend = open_tensorrt(path)
    allocated = [e for e in fake_cuda.events if e[0] in ("stream_create", "malloc_host", "malloc")]
    assert [e[0] for e in allocated] == ["stream_create", "malloc_host", "malloc", "malloc_host", "malloc"]
    backend.close()
    backend.close()
    freed = [e[0] for e in fake_cuda.events if e[0] in ("stream_destroy", "free_host", "free")]
    assert freed == ["free", "free_host", "free", "free_host", "stream_destroy"]
    assert fake_cuda.memory == {} and fake_cuda.host == {}
    with pytest.raises(EngineError, match="backend for .*tiny.engine is closed"):
        backend.infer(np.zeros((1, 16, 16, 3), np.float32))


def test_backend_refuses_batches_outside_the_profile(engine):
    _, path = engine
    with open_tensorrt(path) as backend:
        with pytest.raises(EngineError, match=r"built for input shapes \[1, 16, 16, 3\] to \[4, 16, 16, 3\] "
                                              r"\(batch 1\.\.4\), got \[5, 16, 16, 3\]; rebuild it with e\.g\. "
                                              r"--batch 1,5,5: edgeseg build-engine"):
            backend.infer(np.zeros((5, 16, 16, 3), np.float32))
        with pytest.raises(EngineError, match=r"expects input 'image' as float32 of shape \[N, 16, 16, 3\]"):
            backend.infer(np.zeros((1, 8, 8, 3), np.float32))


def test_backend_refuses_an_engine_from_another_tensorrt_or_gpu(engine, install_fake_tensorrt, fake_cuda, caplog):
    _, path = engine
    install_fake_tensorrt("10.13.0.35")
    with pytest.raises(EngineError) as info:
        open_backend(path)
    assert "built with TensorRT 10.3.0.30 on Orin (compute 8.7), but this device has TensorRT 10.13.0.35" in str(info.value)
    assert f"rebuild it on this device: edgeseg build-engine {path.parent / 'tiny.onnx'} --batch 1,2,4 -o {path}" in str(info.value)

    install_fake_tensorrt("10.3.0.30")
    fake_cuda.gpu = GpuInfo("NVIDIA GeForce RTX 4090", "8.9")
    with pytest.raises(EngineError, match=r"this device has TensorRT 10\.3\.0\.30 on NVIDIA GeForce RTX 4090 "
                                          r"\(compute 8\.9\).*GPU architecture"):
        open_backend(path)
    fake_cuda.gpu = GpuInfo("Orin NX", "8.7")
    with caplog.at_level(logging.WARNING):
        open_backend(path).close()
    assert "built on Orin and runs on Orin NX" in caplog.text


def test_backend_without_manifest_or_with_a_damaged_engine(engine):
    trt, path = engine
    manifest = read_manifest(path)
    manifest_path(path).unlink()
    with pytest.raises(EngineError, match=r"tiny\.engine has no manifest.*rebuild it on this device"):
        open_tensorrt(path)
    path.write_bytes(b"{" + b"0" * (manifest.engine_bytes - 1))  # same size, other bytes
    write_manifest(manifest, manifest_path(path))
    with pytest.raises(EngineError, match=r"tiny\.engine is not the engine its manifest describes.*--no-verify-engine"):
        open_tensorrt(path)  # the integrity check refuses it before TensorRT sees it
    with pytest.raises(EngineError, match=r"TensorRT 10\.3\.0\.30 could not load .*tiny\.engine.*rebuild it on this "
                                          r"device: edgeseg build-engine"):
        open_tensorrt(path, verify=False)


def test_tensorrt_missing_says_how_to_install(engine, monkeypatch):
    _, path = engine
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineError, match=r"TensorRT is not installed .*pip install tensorrt on a desktop; on a "
                                          r"Jetson JetPack ships it \(sudo apt install python3-libnvinfer"):
        open_tensorrt(path)


def test_registry_sends_engine_files_to_tensorrt_and_says_what_to_install(tmp_path):
    from edgeseg.runtime.backends import select_backend

    engine_file = tmp_path / "model.plan"
    engine_file.write_bytes(b"x")
    if "tensorrt" in sys.modules or __import__("importlib").util.find_spec("tensorrt"):
        pytest.skip("TensorRT is installed here")
    with pytest.raises(EngineError, match=r"no installed backend can open .*model\.plan; install one \(tensorrt: "
                                          r"install TensorRT \(JetPack on a Jetson"):
        select_backend(engine_file)


def test_multi_head_dynamic_model_is_pruned_and_fixed_before_tensorrt_parses_it(tmp_path, install_fake_tensorrt):
    """A PyTorch-like model (NCHW, two heads, dynamic batch/height/width, no spec): one parse of
    the prepared graph, only the chosen head left, height and width fixed from --size."""
    from tests.fixtures_onnx import foreign_onnx

    source = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), dynamic=True)
    trt = install_fake_tensorrt("10.3.0.30")
    flags = {"class_names": ("background", "road"), "input_height": 24, "input_width": 32, "output_name": "ll"}
    report, lines = build(trt, BuildOptions(source, batch=BatchRange(1, 2, 4), spec_flags=flags))
    assert calls(trt, "parse_from_file") == [("road.prepared.onnx",)]
    assert calls(trt, "profile.set_shape") == [("input", (1, 3, 24, 32), (2, 3, 24, 32), (4, 3, 24, 32))]
    assert "head: 'll' drives; graph pruned to it (4 of 6 nodes kept, head(s) da dropped)" in lines
    manifest = read_manifest(report.output)
    assert manifest.spec.output_name == "ll" and manifest.spec.input_size == (24, 32)
    assert "--classes background,road --size 24x32 --output ll" in manifest.build_command
