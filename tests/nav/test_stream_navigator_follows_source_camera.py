"""`edgeseg stream` builds its navigator for the configured camera, else the source's when it knows it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeseg import cli
from edgeseg.data.world import Camera
from edgeseg.nav import NAV_MODES, NavConfig, Navigator
from edgeseg.robot import Robot


@pytest.fixture
def built(monkeypatch):
    """Records every navigator `edgeseg stream` builds."""
    navigators: list[Navigator] = []
    original = Navigator.from_spec.__func__

    def from_spec(cls, *args, **kwargs):
        navigator = original(cls, *args, **kwargs)
        navigators.append(navigator)
        return navigator

    monkeypatch.setattr(Navigator, "from_spec", classmethod(from_spec))
    return navigators


def test_stream_on_the_synthetic_world_drives_the_camera_adapted_mode(built, tiny_synthetic_onnx, capsys):
    code = cli.main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model", str(tiny_synthetic_onnx),
                     "--mode", "safe", "--max-frames", "2", "--commands", "-", "--no-status"])
    assert code == 0, capsys.readouterr().err
    assert len(capsys.readouterr().out.splitlines()) == 3  # two frames' commands, then the final stop
    assert [n.config for n in built] == [NavConfig.for_camera("safe", Camera(width=48, height=32))]
    assert built[0].config.vanishing_line > 0.0


def test_stream_on_other_sources_drives_the_mode_table(built, tiny_synthetic_onnx, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(2):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((24, 32, 3), 60 * index, np.uint8))
    code = cli.main(["stream", "--source", str(folder), "--model", str(tiny_synthetic_onnx), "--mode", "adventurous",
                     "--commands", "-", "--no-status"])
    assert code == 0, capsys.readouterr().err
    assert len(capsys.readouterr().out.splitlines()) == 3  # two frames' commands, then the final stop
    assert [n.config for n in built] == [NAV_MODES["adventurous"]]


def frame_folder(tmp_path, count=2):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(count):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((24, 32, 3), 60 * index, np.uint8))
    return folder


def test_stream_with_a_configured_camera_drives_in_metres(built, tiny_synthetic_onnx, tmp_path, capsys):
    """A real robot's frames (an image folder) with the camera given by flags over a robot file."""
    robot_file = tmp_path / "car.json"
    robot_file.write_text(json.dumps({"camera_height_m": 0.3, "camera_pitch_deg": 20, "hfov_deg": 60}))
    code = cli.main(["stream", "--source", str(frame_folder(tmp_path)), "--model", str(tiny_synthetic_onnx),
                     "--mode", "balanced", "--robot", str(robot_file), "--hfov", "70", "--car-width", "0.25",
                     "--commands", "-", "--no-status"])
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    robot = Robot(camera_height_m=0.3, camera_pitch_deg=20, hfov_deg=70, car_width_m=0.25)
    navigator = built[0]
    assert navigator.robot == robot
    assert navigator.config == NavConfig.for_camera("balanced", robot.camera(32, 24), 0.25)  # the frames' size
    for line in lines[:2]:
        assert line["clearance_m"] == pytest.approx(navigator.distance_m(line["clearance"]), abs=1e-3)
        assert 0.0 < line["clearance_m"] <= 100.0
    assert lines[-1]["kind"] == "final" and lines[-1]["clearance_m"] is None


@pytest.mark.parametrize("flags, message", [
    (["--camera-height", "0.2"], "missing camera_pitch_deg, hfov_deg"),
    (["--robot", "absent.json"], "robot file absent.json does not exist"),
    (["--camera-height", "0.2", "--camera-pitch", "10", "--hfov", "200"], "hfov_deg=200.0 is outside"),
    (["--no-nav", "--hfov", "60"], "for navigation; drop --no-nav"),
])
def test_stream_rejects_a_bad_robot_in_one_line(tiny_synthetic_onnx, tmp_path, capsys, flags, message):
    code = cli.main(["stream", "--source", str(frame_folder(tmp_path, 1)), "--model", str(tiny_synthetic_onnx),
                     "--no-status", *flags])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err
