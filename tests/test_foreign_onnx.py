"""Models a user brings from PyTorch, and parity on footage without masks.

Every kind of PyTorch-like ONNX model (tests/fixtures_onnx.py) goes the whole way a new user
goes, through the CLI: a spec JSON -> `calibrate` with each method -> `build-engine --int8` ->
`verify --video` (no masks) -> `stream --max-frames 50` -> `sim --episodes 1`. The verify
tests below check the unlabelled report and the command parity against numbers that can be
worked out by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeseg.nav import Navigator
from edgeseg.spec import ModelSpec
from edgeseg.verify import FLOAT, CommandComparer, check_gates, verify
from tests.fixtures_onnx import pytorch_like_onnx, road_scenes, write_frames, write_video

METHODS = ("minmax", "entropy", "percentile")
VARIANTS = {  # between them: each normalisation, head, dynamic axis, opset and Resize mode
    "unit-logits-batch1-opset17-nearest": dict(normalize="unit", head="logits", batch=1, opset=17, resize="nearest"),
    "imagenet-sigmoid-dynbatch-opset11-linear": dict(normalize="imagenet", head="sigmoid", batch=None, opset=11,
                                                     resize="linear"),
    "unit-twoheads-dynbatch-dynhw-opset17-linear": dict(normalize="unit", head="two_heads", batch=None,
                                                        dynamic_hw=True, opset=17, resize="linear"),
    "imagenet-logits-dynhw-opset11-nearest": dict(normalize="imagenet", head="logits", batch=1, dynamic_hw=True,
                                                  opset=11, resize="nearest"),
}


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """A 60-frame video and a 24-frame image folder of the road scenes, written with OpenCV."""
    root = tmp_path_factory.mktemp("footage")
    return {
        "video": write_video(root / "drive.avi", road_scenes(60, seed=1)),
        "images": write_frames(root / "frames", road_scenes(24, seed=2)),
    }


@pytest.fixture
def cli_main():
    import edgeseg.cli as cli

    return cli.main


def engine_with_bias(float_model, path, bias, spec: ModelSpec):
    """The float model with another classifier bias and the spec embedded: a model that strays."""
    import onnx
    from onnx import numpy_helper

    from edgeseg.onnxmeta import write_spec_metadata

    model = onnx.load(str(float_model))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == "head.classifier.bias":
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.asarray(bias, np.float32), tensor.name))
    onnx.save(write_spec_metadata(model, spec), str(path))
    return path


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pytorch_like_model_goes_through_the_whole_chain(variant, footage, tmp_path, cli_main, capsys):
    model = pytorch_like_onnx(tmp_path / "model.onnx", **VARIANTS[variant])
    spec_file = model.spec.save(tmp_path / "spec.json")
    frames = str(footage["images"])
    for method in METHODS:
        out = tmp_path / f"model.{method}.int8.onnx"
        assert cli_main(["calibrate", str(model.path), "--spec", str(spec_file), "--images", frames, "--target", "cpu",
                         "--method", method, "-o", str(out), "--no-progress"]) == 0, capsys.readouterr().err
        assert out.is_file()
    assert cli_main(["build-engine", str(tmp_path / "model.entropy.int8.onnx"), "--int8"]) == 0, capsys.readouterr().err
    engine = tmp_path / "model.entropy.int8.cpu.onnx"
    assert engine.is_file()
    capsys.readouterr()
    report = tmp_path / "verify" / "report.json"
    assert cli_main(["verify", str(model.path), str(engine), "--spec", str(spec_file), "--video",
                     str(footage["video"]), "--json", str(report), "--no-progress", "--min-agreement", "0.95",
                     "--max-steering-diff", "0.5", "--max-stop-mismatch", "0.2"]) == 0, capsys.readouterr().err
    result = json.loads(report.read_text())
    assert result["reference"] == FLOAT and result["frames"] == 60 and result["agreement"] > 0.95
    assert [c["mode"] for c in result["commands"]] == ["safe", "balanced", "adventurous"]
    capsys.readouterr()
    assert cli_main(["stream", "--source", str(footage["video"]), "--model", str(engine), "--max-frames", "50"]) == 0
    streamed = capsys.readouterr()
    assert "50 frames processed" in streamed.out + streamed.err and "Traceback" not in streamed.err
    assert cli_main(["sim", "--model", str(engine), "--episodes", "1", "--seconds", "3", "--mode", "safe",
                     "--no-progress"]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def road_models(tmp_path_factory):
    """The float road model (no spec inside, as exported), a copy with spec, and a straying one."""
    root = tmp_path_factory.mktemp("road_models")
    model = pytorch_like_onnx(root / "road.onnx", batch=None)
    return {
        "float": model.path,
        "spec": model.spec,
        "same": engine_with_bias(model.path, root / "same.onnx", [0.0, 0.0], model.spec),
        # a bias towards background: road pixels near the threshold become background
        "stray": engine_with_bias(model.path, root / "stray.onnx", [1.5, -1.5], model.spec),
    }


def test_identical_models_agree_and_command_the_same(road_models, footage):
    report = verify(road_models["float"], road_models["same"], images=footage["images"],
                    spec=road_models["spec"], progress=False)
    assert report.reference == FLOAT and report.frames == 24 and report.agreement == 1.0
    assert report.miou_drop_pp == 0.0 and report.float_scores is None
    assert all(iou == 1.0 for iou in report.engine_vs_float.per_class_iou)
    assert [c.mode for c in report.commands] == ["safe", "balanced", "adventurous"]
    for command in report.commands:
        assert command.frames == 24 and command.both_drive == round(24 * (1 - command.float_stops)) > 0
        assert command.steering_diff_max == command.stop_mismatch == command.throttle_diff_max == 0.0
    assert check_gates(report, max_miou_drop=0.0, min_agreement=1.0, max_steering_diff=0.0,
                       max_stop_mismatch=0.0) == []


def test_straying_engine_report_worked_out_by_hand(road_models, footage, tmp_path):
    spec = road_models["spec"]
    report = verify(road_models["float"], road_models["stray"], images=footage["images"], spec=spec,
                    json_path=tmp_path / "v.json", pictures=2, progress=False)
    # the same numbers from the two Segmenters and the navigator, computed here frame by frame
    from edgeseg.runtime import Segmenter
    from edgeseg.stream.sources import ImageFolderSource

    with Segmenter.open(road_models["float"], spec=spec) as f_seg, Segmenter.open(road_models["stray"]) as e_seg:
        frames = list(ImageFolderSource(footage["images"]).frames())
        f_maps = [f_seg.seg(frame).class_map for frame in frames]
        e_maps = [e_seg.seg(frame).class_map for frame in frames]
    both = np.stack(f_maps), np.stack(e_maps)
    assert report.agreement == pytest.approx(np.mean(both[0] == both[1]))
    road_iou = np.sum((both[0] == 1) & (both[1] == 1)) / np.sum((both[0] == 1) | (both[1] == 1))
    assert report.engine_vs_float.per_class_iou[1] == pytest.approx(road_iou)
    assert report.agreement < 0.999 and report.miou_drop_pp > 0.1
    float_nav, engine_nav = Navigator.from_spec(spec, "safe"), Navigator.from_spec(spec, "safe")
    commands = [(float_nav.step(f), engine_nav.step(e)) for f, e in zip(f_maps, e_maps)]
    safe = report.commands[0]
    driving = [abs(f.steering - e.steering) for f, e in commands if not f.stop and not e.stop]
    assert safe.both_drive == len(driving) > 0
    assert safe.steering_diff_max == pytest.approx(max(driving)) and safe.steering_diff_max > 0
    assert safe.stop_mismatch == pytest.approx(np.mean([f.stop != e.stop for f, e in commands]))
    # frames are named by file, in natural order, and the worst two are drawn
    assert report.worst[0].sample.startswith("frame") and len(report.pictures) == 2
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["float_mean_iou"] is None and data["engine_vs_float"]["per_class_iou"]["road"] == pytest.approx(road_iou)
    table = report.table()
    assert "float model's class maps are the truth" in table and "IoU vs float" in table and "adventurous" in table


def test_gates_on_footage_fail_with_exit_1_and_say_which(road_models, footage, tmp_path, cli_main, capsys):
    spec_file = road_models["spec"].save(tmp_path / "spec.json")
    argv = ["verify", str(road_models["float"]), str(road_models["stray"]), "--spec", str(spec_file),
            "--images", str(footage["images"]), "--out", str(tmp_path / "pics"), "--no-progress"]
    assert cli_main(argv + ["--min-agreement", "0.999", "--max-steering-diff", "0.1", "--max-miou-drop", "1",
                            "--max-stop-mismatch", "0"]) == 1
    captured = capsys.readouterr()
    assert "FAILED min-agreement" in captured.err and "against float" in captured.err
    assert "FAILED max-miou-drop" in captured.err and "FAILED max-steering-diff" in captured.err
    assert "max-stop-mismatch" not in captured.err  # the stray engine stops exactly when float does
    assert "stop mismatch" in captured.out and "parity gates passed" not in captured.out
    assert cli_main(argv + ["--max-stop-mismatch", "1.5"]) == 1
    assert "--max-stop-mismatch is a fraction of frames" in capsys.readouterr().err
    assert cli_main(argv + ["--max-stop-mismatch", "1.0", "--max-steering-diff", "2"]) == 0
    assert "parity gates passed" in capsys.readouterr().out


def test_video_max_frames_takes_the_first_frames_in_order(road_models, footage):
    report = verify(road_models["float"], road_models["stray"], video=footage["video"], spec=road_models["spec"],
                    max_frames=7, progress=False)
    assert report.frames == 7 and sorted(f.index for f in report.worst) == list(range(7))
    assert all(c.frames == 7 for c in report.commands)


def test_one_source_of_frames_and_clear_errors(road_models, footage, tmp_path):
    from edgeseg.errors import DataError, EdgesegError

    with pytest.raises(EdgesegError, match="exactly one source of frames"):
        verify(road_models["float"], road_models["same"], "synthetic://", video=footage["video"],
               spec=road_models["spec"])
    with pytest.raises(DataError, match="not a folder"):
        verify(road_models["float"], road_models["same"], images=tmp_path / "missing", spec=road_models["spec"])
    with pytest.raises(DataError, match="no video file"):
        verify(road_models["float"], road_models["same"], video=tmp_path / "missing.mp4", spec=road_models["spec"])


def test_command_comparer_by_hand():
    """All-road float maps drive; all-background engine maps stop ("no ground") on every frame."""
    spec = ModelSpec(class_names=("background", "road"), input_height=8, input_width=8, traversable=("road",))
    comparer = CommandComparer(spec)
    road, nothing = np.ones((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
    drives = [Navigator.from_spec(spec, mode).step(road) for mode in comparer.modes]
    for _ in range(3):
        comparer.step(road, nothing)
    results = comparer.results()
    assert [r.mode for r in results] == ["safe", "balanced", "adventurous"]
    for result, first in zip(results, drives):
        assert result.frames == 3 and result.stop_mismatch == 1.0 and result.both_drive == 0
        assert math.isnan(result.steering_diff_max)  # a stopped car does not steer anywhere
        assert (result.float_stops, result.engine_stops) == (0.0, 1.0)
        assert result.throttle_diff_max > 0 and result.throttle_diff_max >= first.throttle
    report_like = type("R", (), {"commands": results, "miou_drop_pp": 0.0, "agreement": 1.0})()
    failures = check_gates(report_like, max_stop_mismatch=0.5)
    assert failures == ["max-stop-mismatch: share of frames where one stops is over 0.5 in safe 1.0000, "
                        "balanced 1.0000, adventurous 1.0000"]
