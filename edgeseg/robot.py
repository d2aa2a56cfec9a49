"""The robot the navigator drives: its camera (mounting and optics), its width, its kinematics.

One model for a real RC car and the synthetic world's car: `Camera` is what the synthetic world
renders through and what `NavConfig.for_camera` sets stop lines in metres from; `Robot` is the
part a user measures on a real car (camera height above the floor, downward pitch, horizontal
field of view, car width), independent of the image size the frames arrive at; `Car` is the
car's body (footprint, kinematic bicycle model `step_pose`, where the camera sits), one model for
the simulator and the `synthetic://` source. Only numpy: it runs on the robot.

A robot file is a small JSON object with the `Robot` fields (docs/streaming.md, "Your robot's
camera"):

    {"camera_height_m": 0.12, "camera_pitch_deg": 10, "hfov_deg": 90, "car_width_m": 0.3}
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.errors import DataError, EdgesegError


@dataclass(frozen=True)
class Pose:
    """Where the car is: position in metres and heading in radians (counter-clockwise from +x)."""

    x: float
    y: float
    heading: float


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at RC-car height, looking along the heading, tilted down by `pitch_deg`.

    Square pixels; the principal point is the image centre. `hfov_deg` is the horizontal field of
    view; the vertical one follows from the aspect ratio.
    """

    width: int = 256
    height: int = 256
    hfov_deg: float = 90.0
    mount_height_m: float = 0.12
    pitch_deg: float = 10.0

    def __post_init__(self) -> None:
        if not (isinstance(self.width, (int, np.integer)) and isinstance(self.height, (int, np.integer))):
            raise DataError(f"camera size must be integers, got {self.width!r} x {self.height!r}")
        if self.width < 4 or self.height < 4 or self.width > 4096 or self.height > 4096:
            raise DataError(f"camera size {self.width}x{self.height} is outside 4..4096 pixels; pick a sane size")
        if not 10.0 <= self.hfov_deg <= 150.0:
            raise DataError(f"camera hfov_deg={self.hfov_deg} is outside 10..150 degrees")
        if not 0.01 <= self.mount_height_m <= 2.0:
            raise DataError(f"camera mount_height_m={self.mount_height_m} is outside 0.01..2 m")
        half_vfov = math.degrees(math.atan(self.height / 2 / self.focal_px))
        if abs(self.pitch_deg) + half_vfov >= 85.0:
            raise DataError(
                f"camera pitch_deg={self.pitch_deg} with a vertical field of view of {2 * half_vfov:.0f} degrees "
                "looks (almost) straight up or down; keep |pitch| + vfov/2 below 85 degrees"
            )

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (the same horizontally and vertically)."""
        return (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def project(
        self, pose: Pose, x: float | np.ndarray, y: float | np.ndarray, z: float | np.ndarray = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates (u right, v down; pixel (i, j) spans j..j+1, i..i+1) of
        world point(s) seen from `pose`. Points behind the camera get nan."""
        dx = np.asarray(x, np.float64) - pose.x
        dy = np.asarray(y, np.float64) - pose.y
        ahead = dx * math.cos(pose.heading) + dy * math.sin(pose.heading)
        right = dx * math.sin(pose.heading) - dy * math.cos(pose.heading)
        down = self.mount_height_m - np.asarray(z, np.float64)
        p = math.radians(self.pitch_deg)
        depth = ahead * math.cos(p) + down * math.sin(p)
        depth = np.where(depth > 1e-9, depth, np.nan)
        u = self.width / 2 + self.focal_px * right / depth
        v = self.height / 2 + self.focal_px * (down * math.cos(p) - ahead * math.sin(p)) / depth
        return u, v




def step_pose(
    pose: Pose,
    steering: float,
    speed_mps: float,
    dt: float,
    wheelbase_m: float = 0.26,
    max_steer_deg: float = 30.0,
) -> Pose:
    """Advance a kinematic bicycle model by `dt` seconds (exact arc integration).

    Args:
        pose: current pose.
        steering: -1..1 (clipped); > 0 turns RIGHT (clockwise seen from above, towards image
            right), < 0 turns left; the front wheels turn by `steering * max_steer_deg`.
        speed_mps: signed speed along the heading (negative reverses).
        dt: time step in seconds.
    """
    steer = -float(np.clip(steering, -1.0, 1.0)) * math.radians(max_steer_deg)
    distance = speed_mps * dt
    curvature = math.tan(steer) / wheelbase_m  # 1/m, > 0 turns counter-clockwise
    if abs(curvature * distance) < 1e-9:
        x = pose.x + distance * math.cos(pose.heading)
        y = pose.y + distance * math.sin(pose.heading)
        heading = pose.heading
    else:
        heading = pose.heading + curvature * distance
        radius = 1.0 / curvature
        x = pose.x + radius * (math.sin(heading) - math.sin(pose.heading))
        y = pose.y - radius * (math.cos(heading) - math.cos(pose.heading))
    heading = math.atan2(math.sin(heading), math.cos(heading))
    return Pose(x, y, heading)


