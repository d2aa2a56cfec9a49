"""The synthetic world's map: `World` (a room with obstacles and walls, procedurally generated), `top_down`."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import DataError
from edgeseg.robot import Camera, Pose
from edgeseg.world.parts import (
    BACKGROUND_KINDS, FLOOR_KINDS, OBSTACLE_TEXTURES, RGB, WALL_KINDS, BackgroundStyle, FloorStyle, Lighting, Obstacle,
    WallSegment, WallStyle,
)
from edgeseg.world.render import _box_corners, _build_geometry, _Geometry, _intersect, _render, _segment_box
from edgeseg.world.textures import _build_scene, _Scene


# --------------------------------------------------------------------------------------------
# The world


@dataclass(frozen=True)
class World:
    """A closed rectangular room with obstacles, interior walls and appearance.

    Treat it as immutable: the geometry arrays and the texture atlas are built on first use and
    cached on the instance. `seed` drives the texture details, so a hand-built world renders the
    same every time.
    """

    size_m: tuple[float, float] = (8.0, 8.0)
    wall_height_m: float = 1.2
    obstacles: tuple[Obstacle, ...] = ()
    walls: tuple[WallSegment, ...] = ()
    floor: FloorStyle = FloorStyle()
    wall: WallStyle = WallStyle()
    background: BackgroundStyle = BackgroundStyle()
    seed: int = 0
    _geometry_cache: _Geometry | None = field(default=None, init=False, repr=False, compare=False)
    _scene_cache: _Scene | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sx, sy = self.size_m
        if not (0.5 <= sx <= 100 and 0.5 <= sy <= 100):
            raise DataError(f"world size_m={self.size_m} must be 0.5..100 m on each side")
        if self.wall_height_m <= 0:
            raise DataError(f"wall_height_m must be positive, got {self.wall_height_m}")
        object.__setattr__(self, "obstacles", tuple(self.obstacles))
        object.__setattr__(self, "walls", tuple(self.walls))

    # ---- construction

    @classmethod
    def generate(cls, seed: int) -> World:
        """A random room: 6-12 m sides, 0-3 interior walls, 0.1-0.3 obstacles per square metre,
        random appearance."""
        rng = np.random.default_rng(seed)
        size = (float(rng.uniform(6.0, 12.0)), float(rng.uniform(6.0, 12.0)))
        floor = _random_floor_style(rng)
        wall = _random_wall_style(rng, floor)
        background = _random_background_style(rng, wall)
        walls = _random_interior_walls(rng, size)
        count = int(round(size[0] * size[1] * rng.uniform(0.1, 0.3)))
        obstacles = _random_obstacles(rng, size, walls, floor, wall, count=max(4, count))
        return cls(
            size_m=size,
            wall_height_m=float(rng.uniform(0.5, 2.2)),
            obstacles=tuple(obstacles),
            walls=tuple(walls),
            floor=floor,
            wall=wall,
            background=background,
            seed=int(rng.integers(0, 2**31 - 1)),
        )

    # ---- geometry for the simulator

    def clearance(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        """Distance from point(s) to the nearest obstacle or wall surface (negative inside one)."""
        geo = self._geometry()
        px = np.asarray(x, dtype=np.float64)
        py = np.asarray(y, dtype=np.float64)
        shape = np.broadcast(px, py).shape
        px = np.broadcast_to(px, shape).reshape(-1, 1)
        py = np.broadcast_to(py, shape).reshape(-1, 1)
        sx, sy = self.size_m
        best = np.minimum(np.minimum(px, sx - px), np.minimum(py, sy - py))[:, 0]
        if len(geo.cx):
            dist = np.hypot(px - geo.cx, py - geo.cy) - geo.r
            best = np.minimum(best, dist.min(axis=1))
        if len(geo.bx):
            rx, ry = px - geo.bx, py - geo.by
            lx = np.abs(geo.bcos * rx + geo.bsin * ry) - geo.bhx
            ly = np.abs(-geo.bsin * rx + geo.bcos * ry) - geo.bhy
            outside = np.hypot(np.maximum(lx, 0), np.maximum(ly, 0))
            inside = np.minimum(np.maximum(lx, ly), 0)
            best = np.minimum(best, (outside + inside).min(axis=1))
        best = best.reshape(shape)
        return float(best) if best.ndim == 0 else best

    def collides(self, x: float, y: float, radius: float) -> bool:
        """True if a disc of `radius` metres at (x, y) touches an obstacle or a wall."""
        return bool(self.clearance(x, y) < radius)

    def ray_distance(self, pose: Pose, angles: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """Horizontal distance from the pose to the first solid along each ray (any height blocks).

        Args:
            pose: ray origin and heading.
            angles: radians relative to the heading, counter-clockwise (left) positive.
        """
        rel = np.asarray(angles, dtype=np.float64)
        theta = pose.heading + rel.reshape(-1)
        hits = _intersect(self._geometry(), pose.x, pose.y, np.cos(theta), np.sin(theta))
        return hits.t_in.min(axis=0).reshape(rel.shape)

    def random_free_pose(self, rng: np.random.Generator, margin_m: float = 0.3) -> Pose:
        """A uniformly random pose whose position is at least `margin_m` from every solid."""
        sx, sy = self.size_m
        for _ in range(200):
            xs = rng.uniform(0.0, sx, 64)
            ys = rng.uniform(0.0, sy, 64)
            headings = rng.uniform(-math.pi, math.pi, 64)
            ok = np.flatnonzero(self.clearance(xs, ys) >= margin_m)
            if len(ok):
                i = ok[0]
                return Pose(float(xs[i]), float(ys[i]), float(headings[i]))
        raise DataError(
            f"no free position with margin_m={margin_m} found in this {sx:.1f} x {sy:.1f} m world; "
            "use a smaller margin or fewer obstacles"
        )

    # ---- rendering

    def render(
        self,
        pose: Pose,
        camera: Camera = Camera(),
        lighting: Lighting | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render what the camera sees from `pose`.

        Args:
            pose: camera position (metres) and heading.
            camera: intrinsics, mount height and pitch.
            lighting: photometric conditions (None = neutral `Lighting()`).
            rng: source of sensor noise; without one the frame has no noise (fully deterministic).

        Returns:
            (rgb uint8 HxWx3, mask uint8 HxW with FLOOR/OBSTACLE/WALL/BACKGROUND per pixel).
        """
        if camera.mount_height_m >= self.wall_height_m:
            raise DataError(
                f"camera mount_height_m={camera.mount_height_m} must be below the wall height "
                f"{self.wall_height_m} m"
            )
        light = lighting if lighting is not None else Lighting()
        return _render(self, pose, camera, light, rng)

    # ---- caches

    def _geometry(self) -> _Geometry:
        if self._geometry_cache is None:
            object.__setattr__(self, "_geometry_cache", _build_geometry(self))
        return self._geometry_cache

    def _scene(self) -> _Scene:
        if self._scene_cache is None:
            object.__setattr__(self, "_scene_cache", _build_scene(self, self._geometry()))
        return self._scene_cache


