"""A PyTorch-like ONNX (NCHW, two heads, dynamic batch/height/width, constant and all-zero
branches, no edgeseg metadata) through every step: spec -> calibrate (each method) ->
build-engine --int8 (ONNX Runtime) -> Segmenter.open -> stream; and the runtime's import floor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.artifact import describe, read_manifest, read_onnx
from edgeseg.cli import main
from edgeseg.runtime import Segmenter

METHODS = ("minmax", "entropy", "percentile")


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        cv2.imwrite(str(folder / f"{index}.png"), rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    return folder


@pytest.fixture
def road(tmp_path, foreign_onnx) -> Path:
    """The foreign model with its spec written in once by `edgeseg spec` (head 'll' drives)."""
    source = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), dynamic=True, zero_branch=True)
    out = tmp_path / "road.spec.onnx"
    assert main(["spec", str(source), "--classes", "background,road", "--size", "24x32", "--scale", "1/255",
                 "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--output", "da",
                 "--traversable", "road", "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_calibration_method_survives_constant_and_tiny_tensors(road, frames, tmp_path, capsys, method):
    out = tmp_path / f"road.{method}.onnx"
    code = main(["calibrate", str(road), "--images", str(frames), "--target", "cpu", "--method", method,
                 "--format", "qdq", "--no-progress", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    if method != "minmax":  # the histogram methods could not bin the all-zero and denormal tensors
        assert "constant or near-constant tensor(s) could not be binned" in captured.out
    assert read_onnx(out).precision == "int8"
    with Segmenter.open(road) as reference, Segmenter.open(out) as int8:
        frame = cv2.cvtColor(cv2.imread(str(frames / "1.png")), cv2.COLOR_BGR2RGB)
        expected = reference.seg(frame).class_map
        agreement = (int8.seg(frame).class_map == expected).mean()
    assert set(np.unique(expected)) == {0, 1} and agreement > 0.9


def test_int8_cpu_engine_is_pruned_to_the_head_with_fixed_dims_and_streams(road, frames, tmp_path, capsys):
    engine = tmp_path / "road.cpu.onnx"
    code = main(["build-engine", str(road), "--backend", "onnxruntime", "--int8", "--calib", str(frames),
                 "--calib-method", "percentile", "--batch", "1", "-o", str(engine)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "input: input float[batchx3xheightxwidth] has dynamic dims; fixed to 1x3x24x32" in out
    assert "head: 'da' drives; graph pruned to it" in out and "head(s) ll dropped" in out
    facts = read_onnx(engine)
    assert [t.name for t in facts.outputs] == ["da"] and facts.inputs[0].shape == (1, 3, 24, 32)
    assert not any(name.startswith("/ll/") for name in _node_names(engine))
    manifest = read_manifest(engine)
    assert manifest.precision == "int8" and manifest.spec.output_name == "da"
    assert manifest.calibration.method == "percentile"
    assert describe(engine).kind == "cpu-engine"

    with Segmenter.open(engine) as segmenter:
        result = segmenter.seg(np.zeros((40, 50, 3), np.uint8))
        assert result.class_map.shape == (40, 50) and segmenter.backend.output_name == "da"
    code = main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model", str(engine),
                 "--max-frames", "5", "--no-status", "--commands", str(tmp_path / "cmd.jsonl")])
    assert code == 0, capsys.readouterr().err
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "cmd.jsonl").read_text().splitlines()]
    assert kinds == ["frame"] * 5 + ["final"]  # one command per frame, then the stop that ends every run


def test_flags_alone_run_a_model_without_an_embedded_spec(foreign_onnx, tmp_path, capsys):
    """No `edgeseg spec` step: the same flags on stream pick the head, size and classes."""
    source = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), dynamic=True, layout="NHWC")
    code = main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model", str(source),
                 "--classes", "background,road", "--size", "24x32", "--output", "ll", "--traversable", "road",
                 "--max-frames", "3", "--no-status"])
    assert code == 0, capsys.readouterr().err
    code = main(["stream", "--source", "synthetic://?realtime=0", "--model", str(source), "--max-frames", "1"])
    assert code == 1
    assert "needs classes (--classes A,B,...: 2 names" in capsys.readouterr().err


def _node_names(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node]


def test_importing_the_runtime_and_each_backend_loads_no_build_calib_data_train_or_tf():
    script = (
        "import sys, edgeseg.runtime, edgeseg.runtime.onnxruntime_backend, edgeseg.runtime.tensorrt_backend, "
        "edgeseg.runtime.keras_backend, edgeseg.artifact\n"
        "bad = ('edgeseg.calib', 'edgeseg.engine.build', 'edgeseg.engine.ort_build', 'edgeseg.engine.trt_build', "
        "'edgeseg.data', 'edgeseg.train', 'tensorflow', 'tf2onnx', 'tensorrt')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(bad))))"
    )
    done = subprocess.run([sys.executable, "-c", "import json\n" + script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_an_opset_11_export_is_upgraded_so_its_int8_model_loads(foreign_onnx, frames, tmp_path, capsys):
    """ONNX Runtime's quantizer writes per-channel DequantizeLinear (an opset-13 `axis`) into an
    opset-11/12 model, which then does not load; calibrate upgrades the opset first."""
    source = foreign_onnx(tmp_path / "old.onnx", size=(24, 32), opset=11)
    out = tmp_path / "old.int8.onnx"
    code = main(["calibrate", str(source), "--images", str(frames), "--target", "cpu", "--format", "qdq",
                 "--classes", "a,b", "--no-progress", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert read_onnx(out).opset >= 13
    with Segmenter.open(out) as segmenter:
        assert segmenter.seg(np.zeros((24, 32, 3), np.uint8)).class_map.shape == (24, 32)


def test_nhwc_input_calibrates_for_tensorrt_from_flags_alone(foreign_onnx, frames, tmp_path, capsys):
    source = foreign_onnx(tmp_path / "nhwc.onnx", layout="NHWC", heads=("da", "ll"), dynamic=True, zero_branch=True)
    out = tmp_path / "nhwc.trt-int8.onnx"
    code = main(["calibrate", str(source), "--images", str(frames), "--target", "tensorrt", "--method", "percentile",
                 "--classes", "a,b", "--size", "24x32", "--output", "ll", "--no-progress", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "could not be binned by percentile" in captured.out
    spec = describe(out).spec
    assert (spec.layout, spec.input_size, spec.output_name) == ("NHWC", (24, 32), "ll")
    assert (tmp_path / "nhwc.calib.cache").is_file()


def test_a_single_channel_sigmoid_head_runs_as_binary(foreign_onnx, frames, tmp_path, capsys):
    source = foreign_onnx(tmp_path / "mask.onnx", size=(24, 32), sigmoid_head=True, opset=11)
    engine = tmp_path / "mask.cpu.onnx"
    code = main(["build-engine", str(source), "--backend", "onnxruntime", "--int8", "--calib", str(frames),
                 "--classes", "background,free", "--traversable", "free", "-o", str(engine)])
    assert code == 0, capsys.readouterr().out
    spec = read_manifest(engine).spec
    assert (spec.task, spec.output, spec.output_channels) == ("binary", "sigmoid", 1)
    with Segmenter.open(source, spec=spec) as reference, Segmenter.open(engine) as int8:
        frame = cv2.cvtColor(cv2.imread(str(frames / "2.png")), cv2.COLOR_BGR2RGB)
        expected, got = reference.seg(frame).class_map, int8.seg(frame).class_map
    assert set(np.unique(expected)) == {0, 1} and (got == expected).mean() > 0.9  # both classes seen


def test_a_size_that_contradicts_a_fixed_model_is_refused_before_building(foreign_onnx, tmp_path, capsys):
    source = foreign_onnx(tmp_path / "fixed.onnx", size=(24, 32), dynamic_batch=False)
    code = main(["build-engine", str(source), "--backend", "onnxruntime", "--classes", "a,b", "--size", "48x64"])
    assert code == 1
    assert "says input 48x64x3 (NCHW), but the model's input 'input' has shape [1, 3, 24, 32]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.onnx"]
