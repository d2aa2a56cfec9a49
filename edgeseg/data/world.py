"""A procedural indoor world for an RC car: the map, a camera renderer with exact masks, geometry.

Only numpy and OpenCV, because the same code makes training data (`SyntheticDataset`), drives the
closed-loop navigation simulator and feeds the `synthetic://` video source on the robot.

Conventions (the simulator and the navigator rely on them):

* World frame: metres, seen from above x points right and y points up; the room spans
  `[0, size_x] x [0, size_y]` and is closed by walls on all four sides.
* `Pose.heading`: radians, counter-clockwise from +x (0 faces +x, pi/2 faces +y).
* The camera looks along the heading; image right is the car's right, i.e. clockwise from the
  heading seen from above.
* `step_pose`: steering > 0 turns RIGHT (clockwise seen from above, towards image right).
* `World.ray_distance` angles: radians relative to the heading, counter-clockwise (left) positive,
  like the heading itself.

How rendering works: the camera has no roll, so a *level* camera (same position, zero pitch) sees
vertical edges as vertical image lines and each of its columns is one horizontal ray. We cast all
columns at once against every solid (analytic ray/circle, ray/box and room intersections), paint
each solid as a row interval of that level image, far to near in each column's own depth order (so
nearer solids cover farther ones and low near obstacles let far walls show above them), and then
look every pixel of the real, pitched camera up in the level image. A pure rotation is a homography, so that lookup is exact up to
the level image's pixel grid (half a pixel). Colours come from one texture atlas sampled at world
coordinates (floor, obstacle tops) or surface coordinates (walls, obstacle sides), so textures stay
put when the car moves. The mask is the class of the surface each pixel shows.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import DataError
from edgeseg.robot import Camera, Pose  # the car's camera and pose live with the robot model (edgeseg.robot)

# Class indices of the synthetic world (the order SyntheticDataset trains on).
FLOOR, OBSTACLE, WALL, BACKGROUND = 0, 1, 2, 3

RGB = tuple[int, int, int]

OBSTACLE_SHAPES = ("cylinder", "box")
OBSTACLE_TEXTURES = ("plain", "stripes", "checker", "noise")
FLOOR_KINDS = ("wood", "tiles", "checker", "concrete", "carpet")
WALL_KINDS = ("plain", "plaster", "bricks", "panels", "wallpaper")
BACKGROUND_KINDS = ("ceiling", "sky", "dark")

_EPS = 1e-6
_FLOOR_CODE = 254  # level-image codes for pixels no solid covers
_BG_CODE = 255
_SIDE_TILE = (128, 64)  # (rows over the object's height, columns over one texture period)
_WALL_TILE = (128, 128)
_TOP_TILE = (64, 64)
_PANORAMA = (128, 512)  # (rows from zenith to horizon, columns over 360 degrees)
_FLOOR_PX_PER_M = 100.0
_FLOOR_MAX_PX = 1200


# --------------------------------------------------------------------------------------------
# Small value types


@dataclass(frozen=True)
class Lighting:
    """Per-frame photometric conditions.

    Attributes:
        brightness: global gain (1 = as textured).
        contrast: contrast around mid-grey.
        color_gain: per-channel gains (a colour cast).
        ambient: share of light that does not depend on a surface's facing (0..1).
        light_azimuth: world direction the main light comes from (radians, counter-clockwise from +x).
        light_elevation: how high the main light stands (radians); lights obstacle tops and the floor.
        falloff_m: distance scale of light falloff: surfaces get 0.7 + 0.3 * exp(-d / falloff_m) (inf = none).
        gradient: (x, y) linear brightness tilt across the image, e.g. (0.2, 0) is 20 % brighter right.
        vignette: darkening towards the corners (0 = none).
        noise_std: sensor noise standard deviation in 0..255 units (applied only when render gets an rng).
        blur_sigma: Gaussian blur of the picture in pixels (defocus/motion), 0 = sharp.
    """

    brightness: float = 1.0
    contrast: float = 1.0
    color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    light_azimuth: float = 0.8
    light_elevation: float = 0.9
    falloff_m: float = 25.0
    gradient: tuple[float, float] = (0.0, 0.0)
    vignette: float = 0.0
    noise_std: float = 0.0
    blur_sigma: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> Lighting:
        """Varied but plausible conditions: dim to bright rooms, warm/cool casts, mild noise."""
        cast = rng.uniform(0.87, 1.13, 3)
        cast /= cast.mean()
        return cls(
            brightness=float(math.exp(rng.uniform(math.log(0.65), math.log(1.35)))),
            contrast=float(rng.uniform(0.8, 1.2)),
            color_gain=(float(cast[0]), float(cast[1]), float(cast[2])),
            ambient=float(rng.uniform(0.55, 0.9)),
            light_azimuth=float(rng.uniform(-math.pi, math.pi)),
            light_elevation=float(rng.uniform(0.3, 1.3)),
            falloff_m=float(math.exp(rng.uniform(math.log(4.0), math.log(40.0)))),
            gradient=(float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.15, 0.15))),
            vignette=float(rng.uniform(0.0, 0.35)),
            noise_std=float(rng.uniform(0.0, 5.0)),
            blur_sigma=float(rng.uniform(0.4, 1.0)) if rng.random() < 0.15 else 0.0,
        )


@dataclass(frozen=True)
class Obstacle:
    """A solid standing on the floor: a vertical cylinder or a (rotated) box.

    Attributes:
        shape: "cylinder" (uses `radius`) or "box" (uses `half_x`, `half_y`, `angle`).
        x, y: centre in metres.
        height: metres; obstacles lower than the camera show their top.
        color, color2: base and pattern colours (RGB).
        texture: "plain", "stripes", "checker" or "noise".
        texture_scale_m: size of one pattern element.
    """

    shape: str
    x: float
    y: float
    height: float
    color: RGB = (200, 60, 50)
    color2: RGB = (240, 220, 60)
    texture: str = "plain"
    radius: float = 0.0
    half_x: float = 0.0
    half_y: float = 0.0
    angle: float = 0.0
    texture_scale_m: float = 0.1

    def __post_init__(self) -> None:
        if self.shape not in OBSTACLE_SHAPES:
            raise DataError(f"obstacle shape {self.shape!r} is not one of {OBSTACLE_SHAPES}")
        if self.texture not in OBSTACLE_TEXTURES:
            raise DataError(f"obstacle texture {self.texture!r} is not one of {OBSTACLE_TEXTURES}")
        if self.height <= 0:
            raise DataError(f"obstacle height must be positive, got {self.height}")
        if self.shape == "cylinder" and self.radius <= 0:
            raise DataError(f"cylinder obstacle at ({self.x}, {self.y}) needs radius > 0, got {self.radius}")
        if self.shape == "box" and (self.half_x <= 0 or self.half_y <= 0):
            raise DataError(f"box obstacle at ({self.x}, {self.y}) needs half_x and half_y > 0")

    @property
    def bounding_radius(self) -> float:
        return self.radius if self.shape == "cylinder" else math.hypot(self.half_x, self.half_y)


@dataclass(frozen=True)
class WallSegment:
    """An interior wall from (x0, y0) to (x1, y1), `thickness` metres thick, as tall as the room's walls."""

    x0: float
    y0: float
    x1: float
    y1: float
    thickness: float = 0.12

    def __post_init__(self) -> None:
        if math.hypot(self.x1 - self.x0, self.y1 - self.y0) <= 0 or self.thickness <= 0:
            raise DataError(f"wall segment {self} needs a positive length and thickness")


