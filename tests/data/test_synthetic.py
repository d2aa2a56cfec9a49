"""The synthetic RC-car world: determinism, exact masks against pinhole geometry, simulator geometry."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from edgeseg.data.base import SegDataset
from edgeseg.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SyntheticDataset, synthetic_classes
from edgeseg.world import (
    BACKGROUND,
    FLOOR,
    OBSTACLE,
    WALL,
    Camera,
    FloorStyle,
    Lighting,
    Obstacle,
    Pose,
    World,
    WallSegment,
    top_down,
)
from edgeseg.errors import DataError
from edgeseg.robot import step_pose

FLAT = Lighting(ambient=1.0, falloff_m=math.inf)  # no shading: colours are the textures' own


def empty_room(**kwargs) -> World:
    return World(size_m=(10.0, 10.0), wall_height_m=1.0, **kwargs)


def cylinder(x: float, y: float, radius: float = 0.3, height: float = 0.5) -> Obstacle:
    return Obstacle("cylinder", x, y, height=height, radius=radius)


# ---- dataset contract and determinism


def test_dataset_follows_the_contract():
    ds = SyntheticDataset(seed=1, n=5, height=48, width=64)
    assert isinstance(ds, SegDataset)
    assert ds.name == "synthetic" and len(ds) == 5
    assert ds.classes == synthetic_classes()
    assert ds.classes.names == SYNTHETIC_CLASSES == ("floor", "obstacle", "wall", "background")
    assert ds.classes.traversable == ("floor",) and ds.classes.ignore_index == 255
    assert len(SYNTHETIC_PALETTE) == 4 and len(set(SYNTHETIC_PALETTE)) == 4
    assert (FLOOR, OBSTACLE, WALL, BACKGROUND) == (0, 1, 2, 3)
    rgb, mask = ds.load(2)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert mask.shape == (48, 64) and mask.dtype == np.uint8
    assert mask.max() <= 3
    with pytest.raises(DataError, match="outside 0..4"):
        ds.load(5)


def test_same_seed_and_index_give_identical_bytes_and_other_seeds_differ():
    a = SyntheticDataset(seed=7, n=30, height=40, width=40)
    b = SyntheticDataset(seed=7, n=30, height=40, width=40)
    other = SyntheticDataset(seed=8, n=30, height=40, width=40)
    for index in (0, 21):  # two different worlds
        rgb_a, mask_a = a.load(index)
        b.load(3)  # a different access order must not matter
        rgb_b, mask_b = b.load(index)
        assert rgb_a.tobytes() == rgb_b.tobytes() and mask_a.tobytes() == mask_b.tobytes()
        assert other.load(index)[0].tobytes() != rgb_a.tobytes()
    assert a.load(1)[0].tobytes() != a.load(2)[0].tobytes()
    assert World.generate(5) == World.generate(5) and World.generate(5) != World.generate(6)
    copy = pickle.loads(pickle.dumps(a))  # worker processes get a copy without the world cache
    assert copy.load(21)[0].tobytes() == rgb_a.tobytes()


def test_frames_show_every_class_with_floor_low_and_background_high():
    ds = SyntheticDataset(seed=3, n=12, height=48, width=48, frames_per_world=2)
    seen = set()
    bottom_floor = []
    for index in range(len(ds)):
        _, mask = ds.load(index)
        seen |= set(np.unique(mask).tolist())
        camera = ds.frame(index).camera
        horizon = camera.height / 2 - camera.focal_px * math.tan(math.radians(camera.pitch_deg))
        rows = np.arange(camera.height)[:, None] + 0.5
        assert not np.any((mask == BACKGROUND) & (rows > horizon + 1)), "background below the horizon"
        assert not np.any((mask == FLOOR) & (rows < horizon - 1)), "floor above the horizon"
        bottom_floor.append(np.mean(mask[-1] == FLOOR))
    assert seen == {FLOOR, OBSTACLE, WALL, BACKGROUND}
    assert np.mean(bottom_floor) > 0.9  # free poses look at open floor right in front


# ---- mask exactness against the pinhole model


def test_wall_ahead_matches_the_pinhole_projection():
    world = empty_room()
    camera = Camera(width=96, height=96, pitch_deg=12.0, mount_height_m=0.12)
    pose = Pose(5.0, 5.0, 0.0)  # facing +x: the wall is 5 m ahead
    _, mask = world.render(pose, camera)
    _, bottom = camera.project(pose, 10.0, 5.0, 0.0)
    _, top = camera.project(pose, 10.0, 5.0, 1.0)
    for col in (47, 48):
        wall_rows = np.flatnonzero(mask[:, col] == WALL)
        assert abs((wall_rows.max() + 1) - bottom) <= 1.0  # lowest wall pixel ends at the floor line
        assert abs(wall_rows.min() - top) <= 1.0
        assert np.all(mask[wall_rows.max() + 1 :, col] == FLOOR)
        assert np.all(mask[: wall_rows.min(), col] == BACKGROUND)


def test_obstacle_ahead_is_centred_with_the_projected_width():
    world = empty_room(obstacles=(cylinder(7.0, 5.0, radius=0.3, height=0.6),))
    camera = Camera(width=128, height=96, pitch_deg=0.0)
    _, mask = world.render(Pose(5.0, 5.0, 0.0), camera)
    cols = np.flatnonzero((mask == OBSTACLE).any(axis=0))
    assert abs((cols.min() + cols.max() + 1) / 2 - 64) <= 1.0
    expected = 2 * camera.focal_px * 0.3 / math.sqrt(2.0**2 - 0.3**2)
    assert abs(len(cols) - expected) <= 2
    # It hides the wall behind it: every row between its projected top and bottom is obstacle.
    _, top = camera.project(Pose(5.0, 5.0, 0.0), 6.7, 5.0, 0.6)
    _, bottom = camera.project(Pose(5.0, 5.0, 0.0), 6.7, 5.0, 0.0)
    assert np.all(mask[math.ceil(top) : math.floor(bottom), 64] == OBSTACLE)
    assert WALL in mask[:, cols.min() - 2]  # ... which shows beside it


def test_obstacle_left_of_heading_is_in_the_left_half():
    for pose, (x, y) in ((Pose(5.0, 5.0, 0.0), (7.0, 6.0)), (Pose(5.0, 5.0, math.pi / 2), (4.0, 7.0))):
        world = empty_room(obstacles=(cylinder(x, y),))
        _, mask = world.render(pose, Camera(width=64, height=48))
        cols = np.flatnonzero((mask == OBSTACLE).any(axis=0))
        assert len(cols) and cols.max() < 32


def test_low_obstacle_shows_its_top_and_the_wall_behind_it():
    world = empty_room(obstacles=(cylinder(7.0, 5.0, radius=0.3, height=0.06),))
    camera = Camera(width=96, height=96, pitch_deg=10.0, mount_height_m=0.12)
    pose = Pose(5.0, 5.0, 0.0)
    _, mask = world.render(pose, camera)
    column = mask[:, 48]
    rows = np.flatnonzero(column == OBSTACLE)
    _, near_bottom = camera.project(pose, 6.7, 5.0, 0.0)
    _, far_top = camera.project(pose, 7.3, 5.0, 0.06)  # the top face's far edge
    assert abs((rows.max() + 1) - near_bottom) <= 1.0
    assert abs(rows.min() - far_top) <= 1.0
    above = column[: rows.min()]
    assert WALL in above and BACKGROUND in above  # the far wall rises above the low obstacle


def test_floor_texture_is_anchored_to_the_world():
    checker = FloorStyle(kind="checker", color=(250, 250, 250), color2=(10, 10, 10), scale_m=0.5, shadow=0.0)
    world = empty_room(floor=checker)
    camera = Camera(width=128, height=128, pitch_deg=20.0, mount_height_m=0.5)  # a pixel row: < 7 cm of floor
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(4):
        pose = world.random_free_pose(rng, margin_m=1.0)
        rgb, mask = world.render(pose, camera, FLAT)
        for _ in range(30):
            distance, side = rng.uniform(0.5, 1.5), rng.uniform(-0.4, 0.4)
            px = pose.x + distance * math.cos(pose.heading) + side * math.sin(pose.heading)
            py = pose.y + distance * math.sin(pose.heading) - side * math.cos(pose.heading)
            fx, fy = (px / 0.5) % 1.0, (py / 0.5) % 1.0
            if min(fx, 1 - fx, fy, 1 - fy) < 0.15:  # too close to a square's edge
                continue
            u, v = camera.project(pose, px, py, 0.0)
            pixel = rgb[int(v), int(u)]
            assert mask[int(v), int(u)] == FLOOR
            white = (math.floor(px / 0.5) + math.floor(py / 0.5)) % 2 == 0
            assert (pixel.mean() > 128) == white
            checked += 1
    assert checked > 20


def test_render_accepts_lighting_and_noise_deterministically():
    world = World.generate(11)
    camera = Camera(width=48, height=32)
    pose = world.random_free_pose(np.random.default_rng(1))
    light = Lighting.random(np.random.default_rng(2))
    noisy = Lighting(noise_std=4.0)
    a = world.render(pose, camera, light, np.random.default_rng(3))
    b = world.render(pose, camera, light, np.random.default_rng(3))
    assert a[0].tobytes() == b[0].tobytes()
    clean, mask = world.render(pose, camera, Lighting())
    assert np.array_equal(mask, a[1])  # lighting never changes the labels
    assert not np.array_equal(world.render(pose, camera, noisy, np.random.default_rng(4))[0], clean)
    assert np.array_equal(world.render(pose, camera, noisy)[0], clean)  # no rng, no noise
    dark = world.render(pose, camera, Lighting(brightness=0.5))[0]
    assert dark.mean() < clean.mean() * 0.7


# ---- geometry for the simulator


def test_clearance_collides_and_ray_distance_match_simple_geometry():
    box = Obstacle("box", 2.0, 2.0, height=0.5, half_x=0.5, half_y=0.5)
    diamond = Obstacle("box", 8.0, 2.0, height=0.5, half_x=0.5, half_y=0.5, angle=math.pi / 4)
    world = empty_room(obstacles=(cylinder(7.0, 5.0, radius=0.5), box, diamond),
                       walls=(WallSegment(0.0, 8.0, 4.0, 8.0, thickness=0.2),))
    assert world.clearance(5.0, 5.0) == pytest.approx(1.5)
    assert world.clearance(2.0, 3.5) == pytest.approx(1.0)
    assert world.clearance(8.0 - 1.5, 2.0) == pytest.approx(1.5 - 0.5 * math.sqrt(2))
    assert world.clearance(0.3, 5.0) == pytest.approx(0.3)
    assert world.clearance(2.0, 7.0) == pytest.approx(0.9)
    assert world.clearance(7.0, 5.0) < 0  # inside the cylinder
    assert world.clearance(np.array([5.0, 2.0]), np.array([5.0, 3.5])) == pytest.approx([1.5, 1.0])
    assert world.collides(6.2, 5.0, 0.35) and not world.collides(6.2, 5.0, 0.25)

    pose = Pose(5.0, 5.0, 0.0)
    distances = world.ray_distance(pose, [0.0, math.pi / 2, math.pi, -math.pi / 2])
    assert distances == pytest.approx([1.5, 5.0, 5.0, 5.0])
    assert world.ray_distance(Pose(2.0, 5.0, math.pi / 2), 0.0) == pytest.approx(2.9)  # interior wall
    assert world.ray_distance(Pose(2.0, 5.0, 0.0), math.pi / 2) == pytest.approx(2.9)  # +angle = left


def test_random_free_pose_keeps_its_margin_and_is_reproducible():
    world = World.generate(4)
    poses = [world.random_free_pose(np.random.default_rng(9), margin_m=0.4) for _ in range(2)]
    assert poses[0] == poses[1]
    rng = np.random.default_rng(10)
    for _ in range(20):
        pose = world.random_free_pose(rng, margin_m=0.4)
        assert world.clearance(pose.x, pose.y) >= 0.4
    with pytest.raises(DataError, match="margin_m"):
        world.random_free_pose(rng, margin_m=50.0)


def test_grazing_poses_run_along_a_nearby_wall_turned_towards_it():
    from edgeseg.data.synthetic import _grazing_pose

    world = World(size_m=(4.0, 4.0), obstacles=())  # only the room's walls
    rng = np.random.default_rng(3)
    for _ in range(30):
        pose = _grazing_pose(world, rng)
        assert pose is not None
        gap = world.clearance(pose.x, pose.y)
        assert 0.08 <= gap <= 0.6
        # The nearest wall's inward normal, and how far the heading is turned from it.
        distances = {0.0: pose.x, math.pi: 4.0 - pose.x, math.pi / 2: pose.y, -math.pi / 2: 4.0 - pose.y}
        normal = min(distances, key=distances.get)
        turned = abs(math.remainder(pose.heading - normal, 2 * math.pi))
        assert math.radians(89) <= turned <= math.radians(151)  # along the wall, up to 60 degrees into it


def test_generated_worlds_have_separate_obstacles_inside_the_room():
    for seed in range(3):
        world = World.generate(seed)
        sx, sy = world.size_m
        assert 6 <= sx <= 12 and 6 <= sy <= 12 and len(world.obstacles) >= 4
        for i, ob in enumerate(world.obstacles):
            assert ob.bounding_radius < ob.x < sx - ob.bounding_radius
            assert ob.bounding_radius < ob.y < sy - ob.bounding_radius
            for other in world.obstacles[i + 1 :]:
                assert math.hypot(ob.x - other.x, ob.y - other.y) > ob.bounding_radius + other.bounding_radius


def test_step_pose_positive_steering_turns_right():
    start = Pose(1.0, 2.0, 0.0)
    straight = step_pose(start, 0.0, speed_mps=1.0, dt=0.5)
    assert (straight.x, straight.y, straight.heading) == pytest.approx((1.5, 2.0, 0.0))
    right = step_pose(start, 0.5, speed_mps=1.0, dt=0.5)
    left = step_pose(start, -0.5, speed_mps=1.0, dt=0.5)
    assert right.heading < 0 and right.y < 2.0  # clockwise seen from above
    assert left.heading > 0 and left.y > 2.0
    assert step_pose(start, 5.0, 1.0, 0.5) == step_pose(start, 1.0, 1.0, 0.5)  # steering is clipped

    # A full circle at full lock comes back to the start.
    radius = 0.26 / math.tan(math.radians(30))
    pose = start
    for _ in range(100):
        pose = step_pose(pose, 1.0, speed_mps=2 * math.pi * radius, dt=0.01)
    assert (pose.x, pose.y) == pytest.approx((1.0, 2.0), abs=1e-9)

    # Turning right moves what was straight ahead to the left of the image.
    world = empty_room(obstacles=(cylinder(8.0, 5.0),))
    pose = step_pose(Pose(5.0, 5.0, 0.0), 1.0, speed_mps=1.0, dt=0.3)
    _, mask = world.render(pose, Camera(width=64, height=48))
    cols = np.flatnonzero((mask == OBSTACLE).any(axis=0))
    assert cols.mean() < 32 - 4


def test_top_down_draws_the_map_and_the_trajectory():
    world = empty_room(obstacles=(cylinder(5.0, 5.0, radius=1.0),))
    plain = top_down(world, size_px=100)
    assert plain.shape == (100, 100, 3) and plain.dtype == np.uint8
    assert tuple(plain[50, 50]) == Obstacle("cylinder", 0, 0, 1, radius=1).color  # obstacle colour at the centre
    drawn = top_down(world, size_px=100, trajectory=[(1.0, 1.0), (1.0, 9.0)], poses=[Pose(8.0, 2.0, 0.0)])
    assert not np.array_equal(plain, drawn)
    yellow = np.abs(drawn[:, 10].astype(int) - (250, 210, 30)).max(axis=1) < 40
    assert yellow[12:88].all()  # the path runs up x = 1 m ...
    assert not np.abs(drawn[:, 30].astype(int) - (250, 210, 30)).max(axis=1).min() < 40  # ... and only there
    wide = top_down(World(size_m=(10.0, 5.0)), size_px=100)
    assert wide.shape == (50, 100, 3)


def test_bad_configuration_raises_data_errors():
    with pytest.raises(DataError, match="pitch"):
        Camera(pitch_deg=60.0)
    with pytest.raises(DataError, match="mount_height_m"):
        World(wall_height_m=0.1).render(Pose(1, 1, 0), Camera(mount_height_m=0.12))
    with pytest.raises(DataError, match="shape"):
        Obstacle("cone", 1.0, 1.0, height=1.0)
    with pytest.raises(DataError, match="n=0"):
        SyntheticDataset(n=0)
