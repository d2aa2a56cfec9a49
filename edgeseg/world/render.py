"""The synthetic world's camera renderer: ray intersection with every solid, the level image, the pitched lookup.

See `edgeseg.world` for how rendering works.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeseg.robot import Camera, Pose
from edgeseg.world.parts import (
    _BG_CODE, _EPS, _FLOOR_CODE, _PANORAMA, _TOP_TILE, BACKGROUND, FLOOR, OBSTACLE, WALL, Lighting, WallSegment,
)

if TYPE_CHECKING:
    from edgeseg.world.map import World
    from edgeseg.world.textures import _Textures


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