@dataclass(frozen=True)
class FloorStyle:
    """How the floor looks: `kind` is one of FLOOR_KINDS; `scale_m` is the tile/plank size."""

    kind: str = "tiles"
    color: RGB = (176, 164, 146)
    color2: RGB = (120, 112, 100)
    scale_m: float = 0.4
    shadow: float = 0.35  # contact-shadow strength near obstacles and walls (0..1)

    def __post_init__(self) -> None:
        if self.kind not in FLOOR_KINDS:
            raise DataError(f"floor kind {self.kind!r} is not one of {FLOOR_KINDS}")


@dataclass(frozen=True)
class WallStyle:
    """How walls look: `kind` is one of WALL_KINDS; `dado_m` > 0 paints the wall below that height in
    `color2`; a skirting board `skirting_m` high runs along the floor."""

    kind: str = "plain"
    color: RGB = (214, 210, 198)
    color2: RGB = (170, 160, 150)
    skirting_color: RGB = (245, 245, 240)
    skirting_m: float = 0.08
    dado_m: float = 0.0
    period_m: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in WALL_KINDS:
            raise DataError(f"wall kind {self.kind!r} is not one of {WALL_KINDS}")


@dataclass(frozen=True)
class BackgroundStyle:
    """What shows above the walls: `kind` is one of BACKGROUND_KINDS."""

    kind: str = "ceiling"
    color: RGB = (90, 92, 100)
    color2: RGB = (150, 150, 160)

    def __post_init__(self) -> None:
        if self.kind not in BACKGROUND_KINDS:
            raise DataError(f"background kind {self.kind!r} is not one of {BACKGROUND_KINDS}")


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
# Geometry arrays and ray intersection


@dataclass
class _Geometry:
    """Flat arrays of every solid: circles, then boxes (obstacles and interior walls), then the room."""

    cx: np.ndarray
    cy: np.ndarray
    r: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    bhx: np.ndarray
    bhy: np.ndarray
    bcos: np.ndarray
    bsin: np.ndarray
    size: tuple[float, float]
    heights: np.ndarray  # (K,) including the room last
    labels: np.ndarray  # (K,) class of each solid


def _segment_box(seg: WallSegment) -> tuple[float, float, float, float, float]:
    length = math.hypot(seg.x1 - seg.x0, seg.y1 - seg.y0)
    angle = math.atan2(seg.y1 - seg.y0, seg.x1 - seg.x0)
    return (seg.x0 + seg.x1) / 2, (seg.y0 + seg.y1) / 2, length / 2 + seg.thickness / 2, seg.thickness / 2, angle


def _box_corners(x: float, y: float, hx: float, hy: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x + c * px - s * py, y + s * px + c * py) for px, py in ((hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy))]


def _build_geometry(world: World) -> _Geometry:
    cyl = [ob for ob in world.obstacles if ob.shape == "cylinder"]
    boxes = [(ob.x, ob.y, ob.half_x, ob.half_y, ob.angle) for ob in world.obstacles if ob.shape == "box"]
    boxes += [_segment_box(seg) for seg in world.walls]
    col = lambda values: np.array(values, dtype=np.float64).reshape(-1)  # noqa: E731
    heights = [ob.height for ob in cyl] + [ob.height for ob in world.obstacles if ob.shape == "box"]
    heights += [world.wall_height_m] * (len(world.walls) + 1)
    labels = [OBSTACLE] * len(world.obstacles) + [WALL] * (len(world.walls) + 1)
    return _Geometry(
        cx=col([ob.x for ob in cyl]),
        cy=col([ob.y for ob in cyl]),
        r=col([ob.radius for ob in cyl]),
        bx=col([b[0] for b in boxes]),
        by=col([b[1] for b in boxes]),
        bhx=col([b[2] for b in boxes]),
        bhy=col([b[3] for b in boxes]),
        bcos=col([math.cos(b[4]) for b in boxes]),
        bsin=col([math.sin(b[4]) for b in boxes]),
        size=(float(world.size_m[0]), float(world.size_m[1])),
        heights=col(heights),
        labels=np.array(labels, dtype=np.uint8),
    )


@dataclass
class _Hits:
    """Per (solid, ray): entry/exit distance in units of the ray direction's length (inf = miss),
    the surface coordinate along the solid's perimeter, and the surface normal."""

    t_in: np.ndarray
    t_out: np.ndarray
    u: np.ndarray
    nx: np.ndarray
    ny: np.ndarray


