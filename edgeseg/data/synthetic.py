"""An endless, deterministic training set rendered from procedural RC-car worlds.

Sample i is a frame from world `i // frames_per_world` of the dataset's seed, seen from a random
free pose (40% close to and facing an obstacle, because that is what a robot must not miss, 25%
brushing past a wall or obstacle, because that is what it sees while it drives along one) with
random lighting, camera pitch, mount height and field of view. The same
(seed, i) always gives the same bytes; other seeds give other worlds, which is how validation
sets are held out. Only numpy and OpenCV (see edgeseg.world).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from edgeseg.data.base import ClassInfo
from edgeseg.world import (
    Camera,
    Lighting,
    Pose,
    World,
)
from edgeseg.errors import DataError

# Index i is the class value world.render writes (FLOOR, OBSTACLE, WALL, BACKGROUND).
SYNTHETIC_CLASSES: tuple[str, ...] = ("floor", "obstacle", "wall", "background")
SYNTHETIC_PALETTE: tuple[tuple[int, int, int], ...] = (
    (64, 176, 96),  # floor: green, drivable
    (230, 76, 60),  # obstacle: red
    (72, 112, 204),  # wall: blue
    (150, 150, 160),  # background: grey
)


def synthetic_classes() -> ClassInfo:
    """The class description of every synthetic dataset (floor is the only traversable class)."""
    return ClassInfo(
        names=SYNTHETIC_CLASSES,
        palette=SYNTHETIC_PALETTE,
        ignore_index=255,
        task="multiclass",
        traversable=("floor",),
    )


@dataclass(frozen=True)
class SyntheticFrame:
    """Everything that determines one sample (useful to re-render it, e.g. at another size)."""

    world_seed: int
    pose: Pose
    camera: Camera
    lighting: Lighting


class SyntheticDataset:
    """Rendered (image, mask) pairs following the SegDataset contract.

    Args:
        seed: picks the worlds; use different seeds for training and validation.
        n: number of samples.
        height, width: frame size in pixels.
        frames_per_world: consecutive samples that share a world (worlds are costly to build).
        cached_worlds: how many built worlds to keep in memory.
    """

    name = "synthetic"

    def __init__(
        self,
        seed: int = 0,
        n: int = 2000,
        height: int = 256,
        width: int = 256,
        frames_per_world: int = 20,
        cached_worlds: int = 4,
    ) -> None:
        if n < 1:
            raise DataError(f"synthetic dataset size n={n} must be at least 1")
        if frames_per_world < 1:
            raise DataError(f"frames_per_world={frames_per_world} must be at least 1")
        Camera(width=width, height=height)  # validates the size early, with a clear message
        self.seed = int(seed)
        self.n = int(n)
        self.height = int(height)
        self.width = int(width)
        self.frames_per_world = int(frames_per_world)
        self.cached_worlds = max(1, int(cached_worlds))
        self.classes = synthetic_classes()
        self._worlds: OrderedDict[int, World] = OrderedDict()
        self._lock = threading.Lock()  # input pipelines may call load() from several threads

    def __len__(self) -> int:
        return self.n

    def world_seed(self, index: int) -> int:
        """The World.generate seed behind sample `index`."""
        group = index // self.frames_per_world
        return int(np.random.SeedSequence([self.seed, 0x5EED, group]).generate_state(1)[0])

    def world(self, index: int) -> World:
        """The world sample `index` is rendered from (built once, kept in a small LRU cache)."""
        key = self.world_seed(index)
        with self._lock:
            world = self._worlds.get(key)
            if world is not None:
                self._worlds.move_to_end(key)
                return world
        world = World.generate(key)
        world._scene()  # build the textures outside the lock, once
        with self._lock:
            self._worlds[key] = world
            while len(self._worlds) > self.cached_worlds:
                self._worlds.popitem(last=False)
        return world

    def frame(self, index: int) -> SyntheticFrame:
        """The pose, camera and lighting of sample `index` (deterministic in (seed, index))."""
        self._check_index(index)
        world = self.world(index)
        rng = self._rng(index)
        camera = Camera(
            width=self.width,
            height=self.height,
            hfov_deg=float(rng.uniform(75.0, 100.0)),
            mount_height_m=float(rng.uniform(0.08, 0.2)),
            pitch_deg=float(rng.uniform(3.0, 18.0)),
        )
        pose = _sample_pose(world, rng)
        return SyntheticFrame(self.world_seed(index), pose, camera, Lighting.random(rng))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (image RGB uint8 HxWx3, mask uint8 HxW) for sample `index`."""
        frame = self.frame(index)
        noise_rng = np.random.default_rng([self.seed, 2, index])
        return self.world(index).render(frame.pose, frame.camera, frame.lighting, noise_rng)

    def __getstate__(self) -> dict:
        """Picklable for worker processes: without the lock and the (large) world cache."""
        state = dict(self.__dict__)
        state["_worlds"] = OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 1, index])

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.n:
            raise DataError(f"synthetic sample index {index} is outside 0..{self.n - 1}")


def _sample_pose(world: World, rng: np.random.Generator) -> Pose:
    """A free pose: 40% 0.25-2 m from an obstacle and roughly facing it, 25% brushing past a
    surface (`_grazing_pose`), the rest anywhere."""
    draw = rng.random()
    if world.obstacles and draw < 0.4:
        for _ in range(20):
            ob = world.obstacles[int(rng.integers(len(world.obstacles)))]
            bearing = rng.uniform(-math.pi, math.pi)
            distance = ob.bounding_radius + rng.uniform(0.25, 2.0)
            x, y = ob.x + distance * math.cos(bearing), ob.y + distance * math.sin(bearing)
            if world.clearance(x, y) >= 0.15:
                heading = bearing + math.pi + rng.uniform(-0.5, 0.5)
                return Pose(x, y, math.atan2(math.sin(heading), math.cos(heading)))
    elif draw < 0.65:
        pose = _grazing_pose(world, rng)
        if pose is not None:
            return pose
    return world.random_free_pose(rng, margin_m=0.2)


def _grazing_pose(world: World, rng: np.random.Generator) -> Pose | None:
    """A pose 0.08-0.6 m from the nearest surface (wall or obstacle), heading along it or turned
    up to 60 degrees into it; None if no such spot turns up.

    What a car sees as it brushes past a wall: the wall's lower part fills one side of the frame
    close up, which uniformly drawn poses almost never show, and a model that has not seen it
    calls it floor (the closed-loop simulator's collisions).
    """
    sx, sy = world.size_m
    for _ in range(20):
        xs, ys = rng.uniform(0.0, sx, 256), rng.uniform(0.0, sy, 256)
        clearance = world.clearance(xs, ys)
        near = np.flatnonzero((clearance >= 0.08) & (clearance <= 0.6))
        if len(near):
            x, y = float(xs[near[0]]), float(ys[near[0]])
            step = 0.01  # the clearance gradient points away from the nearest surface
            away = math.atan2(float(world.clearance(x, y + step) - world.clearance(x, y - step)),
                              float(world.clearance(x + step, y) - world.clearance(x - step, y)))
            side = 1.0 if rng.random() < 0.5 else -1.0
            heading = away + side * (math.pi / 2 + rng.uniform(0.0, math.radians(60.0)))
            return Pose(x, y, math.atan2(math.sin(heading), math.cos(heading)))
    return None
