"""Free space in front of the car, measured on a segmentation class map.

The ground region is the part of the frame below a horizon line, analysed on a grid of at most
`max_rows` x `max_cols` cells. Two measurements come out of it:

- per image column, the free depth: how far up from the bottom row the traversable region reaches
  without a break (used for how open each side is);
- per candidate heading, the free depth of a corridor of the car's width swept along a straight
  line from the bottom centre of the frame (where the car is) to an offset at the horizon. The
  corridor starts at the car, so an obstacle right in front of the bumper blocks every heading.

Depths are fractions of the ground region's height (0 = blocked at the bumper, 1 = free up to the
horizon), not metres: perspective makes them monotone in distance, which is all the planner
needs. An obstacle is `min_obstacle_rows` consecutive non-traversable grid rows, so a lone
misclassified pixel is not a wall.

When the camera is known, so is the flat floor's vanishing line (the camera's true horizon): no
floor can be seen above it. A column with traversable pixels above that line shows the model
calling something else floor (typically a wall seen from close up, whose lower part looks like
floor), and nothing in that column can be trusted, so it counts as blocked at the bumper.
Only numpy: this runs on the robot.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FreeSpace:
    """What the planner knows about the ground region of one class map.

    Attributes:
        column_depth: per grid column (left to right), the smoothed free depth in [0, 1].
        column_free: per grid column, the fraction of its ground cells that are traversable,
            contiguous or not (which side has floor at all, when the bumper is blocked).
        implausible: per grid column, whether traversable pixels lie above the floor's
            vanishing line (such columns are blocked from the bottom row on).
        row_counts: (rows + 1) x (cols + 1) running count, along each row, of obstacle cells;
            row 0 is the bottom row, the last row is the horizon (all obstacle).
        classified: fraction of ground pixels that carry a class (not the ignore index).
        traversable: fraction of ground pixels of a traversable class.
        fragmentation: fraction of neighbouring pixel pairs where traversable and
            non-traversable meet; near 0 for clean maps, about 0.5 for salt-and-pepper noise.
    """

    column_depth: np.ndarray
    column_free: np.ndarray
    implausible: np.ndarray
    row_counts: np.ndarray
    classified: float
    traversable: float
    fragmentation: float

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the analysis grid."""
        return self.row_counts.shape[0] - 1, self.row_counts.shape[1] - 1

    def heading_depth(
        self,
        offsets: np.ndarray,
        half_width: float,
        min_obstacle_width: float,
        far_width: float = 1.0,
        outside_blocks: bool = False,
        narrow_from: float = 0.0,
    ) -> np.ndarray:
        """Free depth of the corridor towards each heading, in [0, 1].

        Args:
            offsets: headings as the corridor's offset at the horizon, -1 = left image edge,
                0 = straight ahead, +1 = right image edge.
            half_width: half the corridor's width at the bottom row, fraction of the image width.
            min_obstacle_width: fraction of the corridor's width that obstacle cells must fill in
                a row to block it (at least one cell).
            far_width: the corridor's width at the horizon relative to the bottom row; it
                narrows linearly in between, as perspective shrinks the car far away.
            narrow_from: the depth where the narrowing starts; below it the corridor keeps its
                bottom width.
            outside_blocks: count the corridor's cells outside the image as obstacle cells
                (the camera cannot vouch for them), instead of ignoring them.
        """
        rows, cols = self.grid_shape
        lo, hi, threshold = _corridors(rows, cols, _key(offsets), float(half_width), float(min_obstacle_width),
                                       float(far_width), bool(outside_blocks), float(narrow_from))
        row_index = np.arange(rows + 1)
        counts = self.row_counts[row_index, hi] - self.row_counts[row_index, lo]
        blocked = counts >= threshold
        blocked[:, rows] = True  # the horizon ends every corridor
        return blocked.argmax(axis=1).astype(np.float32) / np.float32(rows)

    def openness(self, offsets: np.ndarray, half_width: float) -> np.ndarray:
        """Mean column depth around where each heading meets the horizon (outside the image: 0)."""
        cols = self.column_depth.shape[0]
        lo, hi = _openness_bounds(cols, _key(offsets), float(half_width))
        sums = np.concatenate(([0.0], np.cumsum(self.column_depth, dtype=np.float64)))
        width = max(1.0, 2 * half_width * cols)
        return ((sums[hi] - sums[lo]) / width).astype(np.float32)


