"""The closed-loop simulator: oracle and fake perception in real rendered worlds, a tiny real ONNX model, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edgeseg import cli
from edgeseg.data.world import Camera, Pose, World
from edgeseg.errors import EdgesegError
from edgeseg.nav import NavConfig, Navigator
from edgeseg.nav.freespace import FreeSpace
from edgeseg.nav.navigator import CAMERA_MODES
from edgeseg.nav.sim import (
    NAV_MODES,
    Scenario,
    SimConfig,
    format_table,
    perceiver_from_model,
    scenario,
    simulate,
    synthetic_spec,
    trajectory_picture,
)
from edgeseg.nav import sim as sim_module

SMALL = Camera(width=64, height=64)  # same optics as the training camera, fewer pixels
FAST = SimConfig(episodes=2, max_seconds=6.0, camera=SMALL, seed=3)


def all_floor(rgb: np.ndarray) -> np.ndarray:
    """A broken perceiver: everything is floor, even the sky, which no flat floor can be."""
    return np.zeros(rgb.shape[:2], dtype=np.uint8)


def no_obstacles(rgb: np.ndarray) -> np.ndarray:
    """A blind perceiver: floor below the camera's horizon, background above, so the navigator
    drives straight into things."""
    class_map = np.full(rgb.shape[:2], 3, dtype=np.uint8)
    class_map[int(0.45 * rgb.shape[0]):] = 0
    return class_map


def wall_ahead() -> Scenario:
    """An empty 3 x 3 m room, the car 2.4 m from the wall it faces."""
    return Scenario(World(size_m=(3.0, 3.0)), Pose(0.6, 1.5, 0.0), world_seed=-1)


def test_oracle_runs_are_deterministic_and_metrics_consistent():
    first = simulate("oracle", "balanced", FAST, progress=False)
    second = simulate("oracle", "balanced", FAST, progress=False)
    assert first.to_dict(trajectories=True) == second.to_dict(trajectories=True)
    assert len(first.episodes) == 2
    assert sum(e.distance_m for e in first.episodes) > 0.5  # it actually drove
    for episode in first.episodes:
        assert episode.distance_m >= 0.0 and episode.reverse_m >= 0.0
        assert episode.seconds == pytest.approx(episode.steps * FAST.dt)
        speeds = episode.trajectory[:, 3]
        assert speeds.max() <= FAST.max_speed_mps * NAV_MODES["balanced"].max_throttle + 1e-9
        assert speeds.min() >= -FAST.recovery_speed_mps - 1e-9
        assert 0.0 <= episode.mean_speed_mps <= FAST.max_speed_mps
        assert len(episode.trajectory) == episode.steps + 1
        step_lengths = np.hypot(*np.diff(episode.trajectory[:, :2], axis=0).T)
        assert episode.distance_m + episode.reverse_m == pytest.approx(step_lengths.sum(), rel=0.02, abs=1e-6)
        if not episode.collided:
            assert episode.steps == FAST.steps
            assert episode.min_clearance_m > 0.0
    summary = first.summary()
    assert summary["collisions"] == sum(e.collided for e in first.episodes)
    assert summary["distance_m"] == pytest.approx(sum(e.distance_m for e in first.episodes))
    assert summary["distance_per_minute_m"] == pytest.approx(60 * summary["distance_m"] / summary["seconds"])
    assert "balanced" in format_table([first])


def test_seeds_pick_the_worlds_and_starts():
    config = replace(FAST, seed=7)
    a, b = scenario(config, 1), scenario(config, 1)
    assert a.world_seed == 8 and a.start == b.start
    assert scenario(config, 2).world_seed == 9
    assert scenario(config, 2).start != a.start
    assert a.world.clearance(a.start.x, a.start.y) >= config.car_radius_m + config.start_margin_m


def test_modes_drive_the_same_worlds_from_the_same_starts():
    safe = simulate("oracle", "safe", FAST, progress=False)
    adventurous = simulate("oracle", "adventurous", FAST, progress=False)
    for s, a in zip(safe.episodes, adventurous.episodes):
        assert (s.world_seed, s.start) == (a.world_seed, a.start)
        np.testing.assert_array_equal(s.trajectory[0], a.trajectory[0])
    assert not np.array_equal(safe.episodes[0].trajectory, adventurous.episodes[0].trajectory)
    top_speed = lambda report: max(e.trajectory[:, 3].max() for e in report.episodes)  # noqa: E731
    assert top_speed(adventurous) > top_speed(safe)


def test_safe_stops_or_turns_instead_of_hitting_the_wall_ahead():
    config = SimConfig(max_seconds=12.0, camera=SMALL)
    report = simulate("oracle", "safe", config, progress=False, scenarios=[wall_ahead()])
    episode = report.episodes[0]
    assert not episode.collided and report.collisions == 0
    assert episode.min_clearance_m > 0.0
    headings = np.unwrap(episode.trajectory[:, 2])
    assert episode.stopped_s > 0.0 or np.ptp(headings) > math.radians(45)
    assert episode.trajectory[:, 0].max() < 3.0 - config.car_radius_m  # never through the wall
    assert episode.distance_m > 1.0  # it did drive up to the wall first


def test_blind_perception_drives_into_the_wall_and_the_collision_is_counted():
    config = SimConfig(max_seconds=12.0, camera=SMALL)
    report = simulate(no_obstacles, "safe", config, progress=False, scenarios=[wall_ahead()])
    episode = report.episodes[0]
    assert episode.collided and report.collisions == 1
    assert episode.steps < config.steps  # the episode ended at the collision
    x, y = episode.collision_xy
    assert x == pytest.approx(3.0 - config.car_radius_m, abs=0.03)
    assert y == pytest.approx(1.5, abs=0.05)
    assert episode.min_clearance_m <= 0.0
    assert episode.stopped_s == 0.0


def test_floor_in_the_sky_stops_the_camera_navigator_but_not_the_table():
    """A perceiver that calls everything floor claims floor above the vanishing line: the camera
    navigator knows that cannot be and never drives into the wall; the mode table cannot know."""
    config = SimConfig(max_seconds=12.0, camera=SMALL)
    camera = simulate(all_floor, "safe", config, progress=False, scenarios=[wall_ahead()]).episodes[0]
    table = simulate(all_floor, "safe", replace(config, navigator="table"), progress=False,
                     scenarios=[wall_ahead()]).episodes[0]
    assert not camera.collided and camera.distance_m == 0.0 and camera.stopped_s == pytest.approx(12.0)
    assert table.collided


def test_the_car_recovers_from_a_stop_by_backing_away():
    """Start 10 cm from the wall it faces: the car must reverse (never into the wall) and turn."""
    close = Scenario(World(size_m=(3.0, 3.0)), Pose(2.75, 1.5, 0.0), world_seed=-1)
    config = SimConfig(max_seconds=8.0, camera=SMALL, start_margin_m=0.0)
    episode = simulate("oracle", "safe", config, progress=False, scenarios=[close]).episodes[0]
    assert not episode.collided
    assert episode.recoveries >= 1 and episode.reverse_m > 0.1
    assert episode.trajectory[:, 3].min() == pytest.approx(-config.recovery_speed_mps)
    heading_change = abs(math.remainder(episode.trajectory[-1, 2] - episode.trajectory[0, 2], math.tau))
    assert heading_change > math.radians(60)


def floor_row(camera: Camera, distance_m: float) -> float:
    """The image row of the floor straight ahead of the lens at `distance_m`, by the renderer's projection."""
    _, v = camera.project(Pose(0.0, 0.0, 0.0), distance_m, 0.0)
    return float(v)