# --------------------------------------------------------------------------------------------
# Car motion


def top_down(
    world: World,
    size_px: int = 512,
    trajectory: np.ndarray | Sequence[Sequence[float]] | None = None,
    poses: Sequence[Pose] | None = None,
) -> np.ndarray:
    """A map of the world seen from above (RGB uint8, +y up, the longer side `size_px` pixels).

    Draws the textured floor, walls, obstacles in their colours, an optional trajectory
    (N x 2 metres, yellow polyline) and optional poses (red arrows).
    """
    sx, sy = world.size_m
    scale = size_px / max(sx, sy)
    width, height = max(1, round(sx * scale)), max(1, round(sy * scale))
    scene = world._scene()
    image = cv2.resize(scene.floor_image, (width, height), interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image[::-1])

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * scale)), int(round((sy - y) * scale))

    wall_colour = (60, 60, 66)
    thick = max(2, int(round(0.1 * scale)))
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), wall_colour, thick)
    for seg in world.walls:
        corners = _box_corners(*_segment_box(seg))
        cv2.fillPoly(image, [np.array([pt(*c) for c in corners], np.int32)], wall_colour)
    for ob in world.obstacles:
        colour = tuple(int(c) for c in ob.color)
        if ob.shape == "cylinder":
            centre, rad = pt(ob.x, ob.y), max(1, int(round(ob.radius * scale)))
            cv2.circle(image, centre, rad, colour, -1, cv2.LINE_AA)
            cv2.circle(image, centre, rad, (20, 20, 20), 1, cv2.LINE_AA)
        else:
            poly = np.array([pt(*c) for c in _box_corners(ob.x, ob.y, ob.half_x, ob.half_y, ob.angle)], np.int32)
            cv2.fillPoly(image, [poly], colour, cv2.LINE_AA)
            cv2.polylines(image, [poly], True, (20, 20, 20), 1, cv2.LINE_AA)
    if trajectory is not None:
        path = np.asarray(trajectory, dtype=np.float64).reshape(-1, 2)
        if len(path) >= 2:
            pts = np.array([pt(x, y) for x, y in path], np.int32)
            cv2.polylines(image, [pts], False, (250, 210, 30), max(1, size_px // 256), cv2.LINE_AA)
    for pose in poses or ():
        tip = (pose.x + 0.35 * math.cos(pose.heading), pose.y + 0.35 * math.sin(pose.heading))
        cv2.arrowedLine(image, pt(pose.x, pose.y), pt(*tip), (230, 40, 40), max(1, size_px // 256), cv2.LINE_AA,
                        tipLength=0.4)
    return image


# --------------------------------------------------------------------------------------------
# Random appearance and layout


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _distance(c1: RGB, c2: RGB) -> float:
    return float(np.linalg.norm(np.subtract(c1, c2, dtype=np.float64)))


def _random_floor_style(rng: np.random.Generator) -> FloorStyle:
    kind = str(rng.choice(FLOOR_KINDS))
    if kind == "wood":
        h, s, v = rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.75)
        color, color2 = _hsv(h, s, v), _hsv(h + rng.uniform(-0.02, 0.02), s + 0.05, v * rng.uniform(0.65, 0.85))
        scale = rng.uniform(0.45, 0.8)
    elif kind == "tiles":
        h, s, v = rng.uniform(0.0, 0.15), rng.uniform(0.02, 0.35), rng.uniform(0.55, 0.9)
        color, color2 = _hsv(h, s, v), _hsv(h, s * 0.5, v * rng.uniform(0.5, 0.75))
        scale = rng.uniform(0.2, 0.6)
    elif kind == "checker":
        h = rng.uniform(0.0, 0.15)
        color = _hsv(h, rng.uniform(0.0, 0.2), rng.uniform(0.7, 0.92))
        color2 = _hsv(h, rng.uniform(0.0, 0.3), rng.uniform(0.28, 0.5))
        scale = rng.uniform(0.25, 0.5)
    elif kind == "concrete":
        v = rng.uniform(0.4, 0.7)
        color, color2 = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.06), v), _hsv(0.1, 0.05, v * 0.75)
        scale = 0.5
    else:
        h, s, v = rng.uniform(0, 1), rng.uniform(0.1, 0.3), rng.uniform(0.3, 0.6)
        color, color2 = _hsv(h, s, v), _hsv(h, s, v * 0.8)
        scale = 0.5
    return FloorStyle(kind=kind, color=color, color2=color2, scale_m=float(scale),
                      shadow=float(rng.uniform(0.2, 0.45)))