# The corridors' cells depend on the grid and the headings, not on the class map, and a navigator
# asks for the same ones every frame: computed once and cached, a frame pays only for its lookups.


def _key(offsets: np.ndarray) -> tuple[float, ...]:
    """Headings as a hashable cache key, at the float32 precision the corridors use."""
    return tuple(np.asarray(offsets, dtype=np.float32).ravel().tolist())


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for array in arrays:
        array.flags.writeable = False
    return arrays


@functools.lru_cache(maxsize=64)
def _corridors(
    rows: int, cols: int, offsets: tuple[float, ...], half_width: float, min_obstacle_width: float,
    far_width: float, outside_blocks: bool, narrow_from: float,
) -> tuple[np.ndarray, ...]:
    """Per heading and grid row (bottom first): the corridor's first and past-last column, and how
    many obstacle cells in that row block it (see `FreeSpace.heading_depth`)."""
    heading = np.asarray(offsets, dtype=np.float32).reshape(-1, 1)
    height = np.arange(rows + 1, dtype=np.float32) / np.float32(rows)  # 0 bottom .. 1 horizon
    centre = (heading * height + 1.0) * (cols / 2.0)
    narrowing = np.clip((height - narrow_from) / max(1.0 - narrow_from, 1e-6), 0.0, 1.0)
    half = half_width * cols * (1.0 - (1.0 - far_width) * narrowing)
    left, right = np.floor(centre - half + 0.5), np.floor(centre + half + 0.5)
    lo = np.clip(left, 0, cols - 1).astype(np.intp)
    hi = np.clip(right, lo + 1, cols).astype(np.intp)
    need = np.maximum(1, np.round(min_obstacle_width * 2 * half)).astype(np.intp)
    if outside_blocks:  # cells outside the image count as obstacle cells
        threshold = need - (np.maximum(-left, 0) + np.maximum(right - cols, 0)).astype(np.intp)
    else:
        threshold = np.minimum(need, hi - lo)
    return _frozen(lo, hi, threshold)


@functools.lru_cache(maxsize=64)
def _openness_bounds(cols: int, offsets: tuple[float, ...], half_width: float) -> tuple[np.ndarray, ...]:
    """Per heading, the first and past-last column `FreeSpace.openness` averages over."""
    centre = (np.asarray(offsets, dtype=np.float32) + 1.0) * (cols / 2.0)
    lo = np.clip(np.floor(centre - half_width * cols + 0.5), 0, cols).astype(np.intp)
    hi = np.clip(np.floor(centre + half_width * cols + 0.5), 0, cols).astype(np.intp)
    return _frozen(lo, hi)


def ground_grid(class_map: np.ndarray, horizon: float, max_rows: int, max_cols: int) -> np.ndarray:
    """The ground region below `horizon` (fraction of height), subsampled to at most max_rows x max_cols.

    Subsampling by striding keeps planning fast on full-resolution class maps; a class map
    upsampled from a 256-pixel network output holds no detail finer than the grid anyway.
    The result is in image order (bottom row last) and always keeps the bottom row.
    """
    height, width = class_map.shape
    top = min(int(horizon * height), height - 1)
    row_stride = max(1, math.ceil((height - top) / max_rows))
    col_stride = max(1, math.ceil(width / max_cols))
    return class_map[top:][::-1][::row_stride, ::col_stride][::-1]


def floor_above_vanishing_line(
    class_map: np.ndarray, traversable_lut: np.ndarray, vanishing_line: float, max_rows: int, max_cols: int
) -> np.ndarray:
    """Per grid column (the ground grid's columns), whether traversable pixels lie above `vanishing_line`.

    Args:
        vanishing_line: the flat floor's vanishing line as a fraction of the height from the top;
            0 (unknown) checks nothing.
    """
    height, width = class_map.shape
    col_stride = max(1, math.ceil(width / max_cols))
    bottom = int(vanishing_line * height)
    if bottom <= 0:
        return np.zeros(len(range(0, width, col_stride)), dtype=bool)
    row_stride = max(1, math.ceil(bottom / max_rows))
    return traversable_lut[class_map[:bottom:row_stride, ::col_stride]].any(axis=0)


