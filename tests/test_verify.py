"""`edgeseg verify`: gate logic, report content and JSON, pictures, CLI exit codes.

The models are real ONNX graphs run by real ONNX Runtime on the real synthetic world: a 1x1
convolution (NCHW, 32x32, the synthetic world's four classes) written with onnx.helper, so no
TensorFlow is needed here. The "engine" is the same graph with perturbed weights; the
end-to-end train / export / quantize parity lives in tests/test_train_export_int8_parity.py.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from edgeseg.errors import EdgesegError, SpecError
from edgeseg.evalmetrics import scores_from_confusion
from edgeseg.spec import ModelSpec
from edgeseg.verify import ParityReport, check_gates, verify

DATA = "synthetic://?seed=3&n=16"  # the val subset renders 64 frames; tests use max_frames
CLASSES = ("floor", "obstacle", "wall", "background")
SIZE = 32


def conv_model(path, weights: np.ndarray, bias: np.ndarray, spec: ModelSpec):
    """Write a 1x1-convolution segmentation model [N, 3, H, W] -> [N, C, H, W] with `spec` embedded."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.onnxmeta import write_spec_metadata

    h, w = spec.input_size
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w", "b"], ["scores"])],
        "conv1x1",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", len(weights), h, w])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(write_spec_metadata(model, spec), str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """float.onnx, a copy, a slightly and a strongly perturbed engine, and two mismatching ones."""
    root = tmp_path_factory.mktemp("verify_models")
    rng = np.random.default_rng(0)
    spec = ModelSpec(class_names=CLASSES, input_height=SIZE, input_width=SIZE, layout="NCHW", scale=1 / 255)
    weights = rng.normal(size=(4, 3, 1, 1)).astype(np.float32)
    bias = rng.normal(scale=0.3, size=4).astype(np.float32)
    paths = {"float": conv_model(root / "float.onnx", weights, bias, spec)}
    shutil.copy(paths["float"], root / "same.onnx")
    paths["same"] = root / "same.onnx"
    noise = rng.normal(size=weights.shape).astype(np.float32)
    paths["close"] = conv_model(root / "close.onnx", weights + 0.05 * noise, bias, spec)
    paths["far"] = conv_model(root / "far.onnx", weights[::-1].copy(), bias[::-1].copy(), spec)
    paths["classes"] = conv_model(
        root / "classes.onnx", weights, bias, spec.replace(class_names=("a", "b", "c", "d"), palette=())
    )
    paths["size"] = conv_model(root / "size.onnx", weights, bias, spec.replace(input_height=16, input_width=16))
    return paths


@pytest.fixture
def cli_main():
    import edgeseg.cli as cli

    return cli.main


def hand_report(float_cm, engine_cm, agreement: float) -> ParityReport:
    """A report built from confusion matrices, for the gate logic alone."""
    names = ("a", "b")
    f, e = scores_from_confusion(np.array(float_cm), names), scores_from_confusion(np.array(engine_cm), names)
    return ParityReport(
        float_model="f.onnx", engine_model="e.onnx", float_backend="x", engine_backend="y", data="d",
        subset="val", frames=1, pixels=100, float_scores=f, engine_scores=e,
        miou_drop_pp=100 * (f.mean_iou - e.mean_iou), per_class_delta={}, agreement=agreement,
    )


# --- gates ---------------------------------------------------------------------------------


def test_gates_pass_and_fail_with_the_amount():
    # float: IoU a = 40/50, b = 40/50 -> 80%; engine: a = 38/52, b = 38/52 -> 73.08%
    report = hand_report([[40, 5], [5, 40]], [[38, 7], [7, 38]], agreement=0.985)
    assert report.miou_drop_pp == pytest.approx(100 * (0.8 - 38 / 52))
    assert check_gates(report) == []
    assert check_gates(report, max_miou_drop=7.0, min_agreement=0.98) == []

    failures = check_gates(report, max_miou_drop=0.5, min_agreement=0.99)
    assert len(failures) == 2
    drop, agree = failures
    assert drop.startswith("max-miou-drop") and "6.92 pp" in drop and "by 6.42 pp" in drop
    assert "80.00% -> 73.08%" in drop
    assert agree.startswith("min-agreement") and "0.9850" in agree and "by 0.0050" in agree

    only_agreement = check_gates(report, max_miou_drop=10, min_agreement=0.99)
    assert [m.split(":")[0] for m in only_agreement] == ["min-agreement"]


def test_engine_better_than_float_passes_the_drop_gate():
    report = hand_report([[38, 7], [7, 38]], [[40, 5], [5, 40]], agreement=1.0)
    assert report.miou_drop_pp < 0
    assert check_gates(report, max_miou_drop=0.0) == []


def test_undefined_miou_fails_the_drop_gate_only():
    report = hand_report([[0, 0], [0, 0]], [[0, 0], [0, 0]], agreement=1.0)
    assert math.isnan(report.miou_drop_pp)
    failures = check_gates(report, max_miou_drop=1.0, min_agreement=0.5)
    assert len(failures) == 1 and "undefined" in failures[0]


@pytest.mark.parametrize("gates", [dict(max_miou_drop=-1.0), dict(min_agreement=1.5), dict(min_agreement=-0.1)])
def test_impossible_gate_values_are_user_errors(gates):
    report = hand_report([[1, 0], [0, 1]], [[1, 0], [0, 1]], agreement=1.0)
    with pytest.raises(EdgesegError):
        check_gates(report, **gates)


# --- the library on real models ------------------------------------------------------------


def test_identical_models_agree_everywhere(models):
    report = verify(models["float"], models["same"], DATA, max_frames=6, progress=False)
    assert report.frames == 6 and report.pixels == 6 * SIZE * SIZE
    assert report.agreement == 1.0
    assert report.miou_drop_pp == 0.0
    assert all(delta in (0.0, None) for delta in report.per_class_delta.values())
    np.testing.assert_array_equal(report.float_scores.confusion, report.engine_scores.confusion)
    assert report.float_backend == report.engine_backend == "onnxruntime"
    assert report.pictures == []  # neither out_dir nor json_path: nothing written


def test_labelled_mode_compares_commands_when_the_spec_names_where_to_drive(models, tmp_path):
    import onnx

    from edgeseg.onnxmeta import read_spec_from_onnx_file, write_spec_metadata

    # the far model calls wall what float calls obstacle and the other way round: drive on obstacle
    spec = read_spec_from_onnx_file(models["float"]).replace(traversable=("obstacle",))
    paths = {}
    for name in ("float", "far"):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(write_spec_metadata(onnx.load(str(models[name])), spec), str(paths[name]))
    same = verify(paths["far"], paths["far"], DATA, max_frames=6, progress=False)  # the far model drives
    assert [c.mode for c in same.commands] == ["safe", "balanced", "adventurous"]
    assert all(c.frames == c.both_drive == 6 and c.steering_diff_max == 0.0 and c.stop_mismatch == 0.0
               for c in same.commands)
    far = verify(paths["float"], paths["far"], DATA, max_frames=6, progress=False)
    assert far.reference == "labels" and far.float_scores is not None
    assert all(c.stop_mismatch == 1.0 and c.both_drive == 0 and c.throttle_diff_max > 0.2 for c in far.commands)
    assert "commands (navigator" in far.table() and far.to_dict()["commands"][0]["mode"] == "safe"
    # without traversable classes there is nothing to drive on: said so, and command gates fail
    plain = verify(models["float"], models["same"], DATA, max_frames=2, progress=False)
    assert plain.commands == [] and "not compared" in plain.table()
    assert "no commands were compared" in check_gates(plain, max_steering_diff=0.1)[0]


def test_report_content_json_and_pictures(models, tmp_path):
    json_path = tmp_path / "reports" / "parity.json"
    report = verify(models["float"], models["close"], DATA, max_frames=10, batch=4, json_path=json_path,
                    pictures=3, progress=False)
    assert 0.5 < report.agreement < 1.0, report.agreement  # perturbed weights: some pixels change

    # agreement and scores recomputed by hand on the same frames
    from edgeseg.data.sources import open_dataset
    from edgeseg.runtime import Segmenter

    dataset = open_dataset(DATA, subset="val", size=(SIZE, SIZE))
    indices = sorted(f.index for f in report.worst)  # 10 frames: all of them are listed
    assert indices == sorted({int(i) for i in np.linspace(0, len(dataset) - 1, 10).round()})
    with Segmenter.open(models["float"]) as a, Segmenter.open(models["close"]) as b:
        images = [dataset.load(i)[0] for i in indices]
        fa = [s.class_map for s in a.seg_batch(images)]
        fb = [s.class_map for s in b.seg_batch(images)]
    same = sum(int((x == y).sum()) for x, y in zip(fa, fb))
    assert report.agreement == pytest.approx(same / (10 * SIZE * SIZE))
    expected_delta = {
        n: None if math.isnan(f - e) else pytest.approx(100 * (e - f))
        for n, f, e in zip(CLASSES, report.float_scores.per_class_iou, report.engine_scores.per_class_iou)
    }
    assert report.per_class_delta == expected_delta

    # worst frames: ascending agreement, each agreement is that frame's own
    agreements = [f.agreement for f in report.worst]
    assert agreements == sorted(agreements)
    for frame in report.worst:
        k = indices.index(frame.index)
        assert frame.agreement == pytest.approx(float((fa[k] == fb[k]).mean()))

    data = json.loads(json_path.read_text())
    assert data["frames"] == 10
    assert data["agreement"] == pytest.approx(report.agreement)
    assert data["miou_drop_pp"] == pytest.approx(report.miou_drop_pp)
    assert data["float_mean_iou"] == pytest.approx(report.float_scores.mean_iou)
    assert set(data["per_class_iou_delta_pp"]) == set(CLASSES)
    assert data["worst_frames"][0]["index"] == report.worst[0].index
    assert set(data["timings_s"]) == {"float", "engine", "total"}

    # pictures beside the JSON, worst first: image | float | engine | disagreement
    assert len(report.pictures) == 3 and data["pictures"] == report.pictures
    import cv2

    first = cv2.imread(report.pictures[0])
    assert first is not None and first.shape[1] == 4 * (first.shape[0] - 22)  # 4 square panels + header
    assert all(p.startswith(str(json_path.parent / "parity-disagreement-")) for p in report.pictures)
    # the disagreement panel of the worst frame is red exactly where the class maps differ
    worst = report.worst[0]
    k = indices.index(worst.index)
    scale = (first.shape[0] - 22) // SIZE
    panel = cv2.cvtColor(first[22:, 3 * SIZE * scale :], cv2.COLOR_BGR2RGB)[::scale, ::scale]
    red = np.all(panel == (255, 0, 0), axis=-1)
    differ = fa[k] != fb[k]
    assert differ.any()
    assert np.all(red[differ])


def test_table_lists_every_class_and_the_summary(models):
    report = verify(models["float"], models["far"], DATA, max_frames=4, progress=False)
    table = report.table()
    for name in CLASSES:
        assert name in table
    assert f"pixel agreement {report.agreement:.4f}" in table
    assert "mean IoU drop" in table


@pytest.mark.parametrize("other, words", [("classes", "different classes"), ("size", "different input sizes")])
def test_mismatching_specs_are_a_clear_error(models, other, words):
    with pytest.raises(SpecError, match=words) as info:
        verify(models["float"], models[other], DATA, max_frames=2, progress=False)
    assert str(models[other]) in str(info.value)


def test_data_with_other_classes_is_a_clear_error(models):
    from edgeseg.errors import DataError

    with pytest.raises(DataError, match="differ from the models"):
        verify(models["classes"], models["classes"], DATA, max_frames=2, progress=False)


# --- the command ---------------------------------------------------------------------------


def test_cli_passes_gates_and_writes_report(models, tmp_path, cli_main, capsys):
    json_path = tmp_path / "parity.json"
    out = tmp_path / "pictures"
    code = cli_main(["verify", str(models["float"]), str(models["same"]), "--data", DATA, "--max-frames", "4",
                     "--max-miou-drop", "0.5", "--min-agreement", "0.99", "--json", str(json_path),
                     "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "parity gates passed" in captured.out and "pixel agreement 1.0000" in captured.out
    assert json.loads(json_path.read_text())["agreement"] == 1.0
    assert len(list(out.glob("*disagreement-*.png"))) == 4


def test_cli_gate_failure_exits_1_and_says_which_gate(models, tmp_path, cli_main, capsys):
    json_path = tmp_path / "parity.json"
    code = cli_main(["verify", str(models["float"]), str(models["far"]), "--data", DATA, "--max-frames", "4",
                     "--min-agreement", "0.99", "--json", str(json_path), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    agreement = json.loads(json_path.read_text())["agreement"]
    assert agreement < 0.99
    assert f"FAILED min-agreement: pixel agreement {agreement:.4f} is below 0.99" in captured.err
    assert "max-miou-drop" not in captured.err  # only the gate that was asked for
    assert list(tmp_path.glob("parity-disagreement-*.png"))  # default --out: beside the JSON


def test_cli_mismatching_specs_exit_1(models, cli_main, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli_main(["verify", str(models["float"]), str(models["size"]), "--data", DATA, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("edgeseg verify: error: the models have different input sizes")
    assert err.count("\n") == 1
    assert not (tmp_path / "verify").exists()  # failed before writing anything


def test_cli_bad_gate_value_fails_before_running(models, cli_main, capsys):
    code = cli_main(["verify", str(models["float"]), "missing.engine", "--data", DATA, "--min-agreement", "99"])
    assert code == 1
    assert "--min-agreement is a fraction" in capsys.readouterr().err


def test_cli_spec_flag_for_a_float_model_without_one(models, tmp_path, cli_main, capsys):
    import onnx

    from edgeseg.onnxmeta import read_spec_from_onnx_file

    spec = read_spec_from_onnx_file(models["float"])
    model = onnx.load(str(models["float"]))
    del model.metadata_props[:]
    bare = tmp_path / "third_party.onnx"
    onnx.save(model, str(bare))
    spec.save(tmp_path / "spec.json")
    args = ["verify", str(bare), str(models["same"]), "--data", DATA, "--max-frames", "2", "--pictures", "0",
            "--no-progress", "--json", str(tmp_path / "r.json")]
    assert cli_main(args) == 1
    assert "--spec" in capsys.readouterr().err
    assert cli_main(args + ["--spec", str(tmp_path / "spec.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["agreement"] == 1.0
