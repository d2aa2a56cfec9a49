"""`edgeseg doctor`: what this machine can run (packages, ONNX Runtime, TensorRT, GPUs, cameras, CPU INT8)."""

from __future__ import annotations

import json

HELP = "check this machine: versions, ONNX Runtime providers, TensorRT, CUDA and GPUs, OpenCV video, cameras, CPU INT8"


def add_arguments(parser) -> None:
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="print the findings as JSON instead of the table, or write them to FILE")


def run(args) -> int:
    from edgeseg.doctor import diagnose
    from edgeseg.fileio import atomic_write_text

    report = diagnose()
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(report.table())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report: {args.json}")
    return 0
