"""The synthetic world's parts: class ids, lighting, obstacles, walls and appearance styles (value types)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeseg.errors import DataError


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


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """A world file's named option (a floor kind, an obstacle shape...) must be one it knows."""
    if value not in choices:
        raise DataError(f"{what} {value!r} is not one of {choices}")


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
        _check_choice("obstacle shape", self.shape, OBSTACLE_SHAPES)
        _check_choice("obstacle texture", self.texture, OBSTACLE_TEXTURES)
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
        _check_choice("floor kind", self.kind, FLOOR_KINDS)


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
        _check_choice("wall kind", self.kind, WALL_KINDS)


@dataclass(frozen=True)
class BackgroundStyle:
    """What shows above the walls: `kind` is one of BACKGROUND_KINDS."""

    kind: str = "ceiling"
    color: RGB = (90, 92, 100)
    color2: RGB = (150, 150, 160)

    def __post_init__(self) -> None:
        _check_choice("background kind", self.kind, BACKGROUND_KINDS)
