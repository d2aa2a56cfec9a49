"""The three navigation modes driven in the synthetic world: collisions, distance and speed.

    python benchmarks/sim_modes.py [--model oracle|model.onnx] [--episodes 20] [--seconds 60]

Every mode drives the same worlds (seeds --seed .. --seed + N - 1) from the same starts. With the
default `--model oracle` the car sees the renderer's exact masks, which judges the navigator
alone. Each mode runs with the navigator adapted to the camera (what `edgeseg sim` drives) and,
for reference, with the bare mode table (what `edgeseg stream` drives); `--navigators camera`
skips the reference. Prints a table and the targets (safe: no collision; adventurous: more
distance per minute than safe), writes benchmarks/results/sim_modes.json and a picture of the
first safe episodes (docs/images/sim_oracle_safe.png for the oracle).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _table import print_table, write_json

from edgeseg.nav.sim import ORACLE, SimConfig, perceiver_from_model, simulate, trajectory_picture

MODES = ("safe", "balanced", "adventurous")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=ORACLE, help="model file or 'oracle' (default)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--navigators", default="camera,table", help="camera, table or both (default)")
    parser.add_argument("--picture", type=Path, help="picture of the safe episodes (default for the oracle: "
                                                     "docs/images/sim_oracle_safe.png)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()
    picture = args.picture or (DOCS / "sim_oracle_safe.png" if args.model == ORACLE else None)

    perceive = ORACLE if args.model == ORACLE else perceiver_from_model(args.model)
    rows, runs = [], []
    try:
        for navigator in [n.strip() for n in args.navigators.split(",") if n.strip()]:
            config = SimConfig(episodes=args.episodes, max_seconds=args.seconds, seed=args.seed, navigator=navigator)
            for mode in MODES:
                start = time.perf_counter()
                report = simulate(perceive, mode, config, progress=args.progress)
                wall = time.perf_counter() - start
                steps = sum(e.steps for e in report.episodes)
                summary = report.summary()
                rows.append({"navigator": navigator, **summary, "ms_per_step": 1000 * wall / steps})
                runs.append({"navigator": navigator, "wall_s": wall, **report.to_dict()})
                if navigator == "camera" and mode == "safe" and picture is not None:
                    trajectory_picture(report, picture)
                    print(f"wrote {picture}")
    finally:
        if perceive != ORACLE:
            perceive.close()

    columns = ["navigator", "mode", "episodes", "collisions", "distance_m", "mean_distance_m", "mean_speed_mps",
               "distance_per_minute_m", "min_clearance_m", "stopped_fraction", "ms_per_step"]
    print_table(rows, columns)
    targets = {}
    for navigator in sorted({row["navigator"] for row in rows}):
        by_mode = {row["mode"]: row for row in rows if row["navigator"] == navigator}
        targets[navigator] = {
            "safe_no_collisions": by_mode["safe"]["collisions"] == 0,
            "adventurous_faster_than_safe":
                by_mode["adventurous"]["distance_per_minute_m"] > by_mode["safe"]["distance_per_minute_m"],
        }
        print(f"targets ({navigator} navigator): " + ", ".join(f"{k} {'met' if v else 'NOT met'}"
                                                             for k, v in targets[navigator].items()))
    write_json("sim_modes", {"model": str(args.model), "episodes": args.episodes, "seconds": args.seconds,
                             "seed": args.seed, "results": rows, "targets": targets, "runs": runs})


if __name__ == "__main__":
    main()
