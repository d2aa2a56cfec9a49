"""`edgeseg bench`: real tiny models timed in real child processes, the table, JSON and errors.

One 32x32 Keras model with the synthetic world's four classes (saved as a run folder), its
export through edgeseg.export and an INT8 (Q/DQ) model calibrated from it with edgeseg.calib,
built once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeseg.artifact.onnxmeta import graph_precision
from edgeseg.bench import bench, inspect_model
from edgeseg.data.synthetic import SYNTHETIC_CLASSES
from edgeseg.errors import DataError, EdgesegError, EngineError, SpecError
from edgeseg.spec import ModelSpec

SIZE = 32
DATA = "synthetic://?seed=0&n=8"  # the test subset renders 64 frames; tests score a few
FAST = ["--runs", "5", "--warmup", "1"]


@pytest.fixture(scope="module")
def models(export_tiny_model, tiny_net) -> dict[str, Path]:
    """run (Keras run folder), onnx (float, spec embedded), int8 (Q/DQ from edgeseg.calib)."""
    from edgeseg.calib import DatasetImages, calibrate

    spec = ModelSpec(class_names=SYNTHETIC_CLASSES, input_height=SIZE, input_width=SIZE, traversable=("floor",))
    exported = export_tiny_model(tiny_net(len(SYNTHETIC_CLASSES), size=SIZE), spec, "bench_models")
    report = calibrate(exported.onnx_path, DatasetImages(DATA), target="cpu", method="minmax", num_frames=8,
                       fmt="qdq", progress=False, warn=lambda message: None)
    return {"run": exported.run_dir, "onnx": exported.onnx_path, "int8": report.output, "spec": spec}


@pytest.fixture
def cli_main():
    import edgeseg.cli as cli

    return cli.main


def test_cli_benches_keras_float_and_int8_each_in_its_own_process(models, cli_main, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", str(models["run"]), str(models["onnx"]), str(models["int8"]), *FAST, "--threads", "1",
            "--json", str(out)]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert "p50 ms" in header and "peak RSS MiB" in header and "mIoU" not in header
    assert sum(line.startswith("| ") for line in lines) == 4  # header + three models
    assert "bench [3/3]" in captured.err  # one progress line per model

    report = json.loads(out.read_text())
    assert report["settings"]["runs"] == 5 and report["settings"]["warmup"] == 1
    keras_row, float_row, int8_row = report["results"]
    assert [r["backend"] for r in report["results"]] == ["keras", "onnxruntime", "onnxruntime"]
    assert [r["precision"] for r in report["results"]] == ["fp32", "fp32", "int8"]
    assert float_row["provider"] == "cpu" and keras_row["provider"] is None
    for row in report["results"]:
        assert row["input"] == "32x32" and row["threads"] == 1 and row["mean_iou"] is None
        assert 0 < row["infer_p50_ms"] <= row["latency_p50_ms"] <= row["latency_p95_ms"]
        assert row["fps"] == pytest.approx(1000 / row["latency_p50_ms"], rel=1e-2)
        assert 0 < row["model_mib"] < row["peak_rss_mib"]
    # TensorFlow is hundreds of MiB, ONNX Runtime tens: had the ONNX models run in the Keras
    # model's process, their peak would include TensorFlow's.
    assert keras_row["model_mib"] > 2 * float_row["model_mib"]
    assert float_row["peak_rss_mib"] < 0.5 * keras_row["peak_rss_mib"]


def test_mean_iou_equals_scoring_the_same_frames_in_process(models):
    from edgeseg.calib.readers import spread_indices
    from edgeseg.data.sources import open_dataset
    from edgeseg.evalmetrics import confusion_matrix, scores_from_confusion
    from edgeseg.runtime import Segmenter

    report = bench([models["onnx"]], data=DATA, max_frames=4, runs=3, warmup=0, progress=False)
    (row,) = report.rows
    assert row.frames == 4 and row.mean_iou is not None
    assert "mIoU %" in report.table() and f"{100 * row.mean_iou:.2f}" in report.table()

    spec = models["spec"]
    dataset = open_dataset(DATA, subset="test", size=spec.input_size)
    cm = np.zeros((4, 4), np.int64)
    with Segmenter.open(models["onnx"]) as segmenter:
        for index in spread_indices(len(dataset), 4):
            image, mask = dataset.load(index)
            cm += confusion_matrix(mask, segmenter.seg(image).class_map, 4)
    assert row.mean_iou == pytest.approx(scores_from_confusion(cm).mean_iou, abs=1e-9)


def test_missing_model_exits_1_naming_it_before_any_model_runs(models, cli_main, tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    assert cli_main(["bench", str(models["onnx"]), str(missing), *FAST]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "error" in err
    assert "bench [1/2]" not in err  # every path is checked before the first model is timed


def test_corrupt_onnx_exits_1_naming_it(cli_main, tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07not a protobuf" * 10)
    assert cli_main(["bench", str(broken), *FAST]) == 1
    assert str(broken) in capsys.readouterr().err


def test_a_user_error_in_the_worker_comes_back_as_that_error(models):
    smaller = models["spec"].replace(input_height=16, input_width=16)  # the model itself says 32x32
    with pytest.raises(SpecError, match=r"model\.onnx.*16x16"):
        bench([models["onnx"]], spec=smaller, runs=1, warmup=0, progress=False)


def test_data_with_other_classes_is_refused(models):
    other = models["spec"].replace(class_names=("a", "b", "c", "d"), palette=(), traversable=())
    with pytest.raises(DataError, match="differ from the model's"):
        bench([models["onnx"]], data=DATA, spec=other, runs=1, warmup=0, progress=False)


def test_settings_out_of_range_are_refused(models):
    with pytest.raises(EdgesegError, match="runs=0"):
        bench([models["onnx"]], runs=0, progress=False)
    with pytest.raises(EdgesegError, match="at least one model"):
        bench([], progress=False)


def _graph(op: str, weight_type: int):
    from onnx import TensorProto, helper

    inputs = ["x", "w"] if op != "Cast" else ["x"]
    attrs = {"to": TensorProto.FLOAT} if op == "Cast" else {}
    return helper.make_graph(
        [helper.make_node(op, inputs, ["y"], **attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor("w", weight_type, [2, 3, 1, 1], [0] * 6)],
    )


@pytest.mark.parametrize("op, weight_type, expected", [
    ("Conv", 1, "fp32"),  # TensorProto.FLOAT
    ("Conv", 10, "fp16"),  # TensorProto.FLOAT16
    ("ConvInteger", 3, "int8"),  # TensorProto.INT8
    ("QLinearConv", 2, "int8"),  # TensorProto.UINT8
])
def test_precision_is_read_from_the_graph(op, weight_type, expected):
    assert graph_precision(_graph(op, weight_type)) == expected


def test_an_engine_manifest_beside_the_model_says_its_precision(models, tmp_path):
    from edgeseg.engine.manifest import EngineManifest, manifest_path, write_manifest

    engine = tmp_path / "model.cpu.onnx"
    shutil.copy(models["onnx"], engine)
    assert inspect_model(engine).precision == "fp32"  # from the graph
    write_manifest(EngineManifest(spec=models["spec"], backend="onnxruntime", precision="int8",
                                  runtime_version="1.0", engine_file=engine.name,
                                  engine_bytes=engine.stat().st_size, source_onnx="model.onnx",
                                  source_sha256="0" * 64, build_command="edgeseg build-engine model.onnx"),
                   manifest_path(engine))
    info = inspect_model(engine)
    assert info.precision == "int8" and info.backend == "onnxruntime" and info.spec == models["spec"]
    with pytest.raises(EngineError, match="keras"):
        inspect_model(engine, backend="keras")  # a backend that cannot open it