# --------------------------------------------------------------------------------------------
# Map picture




@dataclass(frozen=True)
class Car:
    """The car's body: one model for the simulator's car and the synthetic source's.

    Attributes:
        radius_m: radius of the footprint disc (collisions, clearance).
        wheelbase_m, max_steer_deg: the bicycle model (steering 1 = max_steer_deg at the wheels).
        camera_forward_m: how far ahead of the footprint's centre the camera sits (at the bumper,
            as on a real RC car).
    """

    radius_m: float = 0.15
    wheelbase_m: float = 0.26
    max_steer_deg: float = 30.0
    camera_forward_m: float = 0.15

    def step(self, pose: Pose, steering: float, speed_mps: float, dt: float) -> Pose:
        """The pose after `dt` seconds at this steering and speed (`step_pose` with this car's geometry)."""
        return step_pose(pose, steering, speed_mps, dt, self.wheelbase_m, self.max_steer_deg)

    def camera_pose(self, pose: Pose) -> Pose:
        """Where the camera is when the footprint's centre is at `pose`."""
        return Pose(pose.x + self.camera_forward_m * math.cos(pose.heading),
                    pose.y + self.camera_forward_m * math.sin(pose.heading), pose.heading)


@dataclass(frozen=True)
class Robot:
    """What the navigator needs to know about a car, in metres and degrees.

    Attributes:
        camera_height_m: the lens's height above the floor.
        camera_pitch_deg: how far the camera looks down from level (down positive).
        hfov_deg: the horizontal field of view of the frames the model sees (after any crop).
        car_width_m: the car's width, wheels and bumpers included.
    """

    camera_height_m: float
    camera_pitch_deg: float
    hfov_deg: float
    car_width_m: float = 0.3

    def __post_init__(self) -> None:
        for name, low, high in (("camera_height_m", 0.01, 2.0), ("camera_pitch_deg", -60.0, 60.0),
                                ("hfov_deg", 10.0, 150.0), ("car_width_m", 0.01, 5.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise EdgesegError(f"robot {name}={value!r} is outside {low}..{high} (a forward camera above the "
                                   "floor, a car's width); see docs/streaming.md, \"Your robot's camera\"")

    @classmethod
    def from_camera(cls, camera: Camera, car_width_m: float = 0.3) -> "Robot":
        """The robot a synthetic-world camera belongs to (its size is left behind)."""
        return cls(camera.mount_height_m, camera.pitch_deg, camera.hfov_deg, car_width_m)

    def camera(self, width: int, height: int) -> Camera:
        """This robot's camera delivering frames (class maps) of width x height pixels."""
        return Camera(width=int(width), height=int(height), hfov_deg=self.hfov_deg,
                      mount_height_m=self.camera_height_m, pitch_deg=self.camera_pitch_deg)


ROBOT_FIELDS = tuple(f.name for f in dataclasses.fields(Robot))
CAMERA_FIELDS = ROBOT_FIELDS[:3]  # what a robot cannot be without


def load_robot(path: str | Path) -> Robot:
    """A `Robot` from a JSON robot file; EdgesegError naming the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgesegError(f"robot file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EdgesegError(f"robot file {path} is not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise EdgesegError(f"robot file {path} must hold a JSON object with {', '.join(ROBOT_FIELDS)}")
    unknown = sorted(set(data) - set(ROBOT_FIELDS))
    missing = [name for name in CAMERA_FIELDS if name not in data]
    if unknown or missing:
        raise EdgesegError(f"robot file {path}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])) + f" (keys: {', '.join(ROBOT_FIELDS)})")
    try:
        return Robot(**data)
    except EdgesegError as err:
        raise EdgesegError(f"robot file {path}: {err}") from None


def resolve_robot(file: str | Path | None = None, fallback: Robot | None = None, **values: float | None) -> Robot | None:
    """The robot from single values (flags) over a robot file over `fallback`; None when none is given.

    Args:
        file: a JSON robot file, or None.
        fallback: the robot when neither values nor a file say otherwise, such as the synthetic
            source's own camera (`Robot.from_camera`).
        values: `Robot` fields; None means not given.
    """
    given = {name: value for name, value in values.items() if value is not None}
    unknown = sorted(set(given) - set(ROBOT_FIELDS))
    if unknown:
        raise EdgesegError(f"unknown robot field(s) {', '.join(unknown)}; choose from {', '.join(ROBOT_FIELDS)}")
    base = load_robot(file) if file is not None else fallback
    if base is not None:
        return dataclasses.replace(base, **given)
    if not given:
        return None
    missing = [name for name in CAMERA_FIELDS if name not in given]
    if missing:
        raise EdgesegError(
            f"the robot's camera needs {', '.join(CAMERA_FIELDS)}, missing {', '.join(missing)}; give "
            "--camera-height, --camera-pitch and --hfov together, or a --robot FILE"
        )
    return Robot(**given)