def obstacle_cells(free: np.ndarray, min_obstacle_rows: int) -> np.ndarray:
    """Obstacle cells, bottom row first, plus an all-obstacle horizon row: (rows + 1) x cols.

    A cell is an obstacle when it starts `min_obstacle_rows` consecutive non-traversable rows
    going up (above the horizon counts as non-traversable).
    """
    rows, cols = free.shape
    run = max(1, min(min_obstacle_rows, rows))
    blocked = np.ones((rows + run, cols), dtype=bool)
    np.logical_not(free[::-1], out=blocked[:rows])
    obstacle = blocked[: rows + 1].copy()
    for shift in range(1, run):  # runs are a few rows: shifted ANDs beat a cumulative sum
        obstacle &= blocked[shift : rows + 1 + shift]
    return obstacle


def box_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over `width` neighbours, edges padded with the edge values.

    A difference of running sums: a handful of numpy calls (np.pad and a sliding window cost
    several times as much, and the navigator runs this every frame).
    """
    half = max(0, width // 2)
    if half == 0:
        return values
    edges = np.repeat(values[[0, -1]], half)
    padded = np.concatenate((edges[:half], values, edges[half:]))
    sums = np.zeros(padded.shape[0] + 1, dtype=np.float64)
    np.cumsum(padded, dtype=np.float64, out=sums[1:])
    window = 2 * half + 1
    return ((sums[window:] - sums[:-window]) / window).astype(np.float32)


def fragmentation(free: np.ndarray) -> float:
    """Fraction of horizontal and vertical neighbour pairs that disagree about traversability."""
    pairs = 0
    changes = 0
    if free.shape[1] > 1:
        changes += int(np.count_nonzero(free[:, 1:] != free[:, :-1]))
        pairs += free.shape[0] * (free.shape[1] - 1)
    if free.shape[0] > 1:
        changes += int(np.count_nonzero(free[1:] != free[:-1]))
        pairs += (free.shape[0] - 1) * free.shape[1]
    return changes / pairs if pairs else 0.0


def analyse_free_space(
    class_map: np.ndarray,
    traversable_lut: np.ndarray,
    *,
    horizon: float,
    min_obstacle_rows: int = 2,
    smooth_width: float = 0.04,
    ignore_index: int = 255,
    max_rows: int = 128,
    max_cols: int = 256,
    vanishing_line: float = 0.0,
) -> FreeSpace:
    """Measure the free space in the ground region of a uint8 HxW class map.

    Args:
        class_map: uint8 HxW class indices (checked by the caller).
        traversable_lut: bool array of 256 entries, True for traversable class ids.
        horizon: the ground region starts this fraction of the height from the top.
        min_obstacle_rows: consecutive non-traversable grid rows that make an obstacle.
        smooth_width: width of the moving average over column depths, fraction of the width.
        ignore_index: the class value of unclassified pixels.
        max_rows, max_cols: the largest analysis grid; bigger maps are subsampled.
        vanishing_line: where a flat floor ends in the image (fraction of the height from the
            top); columns with traversable pixels above it are blocked. 0: unknown, no check.
    """
    ground = ground_grid(class_map, horizon, max_rows, max_cols)
    rows, cols = ground.shape
    free = traversable_lut[ground]
    obstacle = obstacle_cells(free, min_obstacle_rows)
    implausible = floor_above_vanishing_line(class_map, traversable_lut, vanishing_line, max_rows, max_cols)
    obstacle[0, implausible] = True
    column_depth = obstacle.argmax(axis=0).astype(np.float32) / np.float32(rows)
    row_counts = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    np.cumsum(obstacle, axis=1, out=row_counts[:, 1:])
    return FreeSpace(
        column_depth=box_mean(column_depth, round(smooth_width * cols)),
        column_free=free.mean(axis=0, dtype=np.float32),
        implausible=implausible,
        row_counts=row_counts,
        classified=float(1.0 - np.count_nonzero(ground == ignore_index) / ground.size),
        traversable=float(np.count_nonzero(free) / ground.size),
        fragmentation=fragmentation(free),
    )