def row_of_depth(camera: Camera, config: NavConfig, depth: float) -> float:
    top = int(config.horizon * camera.height)
    return camera.height - depth * (camera.height - top)


def test_camera_calibration_stops_where_the_corridor_covers_the_car():
    """At the calibrated balanced/adventurous stop line the image's floor is (car + 2 margins) / 0.9 wide."""
    camera = Camera()
    for mode in ("balanced", "adventurous"):
        config = NavConfig.for_camera(mode, camera, car_width_m=0.3)
        table = NAV_MODES[mode]
        assert config.stop_clearance > table.stop_clearance
        assert config.slow_clearance > config.stop_clearance
        assert config.outside_blocks and config.car_width + 2 * config.margin == pytest.approx(0.9)
        assert (config.max_throttle, config.margin) == (table.max_throttle, table.margin)
        width = (0.3 + 2 * CAMERA_MODES[mode].seen_margin_m) / 0.9
        row = row_of_depth(camera, config, config.stop_clearance)
        ahead = np.linspace(0.02, 2.0, 20000)  # floor points straight ahead, then half the width to the right
        _, v = camera.project(Pose(0.0, 0.0, 0.0), ahead, np.zeros_like(ahead))
        distance = ahead[np.argmin(np.abs(v - row))]
        u_right, _ = camera.project(Pose(0.0, 0.0, 0.0), distance, -width / 2)
        if distance > CAMERA_MODES[mode].stop_m:  # the seen-width line is the farther one
            assert float(u_right) == pytest.approx(camera.width, abs=1.0)
        else:
            assert distance == pytest.approx(CAMERA_MODES[mode].stop_m, abs=0.01)
    stops = [NavConfig.for_camera(mode, camera).stop_clearance for mode in ("safe", "balanced", "adventurous")]
    assert stops[0] > stops[1] > stops[2]


