"""The robot-level camera model: metres on a real robot as in simulation, commands unchanged."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.nav import CAMERA_MODES, Navigator
from edgeseg.nav.sim import synthetic_spec
from edgeseg.robot import Camera, Pose, Robot, load_robot, resolve_robot, step_pose

RECORDED = Path(__file__).parent / "data" / "synthetic_drive_commands.json"
FLOOR, WALL = 0, 2


def test_commands_on_a_recorded_synthetic_drive_are_unchanged():
    """Commands recorded before the navigator took a Robot (camera= path), replayed through robot=."""
    from edgeseg.world import World

    recorded = json.loads(RECORDED.read_text())
    camera = Camera(**recorded["camera"])
    robot = Robot.from_camera(camera)
    spec = synthetic_spec(camera)
    for mode, expected in recorded["modes"].items():
        world = World.generate(recorded["seed"])
        pose = world.random_free_pose(np.random.default_rng(recorded["seed"]))
        navigator = Navigator.from_spec(spec, mode, robot=robot)
        commands = []
        for _ in range(recorded["frames"]):
            _, mask = world.render(pose, camera)
            command = navigator.step(mask)
            commands.append({key: value for key, value in dataclasses.asdict(command).items() if key != "clearance_m"})
            assert command.clearance_m == navigator.distance_m(command.clearance) > 0.0
            if command.stop:  # turn in place towards the side it points to
                pose = Pose(pose.x, pose.y, pose.heading - recorded["turn_rad"] * command.steering)
            else:
                pose = step_pose(pose, command.steering, recorded["speed_mps"] * command.throttle, recorded["dt"])
        assert commands == expected, mode
        assert {c["reason"] for c in commands} >= {"clear", "slowing", "blocked"}  # the drive exercises them


def floor_row(height_m: float, pitch_deg: float, hfov_deg: float, width: int, height: int, distance_m: float) -> float:
    """The image row (continuous, from the top) where the floor `distance_m` ahead of the lens shows."""
    focal = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    pitch = math.radians(pitch_deg)
    below = math.atan2(height_m, distance_m) - pitch  # angle below the optical axis
    return height / 2 + focal * math.tan(below)


@pytest.mark.parametrize("distance_m, stops", [(0.3, True), (0.55, False)])
def test_a_configured_camera_gives_clearance_and_stops_in_metres(distance_m, stops):
    """Floor up to the row where a wall stands `distance_m` ahead, on a 25 cm high camera pitched 15 degrees."""
    robot = Robot(camera_height_m=0.25, camera_pitch_deg=15.0, hfov_deg=70.0, car_width_m=0.2)
    width, height = 128, 96
    row = floor_row(0.25, 15.0, 70.0, width, height, distance_m)
    class_map = np.full((height, width), WALL, np.uint8)
    class_map[int(round(row)):] = FLOOR
    spec = synthetic_spec(Camera(width=width, height=height))
    navigator = Navigator.from_spec(spec, "safe", robot=robot)
    command = navigator.step(class_map)
    # One analysis row of 96 is about 1.5 cm of floor here.
    assert command.clearance_m == pytest.approx(distance_m, abs=0.03)
    assert navigator.distance_m(navigator.config.stop_clearance) == pytest.approx(CAMERA_MODES["safe"].stop_m, abs=0.03)
    assert command.stop is stops
    assert command.reason == ("blocked" if stops else "slowing")


def test_the_navigator_adapts_to_the_class_map_size():
    robot = Robot(camera_height_m=0.12, camera_pitch_deg=10.0, hfov_deg=90.0)
    spec = synthetic_spec()
    navigator = Navigator.from_spec(spec, "balanced", robot=robot)
    small = np.zeros((48, 64), np.uint8)
    navigator.step(small)
    assert navigator.config.vanishing_line == pytest.approx(
        Navigator.from_spec(spec, "balanced", camera=robot.camera(64, 48)).config.vanishing_line)
    navigator.step(np.zeros((64, 64), np.uint8))
    assert navigator.config == Navigator.from_spec(spec, "balanced", camera=robot.camera(64, 64)).config
    assert Navigator.from_spec(spec, "balanced").distance_m(0.5) is None  # no camera, no metres


def test_robot_from_flags_file_and_source(tmp_path):
    synthetic = Robot.from_camera(Camera())
    assert resolve_robot() is None
    assert resolve_robot(fallback=synthetic) == synthetic
    assert resolve_robot(fallback=synthetic, camera_pitch_deg=5.0).camera_pitch_deg == 5.0
    path = tmp_path / "car.json"
    path.write_text(json.dumps({"camera_height_m": 0.2, "camera_pitch_deg": 12, "hfov_deg": 62.2}))
    assert load_robot(path) == Robot(0.2, 12, 62.2, 0.3)
    assert resolve_robot(path, fallback=synthetic, hfov_deg=70.0) == Robot(0.2, 12, 70.0, 0.3)  # flag > file > source
    assert resolve_robot(camera_height_m=0.1, camera_pitch_deg=0.0, hfov_deg=90.0) == Robot(0.1, 0.0, 90.0)
    with pytest.raises(EdgesegError, match="missing camera_pitch_deg, hfov_deg"):
        resolve_robot(camera_height_m=0.1)
    path.write_text(json.dumps({"camera_height_m": 0.2, "pitch": 12}))
    with pytest.raises(EdgesegError, match="unknown key.*pitch; missing camera_pitch_deg, hfov_deg"):
        load_robot(path)
    path.write_text("{")
    with pytest.raises(EdgesegError, match="not readable JSON"):
        load_robot(path)
    with pytest.raises(EdgesegError, match="does not exist"):
        load_robot(tmp_path / "none.json")
    with pytest.raises(EdgesegError, match="camera_height_m=-0.1 is outside"):
        Robot(-0.1, 10.0, 90.0)


def test_the_simulator_and_the_synthetic_source_drive_one_car():
    from edgeseg.nav.sim import SimConfig
    from edgeseg.stream.sources import SyntheticSource

    with SyntheticSource(size="48x32", realtime=False) as source:
        assert source.car == SimConfig().car
        pose = source.pose
        source.read()
        _, mask = source.world.render(source.car.camera_pose(pose), source.camera)  # the camera at the bumper
        np.testing.assert_array_equal(source.last_mask, mask)
        assert not np.array_equal(mask, source.world.render(pose, source.camera)[1])  # not from the footprint's centre
