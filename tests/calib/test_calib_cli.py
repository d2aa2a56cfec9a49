import argparse

import pytest

import edgeseg.cli
from edgeseg.calib import trt_cache
from edgeseg.cli import calibrate as calibrate_cli


def parse(argv):
    parser = argparse.ArgumentParser(prog="edgeseg calibrate")
    calibrate_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults():
    args = parse(["m.onnx", "--images", "dir", "--target", "cpu"])
    assert (args.frames, args.method, args.fmt, args.out, args.max_miou_drop) == (200, "percentile", "auto", None, None)
    with pytest.raises(SystemExit):
        parse(["m.onnx", "--images", "a", "--video", "b", "--target", "cpu"])  # one frame source
    with pytest.raises(SystemExit):
        parse(["m.onnx", "--images", "a"])  # --target is required


def test_run_tensorrt_target_prints_summary_and_writes_files(model_copy, calib_images, capsys):
    out = model_copy.parent / "out" / "net.onnx"
    args = parse([str(model_copy), "--images", str(calib_images), "--target", "tensorrt", "-o", str(out),
                  "-n", "12", "--trt-version", "10.3.0", "--no-progress"])
    assert calibrate_cli.run(args) == 0
    captured = capsys.readouterr()
    assert "tensorrt: QDQ, symmetric int8 activations" in captured.out
    assert "only 12 calibration frames; INT8 ranges may be poor, 100+ recommended" in captured.err
    assert out.is_file()
    assert trt_cache.read_cache(out.parent / "model.calib.cache").version_code == 100300
    assert (out.parent / "model.calib.json").is_file()


def test_main_reports_user_errors_in_one_line(tiny_model, calib_images, tmp_path, capsys):
    model = tmp_path / "nospec.onnx"
    model.write_bytes(tiny_model.nospec_path.read_bytes())
    code = edgeseg.cli.main(["calibrate", str(model), "--images", str(calib_images), "--target", "cpu",
                             "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgeseg calibrate: error: ") and "edgeseg export" in err[-1]
    assert edgeseg.cli.main(["calibrate", str(model), "--target", "cpu"]) == 1
    assert "pass --images DIR, --video FILE or --data SPEC" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["nospec.onnx"]


def test_spec_file_option(tiny_model, calib_images, tmp_path, capsys):
    model = tmp_path / "nospec.onnx"
    model.write_bytes(tiny_model.nospec_path.read_bytes())
    spec_file = tiny_model.spec.save(tmp_path / "spec.json")
    args = parse([str(model), "--images", str(calib_images), "--target", "cpu", "--format", "qoperator",
                  "--spec", str(spec_file), "-n", "8", "--method", "minmax", "--no-progress"])
    assert calibrate_cli.run(args) == 0
    from edgeseg.onnxmeta import read_spec_from_onnx_file

    assert read_spec_from_onnx_file(tmp_path / "nospec.int8.onnx") == tiny_model.spec
    out = capsys.readouterr().out
    assert "QOPERATOR" in out
    assert "prepared  " in out and "op type" in out and "faster than FP32" in out  # the per-op account and verdict


def test_unmet_budget_prints_the_report_and_exits_1(model_copy, tmp_path, scenes, write_pictures, capsys):
    import cv2
    import numpy as np

    images, masks = scenes(8, seed=21)
    write_pictures(tmp_path / "images", images)
    (tmp_path / "masks").mkdir()
    for index, mask in enumerate(masks):
        cv2.imwrite(str(tmp_path / "masks" / f"{index:03d}.png"), mask)
    dim = tmp_path / "dim"  # calibration frames far darker than the data: ranges that clip it
    write_pictures(dim, np.random.default_rng(0).integers(0, 40, (8, 32, 32, 3), dtype=np.uint8))
    data = f"index:{tmp_path / 'images'},{tmp_path / 'masks'}?classes=red,green,blue"
    args = parse([str(model_copy), "--images", str(dim), "--target", "cpu", "--format", "qdq", "--data", data,
                  "--subset", "all", "--max-miou-drop", "0.5", "--max-rounds", "1", "--no-progress"])
    assert calibrate_cli.run(args) == 1
    captured = capsys.readouterr()
    assert "accuracy  mIoU float" in captured.out and "over the 0.5 pp budget" in captured.out
    assert "wrote" not in captured.out
    assert "edgeseg calibrate: error: INT8 mIoU drop" in captured.err
    assert not model_copy.with_name("model.int8.onnx").exists()
