"""Real builds for the ONNX Runtime CPU backend, through the library and the CLI."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeseg import cli
from edgeseg.cli import build_engine as build_engine_cli
from edgeseg.engine import BuildOptions, Environment, build, build_engine, read_manifest
from edgeseg.fileio import file_sha256
from edgeseg.artifact import read_onnx
from edgeseg.errors import DataError, EdgesegError, EngineError, SpecError
from edgeseg.runtime import open_backend

NO_TRT = Environment(None, "TensorRT not installed: pip install tensorrt / JetPack ships it", None, "no CUDA bindings")


def run_build(options: BuildOptions) -> tuple[object, list[str]]:
    lines: list[str] = []
    return build_engine(options, log=lines.append, environment=NO_TRT), lines


def files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_float_cpu_build_writes_optimised_model_and_manifest(work, helpers):
    report, lines = run_build(BuildOptions(work / "tiny.onnx"))
    assert lines[0] == "backend: onnxruntime (TensorRT not installed: pip install tensorrt / JetPack ships it)"
    assert report.output == work / "tiny.cpu.onnx" and report.manifest_path == work / "tiny.cpu.onnx.json"
    assert not any(name.startswith(".") for name in files(work)), "no temporary files left behind"

    import onnx
    import onnxruntime as ort

    ops = {node.op_type for node in onnx.load(str(report.output)).graph.node}
    assert "FusedConv" in ops, f"graph optimisations were not applied: {ops}"
    manifest = read_manifest(report.output)
    assert manifest == report.manifest
    assert (manifest.backend, manifest.precision, manifest.runtime_version) == ("onnxruntime", "fp32", ort.__version__)
    assert manifest.gpu is None and manifest.calibration is None and manifest.profile is None
    assert manifest.spec == helpers.spec
    assert manifest.source_sha256 == file_sha256(work / "tiny.onnx")
    assert manifest.engine_bytes == report.output.stat().st_size
    assert manifest.build_command == f"edgeseg build-engine {work / 'tiny.onnx'} -o {work / 'tiny.cpu.onnx'}"

    frames = np.stack(helpers.colour_frames(3)).astype(np.float32)
    with open_backend(work / "tiny.onnx") as original, open_backend(report.output) as optimised:
        assert optimised.input_spec == helpers.spec
        np.testing.assert_allclose(optimised.infer(frames), original.infer(frames), atol=1e-4)


def test_int8_from_a_qdq_or_qoperator_model_is_used_as_is(work, helpers):
    frames = np.stack(helpers.colour_frames(3)).astype(np.float32)
    for name, fmt in (("tiny.qdq.onnx", "qdq"), ("tiny.qop.onnx", "qoperator")):
        assert read_onnx(work / name).quant_format == fmt
        report, lines = run_build(BuildOptions(work / name, int8=True, output=work / f"{fmt}.cpu.onnx"))
        assert report.manifest.precision == "int8"
        assert not any("already quantized" in line for line in lines)
        assert read_onnx(report.output).quant_format == "qoperator"  # ORT folded Q/DQ into QLinear ops
        with open_backend(work / "tiny.onnx") as reference, open_backend(report.output) as int8:
            agreement = (int8.infer(frames).argmax(-1) == reference.infer(frames).argmax(-1)).mean()
        assert agreement > 0.95, f"{fmt}: INT8 agrees with float on only {agreement:.1%} of pixels"


def test_quantized_model_without_int8_flag_says_it_is_int8(work):
    report, lines = run_build(BuildOptions(work / "tiny.qdq.onnx"))
    assert report.manifest.precision == "int8"
    assert "precision: tiny.qdq.onnx is already quantized (QDQ), so the CPU model is INT8" in lines


def test_int8_calibrates_a_float_model_from_a_folder(work, tiny, helpers):
    report, lines = run_build(BuildOptions(work / "tiny.onnx", int8=True, calib=tiny.calib_dir, progress=False))
    manifest = report.manifest
    assert manifest.precision == "int8"
    assert manifest.calibration.frames == 6 and manifest.calibration.method == "percentile"
    assert str(tiny.calib_dir) in manifest.calibration.source and len(manifest.calibration.sha256) == 64
    assert read_onnx(report.output).quant_format is not None
    sources = {path.name for path in tiny.folder.glob("*.onnx")}
    assert files(work) - sources == {"tiny.cpu.onnx", "tiny.cpu.onnx.json"}, "calibration leftovers beside the output"
    frames = np.stack(helpers.colour_frames(4, seed=5)).astype(np.float32)
    with open_backend(work / "tiny.onnx") as reference, open_backend(report.output) as int8:
        agreement = (int8.infer(frames).argmax(-1) == reference.infer(frames).argmax(-1)).mean()
    assert agreement > 0.9


def test_int8_float_model_without_calibration_is_an_error_and_writes_nothing(work):
    before = files(work)
    with pytest.raises(EngineError, match=r"--int8: .*tiny\.onnx is a float model.*pass --calib DIR"):
        run_build(BuildOptions(work / "tiny.onnx", int8=True))
    assert files(work) == before


def test_fp16_and_tensorrt_options_on_the_cpu_backend_are_errors(work):
    with pytest.raises(EngineError, match=r"--fp16: the onnxruntime CPU backend \(TensorRT not installed.*has no FP16"):
        run_build(BuildOptions(work / "tiny.onnx", fp16=True))
    with pytest.raises(EngineError, match=r"--workspace, --dla: TensorRT build option\(s\), but the backend is onnxruntime"):
        run_build(BuildOptions(work / "tiny.onnx", workspace=1 << 20, dla_core=0))
    with pytest.raises(EdgesegError, match=r"--calib / --calib-cache give INT8 scales; add --int8"):
        run_build(BuildOptions(work / "tiny.onnx", calib=work))
    with pytest.raises(DataError, match=r"--calib .*nowhere does not exist; pass a folder of images or a video"):
        run_build(BuildOptions(work / "tiny.onnx", int8=True, calib=work / "nowhere"))


def test_bad_inputs_name_the_file(work, tiny):
    corrupt = work / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    truncated = work / "truncated.onnx"
    truncated.write_bytes((work / "tiny.onnx").read_bytes()[:300])
    for path in (corrupt, truncated):
        with pytest.raises(EngineError, match=rf"{path.name} is not a valid ONNX model \(truncated or corrupt\?\)"):
            run_build(BuildOptions(path))
    with pytest.raises(EngineError, match=r"no ONNX model at .*absent\.onnx"):
        run_build(BuildOptions(work / "absent.onnx"))
    with pytest.raises(SpecError, match=r"nospec\.onnx carries no edgeseg spec"):
        run_build(BuildOptions(work / "nospec.onnx"))
    assert not any(name.endswith((".cpu.onnx", ".json")) for name in files(work))


def test_output_path_errors(work):
    blocker = work / "a_file"
    blocker.write_text("")
    with pytest.raises(EdgesegError, match=r"cannot write .*a_file/model\.cpu\.onnx: .*not a writable folder"):
        run_build(BuildOptions(work / "tiny.onnx", output=blocker / "model.cpu.onnx"))
    with pytest.raises(EdgesegError, match=r"-o .*tiny\.engine: the onnxruntime backend \(TensorRT not installed.*"
                                          r"must end in \.onnx, e\.g\. tiny\.cpu\.onnx"):
        run_build(BuildOptions(work / "tiny.onnx", output=work / "tiny.engine"))
    with pytest.raises(EdgesegError, match="would overwrite the source model"):
        run_build(BuildOptions(work / "tiny.onnx", output=work / "tiny.onnx"))
    report, _ = run_build(BuildOptions(work / "tiny.onnx", output=work / "new" / "sub" / "m.cpu.onnx"))
    assert report.output.is_file() and (work / "new" / "sub" / "m.cpu.onnx.json").is_file()


def test_a_failed_build_leaves_no_engine_no_manifest_and_keeps_the_old_one(work, monkeypatch):
    report, _ = run_build(BuildOptions(work / "tiny.onnx"))
    old_model, old_manifest = report.output.read_bytes(), report.manifest_path.read_text()

    def broken(source: Path, output: Path) -> None:
        output.write_bytes(b"half a model")
        raise EngineError("ONNX Runtime fell over")

    monkeypatch.setattr("edgeseg.engine.ort_build.optimize_for_cpu", broken)
    with pytest.raises(EngineError, match="fell over"):
        run_build(BuildOptions(work / "tiny.onnx"))
    assert report.output.read_bytes() == old_model and report.manifest_path.read_text() == old_manifest
    with pytest.raises(EngineError, match="fell over"):
        run_build(BuildOptions(work / "tiny.onnx", output=work / "other.cpu.onnx"))
    assert not (work / "other.cpu.onnx").exists() and not (work / "other.cpu.onnx.json").exists()
    assert not any(name.startswith(".") for name in files(work))


# --- the CLI ----------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgeseg build-engine")
    build_engine_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_first_line_names_the_backend_and_why(work, monkeypatch, capsys):
    monkeypatch.setattr(build, "probe_environment", lambda device=0: NO_TRT)
    assert build_engine_cli.run(parse([str(work / "tiny.onnx")])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "backend: onnxruntime (TensorRT not installed: pip install tensorrt / JetPack ships it)"
    assert out[-1].startswith(f"wrote     {work / 'tiny.cpu.onnx'} (") and "tiny.cpu.onnx.json" in out[-1]
    assert json.loads((work / "tiny.cpu.onnx.json").read_text())["precision"] == "fp32"


def test_cli_argument_parsing():
    args = parse(["m.onnx", "--int8", "--fp16", "--calib", "frames", "--batch", "1,4,8", "--size", "64x96",
                  "--workspace", "2GiB", "--timing-cache", "t.cache", "--dla", "1", "-o", "m.engine"])
    assert (args.int8, args.fp16, args.calib, args.size, args.dla) == (True, True, Path("frames"), (64, 96), 1)
    assert (args.batch.min, args.batch.opt, args.batch.max) == (1, 4, 8)
    assert args.workspace == 2 << 30 and args.backend == "auto"
    assert build_engine_cli.memory_size("512MiB") == 512 << 20 and build_engine_cli.memory_size("256") == 256 << 20
    assert build_engine_cli.memory_size("1.5G") == 3 << 29


@pytest.mark.parametrize("argv, message", [
    (["m.onnx", "--batch", "8,4,1"], "needs MIN <= OPT <= MAX"),
    (["m.onnx", "--workspace", "lots"], "is not like 512MiB or 2GiB"),
    (["m.onnx", "--backend", "tflite"], "invalid choice: 'tflite'"),
    (["m.onnx", "--dla", "-1"], "'-1' must be 0 or more"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_cli_main_prints_one_line_errors_and_exits_1(work, monkeypatch, capsys):
    monkeypatch.setattr(build, "probe_environment", lambda device=0: NO_TRT)
    assert cli.main(["build-engine", str(work / "tiny.onnx"), "--fp16"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("backend: onnxruntime (")
    assert captured.err.startswith("edgeseg build-engine: error: --fp16: the onnxruntime CPU backend")
    assert len(captured.err.strip().splitlines()) == 1
    assert cli.main(["build-engine", str(work / "tiny.onnx"), "--backend", "tensorrt"]) == 1
    assert "error: --backend tensorrt: TensorRT not installed" in capsys.readouterr().err
    assert not os.path.exists(work / "tiny.cpu.onnx")