def _random_wall_style(rng: np.random.Generator, floor: FloorStyle) -> WallStyle:
    kind = str(rng.choice(WALL_KINDS, p=[0.3, 0.2, 0.15, 0.15, 0.2]))
    for _ in range(50):
        if kind == "bricks":
            color = _hsv(rng.uniform(0.0, 0.06), rng.uniform(0.4, 0.65), rng.uniform(0.45, 0.7))
            color2 = _hsv(0.1, 0.05, rng.uniform(0.7, 0.85))
        else:
            h = rng.uniform(0, 1)
            color = _hsv(h, rng.uniform(0.0, 0.18), rng.uniform(0.68, 0.95))
            color2 = _hsv(h + rng.uniform(-0.1, 0.1), rng.uniform(0.05, 0.25), rng.uniform(0.55, 0.85))
        if min(_distance(color, floor.color), _distance(color, floor.color2)) > 60:
            break
    skirting = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.1), rng.choice([0.95, 0.3, 0.5]))
    return WallStyle(
        kind=kind,
        color=color,
        color2=color2,
        skirting_color=skirting,
        skirting_m=float(rng.uniform(0.04, 0.12)) if rng.random() < 0.75 else 0.0,
        dado_m=float(rng.uniform(0.6, 1.0)) if kind in ("plain", "wallpaper") and rng.random() < 0.3 else 0.0,
        period_m=float(rng.uniform(0.9, 1.5)),
    )


