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
from pathlib import Path

from edgeseg.cli import common

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


def picture_paths(path: str | Path, names: tuple[str, ...]) -> dict[str, Path]:
    """One picture per mode: the path itself for one mode, else `stem_MODE.suffix` beside it."""
    path = Path(path)
    if len(names) == 1:
        return {names[0]: path}
    return {name: path.with_name(f"{path.stem}_{name}{path.suffix or '.png'}") for name in names}


def run(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from edgeseg.fileio import atomic_write_text
    from edgeseg.nav.sim import ORACLE, SimConfig, format_table, perceiver_from_model, simulate, trajectory_picture

    config = SimConfig(episodes=args.episodes, max_seconds=args.seconds, hz=args.hz,
                       max_speed_mps=args.max_speed, seed=args.seed, navigator=args.navigator)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    reports = []
    with contextlib.ExitStack() as stack:
        if args.model == ORACLE:
            perceive, backend = ORACLE, "renderer masks"
        else:
            options = {"threads": args.threads} if args.threads else {}
            spec = common.spec_from_args(args, args.model)
            if spec is not None:
                options["spec"] = spec
            perceive = stack.enter_context(perceiver_from_model(args.model, backend=args.backend, **options))
            backend = perceive.backend_name
            _note_classes(perceive.spec)
        print(f"edgeseg sim: {args.model} ({backend}), {args.episodes} episodes x {args.seconds:g} s per mode, "
              f"worlds {args.seed}..{args.seed + args.episodes - 1}", file=sys.stderr)
        for mode in args.mode:
            reports.append(simulate(perceive, mode, config, progress=progress))

    print(format_table(reports))
    if args.json:
        payload = {"model": str(args.model), "backend": backend,
                   "summary": [report.summary() for report in reports],
                   "modes": {report.mode: report.to_dict() for report in reports}}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.picture:
        for report in reports:
            path = picture_paths(args.picture, tuple(r.mode for r in reports))[report.mode]
            trajectory_picture(report, path)
            print(f"wrote {path}", file=sys.stderr)
    if args.max_collisions is not None:
        over = [f"{r.mode} {r.collisions}" for r in reports if r.collisions > args.max_collisions]
        if over:
            print(f"edgeseg sim: more than {args.max_collisions} collisions: {', '.join(over)}", file=sys.stderr)
            return 1
    return 0


def _note_classes(spec: object) -> None:
    from edgeseg.data.synthetic import SYNTHETIC_CLASSES

    names = tuple(getattr(spec, "class_names", ()))
    if names != SYNTHETIC_CLASSES:
        print(f"edgeseg sim: note: the model's classes {', '.join(names)} are not the synthetic world's "
              f"({', '.join(SYNTHETIC_CLASSES)}); it drives on its traversable classes "
              f"{', '.join(getattr(spec, 'traversable', ()))}", file=sys.stderr)
