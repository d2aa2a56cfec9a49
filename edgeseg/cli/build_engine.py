"""`edgeseg build-engine`: ONNX -> TensorRT engine (GPU / Jetson) or optimised ONNX Runtime CPU model."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgeseg.cli import common

HELP = "build the engine the robot runs: TensorRT on an NVIDIA GPU / Jetson, else an optimised ONNX Runtime CPU model"

_SIZE_UNITS = {"": 1 << 20, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def memory_size(text: str) -> int:
    """`512MiB`, `2GiB`, `1.5G` or `512` (MiB) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"size {text!r} is not like 512MiB or 2GiB")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return value


def batch_range(text: str):
    """`4` or `1,4,8` -> BatchRange."""
    from edgeseg.engine.trt_build import BatchRange
    from edgeseg.errors import EngineError

    try:
        return BatchRange.parse(text)
    except EngineError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgeseg.calib.quantize import DEFAULT_FRAMES, DEFAULT_METHOD, METHODS
    from edgeseg.engine.build import BACKEND_CHOICES

    parser.add_argument("model", metavar="MODEL.onnx", type=Path, help="ONNX model from `edgeseg export` "
                        "(float) or `edgeseg calibrate` (INT8)")
    parser.add_argument("-o", "--out", type=Path, metavar="FILE",
                        help="output: MODEL.engine (TensorRT) or MODEL.cpu.onnx (ONNX Runtime) beside the model "
                             "by default; the manifest goes to FILE.json")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="auto (default): TensorRT when it imports and a GPU is present, else onnxruntime (CPU)")
    parser.add_argument("--int8", action="store_true",
                        help="INT8: from the model's Q/DQ scales, or calibrate a float model first with --calib")
    parser.add_argument("--fp16", action="store_true", help="FP16 (TensorRT only; with --int8: FP16 where not INT8)")

    calib = parser.add_argument_group("INT8 calibration (for a float model)")
    calib.add_argument("--calib", type=Path, metavar="DIR|VIDEO",
                       help="frames to calibrate on: a folder of images or a video from the robot's camera")
    calib.add_argument("--calib-method", choices=METHODS, default=DEFAULT_METHOD,
                       help=f"calibration method (default {DEFAULT_METHOD})")
    calib.add_argument("--calib-frames", type=common.positive_int, default=DEFAULT_FRAMES, metavar="N",
                       help=f"frames to read, spread over the source (default {DEFAULT_FRAMES})")
    calib.add_argument("--calib-cache", type=Path, metavar="FILE",
                       help="TensorRT 8.5-10.x only: a legacy calibration cache from `edgeseg calibrate --target "
                            "tensorrt`, used with the float model (e.g. for DLA on JetPack 5)")

    trt = parser.add_argument_group("TensorRT")
    trt.add_argument("--batch", type=batch_range, metavar="N|MIN,OPT,MAX",
                     help="batch sizes for a model with a dynamic batch (default 1); N alone is a fixed batch")
    trt.add_argument("--shape", type=common.size, metavar="HEIGHTxWIDTH",
                     help="input size for a model exported with a dynamic height and width (default: the spec's)")
    trt.add_argument("--workspace", type=memory_size, metavar="SIZE",
                     help="most GPU memory TensorRT may use for tactics while building, e.g. 512MiB or 2GiB")
    trt.add_argument("--timing-cache", type=Path, metavar="FILE",
                     help="reuse and update TensorRT's timing cache: faster rebuilds on the same device")
    trt.add_argument("--dla", type=common.non_negative_int, metavar="N",
                     help="run on DLA core N (Jetson AGX Orin / Orin NX / Xavier), GPU fallback on; "
                          "needs --fp16 or --int8")
    trt.add_argument("--device", type=common.non_negative_int, default=0, metavar="N", help="CUDA device index (default 0)")


def run(args: argparse.Namespace) -> int:
    from edgeseg.engine.build import BuildOptions, build_engine

    options = BuildOptions(
        onnx_path=args.model,
        output=args.out,
        backend=args.backend,
        int8=args.int8,
        fp16=args.fp16,
        calib=args.calib,
        calib_method=args.calib_method,
        calib_frames=args.calib_frames,
        calib_cache=args.calib_cache,
        batch=args.batch,
        shape=args.shape,
        workspace=args.workspace,
        timing_cache=args.timing_cache,
        dla_core=args.dla,
        device=args.device,
    )
    report = build_engine(options, log=lambda line: print(line, flush=True))
    print(report.summary())
    return 0