def _random_background_style(rng: np.random.Generator, wall: WallStyle) -> BackgroundStyle:
    for _ in range(50):
        kind = str(rng.choice(BACKGROUND_KINDS, p=[0.5, 0.25, 0.25]))
        if kind == "sky":
            color, color2 = _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.4, 0.7), rng.uniform(0.6, 0.9)), _hsv(
                rng.uniform(0.55, 0.6), rng.uniform(0.1, 0.25), rng.uniform(0.85, 1.0))
        elif kind == "ceiling":  # darker than the pale walls, so their top edge always shows
            v = rng.uniform(0.12, 0.38)
            color, color2 = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.1), v), _hsv(0.1, 0.05, v * 1.3)
        else:
            color, color2 = _hsv(0.6, 0.1, rng.uniform(0.02, 0.08)), _hsv(0.6, 0.1, rng.uniform(0.1, 0.2))
        if min(_distance(a, b) for a in (color, color2) for b in (wall.color, wall.color2)) > 70:
            break
    else:  # no light background stands out from these walls: a dark one always does
        color, color2 = _hsv(0.6, 0.1, 0.05), _hsv(0.6, 0.1, 0.15)
        kind = "dark"
    return BackgroundStyle(kind=kind, color=color, color2=color2)


def _random_interior_walls(rng: np.random.Generator, size: tuple[float, float]) -> list[WallSegment]:
    """0-3 partitions sticking out of the room's walls."""
    sx, sy = size
    walls = []
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.35, 0.3, 0.2, 0.15]))):
        thickness = float(rng.uniform(0.08, 0.2))
        side = int(rng.integers(0, 4))
        if side in (0, 1):  # from the left (x=0) or right (x=sx) wall, along x
            y = float(rng.uniform(0.25, 0.75) * sy)
            length = float(rng.uniform(0.15, 0.45) * sx)
            x0 = 0.0 if side == 0 else sx
            x1 = length if side == 0 else sx - length
            walls.append(WallSegment(x0, y, x1, y, thickness))
        else:
            x = float(rng.uniform(0.25, 0.75) * sx)
            length = float(rng.uniform(0.15, 0.45) * sy)
            y0 = 0.0 if side == 2 else sy
            y1 = length if side == 2 else sy - length
            walls.append(WallSegment(x, y0, x, y1, thickness))
    return walls


def _random_obstacle_colour(rng: np.random.Generator, floor: FloorStyle, wall: WallStyle) -> RGB:
    """Saturated or near-black colours (walls are pale or brick), kept well away from the floor's
    and walls' colours so every frame is unambiguous."""
    colour = _hsv(0.0, 0.8, 0.8)
    for _ in range(100):
        if rng.random() < 0.85:
            colour = _hsv(rng.uniform(0, 1), rng.uniform(0.5, 1.0), rng.uniform(0.35, 1.0))
        else:  # near-black
            colour = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.04, 0.18))
        far_floor = min(_distance(colour, floor.color), _distance(colour, floor.color2)) > 90
        far_wall = min(_distance(colour, wall.color), _distance(colour, wall.color2)) > 70
        if far_floor and far_wall:
            break
    return colour


def _random_obstacles(
    rng: np.random.Generator,
    size: tuple[float, float],
    walls: list[WallSegment],
    floor: FloorStyle,
    wall: WallStyle,
    count: int,
) -> list[Obstacle]:
    sx, sy = size
    placed: list[Obstacle] = []
    partitions = World(size_m=size, walls=tuple(walls))
    for _ in range(count):
        for _attempt in range(40):
            low = rng.random() < 0.3
            height = rng.uniform(0.06, 0.13) if low else rng.uniform(0.15, 1.2)
            texture = str(rng.choice(OBSTACLE_TEXTURES, p=[0.35, 0.25, 0.2, 0.2]))
            colour = _random_obstacle_colour(rng, floor, wall)
            colour2 = _random_obstacle_colour(rng, floor, wall)
            common = dict(height=float(height), color=colour, color2=colour2, texture=texture,
                          texture_scale_m=float(rng.uniform(0.04, 0.15)))
            x, y = float(rng.uniform(0.1, sx - 0.1)), float(rng.uniform(0.1, sy - 0.1))
            if rng.random() < 0.4:
                ob = Obstacle("cylinder", x, y, radius=float(rng.uniform(0.07, 0.35)), **common)
            else:
                ob = Obstacle("box", x, y, half_x=float(rng.uniform(0.08, 0.45)), half_y=float(rng.uniform(0.08, 0.45)),
                              angle=float(rng.uniform(0, math.pi)), **common)
            if partitions.clearance(x, y) < ob.bounding_radius + 0.02:
                continue
            if any(math.hypot(x - o.x, y - o.y) < ob.bounding_radius + o.bounding_radius + 0.3 for o in placed):
                continue
            placed.append(ob)
            break
    return placed
