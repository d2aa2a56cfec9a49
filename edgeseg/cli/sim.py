"""`edgeseg sim`: closed-loop driving in the synthetic world, seeing through a model.

    edgeseg sim --model demo/model/model.onnx --mode safe,adventurous --episodes 20 --picture sim.png
    edgeseg sim --model oracle --mode safe,balanced,adventurous --json sim.json
    edgeseg sim --model model.onnx --mode safe --max-collisions 0     # a CI gate: exit 1 on a crash

Every mode drives the same worlds from the same starts (episode i is world --seed + i), so the
table compares modes (and models) fairly. `--model oracle` drives on the renderer's exact masks,
which judges the navigator apart from the model. The targets are reported, not enforced, unless
--max-collisions is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from edgeseg.cli import common

if TYPE_CHECKING:
    from edgeseg.nav.simrun import SimRunOptions

HELP = "drive the navigator in the synthetic world through a model: collisions, distance, speed per mode"


def modes(text: str) -> tuple[str, ...]:
    """`safe,adventurous` -> ("safe", "adventurous"); checked against the navigator's modes."""
    from edgeseg.nav.navigator import NAV_MODES

    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in NAV_MODES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"mode {text!r} is not a comma-separated list of {', '.join(NAV_MODES)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("perception")
    model.add_argument("--model", required=True,
                       help="model file (.onnx, .keras, ...), a training run folder, or 'oracle' "
                            "(the renderer's exact masks: judges the navigator alone)")
    model.add_argument("--backend", choices=common.BACKEND_CHOICES, default="auto")
    model.add_argument("--threads", type=common.positive_int, metavar="N", help="inference threads (onnxruntime)")

    common.add_spec_arguments(parser)

    drive = parser.add_argument_group("driving")
    drive.add_argument("--mode", type=modes, default=("safe",), metavar="MODE[,MODE...]",
                       help="navigation modes to compare: safe, balanced, adventurous (default: safe)")
    drive.add_argument("--episodes", type=common.positive_int, default=20, metavar="N",
                       help="episodes (worlds) per mode (default 20)")
    drive.add_argument("--seconds", type=common.positive_float, default=60.0, metavar="S",
                       help="simulated seconds per episode (default 60)")
    drive.add_argument("--seed", type=int, default=0, help="episode i drives world SEED + i (default 0)")
    drive.add_argument("--hz", type=common.positive_float, default=10.0, help="control rate (default 10)")
    drive.add_argument("--max-speed", type=common.positive_float, default=1.0, metavar="M_PER_S",
                       help="the car's top speed; throttle 1 (default 1.0)")
    drive.add_argument("--navigator", choices=("camera", "table"), default="camera",
                       help="camera: the mode table adapted to the car's camera and width, stop lines in "
                            "metres (NavConfig.for_camera, default); table: the mode table as it is, as "
                            "edgeseg stream drives sources whose camera it does not know")

    out = parser.add_argument_group("outputs")
    out.add_argument("--json", metavar="FILE", help="write every episode and the per-mode totals as JSON")
    out.add_argument("--picture", metavar="FILE",
                     help="top-down trajectories (PNG); with several modes one per mode, FILE_MODE.png")
    out.add_argument("--max-collisions", type=common.non_negative_int, metavar="N",
                     help="exit 1 when a mode collides more than N times (for CI)")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)")


def options_from_args(args: argparse.Namespace) -> SimRunOptions:
    """The parsed flags as SimRunOptions (the run itself is `edgeseg.nav.simrun.run_sim`)."""
    from edgeseg.nav.sim import ORACLE, SimConfig
    from edgeseg.nav.simrun import SimRunOptions

    config = SimConfig(episodes=args.episodes, max_seconds=args.seconds, hz=args.hz,
                       max_speed_mps=args.max_speed, seed=args.seed, navigator=args.navigator)
    spec = None if args.model == ORACLE else common.spec_from_args(args, args.model)
    return SimRunOptions(model=args.model, modes=args.mode, config=config, backend=args.backend,
                         threads=args.threads, spec=spec, json=args.json, picture=args.picture,
                         max_collisions=args.max_collisions, progress=args.progress)


def run(args: argparse.Namespace) -> int:
    from edgeseg.nav.simrun import run_sim

    result = run_sim(options_from_args(args))
    print(result.table)
    if not result.ok:
        print(f"edgeseg sim: more than {args.max_collisions} collisions: {', '.join(result.over_limit)}",
              file=sys.stderr)
        return 1
    return 0
