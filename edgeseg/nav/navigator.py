"""Steering and throttle from a segmentation class map: the navigation layer of edgeseg.

`Navigator.step(class_map)` measures the free space in the lower part of the frame
(`edgeseg.nav.freespace`), scores candidate headings by how far their corridor (the car's width
plus a margin, swept from the car towards the heading) is free and how open the area they point
into is, biased towards straight ahead, sets the throttle from the clearance of the corridor it
actually steers into, stops when that clearance is too short, and smooths the commands so they do
not jitter between frames. Only numpy, no drawing: it runs on the robot.

Two guards against a model that calls an obstacle floor, which matters most close up (a wall
filling the frame looks like floor to a small model):

- Stop quickly, go slowly: the clearance the car drives on is the smallest of the last
  `free_frames` frames, so free space must persist before the car speeds up or drives on after
  a stop, while a blocked frame brakes at once.
- With a known camera (`NavConfig.for_camera`, `Navigator.from_spec(..., robot=...)` with an
  `edgeseg.robot.Robot`, on a real car as in the synthetic world) the mode's stop and slow-down
  lines are set in metres on the floor, where the camera sees the car's whole
  path, and any image column with traversable pixels above the floor's vanishing line (physically
  impossible on a flat floor) counts as blocked.

Sign convention (shared with the synthetic world's car model): steering > 0 turns right (towards
image-right), steering < 0 turns left; throttle is a fraction of the car's top speed.

Speed, measured on the shared 2-core AMD EPYC dev box (numpy 2), median of 2000 steps: about
0.3 ms on a 256x256 class map, 0.35 ms on 640x480 and 0.5 ms on 1920x1080 (the ground region is
analysed on a grid of at most 128x256 cells). The 95th percentile reached 4-7 ms only while other
jobs loaded both cores.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from edgeseg.errors import EdgesegError, check_field_range
from edgeseg.nav.freespace import FreeSpace, analyse_free_space
from edgeseg.robot import Camera, Robot

if TYPE_CHECKING:
    from edgeseg.spec import ModelSpec

# Why a command is what it is (Command.reason).
CLEAR = "clear"  # driving at the mode's top speed for this clearance and steering
SLOWING = "slowing"  # driving, slower because something is in the corridor ahead
BLOCKED = "blocked"  # stopped: the corridor ahead is shorter than the stop clearance
UNCERTAIN = "uncertain"  # stopped: the class map is too fragmented or unclassified to trust
NO_GROUND = "no ground"  # stopped: no traversable pixel in the ground region at all
REASONS = (CLEAR, SLOWING, BLOCKED, UNCERTAIN, NO_GROUND)


@dataclass(frozen=True)
class Command:
    """One driving command; every path of `Navigator.step` returns this type.

    Attributes:
        steering: in [-1, 1]; > 0 turns right, < 0 turns left. When stopped it points to the
            more open side, so a caller can turn in place or reverse.
        throttle: in [0, 1], fraction of the car's top speed; 0 when stopped.
        stop: True when the car must not drive forward.
        clearance: in [0, 1], free depth of the corridor the car steers into, as a fraction of
            the ground region's height (1 = free up to the horizon); the smallest over the last
            `NavConfig.free_frames` frames.
        confidence: in [0, 1], how much the class map can be trusted (classified, not
            fragmented).
        reason: one of REASONS.
        clearance_m: the clearance in metres of floor ahead of the lens when the navigator knows
            the robot's camera (`Navigator.distance_m`), else None.
    """

    steering: float
    throttle: float
    stop: bool
    clearance: float
    confidence: float
    reason: str
    clearance_m: float | None = None


@dataclass(frozen=True)
class NavConfig:
    """Every parameter of the navigator; the defaults are the "balanced" mode.

    Widths are fractions of the image width, depths and clearances fractions of the ground
    region's height. The values that differ between modes (marked "mode") are in the `NAV_MODES`
    table below; derive a variant with `dataclasses.replace(NAV_MODES["safe"], horizon=0.5)`.

    Attributes:
        horizon: the ground region starts this fraction of the image height from the top.
        car_width: the car's width as seen at the bottom row of the image.
        far_width: the corridor's width at the horizon line relative to the bottom row;
            perspective makes the car look narrower far away.
        narrow_from: the ground depth where the corridor starts narrowing towards far_width;
            below it the corridor keeps its bottom width (0: narrows from the bottom row).
        margin: extra free width required on each side of the car (mode).
        stop_clearance: stop when the corridor ahead is free for less than this (mode).
        slow_clearance: drive at the mode's top speed only when the corridor is free this far (mode).
        max_throttle: the mode's top speed, fraction of the car's (mode).
        min_throttle: throttle just above the stop clearance, as a fraction of max_throttle.
        turn_slowdown: throttle is scaled by 1 - turn_slowdown * |steering|.
        confidence_slowdown: throttle is scaled by 1 - confidence_slowdown * (1 - confidence).
        min_confidence: stop ("uncertain") below this confidence (mode).
        max_heading: where the corridor at full steering lock meets the horizon, as an offset
            from the image centre (1 = the image edge); steering = heading / max_heading.
        headings: how many headings are scored, spread evenly over full lock (odd, so straight
            ahead is one of them).
        straight_bias: score penalty per unit of steering, to prefer going straight.
        openness_weight: score weight of how open the area a heading points into is (the mean
            column depth over twice the corridor's width), next to the corridor's free depth.
        hysteresis: score penalty per unit of steering away from the previous command, so the
            choice between two equally good gaps does not flip every frame.
        steering_smoothing: fraction of the way to the new steering taken each frame (mode).
        max_steering_step: largest steering change per frame (mode).
        max_throttle_rise: largest throttle increase per frame; braking is immediate (mode).
        smooth_width: width of the moving average over column depths.
        min_obstacle_rows: consecutive non-traversable grid rows that make an obstacle.
        min_obstacle_width: fraction of a corridor's width that obstacle cells must fill in one
            row to block it (at least one cell).
        fragmentation_scale: fragmentation at which confidence reaches 0 (salt-and-pepper
            noise is about 0.5, a clean map below 0.02).
        max_rows, max_cols: the largest analysis grid; bigger class maps are subsampled.
        outside_blocks: treat the part of a corridor that lies outside the image as blocked,
            so the car never steers into ground the camera has not seen (for cameras that
            see less than the car's width close to the car; off in the mode table).
        free_frames: the clearance driven on is the smallest of this many frames (this one and
            the ones before), so a frame of free space does not start or speed up the car (mode).
        vanishing_line: the flat floor's vanishing line (the camera's true horizon) as a fraction
            of the image height from the top; image columns with traversable pixels more than
            `vanishing_margin` above it count as blocked. 0: the camera is unknown, no check
            (the mode table); `for_camera` sets it.
        vanishing_margin: how far above the vanishing line (fraction of the height) traversable
            pixels must reach to count, for a model's blurred floor boundary at far walls.
        min_free_probability: with the model's probabilities (`step(..., free_probability=)`),
            traversable pixels whose traversable probability is below this count as obstacles,
            so the car drives only on floor the model is sure of (mode; 0: off).
    """

    horizon: float = 0.45
    car_width: float = 0.3
    far_width: float = 0.5
    narrow_from: float = 0.0
    margin: float = 0.05
    stop_clearance: float = 0.22
    slow_clearance: float = 0.65
    max_throttle: float = 0.65
    min_throttle: float = 0.3
    turn_slowdown: float = 0.4
    confidence_slowdown: float = 0.5
    min_confidence: float = 0.2
    max_heading: float = 0.8
    headings: int = 33
    straight_bias: float = 0.2
    openness_weight: float = 0.3
    hysteresis: float = 0.05
    steering_smoothing: float = 0.5
    max_steering_step: float = 0.25
    max_throttle_rise: float = 0.1
    smooth_width: float = 0.04
    min_obstacle_rows: int = 2
    min_obstacle_width: float = 0.02
    fragmentation_scale: float = 0.3
    max_rows: int = 128
    max_cols: int = 256
    outside_blocks: bool = False
    free_frames: int = 2
    vanishing_line: float = 0.0
    vanishing_margin: float = 0.05
    min_free_probability: float = 0.0

    def __post_init__(self) -> None:
        def check(name: str, low: float, high: float) -> None:
            check_field_range(self, name, low, high)

        check("horizon", 0.0, 0.95)
        check("car_width", 0.0, 0.9)
        check("margin", 0.0, 0.45)
        for name in ("stop_clearance", "slow_clearance", "max_throttle", "min_throttle",
                     "turn_slowdown", "confidence_slowdown", "min_confidence",
                     "max_throttle_rise", "smooth_width", "min_obstacle_width", "far_width", "narrow_from"):
            check(name, 0.0, 1.0)
        for name in ("steering_smoothing", "max_steering_step", "max_heading"):
            check(name, 0.01, 1.0)
        for name in ("straight_bias", "openness_weight", "hysteresis"):
            check(name, 0.0, 10.0)
        check("fragmentation_scale", 0.01, 1.0)
        check("headings", 1, 1001)
        check("min_obstacle_rows", 1, 64)
        check("max_rows", 1, 4096)
        check("max_cols", 1, 4096)
        check("free_frames", 1, 100)
        check("vanishing_line", 0.0, 1.0)
        check("vanishing_margin", 0.0, 0.5)
        check("min_free_probability", 0.0, 1.0)
        if self.headings % 2 == 0:
            raise EdgesegError(
                f"NavConfig.headings={self.headings} must be odd, so straight ahead is a heading"
            )
        if self.car_width + 2 * self.margin > 0.9:
            raise EdgesegError(
                f"NavConfig corridor car_width + 2 * margin = {self.car_width + 2 * self.margin:.2f} "
                "is wider than 0.9 of the image; lower car_width or margin"
            )
        if self.slow_clearance <= self.stop_clearance:
            raise EdgesegError(
                f"NavConfig.slow_clearance ({self.slow_clearance}) must be above "
                f"stop_clearance ({self.stop_clearance})"
            )

    @classmethod
    def for_camera(cls, mode: str, camera: Camera, car_width_m: float = 0.3) -> "NavConfig":
        """A mode's NAV_MODES row adapted to a known camera and car; see CAMERA_MODES.

        The mode table is in image fractions and knows no camera. On a low, wide camera such as
        the synthetic world's (0.12 m high, pitched 10 degrees down, 90 degrees wide) the bottom
        image row spans 0.21 m of floor, less than a 0.3 m car, and the table's stop line lies
        13 cm ahead of the lens, closer than a small model labels walls reliably. Four changes;
        margins, speeds and smoothing stay the mode's:

        - stop_clearance: the farthest of the table's, the row `CAMERA_MODES[mode].stop_m` ahead
          of the lens, and the row where the image spans the car's width plus `seen_margin_m` on
          each side (so the car stops while it still sees its whole path); slow_clearance the
          same with `slow_m`;
        - the corridor: as wide as NavConfig allows (car_width = 0.9 - 2 * margin) up to the stop
          line (still narrower than the car below it), then narrowing to the car's width plus
          the seen margins at the horizon; a straight path of constant width narrows linearly
          in the image, so the corridor stays at least that wide in between, and things beside
          the path no longer slow the car;
        - outside_blocks: corridor parts outside the image count as blocked, so the car never
          steers into floor it has not seen;
        - vanishing_line: the floor's vanishing line, so floor above it counts as blocked.

        Args:
            mode: a key of NAV_MODES.
            camera: the camera the class maps come from (`edgeseg.robot.Camera`, or anything
                with its width, height, hfov_deg, mount_height_m and pitch_deg). Class maps
                must have its aspect ratio; `Navigator(..., robot=)` adapts to each map's size.
            car_width_m: the car's width.
        """
        if mode not in NAV_MODES:
            raise EdgesegError(f"unknown navigation mode {mode!r}; choose one of {', '.join(NAV_MODES)}")
        if not 0.01 <= car_width_m <= 5.0:
            raise EdgesegError(f"car_width_m={car_width_m} is outside 0.01..5 m")
        table, metres = NAV_MODES[mode], CAMERA_MODES[mode]
        floor = FloorGeometry.of(camera, table.horizon)
        path_m = car_width_m + 2 * metres.seen_margin_m
        # The corridor covers _WIDEST of the image: stop no nearer than where that is the car's path.
        seen = floor.depth_where_image_spans(path_m / _WIDEST)
        stop = min(max(table.stop_clearance, seen, floor.depth_at(metres.stop_m)), 0.9)
        slow = min(max(table.slow_clearance, floor.depth_at(metres.slow_m), stop + 0.1), 1.0)
        return dataclasses.replace(
            table,
            car_width=_WIDEST - 2 * table.margin,
            far_width=min(max(floor.image_fraction(path_m, 1.0) / _WIDEST, 0.05), 1.0),
            narrow_from=stop,
            stop_clearance=stop,
            slow_clearance=slow,
            outside_blocks=True,
            vanishing_line=floor.vanishing_line,
        )


@dataclass(frozen=True)
class CameraMode:
    """The metric part of a mode, used when the camera is known (`NavConfig.for_camera`).

    Attributes:
        stop_m: stop when the corridor is free for less than this far ahead of the lens, on the
            floor. Far enough that a small model still tells walls from floor there.
        slow_m: drive at the mode's top speed only when the corridor is free this far.
        seen_margin_m: the stop line lies no nearer than where the image spans the car's width
            plus this much on each side.
    """

    stop_m: float
    slow_m: float
    seen_margin_m: float


@dataclass(frozen=True)
class FloorGeometry:
    """Where the flat floor appears in a pinhole camera's image (square pixels, centred, no roll).

    Attributes:
        width, height: image size in pixels.
        focal_px: focal length in pixels.
        mount_height_m: the lens's height above the floor.
        pitch: downward tilt in radians.
        horizon: the navigator's ground region starts this fraction of the height from the top.
    """

    width: int
    height: int
    focal_px: float
    mount_height_m: float
    pitch: float
    horizon: float

    @classmethod
    def of(cls, camera: Camera, horizon: float) -> "FloorGeometry":
        """The geometry of a camera object with width, height, hfov_deg, mount_height_m, pitch_deg."""
        try:
            width, height = int(camera.width), int(camera.height)
            hfov, mount, pitch = float(camera.hfov_deg), float(camera.mount_height_m), float(camera.pitch_deg)
        except (AttributeError, TypeError, ValueError):
            raise EdgesegError(
                f"the navigator needs a camera with width, height, hfov_deg, mount_height_m and pitch_deg "
                f"(e.g. edgeseg.robot.Camera), got {camera!r}"
            ) from None
        if width < 1 or height < 1 or not 1.0 <= hfov < 180.0 or mount <= 0.0 or not -80.0 < pitch < 80.0:
            raise EdgesegError(
                f"camera {width}x{height}, hfov_deg={hfov}, mount_height_m={mount}, pitch_deg={pitch} is not a "
                "forward camera above the floor; check its size, field of view (1-180), height (> 0) and pitch"
            )
        focal = (width / 2) / math.tan(math.radians(hfov) / 2)
        return cls(width, height, focal, mount, math.radians(pitch), horizon)

    @property
    def vanishing_line(self) -> float:
        """The image row where the floor ends at infinity, as a fraction of the height (clipped to 0-1)."""
        row = self.height / 2 - self.focal_px * math.tan(self.pitch)
        return float(min(max(row / self.height, 0.0), 1.0))

    def _depth_of_row(self, row: float) -> float:
        top = min(int(self.horizon * self.height), self.height - 1)
        return float(min(max((self.height - row) / (self.height - top), 0.0), 1.0))

    def depth_at(self, distance_m: float) -> float:
        """Ground depth (fraction of the ground region) of the floor `distance_m` ahead of the lens."""
        cos, sin = math.cos(self.pitch), math.sin(self.pitch)
        h = self.mount_height_m
        row = self.height / 2 + self.focal_px * (h * cos - distance_m * sin) / (distance_m * cos + h * sin)
        return self._depth_of_row(row)

    def image_fraction(self, width_m: float, depth: float) -> float:
        """The fraction of the image width that `width_m` of floor takes at a ground depth."""
        top = min(int(self.horizon * self.height), self.height - 1)
        y = (self.height - depth * (self.height - top) - self.height / 2) / self.focal_px
        below = y * math.cos(self.pitch) + math.sin(self.pitch)  # 0 at the vanishing line
        if below <= 0.0:
            return 0.0  # at or above the vanishing line the floor is infinitely far
        distance = self.mount_height_m / below  # along the optical axis
        return width_m * self.focal_px / (distance * self.width)

    def distance_of_depth(self, depth: float) -> float:
        """Metres of floor ahead of the lens at a ground depth (inf at or above the vanishing line).

        The inverse of `depth_at`: the floor d ahead shows at image height
        y = (h cos(pitch) - d sin(pitch)) / (d cos(pitch) + h sin(pitch)) focal lengths below the centre.
        """
        top = min(int(self.horizon * self.height), self.height - 1)
        y = (self.height - depth * (self.height - top) - self.height / 2) / self.focal_px
        cos, sin = math.cos(self.pitch), math.sin(self.pitch)
        below = y * cos + sin
        if below <= 1e-12:
            return math.inf
        return self.mount_height_m * (cos - y * sin) / below

    def depth_where_image_spans(self, width_m: float) -> float:
        """Ground depth of the image row whose floor is `width_m` wide from edge to edge.

        A floor pixel at image height y (from the centre, down positive, in focal lengths)
        lies t = mount / (y cos(pitch) + sin(pitch)) ahead along the optical axis, where the
        image spans t * width_px / focal_px metres.
        """
        cos, sin = math.cos(self.pitch), math.sin(self.pitch)
        y = (self.mount_height_m * self.width / (width_m * self.focal_px) - sin) / cos
        return self._depth_of_row(self.height / 2 + self.focal_px * y)


# The modes, in one table. safe: widest margins, earliest stop, lowest speed, calmest steering;
# adventurous: narrowest margins, latest stop, highest speed, quickest steering.
_BALANCED = NavConfig()
NAV_MODES: dict[str, NavConfig] = {
    "safe": dataclasses.replace(
        _BALANCED, margin=0.08, stop_clearance=0.35, slow_clearance=0.8, max_throttle=0.4,
        min_confidence=0.3, steering_smoothing=0.35, max_steering_step=0.15, max_throttle_rise=0.05,
        free_frames=3, min_free_probability=0.8,
    ),
    "balanced": _BALANCED,
    "adventurous": dataclasses.replace(
        _BALANCED, margin=0.02, stop_clearance=0.12, slow_clearance=0.5, max_throttle=0.9,
        min_confidence=0.1, steering_smoothing=0.7, max_steering_step=0.4, max_throttle_rise=0.2,
        free_frames=1,
    ),
}

# The modes in metres, for a known camera (NavConfig.for_camera). Why safe stops 0.4 m ahead of
# the lens: a small model sees walls close up as floor. Measured on 4658 closed-loop frames of the
# synthetic world with a DeepLabV3+ MobileNetV2 trained for 15 minutes (INT8): with an obstacle
# within 0.15 m, its corridor reached past 0.2 m in 90% of frames; with one within 0.35 m, past
# 0.4 m in 2%.
CAMERA_MODES: dict[str, CameraMode] = {
    "safe": CameraMode(stop_m=0.40, slow_m=0.65, seen_margin_m=0.05),
    "balanced": CameraMode(stop_m=0.25, slow_m=0.5, seen_margin_m=0.025),
    "adventurous": CameraMode(stop_m=0.2, slow_m=0.4, seen_margin_m=0.0125),
}
MAX_DISTANCE_M = 100.0  # Command.clearance_m when the floor reaches the vanishing line
_WIDEST = 0.9  # the widest corridor NavConfig accepts, as a fraction of the image width


_SETTLED = 0.01  # steering this close to its target is snapped onto it


def _clamp(value: float, low: float, high: float) -> float:
    """float(np.clip(value, low, high)) for a Python scalar, without numpy's per-call overhead."""
    return float(min(max(value, low), high))


def _check_class_map(class_map: np.ndarray) -> None:
    if not isinstance(class_map, np.ndarray) or class_map.dtype != np.uint8 or class_map.ndim != 2:
        shape = getattr(class_map, "shape", None)
        dtype = getattr(class_map, "dtype", type(class_map).__name__)
        raise EdgesegError(
            f"Navigator.step expects a uint8 HxW class map, got shape {shape} dtype {dtype}; "
            "pass Segmentation.class_map"
        )
    if class_map.size == 0:
        raise EdgesegError(f"Navigator.step got an empty class map of shape {class_map.shape}")


class Navigator:
    """Turns class maps from a forward camera into driving commands.

    The only state is the previous command, used to smooth the next one, and the clearances of
    the last `free_frames - 1` frames; `reset()` forgets them (call it when the car is put
    somewhere new). The first command after a reset is not smoothed.

    With a `robot`, `config` is the mode adapted to the robot's camera at the size of the class
    maps (`NavConfig.for_camera`), made again when that size changes (before the first map: for
    `map_shape`), and `distance_m` turns clearances into metres of floor.
    """

    def __init__(
        self,
        traversable: Sequence[int],
        mode: str = "safe",
        config: NavConfig | None = None,
        *,
        ignore_index: int = 255,
        robot: Robot | None = None,
        map_shape: tuple[int, int] = (480, 640),
    ) -> None:
        """
        Args:
            traversable: class ids the car may drive on.
            mode: "safe", "balanced" or "adventurous", a row of NAV_MODES.
            config: all parameters; when given it is used instead of the mode's row (the mode
                then only names it).
            ignore_index: the class map value of unclassified pixels.
            robot: the car and its camera, when known: the mode is adapted to them. Not
                together with `config`.
            map_shape: with a robot, the class maps' (height, width) to adapt to before the first.
        """
        if mode not in NAV_MODES:
            raise EdgesegError(f"unknown navigation mode {mode!r}; choose one of {', '.join(NAV_MODES)}")
        ids = tuple(int(i) for i in traversable)
        if not ids:
            raise EdgesegError(
                "Navigator needs at least one traversable class id; set the spec's traversable "
                "classes (e.g. traversable=('floor',))"
            )
        bad = [i for i in ids if not 0 <= i <= 255 or i == ignore_index]
        if bad:
            raise EdgesegError(
                f"traversable class ids {bad} are not class indices of a uint8 class map "
                f"(0-255, other than the ignore index {ignore_index})"
            )
        if robot is not None and config is not None:
            raise EdgesegError("give the navigator a robot or a config, not both; "
                               "NavConfig.for_camera(mode, robot.camera(width, height)) makes the config for a camera")
        self.mode = mode
        self.robot = robot
        self.floor: FloorGeometry | None = None  # the camera's floor, with a robot
        self._map_shape: tuple[int, int] | None = None
        self.config: NavConfig = config if config is not None else NAV_MODES[mode]
        if robot is not None:
            self._adapt((int(map_shape[0]), int(map_shape[1])))
        self.traversable = ids
        self.ignore_index = int(ignore_index)
        self._lut = np.zeros(256, dtype=bool)
        self._lut[list(ids)] = True
        # Doubtful floor (min_free_probability) is written as this class: not traversable, not ignored.
        self._doubtful_id = next(i for i in range(256) if not self._lut[i] and i != self.ignore_index)
        # The candidate steerings, evenly over full lock; the middle one is straight ahead.
        headings = self.config.headings
        self._steerings = np.linspace(-1.0, 1.0, headings, dtype=np.float32)
        if headings == 1:
            self._steerings = np.zeros(1, dtype=np.float32)
        self._previous: Command | None = None
        self._recent: deque[float] = deque(maxlen=self.config.free_frames - 1)

    @classmethod
    def from_spec(
        cls, spec: "ModelSpec", mode: str = "safe", config: NavConfig | None = None, *,
        robot: Robot | None = None, camera: Camera | None = None,
    ) -> "Navigator":
        """A navigator for a model's class maps, driving on the spec's traversable classes.

        Args:
            robot: the car and its camera, when known (see `Navigator`): the mode is then
                adapted to them. Not together with `config`.
            camera: a synthetic-world camera instead of a robot (`Robot.from_camera`, 0.3 m car).
        """
        if not spec.traversable:
            raise EdgesegError(
                f"the model spec names no traversable classes (classes: {list(spec.class_names)}); "
                "set traversable in the spec, e.g. traversable=('floor',)"
            )
        if camera is not None:
            if robot is not None:
                raise EdgesegError("give the navigator a robot or a camera, not both")
            robot = Robot.from_camera(camera)
            shape = (int(camera.height), int(camera.width))
        else:
            shape = (480, 640)
        return cls(spec.traversable_ids, mode, config, ignore_index=spec.ignore_index, robot=robot, map_shape=shape)

    def _adapt(self, shape: tuple[int, int]) -> None:
        """With a robot: the mode adapted to its camera at this class map size (once per size)."""
        if self.robot is None or shape == self._map_shape:
            return
        camera = self.robot.camera(shape[1], shape[0])
        self.config = NavConfig.for_camera(self.mode, camera, self.robot.car_width_m)
        self.floor = FloorGeometry.of(camera, self.config.horizon)
        self._map_shape = shape

    def distance_m(self, clearance: float) -> float | None:
        """Metres of floor ahead of the lens at a clearance (`Command.clearance`, a stop line).

        None without a robot (no camera, no metres); at most MAX_DISTANCE_M (a clearance up to
        the floor's vanishing line is infinitely far).
        """
        return None if self.floor is None else min(self.floor.distance_of_depth(clearance), MAX_DISTANCE_M)

    def reset(self) -> None:
        """Forget the previous command and clearances, so the next step stands on its own."""
        self._previous = None
        self._recent.clear()

    def free_probability(self, probabilities: np.ndarray) -> np.ndarray:
        """HxW probability that each pixel is traversable, from HxWxC class probabilities
        (`Segmenter.seg(frame, probabilities=True).probabilities`), for `step(free_probability=)`."""
        probs = np.asarray(probabilities)
        if probs.ndim != 3 or max(self.traversable) >= probs.shape[2]:
            raise EdgesegError(
                f"Navigator.free_probability expects HxWxC class probabilities with a channel for each "
                f"traversable class {list(self.traversable)}, got shape {probs.shape}"
            )
        return probs[..., list(self.traversable)].sum(axis=2, dtype=np.float32)

    def _confident(self, class_map: np.ndarray, free_probability: np.ndarray | None) -> np.ndarray:
        """The class map with traversable pixels the model is unsure of (min_free_probability) blocked."""
        threshold = self.config.min_free_probability
        if free_probability is None or threshold <= 0.0:
            return class_map
        prob = np.asarray(free_probability)
        if prob.ndim != 2 or prob.size == 0:
            raise EdgesegError(
                f"Navigator.step expects free_probability as an HxW array (Navigator.free_probability), "
                f"got shape {prob.shape}"
            )
        if prob.shape != class_map.shape:  # model output resolution -> frame resolution, nearest
            rows = np.arange(class_map.shape[0]) * prob.shape[0] // class_map.shape[0]
            cols = np.arange(class_map.shape[1]) * prob.shape[1] // class_map.shape[1]
            prob = prob[rows[:, None], cols[None, :]]
        doubtful = self._lut[class_map] & (prob < threshold)
        if not doubtful.any():
            return class_map
        confident = class_map.copy()
        confident[doubtful] = self._doubtful_id
        return confident

    def free_space(self, class_map: np.ndarray, free_probability: np.ndarray | None = None) -> FreeSpace:
        """The free-space measurement step() plans on (for debugging and drawing)."""
        _check_class_map(class_map)
        self._adapt(class_map.shape)
        class_map = self._confident(class_map, free_probability)
        cfg = self.config
        return analyse_free_space(
            class_map, self._lut, horizon=cfg.horizon, min_obstacle_rows=cfg.min_obstacle_rows,
            smooth_width=cfg.smooth_width, ignore_index=self.ignore_index,
            max_rows=cfg.max_rows, max_cols=cfg.max_cols,
            vanishing_line=max(cfg.vanishing_line - cfg.vanishing_margin, 0.0) if cfg.vanishing_line else 0.0,
        )

    def _corridor_depth(self, space: FreeSpace, steerings: np.ndarray) -> np.ndarray:
        cfg = self.config
        return space.heading_depth(steerings * cfg.max_heading, cfg.car_width / 2 + cfg.margin,
                                   cfg.min_obstacle_width, cfg.far_width, cfg.outside_blocks, cfg.narrow_from)

    def _target_steering(self, space: FreeSpace, previous: Command | None) -> float:
        """Steering towards the best heading, or full lock to the more open side when none is free."""
        cfg = self.config
        steerings = self._steerings
        depth = self._corridor_depth(space, steerings)
        corridor_width = cfg.car_width + 2 * cfg.margin  # openness looks twice as wide, each side
        openness = space.openness(steerings * cfg.max_heading, corridor_width)
        previous_steering = previous.steering if previous is not None else 0.0
        score = (
            depth
            + cfg.openness_weight * openness
            - cfg.straight_bias * np.abs(steerings)
            - cfg.hysteresis * np.abs(steerings - previous_steering)
        )
        best = int(score.argmax())
        if depth[best] >= cfg.stop_clearance:
            return float(steerings[best])
        # No heading is free: full lock towards the half with more floor, so the car can turn in
        # place; with no difference, keep turning the way it last turned (right at first).
        columns = space.column_depth + space.column_free
        half = columns.shape[0] // 2
        left = float(columns[:half].sum())
        right = float(columns[columns.shape[0] - half:].sum())
        if abs(right - left) > 1e-6 * max(half, 1):
            return 1.0 if right > left else -1.0
        return -1.0 if previous_steering < 0 else 1.0

    def step(self, class_map: np.ndarray, free_probability: np.ndarray | None = None) -> Command:
        """The command for one class map (uint8 HxW); raises EdgesegError for anything else.

        Args:
            free_probability: HxW probability of floor (`free_probability(...)`), any size; with
                the mode's min_free_probability, floor the model doubts counts as obstacle.
        """
        cfg = self.config
        space = self.free_space(class_map, free_probability)
        previous = self._previous

        target = self._target_steering(space, previous)
        steering = target
        if previous is not None:
            change = cfg.steering_smoothing * (target - previous.steering)
            limit = cfg.max_steering_step
            steering = previous.steering + _clamp(change, -limit, limit)
            if abs(target - steering) < _SETTLED:  # an exponential approach never arrives
                steering = target
        steering = _clamp(steering, -1.0, 1.0)

        # Clearance of the corridor the car actually steers into, not the one it aims for, and
        # the smallest of the last free_frames frames: stop at once, drive on only once free
        # space has lasted.
        seen = _clamp(float(self._corridor_depth(space, np.array([steering]))[0]), 0.0, 1.0)
        clearance = min(seen, *self._recent) if self._recent else seen
        self._recent.append(seen)  # keeps nothing when free_frames is 1
        fragmented = min(space.fragmentation / cfg.fragmentation_scale, 1.0)
        confidence = _clamp(space.classified * (1.0 - fragmented), 0.0, 1.0)

        if space.traversable == 0.0:
            reason = NO_GROUND
        elif confidence < cfg.min_confidence:
            reason = UNCERTAIN
        elif clearance < cfg.stop_clearance:
            reason = BLOCKED
        elif clearance < cfg.slow_clearance:
            reason = SLOWING
        else:
            reason = CLEAR
        stop = reason in (NO_GROUND, UNCERTAIN, BLOCKED)

        throttle = 0.0
        if not stop:
            ramp = min((clearance - cfg.stop_clearance) / (cfg.slow_clearance - cfg.stop_clearance), 1.0)
            throttle = cfg.max_throttle * (cfg.min_throttle + (1.0 - cfg.min_throttle) * ramp)
            throttle *= 1.0 - cfg.turn_slowdown * abs(steering)
            throttle *= 1.0 - cfg.confidence_slowdown * (1.0 - confidence)
            if previous is not None and throttle > previous.throttle:  # speed up gently, brake at once
                throttle = min(throttle, previous.throttle + cfg.max_throttle_rise)
        throttle = _clamp(throttle, 0.0, 1.0)

        command = Command(steering, throttle, stop, clearance, confidence, reason, self.distance_m(clearance))
        self._previous = command
        return command