def test_camera_calibration_puts_the_safe_stop_line_in_metres_and_the_vanishing_line():
    camera = Camera()
    config = NavConfig.for_camera("safe", camera)
    metres = CAMERA_MODES["safe"]
    for depth, distance_m in ((config.stop_clearance, metres.stop_m), (config.slow_clearance, metres.slow_m)):
        assert row_of_depth(camera, config, depth) == pytest.approx(floor_row(camera, distance_m), abs=0.5)
    # The floor's vanishing line: where the floor 1 km ahead appears.
    assert config.vanishing_line * camera.height == pytest.approx(floor_row(camera, 1000.0), abs=0.05)
    assert NAV_MODES["safe"].vanishing_line == 0.0  # the table knows no camera
    wide = NavConfig.for_camera("safe", Camera(width=320, height=240))
    assert wide.vanishing_line * 240 == pytest.approx(floor_row(Camera(width=320, height=240), 1000.0), abs=0.05)
    with pytest.raises(EdgesegError, match="hfov_deg"):
        NavConfig.for_camera("safe", object())
    with pytest.raises(EdgesegError, match="reckless"):
        NavConfig.for_camera("reckless", camera)


def test_outside_blocks_keeps_sharp_turns_from_counting_unseen_floor_as_free():
    navigator = Navigator([0], "safe")
    space = navigator.free_space(np.zeros((64, 64), dtype=np.uint8))
    assert space.heading_depth(np.array([0.9]), 0.2, 0.02, 1.0)[0] == 1.0
    # The corridor's right edge, (0.9 h + 1) / 2 + 0.2 of the width, leaves the image at h = 2/3.
    assert space.heading_depth(np.array([0.9]), 0.2, 0.02, 1.0, outside_blocks=True)[0] == pytest.approx(
        2 / 3, abs=0.06)
    assert space.heading_depth(np.array([0.0]), 0.2, 0.02, 1.0, outside_blocks=True)[0] == 1.0


