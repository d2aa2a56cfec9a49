"""A drive through the synthetic RC-car world as a frame source (`synthetic://?seed=0&...`)."""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.size import Size, parse_size
from edgeseg.sources.base import (
    Read,
    ReadStatus,
    Source,
    as_bool,
    check_options,
    parse_value,
)


class SyntheticSource(Source):
    """A drive through the synthetic RC-car world: no camera needed. URI: `synthetic://?seed=0&...`.

    | option           | default | meaning                                                          |
    |------------------|---------|------------------------------------------------------------------|
    | seed             | 0       | which world (`World.generate(seed)`) and start pose               |
    | size             | 320x240 | frame size WIDTHxHEIGHT, width first (or width=, height=)         |
    | fps              | 30      | frame rate; the car moves 1/fps seconds per frame                 |
    | realtime         | true    | true: frames at fps like a camera (live: a slow pipeline drops    |
    |                  |         | frames); false: as fast as read, every frame kept                 |
    | policy           | wander  | wander (steer towards open space) or slalom (scripted sine steer) |
    | speed            | 0.8     | car speed in m/s                                                  |
    | frames           | none    | END after this many frames                                        |

    The car is `edgeseg.robot.Car()`, the simulator's default car (camera at the front bumper);
    it never drives through solids: when it is about to hit one it is put down at a new random
    free pose (a cut in the video). Frames come from `World.render` with neutral lighting,
    so the same options give the same frames. `last_mask` holds the true class map of the last
    frame (FLOOR, OBSTACLE, WALL, BACKGROUND).
    """

    OPTIONS = ("seed", "size", "width", "height", "fps", "realtime", "policy", "speed", "frames")
    POLICIES = ("wander", "slalom")

    def __init__(
        self,
        seed: int = 0,
        size: str | Size = "320x240",  # text is WIDTHxHEIGHT, as cameras are given
        width: int | None = None,
        height: int | None = None,
        fps: float = 30.0,
        realtime: bool = True,
        policy: str = "wander",
        speed: float = 0.8,
        frames: int | None = None,
    ) -> None:
        from edgeseg.robot import Camera, Car
        from edgeseg.world import World

        frame = parse_size(size, width_first=True)
        frame_width, frame_height = int(width or frame.width), int(height or frame.height)
        fps = float(fps)
        if not 0 < fps <= 1000:
            raise EdgesegError(f"synthetic fps must be in (0, 1000], got {fps}")
        if policy not in self.POLICIES:
            raise EdgesegError(f"synthetic policy must be one of {', '.join(self.POLICIES)}, got {policy!r}")
        if frames is not None and int(frames) < 0:
            raise EdgesegError(f"synthetic frames must be 0 or more, got {frames}")
        self.seed = int(seed)
        self.live = as_bool(realtime, "realtime")
        self.policy = policy
        self.speed = float(speed)
        self.limit = None if frames is None else int(frames)
        self.camera = Camera(width=frame_width, height=frame_height)
        self.car = Car()
        self.world = World.generate(self.seed)
        self._rng = np.random.default_rng(self.seed)
        self.pose = self.world.random_free_pose(self._rng, margin_m=0.5)
        self._steering = 0.0
        self._started: float | None = None
        self.last_mask: np.ndarray | None = None
        query = f"seed={self.seed}&size={frame_width}x{frame_height}&fps={fps:g}"
        super().__init__(f"synthetic://?{query}", fps)

    def _read(self, timeout: float | None) -> Read:
        index = self.stats.frames
        if self.limit is not None and index >= self.limit:
            return Read(ReadStatus.END, message=f"end of {self.uri} ({self.limit} frames)")
        if self.live:
            now = time.perf_counter()
            if self._started is None:
                self._started = now
            due = self._started + index / self.fps
            wait = due - now
            if timeout is not None and wait > timeout:
                if self._wait(timeout):
                    return Read(ReadStatus.END, message=f"{self.uri} was interrupted")
                return Read(ReadStatus.TIMEOUT, message=f"next frame of {self.uri} not due yet")
            if wait > 0 and self._wait(wait):
                return Read(ReadStatus.END, message=f"{self.uri} was interrupted")
        rgb, mask = self.world.render(self.car.camera_pose(self.pose), self.camera)
        self.last_mask = mask
        self._drive(index)  # before delivery: the frame's timestamp is when read() returns it
        return self._deliver(rgb)

    def _drive(self, index: int) -> None:
        """Move the car one frame along the policy; respawn it if it would hit something."""
        dt = 1.0 / self.fps
        if self.policy == "slalom":
            target = 0.6 * math.sin(2 * math.pi * index * dt / 6.0)
        else:
            target = self._wander_steering()
        self._steering += 0.5 * (target - self._steering)
        pose = self.car.step(self.pose, self._steering, self.speed, dt)
        ahead = self.car.step(pose, self._steering, self.speed, 0.3)  # about to hit something?
        if self.world.collides(ahead.x, ahead.y, self.car.radius_m):
            pose = self.world.random_free_pose(self._rng, margin_m=0.5)
            self._steering = 0.0
        self.pose = pose

    def _wander_steering(self) -> float:
        """Steer towards the farthest free direction within +-60 degrees, preferring straight on."""
        angles = np.radians(np.linspace(-60.0, 60.0, 9))
        distances = np.minimum(self.world.ray_distance(self.pose, angles), 4.0)
        score = distances - 0.4 * np.abs(angles)
        best = float(angles[int(np.argmax(score))])
        return float(np.clip(-best / math.radians(60.0), -1.0, 1.0))  # left angles are positive


def _open_synthetic(uri: str, **options: Any) -> Source:
    _, _, query = uri.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise EdgesegError(f"cannot read the options of {uri!r}; write them as ?key=value&key=value") from None
    merged: dict[str, Any] = {}
    for key, value in pairs:
        merged[key] = parse_value(value)
    check_options("synthetic://", SyntheticSource.OPTIONS, merged)
    merged.update(options)  # keyword options win over the query
    return SyntheticSource(**merged)
