"""The navigator on synthetic class maps built here: directions, stops, modes, smoothing, bad input."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.nav import NAV_MODES, REASONS, Command, NavConfig, Navigator
from edgeseg.nav.draw import draw_command
from edgeseg.spec import ModelSpec

FLOOR, OBSTACLE, WALL, BACKGROUND = 0, 1, 2, 3
SIZE = 64
MODES = tuple(NAV_MODES)


def scene(size: int = SIZE) -> np.ndarray:
    """Floor below the middle of the frame, background above."""
    class_map = np.full((size, size), BACKGROUND, dtype=np.uint8)
    class_map[size // 3 :] = FLOOR
    return class_map


def put(class_map: np.ndarray, cls: int, near: float, far: float, left: float, right: float) -> np.ndarray:
    """Paint a block given as ground depths (0 = bottom row, 1 = horizon) and width fractions."""
    height, width = class_map.shape
    top = int(NavConfig().horizon * height)
    rows = height - top
    row_slice = slice(round(height - far * rows), round(height - near * rows))
    class_map[row_slice, round(left * width) : round(right * width)] = cls
    return class_map


def step_once(class_map: np.ndarray, mode: str = "balanced") -> Command:
    return Navigator([FLOOR], mode).step(class_map)


def check_command(command: Command) -> None:
    assert type(command) is Command
    for name in ("steering", "throttle", "clearance", "confidence"):
        assert type(getattr(command, name)) is float, name
    assert type(command.stop) is bool
    assert -1.0 <= command.steering <= 1.0
    assert 0.0 <= command.throttle <= 1.0
    assert 0.0 <= command.clearance <= 1.0
    assert 0.0 <= command.confidence <= 1.0
    assert command.reason in REASONS
    if command.stop:
        assert command.throttle == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_open_floor_drives_straight_near_top_speed(mode):
    command = step_once(scene(), mode)
    check_command(command)
    assert abs(command.steering) < 0.05
    assert not command.stop
    assert command.reason == "clear"
    assert command.clearance == 1.0
    assert command.confidence > 0.95
    assert command.throttle >= 0.95 * NAV_MODES[mode].max_throttle


@pytest.mark.parametrize("mode", MODES)
def test_obstacle_near_the_bottom_left_steers_right_and_right_steers_left(mode):
    left = step_once(put(scene(), OBSTACLE, 0.0, 0.6, 0.0, 0.45), mode)
    right = step_once(put(scene(), OBSTACLE, 0.0, 0.6, 0.55, 1.0), mode)
    check_command(left)
    check_command(right)
    assert left.steering > 0.3
    assert right.steering < -0.3
    assert left.steering == pytest.approx(-right.steering)


def test_obstacle_ahead_left_is_avoided_while_driving():
    """The adventurous corridor fits right of an obstacle that starts a little ahead."""
    command = step_once(put(scene(), OBSTACLE, 0.15, 0.7, 0.0, 0.38), "adventurous")
    check_command(command)
    assert not command.stop
    assert 0.2 < command.steering <= 1.0
    assert command.clearance > 0.9
    mirrored = step_once(put(scene(), OBSTACLE, 0.15, 0.7, 0.62, 1.0), "adventurous")
    assert mirrored.steering == pytest.approx(-command.steering)


@pytest.mark.parametrize("mode", MODES)
def test_wall_across_the_bottom_stops(mode):
    command = step_once(put(scene(), WALL, 0.0, 0.5, 0.0, 1.0), mode)
    check_command(command)
    assert command.stop
    assert command.throttle == 0.0
    assert command.reason == "blocked"
    assert command.clearance < NAV_MODES[mode].stop_clearance


def test_stopped_car_steers_towards_the_side_with_more_floor():
    wall = put(scene(), WALL, 0.0, 0.3, 0.0, 1.0)
    more_floor_left = put(wall.copy(), WALL, 0.0, 0.9, 0.5, 1.0)
    more_floor_right = put(wall.copy(), WALL, 0.0, 0.9, 0.0, 0.5)
    left, right = step_once(more_floor_left), step_once(more_floor_right)
    assert left.stop and right.stop
    assert left.steering == -1.0
    assert right.steering == 1.0


def test_mode_throttle_order_for_a_distant_obstacle():
    band = put(scene(), OBSTACLE, 0.45, 0.6, 0.0, 1.0)
    throttles = [step_once(band, mode).throttle for mode in ("safe", "balanced", "adventurous")]
    assert 0.0 < throttles[0] < throttles[1] < throttles[2]


def test_safe_stops_where_adventurous_drives_on():
    near_band = put(scene(), OBSTACLE, 0.28, 0.4, 0.0, 1.0)
    safe, balanced, adventurous = (step_once(near_band, mode) for mode in ("safe", "balanced", "adventurous"))
    assert safe.stop and safe.reason == "blocked"
    assert not adventurous.stop and adventurous.throttle > 0.0
    assert not balanced.stop


def test_margins_decide_who_fits_through_a_narrow_passage():
    """A straight passage 0.42 of the width: adventurous (0.34) and balanced (0.40) fit, safe (0.46) not."""
    passage = put(put(scene(), WALL, 0.0, 1.0, 0.0, 0.29), WALL, 0.0, 1.0, 0.71, 1.0)
    assert step_once(passage, "safe").stop
    for mode in ("balanced", "adventurous"):
        command = step_once(passage, mode)
        assert not command.stop, mode
        assert abs(command.steering) < 0.1


def test_steering_changes_gradually_and_reset_forgets():
    navigator = Navigator([FLOOR], "balanced")
    config = navigator.config
    left_blocked = put(scene(), OBSTACLE, 0.0, 0.6, 0.0, 0.45)
    right_blocked = put(scene(), OBSTACLE, 0.0, 0.6, 0.55, 1.0)
    for _ in range(5):
        settled = navigator.step(left_blocked)
    assert settled.steering == 1.0
    steerings = [navigator.step(right_blocked).steering for _ in range(12)]
    deltas = np.diff([settled.steering, *steerings])
    assert np.all(deltas <= 0.0)
    assert np.all(np.abs(deltas) <= config.max_steering_step + 1e-6)
    assert steerings[0] > 0.5  # one frame later the car still turns right
    assert steerings[-1] < -0.9  # and it gets there

    navigator.reset()
    assert navigator.step(right_blocked) == Navigator([FLOOR], "balanced").step(right_blocked)


def test_throttle_rises_gently_and_brakes_at_once():
    navigator = Navigator([FLOOR], "balanced")
    rise = navigator.config.max_throttle_rise
    held = navigator.config.free_frames - 1  # frames the wall is still remembered
    wall = put(scene(), WALL, 0.0, 0.5, 0.0, 1.0)
    assert navigator.step(wall).throttle == 0.0
    throttles = [navigator.step(scene()).throttle for _ in range(10 + held)]
    assert throttles[:held] == [0.0] * held
    throttles = throttles[held:]
    assert throttles[0] == pytest.approx(rise)
    assert np.all(np.diff([0.0, *throttles]) <= rise + 1e-9)
    assert throttles[-1] == pytest.approx(navigator.config.max_throttle)  # steering settled at 0
    braked = navigator.step(wall)
    assert braked.stop and braked.throttle == 0.0


def test_step_is_pure_given_the_previous_command():
    class_map = put(scene(), OBSTACLE, 0.3, 0.5, 0.3, 0.6)
    before = class_map.copy()
    first = Navigator([FLOOR]).step(class_map)
    navigator = Navigator([FLOOR])
    navigator.step(scene())
    navigator.reset()
    assert navigator.step(class_map) == first
    np.testing.assert_array_equal(class_map, before)


def test_every_path_returns_a_command_in_range():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 40), (40, 1), (3, 5), (64, 64), (97, 31), (480, 640)]
    for mode in MODES:
        navigator = Navigator([FLOOR, 4], mode)
        reasons = set()
        for index in range(60):
            shape = shapes[index % len(shapes)]
            kind = index % 6
            if kind == 0:
                class_map = rng.integers(0, 6, size=shape, dtype=np.uint8)
            elif kind == 1:
                class_map = np.full(shape, 255, dtype=np.uint8)
            elif kind == 2:
                class_map = np.full(shape, FLOOR, dtype=np.uint8)
                navigator.reset()  # free space must last free_frames frames: start afresh to see "clear"
            elif kind == 3:
                class_map = np.full(shape, WALL, dtype=np.uint8)
            else:
                class_map = np.full(shape, FLOOR, dtype=np.uint8)
                h, w = shape
                top, left = rng.integers(0, h), rng.integers(0, w)
                class_map[top : top + rng.integers(1, h + 1), left : left + rng.integers(1, w + 1)] = OBSTACLE
            command = navigator.step(class_map)
            check_command(command)
            reasons.add(command.reason)
        assert {"clear", "blocked", "no ground"} <= reasons


def test_confidence_is_lower_for_noisy_and_fragmented_maps():
    rng = np.random.default_rng(1)
    clean = put(scene(), OBSTACLE, 0.4, 0.7, 0.1, 0.4)
    noisy = clean.copy()
    noisy[rng.random(noisy.shape) < 0.1] = OBSTACLE
    checkerboard = np.indices((SIZE, SIZE)).sum(axis=0).astype(np.uint8) % 2  # floor/obstacle
    half_unclassified = clean.copy()
    half_unclassified[:, SIZE // 2 :] = 255
    clean_c, noisy_c, checker_c, half_c = (
        step_once(m) for m in (clean, noisy, checkerboard, half_unclassified)
    )
    assert clean_c.confidence > 0.9
    assert clean_c.confidence > noisy_c.confidence + 0.2
    assert noisy_c.confidence > checker_c.confidence
    assert checker_c.confidence == 0.0
    assert checker_c.stop and checker_c.reason == "uncertain"
    assert 0.35 < half_c.confidence < 0.6
    nothing = step_once(np.full((SIZE, SIZE), 255, dtype=np.uint8))
    assert nothing.stop and nothing.reason == "no ground" and nothing.confidence == 0.0


def test_a_lone_misclassified_pixel_is_not_an_obstacle():
    speck = scene()
    speck[SIZE - 8, SIZE // 2] = OBSTACLE
    command = step_once(speck)
    assert command.clearance == 1.0 and not command.stop


def test_large_class_maps_give_the_same_decisions():
    small = put(scene(), OBSTACLE, 0.0, 0.6, 0.0, 0.45)
    large = np.repeat(np.repeat(small, 12, axis=0), 16, axis=1)  # 768 x 1024
    a, b = step_once(small), step_once(large)
    assert (a.stop, a.reason, np.sign(a.steering)) == (b.stop, b.reason, np.sign(b.steering))
    band = put(scene(), OBSTACLE, 0.45, 0.6, 0.0, 1.0)
    assert step_once(band).clearance == pytest.approx(
        step_once(np.repeat(np.repeat(band, 8, axis=0), 8, axis=1)).clearance, abs=0.05
    )


def test_from_spec_drives_on_the_spec_traversable_classes():
    spec = ModelSpec(
        class_names=("floor", "obstacle", "wall", "background"), input_height=32, input_width=32,
        traversable=("floor",),
    )
    navigator = Navigator.from_spec(spec, "adventurous")
    assert navigator.traversable == (FLOOR,)
    assert navigator.mode == "adventurous"
    assert navigator.config == NAV_MODES["adventurous"]
    assert not navigator.step(scene()).stop
    assert navigator.step(np.full((SIZE, SIZE), BACKGROUND, dtype=np.uint8)).reason == "no ground"
    with pytest.raises(EdgesegError, match="traversable"):
        Navigator.from_spec(spec.replace(traversable=()))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((SIZE, SIZE), dtype=np.float32),
        np.zeros((SIZE, SIZE, 3), dtype=np.uint8),
        np.zeros((0, SIZE), dtype=np.uint8),
        [[0, 0], [0, 0]],
        None,
    ],
)
def test_bad_class_maps_raise(bad):
    with pytest.raises(EdgesegError, match="class map"):
        Navigator([FLOOR]).step(bad)


def test_bad_construction_raises_with_a_useful_message():
    with pytest.raises(EdgesegError, match="safe, balanced, adventurous"):
        Navigator([FLOOR], "reckless")
    with pytest.raises(EdgesegError, match="at least one traversable"):
        Navigator([])
    with pytest.raises(EdgesegError, match=r"\[255\]"):
        Navigator([FLOOR, 255])
    with pytest.raises(EdgesegError, match="stop_clearance"):
        NavConfig(stop_clearance=0.9, slow_clearance=0.5)
    with pytest.raises(EdgesegError, match="corridor"):
        NavConfig(car_width=0.8, margin=0.1)
    with pytest.raises(EdgesegError, match="horizon"):
        NavConfig(horizon=1.5)


def test_config_overrides_the_mode_table():
    slow = dataclasses.replace(NAV_MODES["adventurous"], max_throttle=0.2)
    navigator = Navigator([FLOOR], "adventurous", slow)
    assert navigator.step(scene()).throttle == pytest.approx(0.2)


def test_modes_table_orders_margins_stops_and_speeds():
    safe, balanced, adventurous = NAV_MODES["safe"], NAV_MODES["balanced"], NAV_MODES["adventurous"]
    assert safe.margin > balanced.margin > adventurous.margin
    assert safe.stop_clearance > balanced.stop_clearance > adventurous.stop_clearance
    assert safe.max_throttle < balanced.max_throttle < adventurous.max_throttle
    assert safe.max_steering_step < balanced.max_steering_step < adventurous.max_steering_step
    assert safe.free_frames > balanced.free_frames > adventurous.free_frames == 1


def test_draw_command_draws_on_a_copy():
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    command = step_once(put(scene(), OBSTACLE, 0.0, 0.6, 0.0, 0.45))
    drawn = draw_command(image, command)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert drawn.any() and not image.any()
    assert drawn[..., 0].sum() > drawn[..., 1].sum()  # stopped: drawn in red
    with pytest.raises(EdgesegError, match="RGB uint8"):
        draw_command(np.zeros((48, 64), dtype=np.uint8), command)


# --- free space must persist; floor above the vanishing line is not floor -----------------------


def test_flickering_free_space_never_starts_the_safe_car():
    """A wall that the model misses every other frame keeps the car stopped; free space that lasts starts it."""
    navigator = Navigator([FLOOR], "safe")
    assert navigator.config.free_frames == 3
    wall = put(scene(), WALL, 0.0, 0.5, 0.0, 1.0)
    flicker = [navigator.step(wall if index % 2 == 0 else scene()) for index in range(11)]  # ends on the wall
    assert all(command.stop and command.throttle == 0.0 for command in flicker)
    assert {command.reason for command in flicker} == {"blocked"}
    lasting = [navigator.step(scene()) for _ in range(3)]
    assert [command.stop for command in lasting] == [True, True, False]
    assert lasting[-1].clearance == 1.0 and lasting[-1].throttle > 0.0


def test_one_blocked_frame_stops_a_driving_car_at_once():
    navigator = Navigator([FLOOR], "safe")
    for _ in range(5):
        driving = navigator.step(scene())
    assert not driving.stop and driving.throttle > 0.0
    braked = navigator.step(put(scene(), WALL, 0.0, 0.5, 0.0, 1.0))
    assert braked.stop and braked.throttle == 0.0
    navigator.reset()  # a new place: the old wall is forgotten
    assert not navigator.step(scene()).stop


def test_adventurous_trusts_a_single_frame():
    navigator = Navigator([FLOOR], "adventurous")
    assert navigator.step(put(scene(), WALL, 0.0, 0.5, 0.0, 1.0)).stop
    assert not navigator.step(scene()).stop


def above_line_scene(floor_top: float) -> np.ndarray:
    """Floor from 0.42 of the height down, plus a band of "floor" in the middle columns up to `floor_top`."""
    class_map = np.full((SIZE, SIZE), WALL, dtype=np.uint8)
    class_map[round(0.42 * SIZE):] = FLOOR
    class_map[round(floor_top * SIZE):, round(0.35 * SIZE):round(0.65 * SIZE)] = FLOOR
    return class_map


def test_floor_above_the_vanishing_line_blocks_its_columns():
    """A wall seen close up whose lower part the model calls floor, reaching above the floor's
    vanishing line: physically impossible on a flat floor, so those columns are blocked."""
    knows = dataclasses.replace(NAV_MODES["safe"], vanishing_line=0.4)
    impossible = above_line_scene(0.2)
    blind = Navigator([FLOOR], "safe").step(impossible)
    assert not blind.stop and blind.clearance == 1.0  # without a camera nothing looks wrong
    navigator = Navigator([FLOOR], "safe", knows)
    space = navigator.free_space(impossible)
    cols = space.implausible.shape[0]
    assert space.implausible[round(0.4 * cols):round(0.6 * cols)].all()
    assert not space.implausible[: round(0.3 * cols)].any() and not space.implausible[round(0.7 * cols):].any()
    assert np.all(space.column_depth[round(0.45 * cols):round(0.55 * cols)] == 0.0)
    command = navigator.step(impossible)
    check_command(command)
    assert command.stop and command.reason == "blocked" and command.clearance == 0.0


def test_floor_just_under_the_vanishing_line_is_plausible():
    """Far floor reaches up to the vanishing line (a blurred boundary a little above it is tolerated)."""
    knows = dataclasses.replace(NAV_MODES["safe"], vanishing_line=0.4, vanishing_margin=0.03)
    for floor_top in (0.42, 0.39):
        command = Navigator([FLOOR], "safe", knows).step(above_line_scene(floor_top))
        assert not command.stop and command.clearance == 1.0, floor_top
    assert Navigator([FLOOR], "safe", knows).step(above_line_scene(0.3)).stop


def test_floor_patches_floating_high_in_a_wall_block_their_columns():
    knows = dataclasses.replace(NAV_MODES["adventurous"], vanishing_line=0.4)
    patchy = above_line_scene(0.42)
    patchy[5:12, 20:44] = FLOOR  # a floor-coloured patch high on the wall
    navigator = Navigator([FLOOR], "adventurous", knows)
    assert navigator.free_space(patchy).implausible.sum() > 0
    assert navigator.step(patchy).stop


def test_from_spec_with_a_camera_adapts_the_mode_to_it():
    spec = ModelSpec(class_names=("floor", "obstacle", "wall", "background"), input_height=32, input_width=32,
                     traversable=("floor",))
    camera = SimpleNamespace(width=64, height=64, hfov_deg=90.0, mount_height_m=0.12, pitch_deg=10.0)
    navigator = Navigator.from_spec(spec, "safe", camera=camera)
    assert navigator.config == NavConfig.for_camera("safe", camera)
    assert navigator.config.vanishing_line > 0.0 and navigator.config.outside_blocks
    assert navigator.config.stop_clearance > NAV_MODES["safe"].stop_clearance
    assert not navigator.step(above_line_scene(0.42)).stop
    assert navigator.step(scene()).stop  # floor above the vanishing line (0.41 of the height)
    with pytest.raises(EdgesegError, match="not both"):
        Navigator.from_spec(spec, "safe", NAV_MODES["safe"], camera=camera)
    with pytest.raises(EdgesegError, match="forward camera"):
        Navigator.from_spec(spec, "safe", camera=SimpleNamespace(width=64, height=64, hfov_deg=90.0,
                                                                  mount_height_m=0.0, pitch_deg=10.0))


def camera_scene() -> np.ndarray:
    """Floor below 0.42 of the height (under the vanishing line of CAMERA), wall above."""
    class_map = np.full((SIZE, SIZE), WALL, dtype=np.uint8)
    class_map[round(0.42 * SIZE):] = FLOOR
    return class_map


CAMERA = SimpleNamespace(width=SIZE, height=SIZE, hfov_deg=90.0, mount_height_m=0.12, pitch_deg=10.0)


def test_the_camera_corridor_narrows_above_the_stop_line_only():
    """Beyond the stop line things beside the path do not shorten the clearance; below it they stop the car."""
    config = NavConfig.for_camera("safe", CAMERA)
    assert config.narrow_from == config.stop_clearance and config.far_width < 0.3
    wide = dataclasses.replace(config, far_width=1.0)
    beside_far = put(camera_scene(), OBSTACLE, 0.9, 0.97, 0.0, 0.15)
    assert Navigator([FLOOR], "safe", config).step(beside_far).clearance == 1.0
    assert Navigator([FLOOR], "safe", wide).step(beside_far).clearance < 0.95
    ahead_far = put(camera_scene(), OBSTACLE, 0.9, 0.97, 0.4, 0.6)
    assert Navigator([FLOOR], "safe", config).step(ahead_far).clearance < 0.95
    beside_near = put(camera_scene(), OBSTACLE, 0.6, 0.7, 0.0, 0.15)
    command = Navigator([FLOOR], "safe", config).step(beside_near)
    assert command.stop and command.reason == "blocked"


def test_safe_mode_blocks_floor_the_model_is_unsure_of():
    """A wall's lower band called floor, but with a low floor probability: safe stops, the others
    (and safe without probabilities) drive on the class map as before."""
    class_map = scene()
    probability = np.ones(class_map.shape, dtype=np.float32)
    put(probability, 0, 0.0, 0.3, 0.3, 0.7)  # doubtful floor right ahead: probability 0
    probability[probability == 0] = 0.6
    sure = dataclasses.replace(NAV_MODES["safe"], min_free_probability=0.9)
    assert NAV_MODES["safe"].min_free_probability > 0.6
    blocked = Navigator([FLOOR], "safe").step(class_map, probability)
    check_command(blocked)
    assert blocked.stop and blocked.reason == "blocked" and blocked.clearance == 0.0
    assert not Navigator([FLOOR], "safe").step(class_map).stop
    assert Navigator([FLOOR], "safe", sure).step(class_map, probability).stop
    for mode in ("balanced", "adventurous"):
        assert NAV_MODES[mode].min_free_probability == 0.0
        with_probability = Navigator([FLOOR], mode).step(class_map, probability)
        assert with_probability == Navigator([FLOOR], mode).step(class_map)
        assert not with_probability.stop
    # Sure floor everywhere: the same command as without probabilities.
    assert (Navigator([FLOOR], "safe").step(class_map, np.ones((16, 16), np.float32))
            == Navigator([FLOOR], "safe").step(class_map))


def test_free_probability_sums_the_traversable_classes_and_is_resized():
    navigator = Navigator([FLOOR, WALL], "safe")
    probabilities = np.zeros((8, 8, 4), dtype=np.float32)
    probabilities[..., FLOOR], probabilities[..., WALL], probabilities[..., OBSTACLE] = 0.5, 0.25, 0.25
    free = navigator.free_probability(probabilities)
    assert free.shape == (8, 8) and free.dtype == np.float32 and np.allclose(free, 0.75)
    coarse = np.ones((8, 8), dtype=np.float32)
    coarse[4:, 2:6] = 0.1  # the bottom centre quarter, at 8x8: doubtful
    space = navigator.free_space(scene(), coarse)
    cols = space.column_depth.shape[0]
    assert np.all(space.column_depth[cols // 4 + 3: 3 * cols // 4 - 3] == 0.0)
    assert np.all(space.column_depth[: cols // 4 - 3] > 0.5)
    with pytest.raises(EdgesegError, match="HxWxC class probabilities"):
        navigator.free_probability(np.zeros((8, 8, 2), dtype=np.float32))  # no channel for WALL
    with pytest.raises(EdgesegError, match="free_probability as an HxW array"):
        navigator.step(scene(), np.ones((8, 8, 1), dtype=np.float32))
