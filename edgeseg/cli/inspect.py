"""`edgeseg inspect`: what a model file is (kind, precision, spec or what is missing, heads, build)."""

from __future__ import annotations

import argparse

from edgeseg.cli import common

HELP = "describe a model file: kind, precision, spec (or which fields are missing), heads, quantization, build"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .onnx, .engine/.plan, .keras/.h5 file or a run folder")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")
    common.add_spec_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from edgeseg.artifact import describe

    found = describe(args.model, overrides=common.spec_overrides(args))
    if args.json:
        from edgeseg.artifact.describe import description_json

        print(description_json(found))
    else:
        print(found.text())
    return 0
