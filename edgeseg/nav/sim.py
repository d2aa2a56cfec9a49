"""Closed-loop navigation in the synthetic world: the car sees, the navigator drives, the world moves it.

Each step (at `SimConfig.hz`) renders the camera frame from the car's pose, turns it into a class
map (a model through `perceiver_from_model`, or the renderer's exact mask with `"oracle"`), asks
the `Navigator` for a command and moves the car with the kinematic bicycle model of
`edgeseg.robot.Car` (`SimConfig.car`) at `throttle * max_speed_mps`. An episode ends after
`max_seconds` or when the car's footprint (a disc of `car_radius_m`) touches a solid: a collision.
Episode i is world `World.generate(seed + i)` from a seeded random free start pose, so every mode
and every model drives the same worlds from the same starts.

The camera sits `camera_forward_m` ahead of the footprint's centre, at the front bumper as on a
real RC car. The navigator's mode table is in image fractions, and with the training camera
(0.12 m high, pitched 10 degrees down, 90 degrees wide) it does not fit a 0.3 m car: the bottom
image row spans 0.21 m of floor and the safe stop line lies 0.13 m ahead of the lens. Driven as it
is (`navigator="table"`) the car scrapes past obstacles it saw and turns into them once they are
beside it, out of view: with exact masks 17 of 20 safe episodes end in a collision
(benchmarks/sim_modes.py). By default (`navigator="camera"`) each mode is adapted to the camera
and the car by `NavConfig.for_camera`, the same adaptation `edgeseg stream` uses on the synthetic
source: stop lines in metres, a corridor as wide as the navigator allows, corridor parts outside
the image blocked, and floor above the vanishing line blocked.

Recovery (the navigator only says stop; it has no reverse): when a command says stop, the car
backs away for `recovery_seconds` at `recovery_speed_mps` with the steering at full lock
*opposite* to the stop command's (which points to the more open side), so the nose swings
towards the open side. Reversing is guarded by a simulated rear bumper sensor: a step that would
bring the footprint within `rear_margin_m` of a solid, closer than it already is, is swapped for
straight back or the other lock, and if every step closes in, the car stands still for that step,
so reversing never brings it nearer than the margin (it once allowed a quarter of it, and that
was the smallest clearance of safe episodes where the car never drove forward). The camera keeps
running and the navigator keeps stepping during the manoeuvre, so its smoothing follows the car;
when the manoeuvre is over the navigator drives again, and a stop starts a new one. Forward
motion is never guarded: what the car hits going forward is the navigator's (and the model's)
doing, and is counted.

Only numpy and OpenCV (plus tqdm for the progress bar); a model perceiver loads its runtime
backend lazily through `edgeseg.runtime.Segmenter`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from edgeseg.world import World, top_down
from edgeseg.errors import EdgesegError, SpecError, check_field_range
from edgeseg.nav.navigator import NAV_MODES, NavConfig, Navigator
from edgeseg.robot import Camera, Car, Pose

if TYPE_CHECKING:
    from edgeseg.spec import ModelSpec

ORACLE = "oracle"
NAVIGATORS = ("camera", "table")
_SUBSTEP_M = 0.02  # motion is checked for collisions at least every 2 cm


@dataclass(frozen=True)
class SimConfig:
    """Everything that decides a simulation run (the same config gives the same report).

    Attributes:
        episodes: how many episodes (worlds) to drive.
        max_seconds: simulated length of an episode without a collision.
        hz: perception and control rate; the car moves 1/hz seconds per step.
        max_speed_mps: the car's top speed; the navigator's throttle is a fraction of it.
        car_radius_m: radius of the car's footprint disc (collisions, clearance).
        camera: the car's camera (the training data's default camera at the model's 256x256).
        camera_forward_m: how far ahead of the footprint's centre the camera sits (at the bumper).
        seed: episode i drives world `World.generate(seed + i)` from a start drawn from (seed, i).
        start_margin_m: the start pose's minimum distance from every solid, beyond the footprint.
        recovery_speed_mps: reversing speed of the recovery manoeuvre.
        recovery_seconds: how long one recovery manoeuvre reverses.
        rear_margin_m: the rear bumper sensor avoids reverse steps that bring the footprint
            closer than this to a solid (see the module docstring).
        wheelbase_m, max_steer_deg: the bicycle model (steering 1 = max_steer_deg at the wheels).
        navigator: "camera" drives each mode's NAV_MODES row adapted to this camera and car
            (`NavConfig.for_camera`); "table" drives the rows as they are (what `edgeseg stream`
            does on sources whose camera it does not know).
    """

    episodes: int = 20
    max_seconds: float = 60.0
    hz: float = 10.0
    max_speed_mps: float = 1.0
    car_radius_m: float = 0.15
    camera: Camera = Camera()
    camera_forward_m: float = 0.15
    seed: int = 0
    start_margin_m: float = 0.35
    recovery_speed_mps: float = 0.25
    recovery_seconds: float = 1.0
    rear_margin_m: float = 0.03
    wheelbase_m: float = 0.26
    max_steer_deg: float = 30.0
    navigator: str = "camera"

    def __post_init__(self) -> None:
        def check(name: str, low: float, high: float) -> None:
            check_field_range(self, name, low, high)

        check("episodes", 1, 100_000)
        check("max_seconds", 0.1, 86_400.0)
        check("hz", 1.0, 1000.0)
        check("max_speed_mps", 0.01, 20.0)
        check("car_radius_m", 0.01, 2.0)
        check("camera_forward_m", 0.0, 2.0)
        check("start_margin_m", 0.0, 5.0)
        check("recovery_speed_mps", 0.0, 5.0)
        check("recovery_seconds", 0.0, 60.0)
        check("rear_margin_m", 0.0, 1.0)
        check("wheelbase_m", 0.01, 5.0)
        check("max_steer_deg", 1.0, 60.0)
        if self.navigator not in NAVIGATORS:
            raise EdgesegError(f"SimConfig.navigator={self.navigator!r} is not one of {', '.join(NAVIGATORS)}")
        if not isinstance(self.camera, Camera):
            raise EdgesegError(f"SimConfig.camera must be an edgeseg.robot.Camera, got {self.camera!r}")

    @property
    def dt(self) -> float:
        return 1.0 / self.hz

    @property
    def car(self) -> Car:
        """The car these fields describe (the same model the `synthetic://` source drives)."""
        return Car(self.car_radius_m, self.wheelbase_m, self.max_steer_deg, self.camera_forward_m)

    @property
    def steps(self) -> int:
        """Steps of an episode that runs to the end."""
        return max(1, int(round(self.max_seconds * self.hz)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scenario:
    """Where an episode drives: the world, the start pose and a label (the world's seed)."""

    world: World
    start: Pose
    world_seed: int


def scenario(config: SimConfig, index: int) -> Scenario:
    """Episode `index`'s world and start pose; the same for every mode and model."""
    world_seed = config.seed + index
    world = World.generate(world_seed)
    rng = np.random.default_rng([config.seed, index, 0x51])
    start = world.random_free_pose(rng, margin_m=config.car_radius_m + config.start_margin_m)
    return Scenario(world, start, world_seed)


@dataclass
class Episode:
    """What happened in one episode.

    Attributes:
        index: episode number; world_seed: its world.
        start: the start pose.
        collided: whether the footprint touched a solid (the episode ended there).
        collision_xy: where the car's centre was when it touched, else None.
        steps: control steps run; seconds: simulated time.
        distance_m: distance driven forward; reverse_m: distance reversed by recovery.
        mean_speed_mps: mean forward speed while driving forward.
        min_clearance_m: the smallest gap between the footprint and any solid along the way
            (negative or 0 at a collision).
        stopped_s: time the navigator's command said stop (the car stood or reversed).
        recoveries: bouts of reversing (recovery manoeuvres that moved the car).
        trajectory: N x 4 float array of x, y, heading and signed speed per pose (start first).
    """

    index: int
    world_seed: int
    start: Pose
    collided: bool
    collision_xy: tuple[float, float] | None
    steps: int
    seconds: float
    distance_m: float
    reverse_m: float
    mean_speed_mps: float
    min_clearance_m: float
    stopped_s: float
    recoveries: int
    trajectory: np.ndarray = field(repr=False)

    def to_dict(self, trajectory: bool = False) -> dict[str, Any]:
        out = {
            "index": self.index,
            "world_seed": self.world_seed,
            "start": asdict(self.start),
            "collided": self.collided,
            "collision_xy": list(self.collision_xy) if self.collision_xy else None,
            "steps": self.steps,
            "seconds": self.seconds,
            "distance_m": self.distance_m,
            "reverse_m": self.reverse_m,
            "mean_speed_mps": self.mean_speed_mps,
            "min_clearance_m": self.min_clearance_m,
            "stopped_s": self.stopped_s,
            "recoveries": self.recoveries,
        }
        if trajectory:
            out["trajectory"] = np.round(self.trajectory, 4).tolist()
        return out


@dataclass
class SimReport:
    """One mode's episodes and their totals."""

    mode: str
    perception: str
    config: SimConfig
    episodes: list[Episode]

    @property
    def collisions(self) -> int:
        return sum(e.collided for e in self.episodes)

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.episodes)

    @property
    def distance_m(self) -> float:
        return sum(e.distance_m for e in self.episodes)

    @property
    def mean_distance_m(self) -> float:
        return self.distance_m / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_speed_mps(self) -> float:
        """Forward distance over the time spent driving forward (how fast it drives when it drives)."""
        moving = sum(e.distance_m / e.mean_speed_mps for e in self.episodes if e.mean_speed_mps > 0)
        return self.distance_m / moving if moving > 0 else 0.0

    @property
    def distance_per_minute_m(self) -> float:
        """Forward distance per simulated minute, stops and recoveries included (progress rate)."""
        return 60.0 * self.distance_m / self.seconds if self.seconds > 0 else 0.0

    @property
    def min_clearance_m(self) -> float:
        return min((e.min_clearance_m for e in self.episodes), default=float("nan"))

    @property
    def stopped_fraction(self) -> float:
        return sum(e.stopped_s for e in self.episodes) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The per-mode numbers the CLI's table and the JSON show."""
        return {
            "mode": self.mode,
            "episodes": len(self.episodes),
            "collisions": self.collisions,
            "distance_m": self.distance_m,
            "mean_distance_m": self.mean_distance_m,
            "mean_speed_mps": self.mean_speed_mps,
            "distance_per_minute_m": self.distance_per_minute_m,
            "min_clearance_m": self.min_clearance_m,
            "stopped_fraction": self.stopped_fraction,
            "seconds": self.seconds,
        }

    def to_dict(self, trajectories: bool = False) -> dict[str, Any]:
        return {
            "perception": self.perception,
            "config": self.config.to_dict(),
            "summary": self.summary(),
            "episodes": [e.to_dict(trajectories) for e in self.episodes],
        }