@np.errstate(divide="ignore", invalid="ignore", over="ignore")
def _intersect(geo: _Geometry, ox: float, oy: float, dx: np.ndarray, dy: np.ndarray) -> _Hits:
    """Intersect rays from (ox, oy) along (dx, dy) (shape (W,)) with every solid at once."""
    parts: list[tuple[np.ndarray, ...]] = []
    if len(geo.cx):
        ocx = (ox - geo.cx)[:, None]
        ocy = (oy - geo.cy)[:, None]
        rad = geo.r[:, None]
        a = dx * dx + dy * dy
        b = ocx * dx + ocy * dy
        disc = b * b - a * (ocx * ocx + ocy * ocy - rad * rad)
        root = np.sqrt(np.maximum(disc, 0.0))
        t0 = (-b - root) / a
        t1 = (-b + root) / a
        hit = (disc > 0) & (t0 > _EPS)
        nx = (ocx + t0 * dx) / rad
        ny = (ocy + t0 * dy) / rad
        u = np.arctan2(ny, nx) * rad
        parts.append((np.where(hit, t0, np.inf), np.where(hit, t1, np.inf), u, nx, ny))
    if len(geo.bx):
        c, s = geo.bcos[:, None], geo.bsin[:, None]
        hx, hy = geo.bhx[:, None], geo.bhy[:, None]
        rx, ry = ox - geo.bx[:, None], oy - geo.by[:, None]
        lx, ly = c * rx + s * ry, -s * rx + c * ry
        ldx, ldy = c * dx + s * dy, -s * dx + c * dy
        ldx = np.where(np.abs(ldx) < 1e-12, 1e-12, ldx)
        ldy = np.where(np.abs(ldy) < 1e-12, 1e-12, ldy)
        ax, bx_ = (-hx - lx) / ldx, (hx - lx) / ldx
        ay, by_ = (-hy - ly) / ldy, (hy - ly) / ldy
        tminx, tmaxx = np.minimum(ax, bx_), np.maximum(ax, bx_)
        tminy, tmaxy = np.minimum(ay, by_), np.maximum(ay, by_)
        tmin, tmax = np.maximum(tminx, tminy), np.minimum(tmaxx, tmaxy)
        hit = (tmax >= tmin) & (tmin > _EPS)
        xface = tminx > tminy
        nlx = np.where(xface, -np.sign(ldx), 0.0)
        nly = np.where(xface, 0.0, -np.sign(ldy))
        # Walk the perimeter: +x face, +y face, -x face, -y face, so patterns differ per face.
        u_x = ly + tmin * ldy + hy + np.where(nlx > 0, 0.0, 2 * hy + 2 * hx)
        u_y = lx + tmin * ldx + hx + np.where(nly > 0, 2 * hy, 4 * hy + 2 * hx)
        u = np.where(xface, u_x, u_y)
        parts.append((np.where(hit, tmin, np.inf), np.where(hit, tmax, np.inf), u,
                      c * nlx - s * nly, s * nlx + c * nly))
    # The room: rays from inside leave through one of the four walls.
    sx, sy = geo.size
    tx = np.where(dx > 0, (sx - ox) / dx, np.where(dx < 0, -ox / dx, np.inf))
    ty = np.where(dy > 0, (sy - oy) / dy, np.where(dy < 0, -oy / dy, np.inf))
    xface = tx < ty
    t_room = np.minimum(tx, ty)
    t_room = np.where(t_room > _EPS, t_room, np.inf)
    hit_x, hit_y = ox + t_room * dx, oy + t_room * dy
    u_room = np.where(xface, hit_y + np.where(dx > 0, 0.0, sy + sx), hit_x + np.where(dy > 0, sy, 2 * sy + sx))
    nx_room = np.where(xface, -np.sign(dx), 0.0)
    ny_room = np.where(xface, 0.0, -np.sign(dy))
    parts.append((t_room[None], (t_room + 1e3)[None], u_room[None], nx_room[None], ny_room[None]))
    return _Hits(*(np.concatenate([np.broadcast_to(p[i], (p[0].shape[0], len(dx))) for p in parts]) for i in range(5)))


# --------------------------------------------------------------------------------------------
# Camera view: the level image and the lookup from the pitched camera into it


@dataclass
class _View:
    xl_cols: np.ndarray  # (Wl,) level-plane x (right) of each level column
    yl_rows: np.ndarray  # (Hl,) level-plane y (down) of each level row
    level_index: np.ndarray  # (H*W,) flat index of each output pixel's nearest level pixel
    col: np.ndarray  # (H*W,) that level pixel's column
    xl: np.ndarray  # (H*W,) exact level-plane coordinates of each output pixel
    yl: np.ndarray
    norm: np.ndarray  # (H*W,) horizontal ray length per unit of forward depth
    rel_azimuth: np.ndarray  # (H*W,) ray azimuth relative to the heading (counter-clockwise)
    elevation01: np.ndarray  # (H*W,) ray elevation / 90 degrees, clipped to 0..1
    base_code: np.ndarray  # (Hl, Wl) uint8: floor below the horizon, background above
    gx: np.ndarray  # (W,) -1..1 across the image
    gy: np.ndarray  # (H,) -1..1 down the image


