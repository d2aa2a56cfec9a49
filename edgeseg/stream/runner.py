"""A whole stream run from typed options: what `edgeseg stream` does, callable from Python.

    from edgeseg.stream import StreamOptions, run

    summary = run(StreamOptions(source="clip.mp4", model="model.onnx", outputs=("drive.mp4", "cmds.jsonl")))

`run` wires the source (`open_source`), the `Segmenter`, the `Navigator`, the sinks (`open_sink`)
and the `StreamPipeline`, with every safety behaviour of the command: outputs are checked before
anything runs, a final stop line ends every run, Ctrl-C and SIGTERM stop it cleanly (main thread
only), and a run that failed raises `StreamFailed` instead of returning.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeseg.errors import EdgesegError, SpecError
from edgeseg.stream.pipeline import RunSummary
from edgeseg.stream.server import StreamServer
from edgeseg.stream.sinks import (
    RECORDING_CODECS,
    CommandSink,
    FrameFolderSink,
    RecordingSink,
    Sink,
    WindowSink,
    check_view,
)


class StreamFailed(EdgesegError):
    """A run that ended in failure (source lost for good, commands output failed, a side output failed).

    Attributes:
        summary: the run's RunSummary, with what was written before it failed.
    """

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


ROBOT_WITHOUT_NAV = ("--robot, --camera-height, --camera-pitch, --hfov and --car-width are for navigation; "
                     "drop --no-nav")


@dataclass(frozen=True)
class StreamOptions:
    """One stream run (the `edgeseg stream` flags, typed).

    Attributes:
        source: a source URI (`open_source`): a camera index, clip.mp4, an image folder,
            rtsp://..., synthetic://...
        model: a model file or a training run folder.
        outputs: sink URIs for `open_sink`, kind taken from the URI (udp://..., cmds.jsonl,
            drive.mp4, frames/, display://, http://:8080).
        commands, record, save_frames, serve: outputs of a named kind (the CLI's flags); a
            commands target may be any file name. `show` opens a window.
        spec: the spec to run the model with (None: the model's own).
        mode: navigation mode; `nav` False segments only (no commands allowed then).
        robot: the robot's camera and width (`edgeseg.robot.Robot`: --robot FILE, --camera-height,
            --camera-pitch, --hfov, --car-width); None: the source's own camera if it has one
            (the synthetic world), else the navigator's pixel-based modes.
        width, height, fps, loop: capture settings passed to `open_source`.
        max_frames, read_ahead, command_timeout_s, view, alpha, legend: see PipelineConfig.
        telemetry: a JSON-lines file of timings per frame.
        status: a live status line on stderr (None: when stderr is a terminal).
        handle_signals: Ctrl-C/SIGTERM stop the run cleanly (only from the main thread).
    """

    source: str
    model: str | Path
    outputs: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    record: str | None = None
    save_frames: str | None = None
    serve: str | None = None
    show: bool = False
    backend: str = "auto"
    threads: int | None = None
    verify_engine: bool = True
    spec: Any = None
    mode: str = "safe"
    nav: bool = True
    robot: Any = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    loop: bool | None = None
    max_frames: int | None = None
    read_ahead: bool = False
    command_timeout_s: float = 0.5
    view: str = "overlay"
    alpha: float = 0.5
    legend: bool = True
    telemetry: str | None = None
    status: bool | None = None
    handle_signals: bool = True

    def to_argv(self) -> list[str]:
        """The `edgeseg stream` arguments for this run, to print what it does by hand.

        Defaults are left out. A `spec` is not rendered: give it as spec flags or write it into the model.
        """
        argv = ["stream", "--source", self.source, "--model", str(self.model)]
        default = StreamOptions(source=self.source, model=self.model)
        for name, flag in (("backend", "--backend"), ("threads", "--threads"), ("mode", "--mode"),
                           ("width", "--width"), ("height", "--height"), ("fps", "--fps"),
                           ("max_frames", "--max-frames"), ("record", "--record"), ("save_frames", "--save-frames"),
                           ("serve", "--serve"), ("telemetry", "--telemetry"), ("view", "--view"),
                           ("alpha", "--alpha"), ("command_timeout_s", "--command-timeout")):
            value = getattr(self, name)
            if value != getattr(default, name):
                argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        for name, flag in (("outputs", "--sink"), ("commands", "--commands")):
            for target in getattr(self, name):
                argv += [flag, str(target)]
        for name, when, flag in (("show", True, "--show"), ("loop", True, "--loop"),
                                 ("read_ahead", True, "--read-ahead"), ("nav", False, "--no-nav"),
                                 ("verify_engine", False, "--no-verify-engine"), ("legend", False, "--no-legend"),
                                 ("status", True, "--status"), ("status", False, "--no-status")):
            if getattr(self, name) is when:
                argv.append(flag)
        return argv

    def sink_targets(self) -> list[tuple[str, str | None]]:
        """(target, kind) for every output, in the order the CLI always made them."""
        targets: list[tuple[str, str | None]] = [(str(t), "commands") for t in self.commands]
        targets += [(str(t), None) for t in self.outputs]
        if self.record:
            targets.append((str(self.record), "recording"))
        if self.save_frames:
            targets.append((str(self.save_frames), "frames"))
        if self.show:
            targets.append(("display://", "window"))
        if self.serve:
            targets.append((str(self.serve), "serve"))
        return targets


SINK_KINDS = ("commands", "recording", "frames", "window", "serve")
COMMAND_SUFFIXES = (".jsonl", ".ndjson")


def open_sink(target: str, kind: str | None = None, *, title: str = "edgeseg", telemetry: Any = None) -> Sink:
    """A sink from a URI, as `open_source` makes sources (jetson-utils' videoOutput pattern).

    Without `kind` the URI says what it is: `-` or `stdout`, `udp://HOST:PORT` and a `.jsonl`
    path are command outputs; a video file (`.mp4`, `.mkv`, `.avi`, ...) a recording; `display://` a window;
    `http://[HOST]:PORT` the browser view; a path ending in `/` an image folder. A flag that
    names the kind (`--commands log.txt`) passes `kind`, and the URI is taken as that kind.

    Args:
        kind: one of SINK_KINDS, or None to infer it from the URI.
        title: the window's title (window only).
        telemetry: what the browser view shows beside the frames (serve only).
    """
    text = str(target).strip()
    lower = text.lower()
    if kind is None:
        kind = _sink_kind(text, lower)
    if kind == "commands":
        return CommandSink("-" if lower == "stdout" else text)
    if kind == "recording":
        return RecordingSink(text)
    if kind == "frames":
        return FrameFolderSink(text)
    if kind == "window":
        return WindowSink(title)
    if kind == "serve":
        address = text[len("http://"):].rstrip("/") if lower.startswith("http://") else text
        return StreamServer(address, telemetry)
    raise EdgesegError(f"unknown output kind {kind!r}; choose one of {', '.join(SINK_KINDS)}")


def _sink_kind(text: str, lower: str) -> str:
    """The kind of sink a URI names (see `open_sink`)."""
    suffix = Path(lower).suffix
    if lower in ("-", "stdout") or lower.startswith("udp://") or suffix in COMMAND_SUFFIXES:
        return "commands"
    if lower.startswith("display://"):
        return "window"
    if lower.startswith("http://"):
        return "serve"
    if text.endswith(("/", os.sep)):
        return "frames"
    if suffix in RECORDING_CODECS:
        return "recording"
    raise EdgesegError(
        f"cannot tell what kind of output {text!r} is; give -, udp://HOST:PORT or a .jsonl file for commands, "
        f"a {'/'.join(RECORDING_CODECS)} file for a recording, a folder ending in / for images, display:// "
        "or http://HOST:PORT"
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(options: StreamOptions, log: Callable[[str], None] = _stderr) -> RunSummary:
    """Run a stream to its end and return how it went.

    Args:
        log: where the run's lines go ("edgeseg stream: ..." and the summary table); stderr by default.

    Raises:
        EdgesegError: a bad option, output, model or source, before the run starts.
        StreamFailed: the run ended in failure (the message says why; `.summary` has the rest).
    """
    from edgeseg.nav import NAV_MODES, Navigator
    from edgeseg.robot import Robot
    from edgeseg.runtime import Segmenter
    from edgeseg.stream import pipeline, sources
    from edgeseg.stream.telemetry import StatusLine, Telemetry

    def warn(line: str) -> None:
        log(f"\nedgeseg stream: warning: {line}")

    check_view(options.view, options.alpha)
    if options.mode not in NAV_MODES:
        raise EdgesegError(f"unknown navigation mode {options.mode!r}; choose one of {', '.join(NAV_MODES)}")
    if options.commands and not options.nav:
        raise EdgesegError("--commands sends navigation commands; drop --no-nav")
    if options.robot is not None and not options.nav:
        raise EdgesegError(ROBOT_WITHOUT_NAV)
    config = pipeline.PipelineConfig(
        view=options.view, alpha=options.alpha, legend=options.legend, max_frames=options.max_frames,
        pace_reads=not options.read_ahead, command_timeout_s=options.command_timeout_s)

    with contextlib.ExitStack() as stack:
        # Outputs first: a bad path, a busy port or a missing display fails before anything runs.
        telemetry = Telemetry(options.telemetry)
        stack.callback(telemetry.close)
        sinks: list[Any] = []
        server = None
        title = f"edgeseg: {sources.redact_uri(options.source)}"
        for target, kind in options.sink_targets():
            sink = open_sink(target, kind, title=title, telemetry=telemetry)
            stack.callback(sink.abort)  # no-op after the pipeline closed it; cleans up if we fail first
            sinks.append(sink)
            if isinstance(sink, CommandSink) and not options.nav:
                raise EdgesegError("--commands sends navigation commands; drop --no-nav")
            for kept in getattr(sink, "recovered", ()):
                log(f"edgeseg stream: kept the recording an interrupted run left behind as {kept}")
            if isinstance(sink, StreamServer):
                server = sink
                if sink.exposed:
                    log(f"edgeseg stream: warning: the browser view at {sink.url} is reachable by anyone on the "
                        "network, with no password (it is read-only); serve on 127.0.0.1 and use an ssh tunnel "
                        "to keep it private")

        extra: dict[str, Any] = {"threads": options.threads} if options.threads else {}
        if not options.verify_engine:
            extra["verify"] = False
        segmenter = stack.enter_context(
            Segmenter.open(options.model, backend=options.backend, spec=options.spec, **extra))
        if options.nav and not segmenter.spec.traversable:
            raise SpecError(
                f"{options.model}: its spec names no traversable classes (classes: "
                f"{', '.join(segmenter.spec.class_names)}), so it cannot drive; stream with --no-nav, or "
                "name the classes it may drive on with --traversable A,B (or write them in once with `edgeseg spec`)"
            )

        source = stack.enter_context(sources.open_source(
            options.source, width=options.width, height=options.height, fps=options.fps, loop=options.loop))
        navigator = None
        if options.nav:
            # With a camera (options.robot from flags or a robot file, else the synthetic source's
            # own) the mode is adapted to it, stop lines in metres, as `edgeseg sim` drives; without,
            # the NAV_MODES row as it is.
            own = getattr(source, "camera", None)
            robot = options.robot or (Robot.from_camera(own) if own is not None else None)
            navigator = Navigator.from_spec(segmenter.spec, options.mode, robot=robot)
        for sink in sinks:
            if isinstance(sink, RecordingSink):
                sink.fps = source.fps or 30.0
        telemetry.info.update(model=str(options.model), backend=segmenter.backend_name)
        stream = pipeline.StreamPipeline(source, segmenter, navigator, sinks, config, telemetry, warn=warn)

        log(f"edgeseg stream: {source.uri} -> {segmenter!r}"
            + (f", navigation {options.mode}" if navigator else ", no navigation")
            + (f"; watch at {server.url}" if server else ""))
        status = StatusLine(telemetry, enabled=options.status)
        with _stop_on_signals(stream, options.handle_signals):
            try:
                summary = stream.run(tick=status.update)
            finally:
                status.finish()

    log(summary.table)
    for line in summary.sinks:
        log(line)
    for line in summary.failures:
        log(f"FAILED: {line}")
    if summary.error:
        raise StreamFailed(summary.error, summary)
    ended = f"{summary.reason} ({summary.detail})" if summary.detail else summary.reason
    if summary.failures:
        raise StreamFailed(f"{ended}, but {len(summary.failures)} output(s) failed (see FAILED above)", summary)
    log(f"edgeseg stream: {ended}")
    return summary


@contextlib.contextmanager
def _stop_on_signals(stream: Any, enabled: bool = True) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the pipeline cleanly; a second one gives up waiting (KeyboardInterrupt).

    Installed only when called from the main thread (Python allows signal handlers nowhere else),
    and the previous handlers are restored afterwards.
    """
    import signal
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        stream.stop(f"stopped by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
