"""`edgeseg verify`: is the deployed engine as good as the float model? A gate for CI.

    edgeseg verify runs/road model.int8.onnx --data synthetic:// --max-miou-drop 0.5 --min-agreement 0.99
    edgeseg verify road.onnx road.int8.onnx --spec road.json --video drive.mp4 --max-steering-diff 0.1

With --data the models are scored against the masks; with --images or --video (the robot's own
footage, no masks) the float model's class maps are the truth. Either way the navigator is run
on both models' class maps in every mode and their commands compared. Prints a per-class table
and the command parity, writes a JSON report and pictures of the frames where the two models
disagree most, and exits 1 when a gate fails, saying which gate and by how much.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgeseg.cli import common

HELP = ("compare an INT8/FP16 engine with its float model: mean IoU drop, per-class IoU, pixel agreement, "
        "steering/stop parity")
DEFAULT_OUT = "verify"


def add_arguments(parser) -> None:
    parser.add_argument("float_model", metavar="FLOAT", help="the reference: run folder, .keras or float .onnx")
    parser.add_argument("engine", metavar="ENGINE", help="the deployed model: INT8/FP16 .onnx or .engine")
    frames = parser.add_mutually_exclusive_group(required=True)
    frames.add_argument("--data", help="dataset spec with masks, e.g. synthetic:// or voc:DIR")
    frames.add_argument("--images", metavar="DIR",
                        help="a folder of frames without masks, read in name order; float is the reference")
    frames.add_argument("--video", metavar="FILE", help="a video without masks, read in order; float is the reference")
    parser.add_argument("--subset", choices=("train", "val", "test", "all"), default="val")
    parser.add_argument("--split", type=common.split, default=(0.8, 0.1, 0.1),
                        help="train,val,test fractions for folders without their own split")
    parser.add_argument("--max-frames", type=int,
                        help="compare at most N frames: spread over the --data subset, the first N of --images/--video")
    parser.add_argument("--max-miou-drop", type=float, metavar="PP",
                        help="fail when mean IoU drops by more than PP percentage points (e.g. 0.5); without "
                             "masks, when the engine's mean IoU against float is below 100 - PP")
    parser.add_argument("--min-agreement", type=float, metavar="FRACTION",
                        help="fail when fewer than FRACTION of the pixels agree (e.g. 0.99)")
    parser.add_argument("--max-steering-diff", type=float, metavar="D",
                        help="fail when the navigator's steering differs by more than D on any frame in any "
                             "mode (steering spans -1..1; e.g. 0.1)")
    parser.add_argument("--max-stop-mismatch", type=float, metavar="FRACTION",
                        help="fail when, in any mode, one model stops and the other drives on more than FRACTION "
                             "of the frames (e.g. 0.02)")
    parser.add_argument("--json", help="write the report as JSON to this file")
    parser.add_argument("--out", help=f"folder for the disagreement pictures (default: beside --json, else {DEFAULT_OUT}/)")
    parser.add_argument("--pictures", type=int, default=4, help="how many of the most-disagreeing frames to draw")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_spec_arguments(parser)  # for a float model that carries no spec (a foreign ONNX, .h5, SavedModel)


def run(args) -> int:
    from edgeseg.verify import check_gate_values, check_gates, verify

    gates = dict(max_miou_drop=args.max_miou_drop, min_agreement=args.min_agreement,
                 max_steering_diff=args.max_steering_diff, max_stop_mismatch=args.max_stop_mismatch)
    check_gate_values(**gates)  # fail before any model runs
    out = args.out if args.out else (None if args.json else DEFAULT_OUT)
    report = verify(
        args.float_model,
        args.engine,
        args.data,
        subset=args.subset,
        split=args.split,
        max_frames=args.max_frames,
        batch=args.batch,
        out_dir=out,
        json_path=args.json,
        pictures=args.pictures,
        progress=not args.no_progress,
        spec=common.spec_from_args(args, args.float_model),
        images=args.images,
        video=args.video,
    )
    print(report.table())
    if report.pictures:
        print(f"pictures: {Path(report.pictures[0]).parent}/ ({len(report.pictures)} frames)")
    if args.json:
        print(f"report: {args.json}")
    failures = check_gates(report, **gates)
    for failure in failures:
        print(f"edgeseg verify: FAILED {failure}", file=sys.stderr)
    if failures:
        return 1
    if any(value is not None for value in gates.values()):
        print("parity gates passed")
    return 0