@functools.lru_cache(maxsize=16)
def _view(camera: Camera) -> _View:
    f = camera.focal_px
    w, h = camera.width, camera.height
    p = math.radians(camera.pitch_deg)
    xc = ((np.arange(w) + 0.5 - w / 2) / f)[None, :]
    yc = ((np.arange(h) + 0.5 - h / 2) / f)[:, None]
    forward = math.cos(p) - yc * math.sin(p)
    xl = np.broadcast_to(xc / forward, (h, w))
    yl = np.broadcast_to((yc * math.cos(p) + math.sin(p)) / forward, (h, w))
    x0, y0 = xl.min() - 1 / f, yl.min() - 1 / f
    wl = int(math.ceil((xl.max() - x0) * f)) + 2
    hl = int(math.ceil((yl.max() - y0) * f)) + 2
    col = np.clip(np.rint((xl - x0) * f), 0, wl - 1).astype(np.intp).ravel()
    row = np.clip(np.rint((yl - y0) * f), 0, hl - 1).astype(np.intp).ravel()
    yl_rows = y0 + np.arange(hl) / f
    norm = np.sqrt(1.0 + xl * xl)
    base_code = np.where(yl_rows[:, None] > 0, _FLOOR_CODE, _BG_CODE).astype(np.uint8)
    base_code = np.ascontiguousarray(np.broadcast_to(base_code, (hl, wl)))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32).ravel()  # noqa: E731
    return _View(
        xl_cols=x0 + np.arange(wl) / f,
        yl_rows=yl_rows,
        level_index=row * wl + col,
        col=col,
        xl=f32(xl),
        yl=f32(yl),
        norm=f32(norm),
        rel_azimuth=f32(-np.arctan(xl)),
        elevation01=f32(np.clip(np.arctan2(-yl, norm) / (math.pi / 2), 0.0, 1.0)),
        base_code=base_code,
        gx=((np.arange(w) + 0.5) / w * 2 - 1).astype(np.float32),
        gy=((np.arange(h) + 0.5) / h * 2 - 1).astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# The renderer


def _frac(a: np.ndarray) -> np.ndarray:
    """a mod 1 (for floats `a - floor(a)` is many times faster than numpy's `%`)."""
    return a - np.floor(a)


@np.errstate(divide="ignore", invalid="ignore", over="ignore")  # misses are inf; unused lanes may be nan
def _render(world: World, pose: Pose, camera: Camera, light: Lighting, rng: np.random.Generator | None):
    geo = world._geometry()
    scene = world._scene()
    view = _view(camera)
    h = camera.mount_height_m
    cos_h, sin_h = math.cos(pose.heading), math.sin(pose.heading)
    fwd_x, fwd_y, right_x, right_y = cos_h, sin_h, sin_h, -cos_h

    # 1. Cast one horizontal ray per level column against every solid.
    dx = fwd_x + view.xl_cols * right_x
    dy = fwd_y + view.xl_cols * right_y
    hits = _intersect(geo, pose.x, pose.y, dx, dy)
    wl = len(view.xl_cols)

    # 2. Per column, sort solids near to far and keep the ranks that hit anything.
    order = np.argsort(hits.t_in, axis=0, kind="stable")
    ranks = min(int(np.isfinite(hits.t_in).sum(axis=0).max()), _FLOOR_CODE - 1)  # codes are uint8
    order = order[:ranks]
    t_in = np.take_along_axis(hits.t_in, order, 0)
    t_out = np.take_along_axis(hits.t_out, order, 0)
    u = np.take_along_axis(hits.u, order, 0)
    nx = np.take_along_axis(hits.nx, order, 0)
    ny = np.take_along_axis(hits.ny, order, 0)
    heights = geo.heights[order]

    # Row interval (in level-plane y, down positive) each solid covers: its side from the floor
    # line up to its top edge, plus the top face for solids lower than the camera.
    bottom = h / t_in
    top_edge = np.where(heights < h, (h - heights) / t_out, (h - heights) / t_in)
    top_edge = np.where(np.isfinite(t_in), top_edge, np.inf)

    # 3. Paint the level image far to near, so nearer solids win.
    code = view.base_code.copy()
    rows = view.yl_rows
    for r in range(ranks - 1, -1, -1):
        lo, hi = top_edge[r], bottom[r]
        finite = np.isfinite(lo)
        if not finite.any():
            continue
        r0 = int(np.searchsorted(rows, lo[finite].min(), side="left"))
        r1 = int(np.searchsorted(rows, hi[finite].max(), side="right"))
        if r1 <= r0:
            continue
        band = rows[r0:r1, None]
        cover = (band >= lo) & (band <= hi)
        code[r0:r1][cover] = r

    # 4. Per-solid, per-column surface values, looked up per output pixel.
    tex = scene.tex
    light_x = math.cos(light.light_azimuth) * math.cos(light.light_elevation)
    light_y = math.sin(light.light_azimuth) * math.cos(light.light_elevation)
    lambert = np.maximum(nx * light_x + ny * light_y, 0.0)
    side_shade = light.ambient + (1.0 - light.ambient) * lambert
    side_mx = tex.side_x0[order] + _frac(u * tex.side_inv_period[order]) * tex.side_w[order]
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32).ravel()  # noqa: E731
    frame = _PixelFrame(
        view=view,
        tex=tex,
        labels=geo.labels,
        code=code.ravel().take(view.level_index),
        ranks=ranks,
        level_width=wl,
        room=len(geo.heights) - 1,
        solid=order.ravel(),
        depth=f32(t_in),
        side_mx=f32(side_mx),
        side_shade=f32(side_shade),
        mount_height=np.float32(h),
        pose=(np.float32(pose.x), np.float32(pose.y), np.float32(pose.heading)),
        forward=(np.float32(fwd_x), np.float32(fwd_y)),
        right=(np.float32(right_x), np.float32(right_y)),
        flat_shade=np.float32(light.ambient + (1.0 - light.ambient) * math.sin(light.light_elevation)),
        inv_falloff=np.float32(1.0 / light.falloff_m),
    )
    n = camera.width * camera.height
    mx, my, shade = (np.empty(n, np.float32) for _ in range(3))
    labels = np.empty(n, np.uint8)
    for start in range(0, n, _PIXEL_CHUNK):  # chunks keep the temporaries in cache
        _pixel_stage(frame, slice(start, min(n, start + _PIXEL_CHUNK)), mx, my, shade, labels)
    size = (camera.height, camera.width)
    colour = cv2.remap(tex.atlas, mx.reshape(size), my.reshape(size), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)

    # 5. Image-wide light: gradient, vignette, colour cast, brightness, contrast, blur, noise.
    gx, gy = view.gx, view.gy
    screen = 1.0 + light.gradient[0] * gx[None, :] + light.gradient[1] * gy[:, None]
    if light.vignette:
        screen = screen - light.vignette * 0.5 * (gx[None, :] ** 2 + gy[:, None] ** 2)
    shade = shade.reshape(size) * screen.astype(np.float32)
    # Cast, brightness and contrast as one affine colour transform (OpenCV: numpy broadcasting
    # over a 3-long channel axis is slow).
    cast = np.zeros((3, 4), np.float32)
    cast[[0, 1, 2], [0, 1, 2]] = np.asarray(light.color_gain, np.float32) * (light.brightness * light.contrast)
    cast[:, 3] = 128.0 * (1.0 - light.contrast)
    out = cv2.multiply(colour, cv2.cvtColor(shade, cv2.COLOR_GRAY2RGB), dtype=cv2.CV_32F)
    out = cv2.transform(out, cast)
    if light.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), light.blur_sigma)
    if rng is not None and light.noise_std > 0:
        noise = rng.random(out.shape, dtype=np.float32)
        noise -= np.float32(0.5)
        noise *= np.float32(light.noise_std * math.sqrt(12.0))  # uniform noise with that std
        out += noise
    rgb = np.clip(out, 0, 255, out=out).astype(np.uint8)
    return rgb, labels.reshape(size)


