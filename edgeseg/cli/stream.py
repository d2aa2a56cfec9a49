"""`edgeseg stream`: run a model live on a camera, a video, a stream, images or the synthetic world.

    edgeseg stream --source synthetic:// --model model.onnx --serve :8080
    edgeseg stream --camera 0 --model model.onnx --record drive.mp4 --commands udp://10.0.0.2:9000
    edgeseg stream --source clip.mp4 --model model.onnx --view side --max-frames 300 --telemetry t.jsonl

Ctrl-C or SIGTERM stops the run cleanly (the recording is finalised) and exits 0; a second
Ctrl-C gives up waiting. A camera or stream that stops for good, a source that delivers no frame,
a commands output that cannot be written and a side output that failed exit 1 with the reason.
Every way out sends a final stop command; see docs/streaming.md, "Safety".
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from edgeseg.cli import common

if TYPE_CHECKING:
    from edgeseg.stream.runner import StreamOptions

HELP = "run a model live on a camera, video, RTSP stream, image folder or the synthetic world"
NAV_MODE_CHOICES = ("safe", "balanced", "adventurous")
VIEW_CHOICES = ("overlay", "mask", "side")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("input")
    source = where.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", metavar="N", help="camera index or /dev/videoN (V4L2)")
    source.add_argument("--source", metavar="URI",
                        help="clip.mp4, an image folder or glob, rtsp://..., http://..., csi://N, gst:PIPELINE, "
                             "or synthetic://?seed=0&size=320x240 (a drive through the synthetic world)")
    where.add_argument("--width", type=common.positive_int, metavar="PX", help="capture width (cameras, synthetic)")
    where.add_argument("--height", type=common.positive_int, metavar="PX", help="capture height (cameras, synthetic)")
    where.add_argument("--fps", type=float, help="capture frame rate (cameras, synthetic; nominal for files)")
    where.add_argument("--loop", action="store_true", default=None, help="play a video or image folder forever")

    model = parser.add_argument_group("model")
    model.add_argument("--model", required=True, help="model file (.onnx, .keras, ...) or a training run folder")
    model.add_argument("--backend", choices=common.BACKEND_CHOICES, default="auto")
    model.add_argument("--threads", type=common.positive_int, metavar="N", help="inference threads (onnxruntime)")
    model.add_argument("--no-verify-engine", action="store_true",
                       help="open an engine whose sha256 does not match its manifest (only if you know why it changed)")
    model.add_argument("--mode", choices=NAV_MODE_CHOICES, default="safe", help="navigation mode (default: safe)")
    model.add_argument("--no-nav", action="store_true", help="segment only: no driving commands")

    out = parser.add_argument_group("outputs (several at once)")
    out.add_argument("--show", action="store_true", help="show the view in a window (q or Esc ends the run)")
    out.add_argument("--record", metavar="FILE",
                     help="record the view to a video (.mp4, .mkv or .avi; .mkv/.avi stay playable after a power "
                          "cut), kept only if it checks out")
    out.add_argument("--save-frames", metavar="DIR", help="save every view as DIR/frame_NNNNNN.jpg")
    out.add_argument("--serve", metavar="[HOST:]PORT",
                     help="browser view at http://HOST:PORT/ (default host 127.0.0.1; 0.0.0.0 exposes it)")
    out.add_argument("--commands", metavar="FILE|-|udp://HOST:PORT", action="append",
                     help="one JSON object per frame: steering, throttle, stop, clearance, confidence, "
                          "timestamp, frame; a stop line when frames stall and when the run ends. "
                          "Repeat it for several outputs (e.g. the car and a log file)")
    out.add_argument("--sink", metavar="URI", action="append",
                     help="an output named by its URI: -, udp://HOST:PORT or a .jsonl file (commands), a .mp4/.mkv/"
                          ".avi file (recording), DIR/ (images), display:// (window), http://[HOST]:PORT (browser "
                          "view); repeat it for several")
    out.add_argument("--command-timeout", type=float, default=0.5, metavar="S",
                     help="send a stop line whenever no fresh frame's command was sent for S seconds "
                          "(default 0.5; 0: off); a receiver should stop on its own after a few S of silence")
    out.add_argument("--view", choices=VIEW_CHOICES, default="overlay", help="what the view shows (default: overlay)")
    out.add_argument("--alpha", type=float, default=0.5, metavar="A", help="class colour weight in the overlay (0-1)")
    out.add_argument("--no-legend", action="store_true", help="no class legend in the view")

    common.add_spec_arguments(parser)
    common.add_robot_arguments(parser)

    run_group = parser.add_argument_group("run")
    run_group.add_argument("--max-frames", type=common.positive_int, metavar="N", help="stop after N processed frames")
    run_group.add_argument("--read-ahead", action="store_true",
                           help="files and non-real-time sources: read the next frame while one is inferred "
                                "(a few percent more throughput, up to two inference times more latency; "
                                "default: each frame just in time)")
    run_group.add_argument("--telemetry", metavar="FILE", help="write one JSON line of timings per frame")
    run_group.add_argument("--status", action=argparse.BooleanOptionalAction, default=None,
                           help="live status line on stderr (default: when stderr is a terminal)")


def source_uri(args: argparse.Namespace) -> str:
    """The source URI from --camera or --source."""
    from edgeseg.errors import EdgesegError

    if args.camera is not None:
        camera = str(args.camera).strip()
        if not re.fullmatch(r"\d+|/dev/video\d+", camera):
            raise EdgesegError(f"--camera takes an index or /dev/videoN, got {camera!r}; use --source for other URIs")
        return camera
    return str(args.source)


def options_from_args(args: argparse.Namespace) -> StreamOptions:
    """The parsed flags as StreamOptions (all the wiring lives in `edgeseg.stream.run`)."""
    from edgeseg.errors import EdgesegError
    from edgeseg.stream.runner import ROBOT_WITHOUT_NAV, StreamOptions

    # Before the robot is resolved: partial camera flags with --no-nav get this message, not the camera's.
    if args.no_nav and any(getattr(args, dest) is not None for dest in common.ROBOT_DESTS):
        raise EdgesegError(ROBOT_WITHOUT_NAV)
    return StreamOptions(
        source=source_uri(args), model=args.model, outputs=tuple(args.sink or ()),
        commands=tuple(args.commands or ()), record=args.record, save_frames=args.save_frames, serve=args.serve,
        show=args.show, backend=args.backend, threads=args.threads, verify_engine=not args.no_verify_engine,
        spec=common.spec_from_args(args, args.model), mode=args.mode, nav=not args.no_nav,
        robot=common.robot_from_args(args), width=args.width,
        height=args.height, fps=args.fps, loop=args.loop, max_frames=args.max_frames, read_ahead=args.read_ahead,
        command_timeout_s=args.command_timeout, view=args.view, alpha=args.alpha, legend=not args.no_legend,
        telemetry=args.telemetry, status=args.status,
    )


def run(args: argparse.Namespace) -> int:
    from edgeseg.stream.runner import run as run_stream

    run_stream(options_from_args(args))
    return 0
