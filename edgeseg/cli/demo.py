"""`edgeseg demo`: the whole path on the built-in synthetic world, with no download and no hardware.

Trains the navigation model, exports, calibrates and builds the INT8 engine, verifies parity,
measures latency, drives the simulator in safe and adventurous modes, records a synthetic drive
and writes OUT/report.html. Each stage prints the `edgeseg` command that does it by hand; re-running
reuses every stage that is up to date (--fresh starts over). See edgeseg/demo.py.
"""

from __future__ import annotations

import argparse
import sys

from edgeseg.cli import common

HELP = "the whole path on the built-in synthetic world: train, export, INT8, verify, bench, simulate, stream, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgeseg.demo import DEMO_DATA, DemoConfig

    defaults = DemoConfig()
    parser.add_argument("--out", default=str(defaults.out), help=f"output folder (default: {defaults.out})")
    parser.add_argument("--time-budget", type=common.duration, default=defaults.time_budget_s,
                        help=f"training time budget (default {defaults.time_budget_s / 60:g}m: the whole demo "
                             "fits in 20 minutes on 2 cores)")
    parser.add_argument("--size", type=common.size, default=defaults.size, metavar="HEIGHTxWIDTH",
                        help="model input size, height first (default 256x256)")
    parser.add_argument("--data", default=DEMO_DATA, help=f"training data (default {DEMO_DATA})")
    parser.add_argument("--eval-frames", type=common.positive_int, default=defaults.eval_frames, metavar="N",
                        help=f"held-out frames for the float-vs-INT8 check (default {defaults.eval_frames})")
    parser.add_argument("--episodes", type=common.positive_int, default=defaults.episodes, metavar="N",
                        help=f"simulator episodes per mode (default {defaults.episodes})")
    parser.add_argument("--sim-seconds", type=common.positive_float, default=defaults.sim_seconds, metavar="S",
                        help=f"simulated seconds per episode (default {defaults.sim_seconds:g})")
    parser.add_argument("--stream-frames", type=common.positive_int, default=defaults.stream_frames, metavar="N",
                        help=f"frames of the recorded drive (default {defaults.stream_frames})")
    parser.add_argument("--bench-runs", type=common.positive_int, default=defaults.bench_runs, metavar="N",
                        help=f"timed runs per model in the latency table (default {defaults.bench_runs})")
    parser.add_argument("--fresh", action="store_true", help="delete the output folder and start over")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars on stderr (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from edgeseg.demo import DemoConfig, DemoPaths, run_demo
    from edgeseg.report import summary_table

    config = DemoConfig(
        out=args.out, data=args.data, size=args.size, time_budget_s=args.time_budget,
        eval_frames=args.eval_frames, episodes=args.episodes, sim_seconds=args.sim_seconds,
        stream_frames=args.stream_frames, bench_runs=args.bench_runs, fresh=args.fresh,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
    )
    summary = run_demo(config, log=lambda line: print(line, flush=True))
    paths = DemoPaths(config.out)
    print(f"\nedgeseg demo: done in {summary.seconds / 60:.1f} min"
          + (f" (reused: {', '.join(summary.reused)})" if summary.reused else ""))
    print(summary_table(summary.records))
    print(f"\nopen {paths.report} for the pictures; the drive is {paths.drive}")
    return 0