_PIXEL_CHUNK = 32768


@dataclass
class _PixelFrame:
    """What the per-pixel stage of one frame reads: the painted level codes looked up per output
    pixel and the per-(rank, level column) surface values, flattened."""

    view: _View
    tex: _Textures
    labels: np.ndarray
    code: np.ndarray
    ranks: int
    level_width: int
    room: int
    solid: np.ndarray
    depth: np.ndarray
    side_mx: np.ndarray
    side_shade: np.ndarray
    mount_height: np.float32
    pose: tuple[np.float32, np.float32, np.float32]
    forward: tuple[np.float32, np.float32]
    right: tuple[np.float32, np.float32]
    flat_shade: np.float32
    inv_falloff: np.float32


def _pixel_stage(
    f: _PixelFrame, sl: slice, out_mx: np.ndarray, out_my: np.ndarray, out_shade: np.ndarray, out_labels: np.ndarray
) -> None:
    """Atlas coordinates, shading and class of the output pixels in `sl`."""
    view, tex, h = f.view, f.tex, f.mount_height
    code = f.code[sl]
    surface = code < _FLOOR_CODE
    is_floor = code == _FLOOR_CODE
    if f.ranks:
        flat = np.minimum(code, f.ranks - 1).astype(np.intp) * f.level_width + view.col[sl]
        k = f.solid.take(flat)
        t = f.depth.take(flat)
        mx_side = f.side_mx.take(flat)
        side_shade = f.side_shade.take(flat)
    else:  # the camera is outside the room: nothing but floor and sky
        k = np.full(code.shape, f.room, np.intp)
        t = np.full(code.shape, np.inf, np.float32)
        mx_side = side_shade = np.zeros(code.shape, np.float32)
    yl, xl = view.yl[sl], view.xl[sl]
    hk = tex.heights.take(k)
    z = h - yl * t  # height of the side point each surface pixel sees
    on_top = surface & (z > hk)
    on_side = surface & ~on_top

    # Side texture row: from the solid's top (tile row 0) down to the floor.
    frac_down = np.clip(1.0 - z * tex.inv_heights.take(k), 0.0, 1.0)
    my_side = tex.side_y0.take(k) + frac_down * tex.side_h.take(k)

    # Horizontal planes (floor and visible tops): the world point under the pixel.
    plane_h = np.where(on_top, hk, np.float32(0.0))
    depth_plane = (h - plane_h) / np.maximum(yl, np.float32(1e-4))
    wx = f.pose[0] + depth_plane * (f.forward[0] + xl * f.right[0])
    wy = f.pose[1] + depth_plane * (f.forward[1] + xl * f.right[1])
    top_inv = tex.top_inv_period.take(k)
    mx_top = tex.top_x0.take(k) + _frac(wx * top_inv) * np.float32(_TOP_TILE[1])
    my_top = tex.top_y0.take(k) + _frac(wy * top_inv) * np.float32(_TOP_TILE[0])
    # Clipped to the floor picture: pixels at the horizon may land a hair beyond the walls.
    mx_floor = np.clip(tex.floor_x0 + wx * tex.floor_ppm, tex.floor_x0, tex.floor_x1)
    my_floor = np.clip(tex.floor_y0 + wy * tex.floor_ppm, tex.floor_y0, tex.floor_y1)

    # Background: a panorama indexed by world azimuth and elevation.
    az01 = _frac((f.pose[2] + view.rel_azimuth[sl]) * np.float32(1 / (2 * math.pi)))
    mx_bg = tex.pano_x0 + az01 * np.float32(_PANORAMA[1])
    my_bg = tex.pano_y0 + (1.0 - view.elevation01[sl]) * np.float32(_PANORAMA[0])

    out_mx[sl] = np.where(on_side, mx_side, np.where(on_top, mx_top, np.where(is_floor, mx_floor, mx_bg)))
    out_my[sl] = np.where(on_side, my_side, np.where(on_top, my_top, np.where(is_floor, my_floor, my_bg)))

    # Shading by facing and distance; the background keeps its own colours.
    shade = np.where(on_side, side_shade, f.flat_shade)
    dist = np.where(on_side, t, depth_plane) * view.norm[sl]
    falloff = 0.7 + 0.3 * np.exp(-dist * f.inv_falloff)
    out_shade[sl] = np.where(surface | is_floor, shade * falloff, np.float32(1.0))
    out_labels[sl] = np.where(surface, f.labels.take(k), np.where(is_floor, np.uint8(FLOOR), np.uint8(BACKGROUND)))


