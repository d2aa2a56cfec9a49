"""How fast the synthetic world renders: ms per frame at 128, 256 and 512 pixels.

    python benchmarks/synthetic_render.py [--frames 60] [--worlds 3] [--samples docs/images/synthetic_samples.png]

Prints a table and writes benchmarks/results/synthetic_render.json. Each timing is one call of
World.render (lighting and sensor noise included) from a random free pose in a generated world,
after a warm-up frame per size (the camera's lookup tables are cached). World building
(geometry + texture atlas) is timed apart: SyntheticDataset builds one world per
`frames_per_world` (20) samples, and the last line gives what a training input pipeline sees.
`--samples` also writes a picture of 8 training samples (frame above its colourised mask).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from _table import print_table, write_json

from edgeseg.data.synthetic import SYNTHETIC_PALETTE, SyntheticDataset
from edgeseg.world import Camera, Lighting, World
from edgeseg.fileio import atomic_path


def write_samples(path: Path) -> None:
    """A 4 x 2 grid of samples from 8 different worlds: each frame above its colourised mask."""
    dataset = SyntheticDataset(seed=0, n=400, height=256, width=256)
    palette = np.asarray(SYNTHETIC_PALETTE, np.uint8)
    cells = []
    for index in range(8):
        rgb, mask = dataset.load(index * 41)  # 41 > frames_per_world: a new world each time
        cells.append(np.concatenate([rgb, palette[mask]], axis=0))
    rows = [np.concatenate(cells[r * 4 : r * 4 + 4], axis=1) for r in range(2)]
    grid = np.concatenate(rows, axis=0)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per size and world")
    parser.add_argument("--worlds", type=int, default=3, help="generated worlds to average over")
    parser.add_argument("--samples", type=Path, help="also write a picture of samples here (PNG)")
    args = parser.parse_args()
    if args.samples:
        write_samples(args.samples)

    build_ms, worlds = [], []
    for seed in range(args.worlds):
        start = time.perf_counter()
        world = World.generate(seed)
        world._scene()  # geometry and texture atlas are built lazily: include them here
        build_ms.append((time.perf_counter() - start) * 1000)
        worlds.append(world)

    rows = []
    for size in (128, 256, 512):
        camera = Camera(width=size, height=size)
        rng = np.random.default_rng(size)
        times = []
        for world in worlds:
            world.render(world.random_free_pose(rng), camera)
            for _ in range(args.frames):
                pose, light = world.random_free_pose(rng), Lighting.random(rng)
                start = time.perf_counter()
                world.render(pose, camera, light, rng)
                times.append((time.perf_counter() - start) * 1000)
        rows.append({"size": f"{size}x{size}", "ms_median": statistics.median(times),
                     "ms_p10": float(np.percentile(times, 10)), "ms_p90": float(np.percentile(times, 90)),
                     "frames": len(times)})

    dataset = SyntheticDataset(seed=0, n=60, height=256, width=256)
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset.load(index)
    load_ms = (time.perf_counter() - start) * 1000 / len(dataset)

    print_table(rows, ["size", "ms_median", "ms_p10", "ms_p90", "frames"])
    print(f"world build (geometry + textures): median {statistics.median(build_ms):.0f} ms")
    print(f"SyntheticDataset.load, 256x256, world builds included: {load_ms:.1f} ms per sample")
    write_json("synthetic_render", {
        "render": rows,
        "world_build_ms_median": statistics.median(build_ms),
        "dataset_load_ms_per_sample_256": load_ms,
        "load_average_1min": os.getloadavg()[0],
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
    })


if __name__ == "__main__":
    main()
