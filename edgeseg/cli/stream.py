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
import contextlib
import re
import sys
from typing import Any, Iterator

from edgeseg.cli import common

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


def run(args: argparse.Namespace) -> int:
    from edgeseg.errors import EdgesegError, SpecError
    from edgeseg.nav import Navigator
    from edgeseg.robot import Robot
    from edgeseg.runtime import Segmenter
    from edgeseg.stream import sources
    from edgeseg.stream.pipeline import PipelineConfig, StreamPipeline
    from edgeseg.stream.sinks import CommandSink, FrameFolderSink, RecordingSink, WindowSink, check_view
    from edgeseg.stream.telemetry import StatusLine, Telemetry

    uri = source_uri(args)
    check_view(args.view, args.alpha)
    if args.commands and args.no_nav:
        raise EdgesegError("--commands sends navigation commands; drop --no-nav")
    if args.no_nav and any(getattr(args, dest) is not None for dest in common.ROBOT_DESTS):
        raise EdgesegError("--robot, --camera-height, --camera-pitch, --hfov and --car-width are for navigation; "
                           "drop --no-nav")
    config = PipelineConfig(view=args.view, alpha=args.alpha, legend=not args.no_legend, max_frames=args.max_frames,
                            pace_reads=not args.read_ahead, command_timeout_s=args.command_timeout)

    with contextlib.ExitStack() as stack:
        # Outputs first: a bad path, a busy port or a missing display fails before anything runs.
        telemetry = Telemetry(args.telemetry)
        stack.callback(telemetry.close)
        sinks: list[Any] = []
        recording = None
        for target in args.commands or ():
            sinks.append(CommandSink(target))
        if args.record:
            recording = RecordingSink(args.record)
            sinks.append(recording)
            for kept in recording.recovered:
                print(f"edgeseg stream: kept the recording an interrupted run left behind as {kept}", file=sys.stderr)
        if args.save_frames:
            sinks.append(FrameFolderSink(args.save_frames))
        if args.show:
            sinks.append(WindowSink(f"edgeseg: {sources.redact_uri(uri)}"))
        server = None
        if args.serve:
            from edgeseg.stream.server import StreamServer

            server = StreamServer(args.serve, telemetry)
            sinks.append(server)
            if server.exposed:
                print(f"edgeseg stream: warning: the browser view at {server.url} is reachable by anyone on the "
                      "network, with no password (it is read-only); serve on 127.0.0.1 and use an ssh tunnel "
                      "to keep it private", file=sys.stderr)
        for sink in sinks:
            stack.callback(sink.abort)  # no-op after the pipeline closed it; cleans up if we fail first

        spec = common.spec_from_args(args, args.model)
        options: dict[str, Any] = {"threads": args.threads} if args.threads else {}
        if args.no_verify_engine:
            options["verify"] = False
        segmenter = stack.enter_context(Segmenter.open(args.model, backend=args.backend, spec=spec, **options))
        if not args.no_nav and not segmenter.spec.traversable:
            raise SpecError(
                f"{args.model}: its spec names no traversable classes (classes: "
                f"{', '.join(segmenter.spec.class_names)}), so it cannot drive; stream with --no-nav, or "
                "name the classes it may drive on with --traversable A,B (or write them in once with `edgeseg spec`)"
            )

        source = stack.enter_context(sources.open_source(
            uri, width=args.width, height=args.height, fps=args.fps, loop=args.loop))
        navigator = None
        if not args.no_nav:
            # With a camera (flags > --robot file > the synthetic source's own) the mode is adapted
            # to it, stop lines in metres, as `edgeseg sim` drives; without, the NAV_MODES row as it is.
            own = getattr(source, "camera", None)
            robot = common.robot_from_args(args, Robot.from_camera(own) if own is not None else None)
            navigator = Navigator.from_spec(segmenter.spec, args.mode, robot=robot)
        if recording is not None:
            recording.fps = source.fps or 30.0
        telemetry.info.update(model=str(args.model), backend=segmenter.backend_name)
        pipeline = StreamPipeline(source, segmenter, navigator, sinks, config, telemetry, warn=_warn)

        print(f"edgeseg stream: {source.uri} -> {segmenter!r}"
              + (f", navigation {args.mode}" if navigator else ", no navigation")
              + (f"; watch at {server.url}" if server else ""), file=sys.stderr)
        status = StatusLine(telemetry, enabled=args.status)
        with _stop_on_signals(pipeline):
            try:
                summary = pipeline.run(tick=status.update)
            finally:
                status.finish()

    print(summary.table, file=sys.stderr)
    for line in summary.sinks:
        print(line, file=sys.stderr)
    for line in summary.failures:
        print(f"FAILED: {line}", file=sys.stderr)
    if summary.error:
        raise EdgesegError(summary.error)
    ended = f"{summary.reason} ({summary.detail})" if summary.detail else summary.reason
    if summary.failures:
        raise EdgesegError(f"{ended}, but {len(summary.failures)} output(s) failed (see FAILED above)")
    print(f"edgeseg stream: {ended}", file=sys.stderr)
    return 0


def _warn(line: str) -> None:
    print(f"\nedgeseg stream: warning: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stop_on_signals(pipeline: Any) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the pipeline cleanly; a second one gives up waiting (KeyboardInterrupt).

    Installed only when called from the main thread (Python allows signal handlers nowhere else),
    and the previous handlers are restored afterwards.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        pipeline.stop(f"stopped by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