# --------------------------------------------------------------------------------------------
# Textures and the atlas


@dataclass
class _Textures:
    """Where each solid's textures lie in the atlas, as float32 per-solid tables (remap pixel units)."""

    atlas: np.ndarray
    heights: np.ndarray
    inv_heights: np.ndarray
    side_x0: np.ndarray
    side_y0: np.ndarray
    side_w: np.ndarray
    side_h: np.ndarray
    side_inv_period: np.ndarray
    top_x0: np.ndarray
    top_y0: np.ndarray
    top_inv_period: np.ndarray
    floor_x0: np.float32
    floor_y0: np.float32
    floor_x1: np.float32
    floor_y1: np.float32
    floor_ppm: np.float32
    pano_x0: np.float32
    pano_y0: np.float32


@dataclass
class _Scene:
    tex: _Textures
    floor_image: np.ndarray  # (rows along y, cols along x) RGB, row 0 at y = 0


def _build_scene(world: World, geo: _Geometry) -> _Scene:
    rng = np.random.default_rng([world.seed, 7331])
    cyl = [ob for ob in world.obstacles if ob.shape == "cylinder"]
    boxes = [ob for ob in world.obstacles if ob.shape == "box"]
    solids: list[Obstacle | None] = [*cyl, *boxes] + [None] * (len(world.walls) + 1)  # None = wall

    floor = _floor_image(world, rng)
    pano = _panorama(world.background, rng)
    wall_period = world.wall.period_m
    wall_tile = _wall_tile(world.wall, world.wall_height_m, wall_period, rng)
    images = [_pad(floor, wrap=False), _pad(pano, wrap=True), _pad(wall_tile, wrap=True)]
    periods, top_periods = [], []
    for ob in solids:
        if ob is None:
            periods.append(wall_period)
            top_periods.append(1.0)
            continue
        period = _side_period(ob)
        periods.append(period)
        side, top, top_period = _obstacle_tiles(ob, period, rng)
        top_periods.append(top_period)
        images += [_pad(side, wrap=True), _pad(top, wrap=True)]
    atlas, origins = _pack(images)

    side_x0, side_y0, side_w, side_h, top_x0, top_y0 = [], [], [], [], [], []
    slot = 3
    for ob in solids:
        if ob is None:
            ox, oy = origins[2]
            side_x0.append(ox + 0.5), side_y0.append(oy + 0.5)
            side_w.append(_WALL_TILE[1]), side_h.append(_WALL_TILE[0])
            top_x0.append(ox + 0.5), top_y0.append(oy + 0.5)  # wall tops are never seen
            continue
        (sx, sy), (tx, ty) = origins[slot], origins[slot + 1]
        slot += 2
        side_x0.append(sx + 0.5), side_y0.append(sy + 0.5)
        side_w.append(_SIDE_TILE[1]), side_h.append(_SIDE_TILE[0])
        top_x0.append(tx + 0.5), top_y0.append(ty + 0.5)
    f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
    heights = geo.heights.astype(np.float32)
    ppm = floor.shape[1] / world.size_m[0]
    tex = _Textures(
        atlas=atlas,
        heights=heights,
        inv_heights=1.0 / heights,
        side_x0=f32(side_x0),
        side_y0=f32(side_y0),
        side_w=f32(side_w),
        side_h=f32(side_h),
        side_inv_period=1.0 / f32(periods),
        top_x0=f32(top_x0),
        top_y0=f32(top_y0),
        top_inv_period=1.0 / f32(top_periods),
        floor_x0=np.float32(origins[0][0] + 0.5),
        floor_y0=np.float32(origins[0][1] + 0.5),
        floor_x1=np.float32(origins[0][0] + floor.shape[1] + 0.5),
        floor_y1=np.float32(origins[0][1] + floor.shape[0] + 0.5),
        floor_ppm=np.float32(ppm),
        pano_x0=np.float32(origins[1][0] + 0.5),
        pano_y0=np.float32(origins[1][1] + 0.5),
    )
    return _Scene(tex=tex, floor_image=floor)


def _pad(image: np.ndarray, wrap: bool) -> np.ndarray:
    """One pixel of border so bilinear sampling at a tile's edge stays inside the tile:
    wrapped left/right for horizontally periodic tiles, replicated top/bottom."""
    if wrap:
        image = np.concatenate([image[:, -1:], image, image[:, :1]], axis=1)
    else:
        image = np.concatenate([image[:, :1], image, image[:, -1:]], axis=1)
    return np.concatenate([image[:1], image, image[-1:]], axis=0)


