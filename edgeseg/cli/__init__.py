"""The `edgeseg` command: one module per subcommand.

Each subcommand module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`,
and imports heavy libraries (TensorFlow, ONNX Runtime, TensorRT) only inside `run`, so
`edgeseg --help` stays fast. User errors (`EdgesegError`) print one line and exit 1; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from edgeseg import __version__
from edgeseg.errors import EdgesegError

# Subcommand name -> module under edgeseg.cli. Order is the order of `edgeseg --help`.
COMMANDS = ("demo", "train", "evaluate", "export", "inspect", "spec", "calibrate", "build-engine", "verify", "bench",
            "stream", "sim", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="Train Keras segmentation models and run them fast on robots.",
    )
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"edgeseg.cli.{name.replace('-', '_')}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 user error, 2 usage error)."""
    # TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) hides our own output;
    # users can still ask for it by setting the variable themselves.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgesegError as err:
        print(f"edgeseg {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edgeseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