def format_table(reports: Sequence[SimReport]) -> str:
    """A plain text table, one row per mode: the numbers the targets are judged on."""
    header = ("mode", "episodes", "collisions", "distance m", "per episode m", "mean speed m/s",
              "m per minute", "min clearance m", "stopped %")
    rows = [header]
    for r in reports:
        rows.append((r.mode, str(len(r.episodes)), str(r.collisions), f"{r.distance_m:.1f}",
                     f"{r.mean_distance_m:.1f}", f"{r.mean_speed_mps:.2f}", f"{r.distance_per_minute_m:.1f}",
                     f"{r.min_clearance_m:.3f}", f"{100 * r.stopped_fraction:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Perception


def synthetic_spec(camera: Camera = Camera()) -> "ModelSpec":
    """The spec of the renderer's own masks: the synthetic classes, floor traversable."""
    from edgeseg.data.synthetic import synthetic_classes
    from edgeseg.spec import ModelSpec

    classes = synthetic_classes()
    return ModelSpec(class_names=classes.names, input_height=camera.height, input_width=camera.width,
                     palette=classes.palette, ignore_index=classes.ignore_index,
                     traversable=classes.traversable, model=ORACLE)


class ModelPerceiver:
    """A model as the car's eyes: `perceiver(rgb) -> class map`; a context manager that closes it."""

    def __init__(self, segmenter: Any, name: str) -> None:
        self.segmenter = segmenter
        self.name = name
        if not self.spec.traversable:
            segmenter.close()
            raise SpecError(
                f"{name}: its spec names no traversable classes (classes: {', '.join(self.spec.class_names)}), "
                "so the navigator cannot drive on it; retrain or export with traversable classes set"
            )

    @property
    def spec(self) -> "ModelSpec":
        return self.segmenter.spec

    @property
    def backend_name(self) -> str:
        return self.segmenter.backend_name

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.segmenter.seg(rgb).class_map

    def segment(self, rgb: np.ndarray) -> Any:
        """The frame's Segmentation with class probabilities (for a mode that weighs them)."""
        return self.segmenter.seg(rgb, probabilities=True)

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self) -> "ModelPerceiver":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def perceiver_from_model(path: str | Path, backend: str = "auto", **options: Any) -> ModelPerceiver:
    """Open a model (.onnx, .keras, a run folder, ...) as the car's perception.

    Args:
        backend: "auto" or a backend name; **options go to the backend (e.g. threads=2).
    """
    from edgeseg.runtime import Segmenter

    return ModelPerceiver(Segmenter.open(path, backend=backend, **options), str(path))


# --------------------------------------------------------------------------------------------
# The loop

Perceive = Callable[[np.ndarray], np.ndarray]


def simulate(
    perceive: Perceive | str,
    mode: str = "safe",
    config: SimConfig = SimConfig(),
    progress: bool = True,
    *,
    spec: "ModelSpec | None" = None,
    scenarios: Sequence[Scenario] | None = None,
    nav_config: NavConfig | None = None,
) -> SimReport:
    """Drive `config.episodes` episodes with one navigation mode.

    Args:
        perceive: RGB uint8 HxWx3 frame -> uint8 HxW class map, or "oracle" for the renderer's
            exact mask (judges the navigator apart from any model).
        mode: a navigation mode (a key of NAV_MODES).
        config: the run's parameters.
        progress: show a tqdm bar over the steps.
        spec: whose classes the class maps hold (which are traversable); defaults to
            `perceive.spec` when it has one, else the synthetic world's classes.
        scenarios: drive these worlds and starts instead of the seeded ones (their count
            replaces config.episodes).
        nav_config: drive with these navigator parameters instead of the ones
            `config.navigator` picks for the mode.
    """
    if mode not in NAV_MODES:
        raise EdgesegError(f"unknown navigation mode {mode!r}; choose one of {', '.join(NAV_MODES)}")
    oracle = isinstance(perceive, str)
    if oracle and perceive != ORACLE:
        raise EdgesegError(f"perception {perceive!r} is not a callable or {ORACLE!r}")
    if not oracle and not callable(perceive):
        raise EdgesegError(f"perception must be a callable frame -> class map or {ORACLE!r}, got {perceive!r}")
    if spec is None:
        spec = getattr(perceive, "spec", None) if not oracle else None
    if spec is None:
        spec = synthetic_spec(config.camera)
    if nav_config is None and config.navigator == "camera":
        nav_config = NavConfig.for_camera(mode, config.camera, 2 * config.car_radius_m)
    navigator = Navigator.from_spec(spec, mode, nav_config)
    count = len(scenarios) if scenarios is not None else config.episodes
    name = ORACLE if oracle else str(getattr(perceive, "name", getattr(perceive, "__name__", type(perceive).__name__)))

    from tqdm.auto import tqdm

    episodes = []
    with tqdm(total=count * config.steps, unit="step", desc=f"sim {mode}", disable=not progress,
              leave=False, dynamic_ncols=True) as bar:
        for index in range(count):
            scene = scenarios[index] if scenarios is not None else scenario(config, index)
            navigator.reset()
            episode = _run_episode(index, scene, None if oracle else perceive, navigator, config, bar.update)
            bar.update(config.steps - episode.steps)  # an early end skips the rest of its steps
            bar.set_postfix(collisions=sum(e.collided for e in episodes) + episode.collided)
            episodes.append(episode)
    return SimReport(mode, name, config, episodes)


def _run_episode(
    index: int,
    scene: Scenario,
    perceive: Perceive | None,
    navigator: Navigator,
    config: SimConfig,
    tick: Callable[[int], Any],
) -> Episode:
    world, pose, dt, radius, car = scene.world, scene.start, config.dt, config.car_radius_m, config.car
    clearance = float(world.clearance(pose.x, pose.y))
    min_clearance = clearance - radius
    if min_clearance < 0:
        raise EdgesegError(
            f"episode {index}: the start pose ({pose.x:.2f}, {pose.y:.2f}) is inside a solid "
            f"for a car of radius {radius} m; start somewhere free"
        )
    trajectory = [(pose.x, pose.y, pose.heading, 0.0)]
    forward = reverse = stopped_s = moving_s = 0.0
    recoveries = 0
    reverse_left = 0  # steps of the current recovery manoeuvre still to go
    away = 0.0  # the manoeuvre's steering: full lock opposite to the stop command's
    recovery_steps = max(1, int(round(config.recovery_seconds * config.hz)))
    collision_xy = None
    speed = 0.0
    steps = 0
    for steps in range(1, config.steps + 1):
        tick(1)
        rgb, mask = world.render(car.camera_pose(pose), config.camera)
        free = None  # the model's floor probability, for a mode that drives only on sure floor
        if perceive is None:
            class_map = mask
        elif navigator.config.min_free_probability > 0.0 and hasattr(perceive, "segment"):
            seen = perceive.segment(rgb)
            class_map = _check_class_map(seen.class_map, rgb)
            free = navigator.free_probability(seen.probabilities)
        else:
            class_map = _check_class_map(perceive(rgb), rgb)
        command = navigator.step(class_map, free)
        previous_speed = speed

        if command.stop:
            stopped_s += dt
            if reverse_left == 0:
                reverse_left = recovery_steps
                away = -1.0 if command.steering >= 0 else 1.0
        if reverse_left > 0:
            reverse_left -= 1
            moved = _reverse(world, pose, clearance, away, config)
            if moved is None:  # boxed in: stand, and try again next step
                reverse_left, speed = 0, 0.0
            else:
                pose, clearance = moved
                speed = -config.recovery_speed_mps
                reverse += config.recovery_speed_mps * dt
                if previous_speed >= 0:  # a new bout of reversing
                    recoveries += 1
        elif command.stop or command.throttle <= 0.0:
            speed = 0.0
        else:
            speed = command.throttle * config.max_speed_mps
            pose, clearance, hit = _drive(world, pose, command.steering, speed, dt, config)
            moved_m = math.hypot(pose.x - trajectory[-1][0], pose.y - trajectory[-1][1])
            forward += moved_m
            moving_s += moved_m / speed
            if hit:
                collision_xy = (pose.x, pose.y)
        min_clearance = min(min_clearance, clearance - radius)
        trajectory.append((pose.x, pose.y, pose.heading, speed))
        if collision_xy is not None:
            break
    return Episode(
        index=index,
        world_seed=scene.world_seed,
        start=scene.start,
        collided=collision_xy is not None,
        collision_xy=collision_xy,
        steps=steps,
        seconds=steps * dt,
        distance_m=forward,
        reverse_m=reverse,
        mean_speed_mps=forward / moving_s if moving_s > 0 else 0.0,
        min_clearance_m=min_clearance,
        stopped_s=stopped_s,
        recoveries=recoveries,
        trajectory=np.asarray(trajectory, dtype=np.float64),
    )


def _reverse(world: World, pose: Pose, clearance: float, away: float, config: SimConfig
             ) -> tuple[Pose, float] | None:
    """One reverse step of the recovery manoeuvre, guarded by the rear bumper sensor.

    Tries full lock `away`, then straight back, then the other lock, and takes the first step
    that keeps the footprint `rear_margin_m` clear of every solid or does not bring it closer.
    Squeezed (every step closes in on something within the margin), the car stands: reversing
    never takes it nearer than the margin. Returns (new pose, its clearance), or None when no
    step is safe.
    """
    speed = -config.recovery_speed_mps
    if speed == 0.0:
        return None
    for steering in (away, 0.0, -away):
        nxt = config.car.step(pose, steering, speed, config.dt)
        gap = float(world.clearance(nxt.x, nxt.y))
        if gap >= config.car_radius_m + config.rear_margin_m or gap >= clearance:
            return nxt, gap
    return None


def _drive(world: World, pose: Pose, steering: float, speed: float, dt: float, config: SimConfig
           ) -> tuple[Pose, float, bool]:
    """Move forward one step in substeps of at most 2 cm; stop at the first substep that touches.

    Returns (new pose, its clearance, whether it collided).
    """
    substeps = max(1, math.ceil(speed * dt / _SUBSTEP_M))
    poses, car = [pose], config.car
    for _ in range(substeps):
        poses.append(car.step(poses[-1], steering, speed, dt / substeps))
    gaps = np.asarray(world.clearance([p.x for p in poses[1:]], [p.y for p in poses[1:]]))
    touching = np.flatnonzero(gaps < config.car_radius_m)
    if len(touching):
        first = int(touching[0])
        return poses[first + 1], float(gaps[first]), True
    return poses[-1], float(gaps[-1]), False


def _check_class_map(class_map: Any, rgb: np.ndarray) -> np.ndarray:
    if not isinstance(class_map, np.ndarray) or class_map.dtype != np.uint8 or class_map.shape != rgb.shape[:2]:
        raise EdgesegError(
            f"the perceiver returned {type(class_map).__name__} "
            f"{getattr(class_map, 'shape', '')} {getattr(class_map, 'dtype', '')} for a "
            f"{rgb.shape[1]}x{rgb.shape[0]} frame; it must return a uint8 class map of the frame's size"
        )
    return class_map


# --------------------------------------------------------------------------------------------
# Pictures


def trajectory_picture(
    report: SimReport | Iterable[Episode],
    path: str | Path,
    config: SimConfig | None = None,
    max_episodes: int = 8,
    cell_px: int = 320,
    worlds: Sequence[World] | None = None,
) -> Path:
    """Write a grid of top-down maps, one per episode (the first `max_episodes`), atomically.

    Each map shows the trajectory coloured by speed (blue slow .. red fast, grey reversing), the
    start (white disc with a heading tick), the end (black dot) and a collision as a red X; the
    caption gives the world seed, distance and outcome.

    Args:
        report: a SimReport, or episodes (then pass `config` for the speed scale and car size).
        worlds: the episodes' worlds, in order; by default rebuilt from their seeds (pass them
            for episodes driven in custom `scenarios`).
    """
    import cv2

    from edgeseg.fileio import atomic_path

    if isinstance(report, SimReport):
        episodes = list(report.episodes)
        config = report.config
        title = f"{report.mode} | {report.perception} | {report.collisions} collisions / {len(report.episodes)}"
    else:
        episodes = list(report)
        title = ""
    config = config or SimConfig()
    if not episodes:
        raise EdgesegError(f"no episodes to draw into {path}; run at least one episode")
    shown = episodes[:max_episodes]
    if worlds is not None and len(worlds) < len(shown):
        raise EdgesegError(f"trajectory_picture got {len(worlds)} worlds for {len(shown)} episodes; pass one per episode")
    cells = [_episode_cell(worlds[i] if worlds is not None else World.generate(e.world_seed), e, config, cell_px)
             for i, e in enumerate(shown)]
    columns = min(4, len(cells))
    rows = math.ceil(len(cells) / columns)
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (rows * columns - len(cells))
    grid = np.concatenate([np.concatenate(cells[r * columns:(r + 1) * columns], axis=1) for r in range(rows)])
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title or f"{len(episodes)} episodes", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    legend = _speed_legend(grid.shape[1], config.max_speed_mps)
    picture = np.concatenate([header, grid, legend])
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
            raise EdgesegError(f"cannot write the picture {path}; use a .png or .jpg file name")
    return path


def _speed_colour(speed: float, max_speed: float) -> tuple[int, int, int]:
    """RGB for a signed speed: grey when reversing or standing, else a blue-to-red ramp."""
    if speed <= 0:
        return (128, 128, 128)
    import cv2

    level = int(np.clip(speed / max_speed, 0.0, 1.0) * 255)
    bgr = cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_JET)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def _episode_cell(world: World, episode: Episode, config: SimConfig, cell_px: int) -> np.ndarray:
    import cv2

    caption_px = 40
    image = top_down(world, size_px=cell_px - 8)
    sx, sy = world.size_m
    scale = (cell_px - 8) / max(sx, sy)

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * scale)), int(round((sy - y) * scale))

    thick = max(2, cell_px // 120)
    track = episode.trajectory
    for a, b in zip(track[:-1], track[1:]):
        cv2.line(image, pt(a[0], a[1]), pt(b[0], b[1]), _speed_colour(b[3], config.max_speed_mps), thick,
                 cv2.LINE_AA)
    start = episode.start
    radius_px = max(3, int(round(config.car_radius_m * scale)))
    cv2.circle(image, pt(start.x, start.y), radius_px, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(image, pt(start.x, start.y), radius_px, (0, 0, 0), 1, cv2.LINE_AA)
    tip = (start.x + 2 * config.car_radius_m * math.cos(start.heading),
           start.y + 2 * config.car_radius_m * math.sin(start.heading))
    cv2.line(image, pt(start.x, start.y), pt(*tip), (0, 0, 0), max(1, thick - 1), cv2.LINE_AA)
    end = pt(track[-1][0], track[-1][1])
    cv2.circle(image, end, max(3, radius_px // 2), (0, 0, 0), -1, cv2.LINE_AA)
    if episode.collision_xy is not None:
        cx, cy = pt(*episode.collision_xy)
        arm = max(6, radius_px + 3)
        for dx in (-arm, arm):
            cv2.line(image, (cx - dx, cy - arm), (cx + dx, cy + arm), (255, 255, 255), thick + 3, cv2.LINE_AA)
            cv2.line(image, (cx - dx, cy - arm), (cx + dx, cy + arm), (230, 0, 0), thick + 1, cv2.LINE_AA)

    cell = np.full((cell_px + caption_px, cell_px, 3), 255, np.uint8)
    cell[4:4 + image.shape[0], 4:4 + image.shape[1]] = image
    outcome = "COLLISION" if episode.collided else "no collision"
    lines = (f"#{episode.index} world {episode.world_seed}: {outcome}",
             f"{episode.distance_m:.1f} m in {episode.seconds:.0f} s, stopped {episode.stopped_s:.0f} s")
    for i, text in enumerate(lines):
        colour = (200, 0, 0) if episode.collided and i == 0 else (0, 0, 0)
        cv2.putText(cell, text, (6, cell_px + 14 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
    return cell


def _speed_legend(width: int, max_speed: float) -> np.ndarray:
    import cv2

    legend = np.full((48, width, 3), 255, np.uint8)
    x0, x1 = 8, max(60, min(width - 110, 260))
    for x in range(x0, x1):
        legend[6:18, x] = _speed_colour((x - x0 + 1) / (x1 - x0) * max_speed, max_speed)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(legend, f"0 .. {max_speed:g} m/s", (x1 + 6, 17), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(legend, "grey: reversing, white disc: start, black dot: end, X: collision", (x0, 38), font, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return legend