def _pack(images: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Shelf-pack images into one atlas; returns it and each image's (x, y) origin."""
    width = max(1024, max(img.shape[1] for img in images))
    x = y = shelf = 0
    origins = []
    for img in images:
        ih, iw = img.shape[:2]
        if x + iw > width:
            x, y, shelf = 0, y + shelf, 0
        origins.append((x, y))
        x += iw
        shelf = max(shelf, ih)
    atlas = np.zeros((y + shelf, width, 3), np.uint8)
    for (ox, oy), img in zip(origins, images):
        atlas[oy : oy + img.shape[0], ox : ox + img.shape[1]] = img
    return atlas, origins


def _side_period(ob: Obstacle) -> float:
    """Texture period along the perimeter; for cylinders a whole fraction of the circumference
    so the pattern closes seamlessly."""
    target = float(np.clip(ob.texture_scale_m * 4, 0.2, 1.0))
    if ob.shape == "cylinder":
        circumference = 2 * math.pi * ob.radius
        return circumference / max(1, round(circumference / target))
    return target


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def _periodic_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth value noise in 0..1 that tiles seamlessly with the given number of cells."""
    grid = rng.random((max(1, cells[0]), max(1, cells[1]))).astype(np.float32)
    big = np.tile(grid, (3, 3))
    up = cv2.resize(big, (shape[1] * 3, shape[0] * 3), interpolation=cv2.INTER_CUBIC)
    out = up[shape[0] : 2 * shape[0], shape[1] : 2 * shape[1]]
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _mix(a: RGB | np.ndarray, b: RGB | np.ndarray, weight: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    w = weight[..., None].astype(np.float32)
    return a * (1 - w) + b * w


def _obstacle_tiles(ob: Obstacle, period: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(side tile over one period x the full height, top tile, top period in metres)."""
    rows, cols = _SIDE_TILE
    uu = (np.arange(cols, dtype=np.float32) + 0.5) / cols * period
    zz = ob.height - (np.arange(rows, dtype=np.float32) + 0.5) / rows * ob.height
    u_grid, z_grid = np.meshgrid(uu, zz)
    top_period = max(ob.texture_scale_m * 4, 0.2)
    tr, tc = _TOP_TILE
    tu = (np.arange(tc, dtype=np.float32) + 0.5) / tc * top_period
    tv = (np.arange(tr, dtype=np.float32) + 0.5) / tr * top_period
    tu_grid, tv_grid = np.meshgrid(tu, tv)
    s = ob.texture_scale_m

    def pattern(a: np.ndarray, b: np.ndarray, per: float) -> np.ndarray:
        if ob.texture == "plain":
            return np.zeros_like(a)
        if ob.texture == "stripes":
            n = max(1, round(per / (2 * s)))
            step = per / (2 * n)  # whole stripes per period so the pattern wraps
            return (np.floor(b / step) % 2).astype(np.float32)
        if ob.texture == "checker":
            n = max(1, round(per / (2 * s)))
            step = per / (2 * n)
            return ((np.floor(a / step) + np.floor(b / step)) % 2).astype(np.float32)
        noise = _periodic_noise(rng, a.shape, (max(2, a.shape[0] // 16), max(2, a.shape[1] // 16)))
        return np.clip((noise - 0.5) * 4 + 0.5, 0, 1)

    weight = pattern(u_grid, z_grid, period)
    if ob.texture == "stripes" and rng.random() < 0.5:  # vertical stripes instead of bands
        n = max(1, round(period / (2 * s)))
        weight = (np.floor(u_grid / (period / (2 * n))) % 2).astype(np.float32)
    side = _mix(ob.color, ob.color2, weight)
    grain = _periodic_noise(rng, (rows, cols), (rows // 8, cols // 8))
    side *= (0.92 + 0.16 * grain)[..., None]
    # Slight darkening at the foot: contact shadow, as in real photos.
    foot = 1.0 - 0.25 * np.exp(-z_grid / 0.03)
    side *= foot[..., None]
    top_weight = pattern(tu_grid, tv_grid, top_period)
    top = _mix(ob.color, ob.color2, top_weight) * 1.08
    top *= (0.94 + 0.12 * _periodic_noise(rng, (tr, tc), (8, 8)))[..., None]
    return _to_u8(side), _to_u8(top), top_period


def _wall_tile(style: WallStyle, height: float, period: float, rng: np.random.Generator) -> np.ndarray:
    rows, cols = _WALL_TILE
    uu = (np.arange(cols, dtype=np.float32) + 0.5) / cols * period
    zz = height - (np.arange(rows, dtype=np.float32) + 0.5) / rows * height
    u, z = np.meshgrid(uu, zz)
    base = np.broadcast_to(np.asarray(style.color, np.float32), (rows, cols, 3)).copy()
    fine = _periodic_noise(rng, (rows, cols), (rows // 4, cols // 4))
    if style.kind == "plain":
        base *= (0.96 + 0.06 * fine)[..., None]
    elif style.kind == "plaster":
        coarse = _periodic_noise(rng, (rows, cols), (6, 6))
        base *= (0.86 + 0.18 * coarse + 0.06 * fine)[..., None]
    elif style.kind == "bricks":
        course = 0.075
        brick = period / max(1, round(period / 0.22))
        row_i = np.floor(z / course)
        shifted = u + (row_i % 2) * brick / 2
        col_i = np.floor(shifted / brick)
        jitter = rng.uniform(0.85, 1.1, 64).astype(np.float32)
        base *= jitter[((row_i * 7 + col_i * 13) % 64).astype(np.intp)][..., None]
        base *= (0.94 + 0.1 * fine)[..., None]
        mortar = ((z % course) < 0.012) | ((shifted % brick) < 0.012)
        base[mortar] = np.asarray(style.color2, np.float32)
    elif style.kind == "panels":
        panel = period / max(1, round(period / 0.5))
        groove = (u % panel) < panel * 0.03
        base *= (0.95 + 0.05 * ((u % panel) / panel))[..., None]
        base[groove] *= 0.7
    elif style.kind == "wallpaper":
        stripe = period / max(1, round(period / 0.08))
        weight = ((u / stripe) % 2 < 1).astype(np.float32)
        base = _mix(style.color, style.color2, weight * 0.6)
        base *= (0.97 + 0.05 * fine)[..., None]
    if style.dado_m > 0:
        base[z < style.dado_m] = np.asarray(style.color2, np.float32) * (0.95 + 0.05 * fine[z < style.dado_m])[:, None]
        base[np.abs(z - style.dado_m) < 0.015] *= 0.8
    if style.skirting_m > 0:
        base[z < style.skirting_m] = np.asarray(style.skirting_color, np.float32)
        base[np.abs(z - style.skirting_m) < 0.008] *= 0.75
    base[z > height - 0.03] *= 0.72  # the shadowed edge where a wall meets the ceiling
    return _to_u8(base)


def _floor_image(world: World, rng: np.random.Generator) -> np.ndarray:
    """The whole floor at about 1 cm per pixel: a periodic pattern tile repeated over the room,
    times a light map (soft light pools and contact shadows around solids)."""
    style = world.floor
    sx, sy = world.size_m
    ppm = min(_FLOOR_PX_PER_M, _FLOOR_MAX_PX / max(sx, sy))
    width, height = max(2, int(round(sx * ppm))), max(2, int(round(sy * ppm)))
    tile = _floor_tile(style, ppm, rng)
    reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1, 1)
    image = np.ascontiguousarray(np.tile(tile, reps)[:height, :width])

    # Light map at 4 cm per pixel.
    lm_ppm = 25.0
    lw, lh = max(2, int(round(sx * lm_ppm))), max(2, int(round(sy * lm_ppm)))
    ys, xs = np.mgrid[0:lh, 0:lw].astype(np.float32) / lm_ppm
    light = np.full((lh, lw), 0.9, np.float32)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, sx), rng.uniform(0, sy)
        spread = rng.uniform(1.0, 3.5)
        light += rng.uniform(0.05, 0.2) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * spread**2))
    solid = np.full((lh + 2, lw + 2), 255, np.uint8)
    solid[1:-1, 1:-1] = 0  # the room's walls: a one-pixel frame around the floor
    to_px = lambda x, y: (int(round(x * lm_ppm)) + 1, int(round(y * lm_ppm)) + 1)  # noqa: E731
    for ob in world.obstacles:
        if ob.shape == "cylinder":
            cv2.circle(solid, to_px(ob.x, ob.y), max(1, int(round(ob.radius * lm_ppm))), 255, -1)
        else:
            corners = _box_corners(ob.x, ob.y, ob.half_x, ob.half_y, ob.angle)
            cv2.fillPoly(solid, [np.array([to_px(*c) for c in corners], np.int32)], 255)
    for seg in world.walls:
        corners = _box_corners(*_segment_box(seg))
        cv2.fillPoly(solid, [np.array([to_px(*c) for c in corners], np.int32)], 255)
    dist = cv2.distanceTransform((solid == 0).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1] / lm_ppm
    light *= 1.0 - style.shadow * np.exp(-dist / 0.12)
    light = cv2.resize(light, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(image, cv2.merge([light, light, light]), dtype=cv2.CV_8U)


def _floor_tile(style: FloorStyle, ppm: float, rng: np.random.Generator) -> np.ndarray:
    """One seamless period of the floor pattern (about 2-3 m square) at `ppm` pixels per metre."""
    s = style.scale_m
    n = 2 * max(1, round(1.2 / s))  # an even count keeps checkers alternating across tile seams
    period = n * s
    size = max(8, int(round(period * ppm)))
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * period
    x, y = np.meshgrid(coords, coords)
    a = np.asarray(style.color, np.float32)
    b = np.asarray(style.color2, np.float32)
    fine = _periodic_noise(rng, (size, size), (size // 3, size // 3))
    if style.kind == "checker":
        weight = (np.floor(x / s) + np.floor(y / s)) % 2
        tile = _mix(a, b, weight) * (0.95 + 0.08 * fine)[..., None]
    elif style.kind == "tiles":
        cell = (np.floor(x / s) * 31 + np.floor(y / s) * 17) % 97
        jitter = rng.uniform(0.92, 1.06, 97).astype(np.float32)[cell.astype(np.intp)]
        tile = a * (jitter * (0.96 + 0.06 * fine))[..., None]
        grout = ((x % s) < 0.012) | ((y % s) < 0.012)
        tile[grout] = b
    elif style.kind == "wood":
        plank_w = s / 3
        row = np.floor(y / plank_w)
        offsets = rng.uniform(0, period, 512).astype(np.float32)
        shifted = (x + offsets[(row % 512).astype(np.intp)]) % period
        plank_len = period / max(1, round(period / 1.2))
        plank = np.floor(shifted / plank_len)
        idx = ((row * 13 + plank * 7) % 127).astype(np.intp)
        tone = rng.uniform(0.0, 1.0, 127).astype(np.float32)[idx]
        grain = _periodic_noise(rng, (size, size), (max(2, size // 2), max(2, size // 40)))
        tile = _mix(a, b, np.clip(0.6 * tone + 0.4 * grain, 0, 1))
        joint = ((y % plank_w) < 0.006) | ((shifted % plank_len) < 0.006)
        tile[joint] *= 0.6
    elif style.kind == "concrete":
        coarse = _periodic_noise(rng, (size, size), (5, 5))
        tile = _mix(a, b, coarse * 0.6) * (0.9 + 0.2 * fine)[..., None]
    else:  # carpet
        speckle = rng.random((size, size)).astype(np.float32)
        coarse = _periodic_noise(rng, (size, size), (6, 6))
        tile = _mix(a, b, 0.3 * coarse) * (0.88 + 0.18 * speckle)[..., None]
    return _to_u8(tile)


def _panorama(style: BackgroundStyle, rng: np.random.Generator) -> np.ndarray:
    """360-degree background: rows from the zenith (row 0) to the horizon (last row)."""
    rows, cols = _PANORAMA
    up = np.linspace(1.0, 0.0, rows, dtype=np.float32)[:, None] * np.ones((1, cols), np.float32)
    a, b = np.asarray(style.color, np.float32), np.asarray(style.color2, np.float32)
    noise = _periodic_noise(rng, (rows, cols), (8, 32))
    if style.kind == "sky":
        image = _mix(b, a, up)  # pale at the horizon, deeper towards the zenith
        clouds = np.clip((noise - 0.55) * 3, 0, 1) * (1 - up * 0.5)
        image = _mix(image, np.array([245, 245, 250], np.float32), clouds)
    elif style.kind == "ceiling":
        image = _mix(a, b, 0.3 * up + 0.2 * noise)
        for _ in range(int(rng.integers(2, 7))):  # ceiling lamps
            cx, cy = int(rng.integers(0, cols)), int(rng.integers(5, rows * 3 // 4))
            cv2.ellipse(image, (cx, cy), (int(rng.integers(4, 14)), int(rng.integers(2, 5))), 0, 0, 360,
                        (250.0, 248.0, 235.0), -1)
    else:  # dark
        image = _mix(a, b, 0.5 * noise)
    return _to_u8(image)


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
