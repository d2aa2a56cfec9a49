"""The synthetic world's textures: floor, wall, obstacle and sky tiles packed into one atlas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeseg.world.parts import (
    _FLOOR_MAX_PX, _FLOOR_PX_PER_M, _PANORAMA, _SIDE_TILE, _TOP_TILE, _WALL_TILE, RGB, BackgroundStyle, FloorStyle,
    Obstacle, WallStyle,
)
from edgeseg.world.render import _box_corners, _Geometry, _segment_box

if TYPE_CHECKING:
    from edgeseg.world.map import World


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
