"""`edgeseg spec`: write the model spec into an ONNX file once, so no later step needs flags.

    edgeseg spec road.onnx --classes background,road --scale 1/255 --output da -o road.spec.onnx
"""

from __future__ import annotations

import argparse

from edgeseg.cli import common

HELP = "write the model spec (classes, size, normalisation, head) into an ONNX model, for every later step"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.onnx", help="the ONNX model (e.g. exported from PyTorch)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT.onnx",
                        help="the ONNX file to write (may be MODEL.onnx itself: replaced atomically)")
    common.add_spec_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgeseg.artifact.describe import describe
    from edgeseg.artifact.onnxmeta import load_onnx_model, write_spec_metadata
    from edgeseg.errors import EdgesegError, SpecError
    from edgeseg.fileio import atomic_path

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise EdgesegError(f"-o {out}: the output is an ONNX model, so its name ends in .onnx")
    found = describe(args.model, overrides=common.spec_overrides(args))
    if found.kind != "onnx":
        raise EdgesegError(f"{args.model} is a {found.kind} file; `edgeseg spec` writes into ONNX models")
    if found.spec is None:
        raise SpecError(f"{args.model}: the spec is incomplete, missing " + "; ".join(found.missing))
    import onnx

    model = load_onnx_model(args.model, load_weights=True)
    write_spec_metadata(model, found.spec)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    spec = found.spec
    print(f"wrote {out}: {spec.num_classes} classes ({', '.join(spec.class_names)}), input "
          f"{spec.input_height}x{spec.input_width} {spec.layout} {spec.channel_order}, scale {spec.scale:g}, "
          f"head {spec.output_name or found.outputs[0].name} ({spec.output})")
    return 0
