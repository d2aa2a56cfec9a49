"""`calibrate`'s settings: a `CalibrationOptions`, its fields by keyword, or both (keywords win)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.calib import CalibrationOptions, ImageFolder, calibrate
from edgeseg.errors import EdgesegError


def test_keywords_override_the_options_object(model_copy: Path, calib_images: Path, tmp_path: Path) -> None:
    options = CalibrationOptions(fmt="qdq", num_frames=4, measure_ops=False, progress=False)
    output = tmp_path / "chosen.int8.onnx"
    report = calibrate(model_copy, ImageFolder(calib_images), options, num_frames=8, output=output,
                       warn=lambda message: None)
    assert (report.format, report.frames, report.output) == ("qdq", 8, output)
    assert output.is_file()
    assert report.account is None  # measure_ops=False came from the options object


def test_unknown_setting_is_refused_before_any_work(model_copy: Path, calib_images: Path) -> None:
    with pytest.raises(TypeError, match="num_frame"):
        calibrate(model_copy, ImageFolder(calib_images), num_frame=8)
    assert sorted(p.name for p in model_copy.parent.iterdir()) == [model_copy.name]


@pytest.mark.parametrize("settings, message", [
    ({"target": "gpu"}, "unknown target 'gpu'"),
    ({"method": "mse"}, "unknown calibration method"),
    ({"target": "tensorrt", "fmt": "qoperator"}, "qoperator is a CPU layout"),
    ({"max_miou_drop": -1.0}, "must be >= 0"),
    ({"max_miou_drop": 0.5, "max_rounds": 0}, "--max-rounds 0 must be at least 1"),
])
def test_check_refuses_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(EdgesegError, match=message):
        CalibrationOptions(**settings).check()
