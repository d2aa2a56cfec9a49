"""`edgeseg calibrate`: INT8 quantization of an exported ONNX model with ONNX Runtime's tools."""

from __future__ import annotations

import sys
from pathlib import Path

from edgeseg.cli import common

HELP = "quantize an ONNX model to INT8 (ONNX Runtime calibration) for the CPU or TensorRT"


def add_arguments(parser) -> None:
    from edgeseg.calib.quantize import DEFAULT_FRAMES, DEFAULT_METHOD, METHODS

    parser.add_argument("model", help="the float model.onnx (exported by `edgeseg export`, spec embedded)")
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--images", metavar="DIR", help="calibration images (.jpg/.png/.bmp) in a folder")
    frames.add_argument("--video", metavar="FILE", help="a video file; frames are sampled evenly across it")
    parser.add_argument("--recursive", action="store_true", help="with --images: also read subfolders")
    parser.add_argument("--target", choices=("cpu", "tensorrt"), required=True,
                        help="cpu: ONNX Runtime INT8 on this CPU; tensorrt: symmetric Q/DQ + legacy calib cache")
    parser.add_argument("-o", "--out", metavar="FILE", help="quantized model (default: MODEL.int8.onnx for cpu, "
                        "MODEL.trt-int8.onnx for tensorrt, beside the input)")
    parser.add_argument("-n", "--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"calibration frames (default {DEFAULT_FRAMES}; 100+ advised)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"ONNX Runtime calibration method (default {DEFAULT_METHOD}: the best pixel agreement "
                             "with float in our measurements)")
    parser.add_argument("--format", dest="fmt", choices=("auto", "qdq", "qoperator"), default="auto",
                        help="cpu layout: auto times QDQ and QOperator here and keeps QOperator only if 3%% faster (default)")
    parser.add_argument("--float-head", action="store_true", default=None,
                        help="cpu: keep the class convolution and final resize in float (slower, can be more "
                             "accurate); the tensorrt target always does")
    parser.add_argument("--max-miou-drop", type=float, metavar="PP",
                        help="accuracy budget in percentage points of mean IoU (0.5: 72.0%% -> 71.5%% is ok); "
                             "keeps the most sensitive layers in float until met. Measured against the masks of "
                             "--data or, without masks, against the float model's class maps on --eval-images/"
                             "--eval-video (default: the calibration frames)")
    evaluation = parser.add_mutually_exclusive_group()
    evaluation.add_argument("--eval-images", metavar="DIR",
                            help="frames without masks for --max-miou-drop (the float model is the reference)")
    evaluation.add_argument("--eval-video", metavar="FILE",
                            help="a video without masks for --max-miou-drop (the float model is the reference)")
    parser.add_argument("--data", metavar="SPEC",
                        help="a dataset (see `edgeseg train --help`): calibration frames from its train images "
                             "when neither --images nor --video is given, and the masks --max-miou-drop "
                             "evaluates on (its --subset)")
    parser.add_argument("--subset", choices=("train", "val", "test", "all"), default="val",
                        help="subset of --data to evaluate on (default val)")
    parser.add_argument("--split", type=common.split, default=(0.8, 0.1, 0.1),
                        help="train,val,test fractions for folders without their own split: give training's, so "
                             "calibration reads training frames and the evaluation held-out ones")
    parser.add_argument("--max-rounds", type=int, default=8,
                        help="quantize-and-evaluate rounds the --max-miou-drop search may take (default 8)")
    parser.add_argument("--eval-frames", type=int, default=100,
                        help="frames to evaluate --max-miou-drop on (default 100)")
    parser.add_argument("--trt-version", default="8.6.1",
                        help="TensorRT version named in the legacy cache header (default 8.6.1, JetPack 5; "
                             "10.3.0 for JetPack 6)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_spec_arguments(parser)


def _frames_source(args):
    from edgeseg.calib.readers import DatasetImages, ImageFolder, VideoFile
    from edgeseg.errors import EdgesegError

    if args.images:
        return ImageFolder(Path(args.images), recursive=args.recursive)
    if args.video:
        return VideoFile(Path(args.video))
    if args.data:
        return DatasetImages(args.data, subset="train", split=args.split)
    raise EdgesegError("calibration frames are needed: pass --images DIR, --video FILE or --data SPEC")


def _eval_source(args):
    from edgeseg.calib.readers import ImageFolder, VideoFile

    if args.eval_images:
        return ImageFolder(Path(args.eval_images), recursive=args.recursive)
    if args.eval_video:
        return VideoFile(Path(args.eval_video))
    return None


def run(args) -> int:
    from edgeseg.calib.quantize import CalibrationOptions, MiouBudgetError, calibrate
    spec = common.spec_from_args(args, args.model)
    frames = _frames_source(args)
    options = CalibrationOptions(
        target=args.target,
        method=args.method,
        num_frames=args.frames,
        output=args.out,
        fmt=args.fmt,
        float_head=args.float_head,
        trt_version=args.trt_version,
        progress=not args.no_progress,
        max_miou_drop=args.max_miou_drop,
        data=args.data,
        eval_source=_eval_source(args),
        eval_subset=args.subset,
        eval_frames=args.eval_frames,
        split=args.split,
        max_rounds=args.max_rounds,
    )
    try:
        report = calibrate(args.model, frames, options, spec=spec)
    except MiouBudgetError as err:
        print(err.report.summary(written=False))
        print(f"edgeseg calibrate: error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