def test_trajectory_picture_marks_collisions(tmp_path):
    config = SimConfig(max_seconds=12.0, camera=SMALL)
    crashed = simulate(no_obstacles, "safe", config, progress=False, scenarios=[wall_ahead()])
    safe = simulate("oracle", "safe", config, progress=False, scenarios=[wall_ahead()])
    pictures = []
    for report, name in ((crashed, "crash.png"), (safe, "safe.png")):
        path = trajectory_picture(report, tmp_path / name, worlds=[wall_ahead().world], cell_px=200)
        image = cv2.imread(str(path))
        assert image is not None and image.shape[1] == 200
        pictures.append(image)
    red_x = lambda image: int(np.count_nonzero(np.all(image == (0, 0, 230), axis=-1)))  # noqa: E731 (BGR)
    assert red_x(pictures[0]) > 20
    assert red_x(pictures[1]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crash.png", "safe.png"]  # no temporary files left
    with pytest.raises(EdgesegError, match="worlds"):
        trajectory_picture(crashed, tmp_path / "x.png", worlds=[])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(EdgesegError, match="safe, balanced, adventurous"):
        simulate("oracle", "reckless", FAST, progress=False)
    with pytest.raises(EdgesegError, match="oracle"):
        simulate("oracel", "safe", FAST, progress=False)
    with pytest.raises(EdgesegError, match="uint8 class map"):
        simulate(lambda rgb: np.zeros((3, 3), np.uint8), "safe", FAST, progress=False)
    with pytest.raises(EdgesegError, match="episodes"):
        SimConfig(episodes=0)
    with pytest.raises(EdgesegError, match="navigator"):
        SimConfig(navigator="mine")


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def sim_cli():
    return cli.main


def test_cli_oracle_writes_json_and_one_picture_per_mode(sim_cli, tmp_path, capsys):
    out = tmp_path / "sim.json"
    code = sim_cli(["sim", "--model", "oracle", "--mode", "safe,adventurous", "--episodes", "1",
                    "--seconds", "2", "--seed", "4", "--json", str(out), "--picture", str(tmp_path / "sim.png")])
    assert code == 0
    table = capsys.readouterr().out
    assert "collisions" in table and "safe" in table and "adventurous" in table
    data = json.loads(out.read_text())
    assert set(data["modes"]) == {"safe", "adventurous"}
    assert [row["mode"] for row in data["summary"]] == ["safe", "adventurous"]
    episode = data["modes"]["safe"]["episodes"][0]
    assert episode["world_seed"] == 4 and episode["steps"] == 20
    assert data["modes"]["safe"]["config"]["seed"] == 4
    assert (tmp_path / "sim_safe.png").is_file() and (tmp_path / "sim_adventurous.png").is_file()


class FakeModel:
    """Stands in for perceiver_from_model: the synthetic classes, blind to obstacles."""

    def __init__(self, path, backend="auto", **options):
        self.spec = synthetic_spec()
        self.name = str(path)
        self.backend_name = "fake"

    def __call__(self, rgb):
        return no_obstacles(rgb)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


def test_cli_max_collisions_gates_the_exit_code(sim_cli, monkeypatch, capsys):
    monkeypatch.setattr(sim_module, "perceiver_from_model", FakeModel)
    argv = ["sim", "--model", "blind.onnx", "--mode", "adventurous", "--episodes", "1", "--seconds", "30"]
    assert sim_cli([*argv, "--max-collisions", "0"]) == 1
    assert "more than 0 collisions: adventurous 1" in capsys.readouterr().err
    assert sim_cli([*argv, "--max-collisions", "1"]) == 0
    assert sim_cli(argv) == 0  # targets are reported, not enforced


def test_cli_rejects_unknown_modes(sim_cli, capsys):
    with pytest.raises(SystemExit):
        sim_cli(["sim", "--model", "oracle", "--mode", "safe,fast"])
    assert "safe, balanced, adventurous" in capsys.readouterr().err


# --- a real model -----------------------------------------------------------------------------


class CountingPerceiver:
    """A real perceiver, counting which of its two ways the simulator asks it to see."""

    def __init__(self, perceive) -> None:
        self.perceive, self.spec, self.name = perceive, perceive.spec, perceive.name
        self.class_maps = self.segments = 0

    def __call__(self, rgb):
        self.class_maps += 1
        return self.perceive(rgb)

    def segment(self, rgb):
        self.segments += 1
        return self.perceive.segment(rgb)


def test_a_real_onnx_model_drives_an_episode(tiny_synthetic_onnx):
    from edgeseg.runtime import Segmenter

    config = SimConfig(episodes=1, max_seconds=1.0, camera=SMALL, seed=2)
    with perceiver_from_model(tiny_synthetic_onnx) as perceive:
        assert perceive.backend_name == "onnxruntime"
        report = simulate(perceive, "safe", config, progress=False)
        world = scenario(config, 0)
        rgb, _ = world.world.render(world.start, SMALL)
        with Segmenter.open(tiny_synthetic_onnx) as segmenter:
            np.testing.assert_array_equal(perceive(rgb), segmenter.seg(rgb).class_map)
        seen = perceive.segment(rgb)
        np.testing.assert_array_equal(seen.class_map, perceive(rgb))
        assert seen.probabilities.shape[2] == len(perceive.spec.class_names)
        # Safe mode weighs the model's floor probability on every frame; adventurous only its class map.
        counting = CountingPerceiver(perceive)
        safe = simulate(counting, "safe", config, progress=False)
        assert counting.segments == safe.episodes[0].steps and counting.class_maps == 0
        counting = CountingPerceiver(perceive)
        adventurous = simulate(counting, "adventurous", config, progress=False)
        assert counting.segments == 0 and counting.class_maps == adventurous.episodes[0].steps
    episode = report.episodes[0]
    assert report.perception == str(tiny_synthetic_onnx)
    assert episode.steps == config.steps or episode.collided
    assert len(episode.trajectory) == episode.steps + 1
    assert np.isfinite(episode.trajectory).all()


def measured_corridor_width(navigator: Navigator, rows: int, cols: int, row: int) -> float:
    """The width of the navigator's straight-ahead corridor at grid `row`, fraction of the image width.

    Measured, not recomputed: a single obstacle cell is placed in each column of that row in turn;
    the corridor is the set of columns where the cell stops the straight-ahead heading at that row.
    """
    blocked_columns = 0
    for col in range(cols):
        obstacles = np.zeros((rows + 1, cols), np.int64)
        obstacles[rows] = 1  # the horizon row ends every corridor
        obstacles[row, col] = 1
        counts = np.concatenate([np.zeros((rows + 1, 1), np.int64), np.cumsum(obstacles, axis=1)], axis=1)
        space = FreeSpace(column_depth=np.ones(cols, np.float32), column_free=np.ones(cols, np.float32),
                          implausible=np.zeros(cols, bool), row_counts=counts, classified=1.0, traversable=1.0,
                          fragmentation=0.0)
        depth = navigator._corridor_depth(space, np.array([0.0], np.float32))[0]
        blocked_columns += bool(depth == pytest.approx(row / rows))
    return blocked_columns / cols


def test_camera_corridor_is_never_narrower_than_the_cars_path():
    """Where the corridor narrows (stop line to horizon) it still covers the car plus the seen margins:
    the corridor measured on a free-space grid, the path measured with the renderer's projection."""
    camera = Camera()
    rows, cols = 64, 256
    for mode in ("safe", "adventurous"):
        # one obstacle cell must be enough to block (min_obstacle_width does not move the corridor's edges)
        config = replace(NavConfig.for_camera(mode, camera, car_width_m=0.3), min_obstacle_width=0.0)
        navigator = Navigator([0], mode, config)
        path_m = 0.3 + 2 * CAMERA_MODES[mode].seen_margin_m
        first = math.ceil(config.narrow_from * rows)
        for row in range(first, rows, 5):
            depth = row / rows
            image_row = row_of_depth(camera, config, depth)
            ahead = np.linspace(0.05, 50.0, 200000)
            _, v = camera.project(Pose(0.0, 0.0, 0.0), ahead, np.zeros_like(ahead))
            distance = ahead[np.argmin(np.abs(v - image_row))]
            u_left, _ = camera.project(Pose(0.0, 0.0, 0.0), distance, path_m / 2)
            u_right, _ = camera.project(Pose(0.0, 0.0, 0.0), distance, -path_m / 2)
            path = (float(u_right) - float(u_left)) / camera.width
            corridor = measured_corridor_width(navigator, rows, cols, row)
            bottom = config.car_width + 2 * config.margin  # the corridor only narrows from the bumper on
            assert path - 2.0 / cols <= corridor <= bottom + 2.0 / cols, (mode, depth, corridor, path)


def test_reversing_never_brings_the_car_nearer_than_the_rear_margin():
    """Backing towards the wall behind: the rear sensor stops it at the margin, it never squeezes closer."""
    config = SimConfig(camera=SMALL)
    world = World(size_m=(3.0, 3.0))
    pose = Pose(config.car_radius_m + 0.1, 1.5, 0.0)  # facing away from the wall, 10 cm behind
    clearance = float(world.clearance(pose.x, pose.y))
    gaps = []
    for _ in range(40):
        moved = sim_module._reverse(world, pose, clearance, 1.0, config)
        if moved is None:
            break
        pose, clearance = moved
        gaps.append(clearance - config.car_radius_m)
    assert gaps and min(gaps) >= config.rear_margin_m - 1e-9
    assert min(gaps) < 0.1  # it did back towards the wall
