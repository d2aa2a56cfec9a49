"""`edgeseg export`: Keras model -> ONNX, written only once ONNX Runtime is shown to match Keras."""

from __future__ import annotations

import argparse

from edgeseg.cli import common
from edgeseg.export.keras_to_onnx import (
    DEFAULT_ATOL,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_RTOL,
    DYNAMIC_BATCH,
)
from edgeseg.spec import CHANNEL_ORDERS, OUTPUT_KINDS

HELP = "export a Keras model to ONNX (spec embedded), verified against Keras before writing"


def names(text: str) -> tuple[str, ...]:
    """`road,grass,obstacle` -> ("road", "grass", "obstacle")."""
    parts = tuple(part.strip() for part in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of names, e.g. road,grass")
    return parts


def triple(text: str) -> tuple[float, float, float]:
    """`123.7,116.3,103.5` -> three floats (R, G, B)."""
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers R,G,B, e.g. 0.485,0.456,0.406")
    return parts  # type: ignore[return-value]


def batch(text: str) -> int | str:
    """`1`, `4` or `dynamic`."""
    if text == DYNAMIC_BATCH:
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"batch {text!r} is neither a positive integer nor 'dynamic'")


def add_arguments(parser) -> None:
    parser.add_argument(
        "model", metavar="MODEL",
        help="edgeseg run folder (model.keras + spec.json), a .keras or .h5 file, or a SavedModel folder",
    )
    parser.add_argument("-o", "--out", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}, the highest JetPack 5's TensorRT reads)")
    parser.add_argument("--nchw", action="store_true", help="NCHW input (TensorRT's native layout); default NHWC")
    parser.add_argument("--batch", type=batch, default=1, metavar="N|dynamic", help="input batch size (default 1)")

    check = parser.add_argument_group("verification (ONNX Runtime against Keras, before anything is written)")
    check.add_argument("--verify-images", metavar="DIR",
                       help="compare on these pictures (default: 8 deterministic synthetic frames)")
    check.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                       help=f"absolute tolerance on outputs (default {DEFAULT_ATOL:g})")
    check.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                       help=f"relative tolerance on outputs, as in numpy.allclose (default {DEFAULT_RTOL:g})")
    check.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, metavar="FRACTION",
                       help=f"least fraction of pixels whose class must agree (default {DEFAULT_MIN_AGREEMENT})")

    spec = parser.add_argument_group(
        "model spec (needed for models edgeseg did not train; each flag overrides a found spec.json)"
    )
    spec.add_argument("--spec", metavar="FILE", help="spec JSON to use instead of the one beside the model")
    spec.add_argument("--classes", type=names, metavar="A,B,...", help="class names, one per output channel "
                      "(a 1-channel sigmoid model: two names, background first)")
    spec.add_argument("--size", type=common.size, metavar="HEIGHTxWIDTH",
                      help="input size, height first (default: the model's)")
    spec.add_argument("--scale", type=float, help="multiply pixels (0..255) by this before mean/std")
    spec.add_argument("--mean", type=triple, metavar="R,G,B", help="subtract after scaling")
    spec.add_argument("--std", type=triple, metavar="R,G,B", help="divide by after subtracting the mean")
    spec.add_argument("--channels", choices=CHANNEL_ORDERS, help="channel order the model expects")
    spec.add_argument("--output", choices=OUTPUT_KINDS,
                      help="what the model outputs (default: from its last activation)")
    spec.add_argument("--ignore-index", type=int, help="mask value of unlabelled pixels (default 255)")
    spec.add_argument("--traversable", type=names, metavar="A,B,...", help="classes a robot may drive on")


def run(args) -> int:
    from edgeseg.export import SpecOverrides, export_onnx, read_verify_images

    overrides = SpecOverrides(
        class_names=args.classes,
        size=args.size,
        scale=args.scale,
        mean=args.mean,
        std=args.std,
        channel_order=args.channels,
        output=args.output,
        ignore_index=args.ignore_index,
        traversable=args.traversable,
    )
    frames = read_verify_images(args.verify_images) if args.verify_images else None
    print(f"exporting {args.model} -> {args.out}", flush=True)
    report = export_onnx(
        args.model,
        args.out,
        spec=args.spec,
        opset=args.opset,
        nchw=args.nchw,
        batch=args.batch,
        verify_frames=frames,
        atol=args.atol,
        rtol=args.rtol,
        min_agreement=args.min_agreement,
        overrides=overrides,
    )
    print(report.summary())
    return 0
