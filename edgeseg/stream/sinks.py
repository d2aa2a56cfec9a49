"""Where streamed results go: a window, a video recording, an image folder, command lines.

Every sink is created before the run, so a bad path or a missing display fails at start, and
takes part in three calls:

* `write(result, view)`: one processed frame. `view` is the picture drawn once per frame for all
  sinks that set `needs_view` (None for the others). Sinks without `needs_view` (commands) run on
  the navigation thread right after navigation, so a command never waits for video encoding;
  the others run on the output thread.
* `close()`: the run ended (end of stream, max frames, Ctrl-C, a source failure), or this view
  sink failed and was disabled: finalise what is valid (a recording is kept only if it checks out).
* `abort()`: the run failed before this sink could be finalised: discard what it wrote, leave
  nothing half-written.

Sinks may also have `start()`, called when the run starts: files are created then, not when the
sink is made, so a run that cannot start leaves no empty output behind.

A sink may raise `StopRequested` to end the run normally (the window was closed, q pressed).
Any other error from a view sink disables that sink alone (`edgeseg.stream.pipeline`); an error
from a command sink stops the run. The browser view (`StreamServer`) lives in `edgeseg.stream.server`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Protocol

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.fileio import atomic_path, atomic_write_bytes, check_writable, stale_temporaries
from edgeseg.nav.draw import draw_command
from edgeseg.nav.navigator import Command
from edgeseg.runtime.overlay import colorize, draw_legend, overlay
from edgeseg.spec import ModelSpec

VIEWS = ("overlay", "mask", "side")


class StopRequested(Exception):
    """Raised by a sink to end the run normally; the message is the reason."""


class OutputFailed(EdgesegError):
    """An output cannot be written any more (disk full, closed pipe); the message says which and why."""


@dataclass(eq=False)  # holds arrays
class FrameResult:
    """One processed frame, as every sink receives it.

    Attributes:
        index: the frame's number from the source (gaps are frames dropped as stale).
        frame: the RGB uint8 frame.
        class_map: uint8 HxW class ids at the frame's size.
        command: the navigation command, or None without navigation.
        captured_at: `time.perf_counter()` when the frame was read (latencies are measured from it).
        wall_time: `time.time()` when the frame was read.
        timings: seconds per stage so far: capture, preprocess, infer, postprocess, nav.
        spec: the model's spec (class names, palette).
    """

    index: int
    frame: np.ndarray
    class_map: np.ndarray
    command: Command | None
    captured_at: float
    wall_time: float
    timings: dict[str, float]
    spec: ModelSpec
    extra: dict[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    name: str
    needs_view: bool

    def write(self, result: FrameResult, view: np.ndarray | None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


# --- views ------------------------------------------------------------------------------------


def render_view(
    result: FrameResult, view: str = "overlay", alpha: float = 0.5, legend: bool = True,
    max_heading: float = 0.8,
) -> np.ndarray:
    """The picture the view sinks show: the class colours, a legend and the command.

    Args:
        view: "overlay" (colours blended over the frame, `alpha`), "mask" (colours only) or "side"
            (the frame with the command, next to the colourised class map with the legend).
        max_heading: the navigator's NavConfig.max_heading, so the arrow points where it looked.
    """
    spec = result.spec
    if view == "overlay":
        picture = overlay(result.frame, result.class_map, spec.palette, alpha)
    elif view == "mask":
        picture = colorize(result.class_map, spec.palette)
    elif view == "side":
        left = result.frame
        if result.command is not None:
            left = draw_command(left, result.command, max_heading=max_heading)
        right = colorize(result.class_map, spec.palette)
        if legend:
            right = draw_legend(right, spec.class_names, spec.palette, _legend_row(right))
        return np.hstack([left, right])
    else:
        raise EdgesegError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if result.command is not None:
        picture = draw_command(picture, result.command, max_heading=max_heading)
    if legend:  # top right: the command's text is in the top left
        picture = _legend_top_right(picture, spec)
    return picture


def _legend_row(image: np.ndarray) -> int:
    return int(np.clip(image.shape[0] // 18, 10, 24))


def _legend_top_right(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """draw_legend (which draws top left) applied to the right-hand strip the legend needs."""
    row = _legend_row(image)
    scale = row / 40.0  # draw_legend's text scale
    text = max(cv2.getTextSize(str(name), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for name in spec.class_names)
    width = min(image.shape[1], row + 12 + text)
    out = image.copy()
    out[:, -width:] = draw_legend(np.ascontiguousarray(image[:, -width:]), spec.class_names, spec.palette, row)
    return out


def check_view(view: str, alpha: float) -> None:
    """Raise EdgesegError for an unknown view or an alpha outside [0, 1], before the run."""
    if view not in VIEWS:
        raise EdgesegError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if not 0.0 <= alpha <= 1.0:
        raise EdgesegError(f"--alpha must be between 0 and 1, got {alpha}")


# --- the window -------------------------------------------------------------------------------


def display_available() -> bool:
    """False on Linux without an X11 or Wayland display (e.g. over ssh without -X)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def opencv_has_gui() -> bool:
    """False for headless OpenCV builds (opencv-python-headless: `GUI: NONE`)."""
    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return match is None or match.group(1).upper() != "NONE"


class WindowSink:
    """Shows the view in an OpenCV window (`--show`); closing it or pressing q or Esc ends the run.

    The window is created and drawn from the output thread only (HighGUI wants one thread).
    """

    needs_view = True

    def __init__(self, title: str = "edgeseg") -> None:
        self.name = f"window {title!r}"
        self.title = title
        if not opencv_has_gui():
            raise EdgesegError(
                "--show needs OpenCV with a GUI, but this is a headless build (opencv-python-headless); "
                "pip install opencv-python, or watch in a browser with --serve :8080"
            )
        if not display_available():
            raise EdgesegError(
                "--show needs a display, and DISPLAY/WAYLAND_DISPLAY are not set (ssh without -X?); "
                "watch in a browser with --serve :8080 instead, or record with --record out.mp4"
            )
        self._opened = False

    def write(self, result: FrameResult, view: np.ndarray | None) -> None:
        if view is None:
            return
        try:
            if not self._opened:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                self._opened = True
            cv2.imshow(self.title, cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        except cv2.error as err:
            raise EdgesegError(f"cannot show a window: {err.err}; use --serve :8080 instead") from None
        if key in (ord("q"), 27):
            raise StopRequested("window: q pressed")
        if visible < 1:
            raise StopRequested("window closed")

    def close(self) -> None:
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._opened = False

    def abort(self) -> None:
        self.close()


# --- the recording ----------------------------------------------------------------------------

# Container suffix -> FourCC OpenCV's FFmpeg writer encodes it with.
RECORDING_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
# A recording stops (and is finalised) when its file system has less than this free: finishing
# an MP4 needs room for its index, and FFmpeg writes in blocks of up to 1 MiB.
RECORDING_RESERVE_BYTES = 4 << 20


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write in `folder`'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def video_frame_count(path: Path) -> int:
    """The frame count a video's container states (OpenCV/FFmpeg), or -1 if it does not open."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return -1
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return int(count) if 0 <= count < 1e12 else -1
    finally:
        capture.release()


class RecordingSink:
    """Records the view to a video file (`--record out.mp4`), atomically.

    Frames go to a hidden temporary file beside the destination; `close()` finishes it and renames
    it into place, `abort()` deletes it, so an interrupted or failed run never leaves a half-written
    recording. The path is checked (and the temporary file created) when the sink is made, so an
    unwritable path fails before the run.

    The recording's size is the first frame's; a later frame of another size (the source changed
    resolution) is resized to it and counted in `resized`. Frames are written at `fps`, the
    source's nominal rate: when the pipeline drops frames the recording plays faster than real time.

    OpenCV's writer reports no write errors (FFmpeg only logs "Failed to write frame"), so the
    sink checks for itself: before each frame, that the file system keeps `reserve_bytes` free
    (else `OutputFailed`: the pipeline disables the recording and `close()` finishes the frames
    written so far); at `close()`, that the finished file opens and holds every frame written.
    A file that does not is deleted, never renamed into place, and `close()` raises `OutputFailed`.

    A run killed with -9 or by a power cut leaves its hidden temporary file; in `.mkv` and `.avi`
    it plays up to the last frames FFmpeg wrote. The next recording to the same path keeps such
    a file that still opens as `NAME.interrupted-YYYYmmdd-HHMMSS.SUFFIX` (listed in `recovered`)
    instead of letting the stale-temporary cleanup delete it.

    Args:
        writer_factory: makes the writer; default `cv2.VideoWriter` (tests pass one that fails
            like a full disk).
        free_space: bytes free in a folder; default `free_bytes` (tests pass one that reports a
            full disk).
        reserve_bytes: free space to keep; default `RECORDING_RESERVE_BYTES`.
    """

    needs_view = True

    def __init__(self, path: str | Path, fps: float | None = None, *,
                 writer_factory: Callable[..., Any] | None = None,
                 free_space: Callable[[Path], int] | None = None,
                 reserve_bytes: int | None = None) -> None:
        self.path = Path(path).expanduser()
        self.name = f"recording {self.path}"
        suffix = self.path.suffix.lower()
        if suffix not in RECORDING_CODECS:
            raise EdgesegError(
                f"cannot record to {self.path}: unknown video type {suffix or '(none)'}; "
                f"use one of {', '.join(RECORDING_CODECS)}"
            )
        self.fourcc = RECORDING_CODECS[suffix]
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frames = 0
        self.resized = 0
        self.size: tuple[int, int] | None = None  # (width, height)
        self._writer: Any = None
        self._writer_factory = writer_factory or cv2.VideoWriter
        self._free_space = free_space or free_bytes
        self.reserve_bytes = RECORDING_RESERVE_BYTES if reserve_bytes is None else int(reserve_bytes)
        self._stack = contextlib.ExitStack()
        if self.path.is_dir():
            raise EdgesegError(f"cannot record to {self.path}: it is a folder; give a file name like out.mp4")
        self.recovered = recover_interrupted_recordings(self.path)
        self._tmp = self._stack.enter_context(atomic_path(self.path))  # EdgesegError if unwritable
        probe = self._writer_factory(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (64, 48))
        opened = probe.isOpened()
        probe.release()
        if not opened:
            self.abort()
            raise EdgesegError(
                f"OpenCV cannot write {suffix} video with codec {self.fourcc} here; record to .avi (MJPG) instead"
            )

    def write(self, result: FrameResult, view: np.ndarray | None) -> None:
        if view is None:
            return
        height, width = view.shape[:2]
        free = self._free_space(self._tmp.parent)
        if free < self.reserve_bytes:
            raise OutputFailed(
                f"recording {self.path}: only {free / (1 << 20):.1f} MiB left on its file system (a recording "
                f"keeps {self.reserve_bytes >> 20} MiB free to finish the file); free space or record elsewhere"
            )
        if self._writer is None:
            self.size = (width, height)
            self._writer = self._writer_factory(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                                self.size)
            if not self._writer.isOpened():
                raise OutputFailed(f"cannot start recording {self.path} at {width}x{height}")
        if (width, height) != self.size:
            view = cv2.resize(view, self.size, interpolation=cv2.INTER_AREA)
            self.resized += 1
        self._writer.write(cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place if it holds every frame written (an empty run
        records nothing).

        Raises:
            OutputFailed: the finished file is not playable or misses frames; it was deleted.
        """
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.frames == 0:
            self.abort()
            return
        found = video_frame_count(self._tmp)
        tolerance = 1 if self.path.suffix.lower() == ".mkv" else 0  # Matroska's count is estimated from the duration
        if found < 0 or abs(found - self.frames) > tolerance:
            self.abort()
            held = "does not open" if found < 0 else f"holds {found}"
            written, self.frames = self.frames, 0
            raise OutputFailed(
                f"recording {self.path} is broken: {written} frames were written but the finished file {held} "
                "(disk full or I/O error?); it was deleted"
            )
        self._stack.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        discard = EdgesegError(f"recording {self.path} discarded")
        self._stack.__exit__(EdgesegError, discard, None)  # atomic_path deletes the temporary file

    def summary(self) -> str:
        if not self.frames:
            return f"recording {self.path}: no frames kept, nothing written"
        width, height = self.size or (0, 0)
        resized = f", {self.resized} resized to {width}x{height}" if self.resized else ""
        return f"recording {self.path}: {self.frames} frames {width}x{height} at {self.fps:g} fps{resized}"


def recover_interrupted_recordings(path: Path) -> list[Path]:
    """Rename the stale temporaries of recording `path` that still open as videos to
    `NAME.interrupted-<time of their last write>.SUFFIX`; the rest are left to the cleanup."""
    recovered = []
    for stale in stale_temporaries(path):
        if not stale.is_file() or not _opens_as_video(stale):
            continue
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(stale.stat().st_mtime))
        target = path.with_name(f"{path.stem}.interrupted-{stamp}{path.suffix}")
        if target.exists():
            continue
        with contextlib.suppress(OSError):
            stale.rename(target)
            recovered.append(target)
    return recovered


def _opens_as_video(path: Path) -> bool:
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


# --- an image folder --------------------------------------------------------------------------


class FrameFolderSink:
    """Saves each view as an image (`--save-frames DIR`): DIR/frame_000123.jpg, named by source index.

    Each file is written atomically, so a reader never sees a half-written image.
    """

    needs_view = True

    def __init__(self, folder: str | Path, suffix: str = ".jpg", quality: int = 90) -> None:
        self.folder = Path(folder).expanduser()
        self.name = f"frames {self.folder}"
        self.suffix = suffix if suffix.startswith(".") else "." + suffix
        self.params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if self.suffix in (".jpg", ".jpeg") else []
        self.frames = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise EdgesegError(f"cannot create the frames folder {self.folder}: {err.strerror}") from None
        if not os.access(self.folder, os.W_OK):
            raise EdgesegError(f"cannot write to the frames folder {self.folder}; choose a writable folder")

    def write(self, result: FrameResult, view: np.ndarray | None) -> None:
        if view is None:
            return
        ok, encoded = cv2.imencode(self.suffix, cv2.cvtColor(view, cv2.COLOR_RGB2BGR), self.params)
        if not ok:
            raise EdgesegError(f"OpenCV cannot encode {self.suffix} images; use --save-frames with .jpg or .png")
        atomic_write_bytes(self.folder / f"frame_{result.index:06d}{self.suffix}", encoded.tobytes())
        self.frames += 1

    def close(self) -> None:
        """Nothing to finish: every file is complete once written."""

    def abort(self) -> None:
        """Keep the complete images already written."""

    def summary(self) -> str:
        return f"frames: {self.frames} images in {self.folder}"


# --- driving commands -------------------------------------------------------------------------


# What a command line is (its "kind" field).
FRAME_COMMAND = "frame"  # the navigator's command for one frame
STALE_STOP = "stale"  # no fresh frame for the command timeout: stop (repeated while it lasts)
FINAL_STOP = "final"  # the run ended: stop; the last line of every run


def command_record(result: FrameResult, latency_s: float) -> dict[str, Any]:
    """The JSON object sent for one frame's command."""
    command = result.command
    if command is None:
        raise EdgesegError("command sinks need navigation; run without --no-nav")
    return {
        "kind": FRAME_COMMAND,
        "frame": result.index,
        "timestamp": round(result.wall_time, 6),
        "steering": round(command.steering, 4),
        "throttle": round(command.throttle, 4),
        "stop": command.stop,
        "clearance": round(command.clearance, 4),
        "confidence": round(command.confidence, 4),
        "reason": command.reason,
        "latency_ms": round(latency_s * 1000.0, 3),
    }


def stop_record(kind: str, reason: str, frame: int) -> dict[str, Any]:
    """A stop the pipeline sends itself (no frame behind it): steering 0, throttle 0, stop true.

    Args:
        kind: STALE_STOP or FINAL_STOP.
        reason: why, e.g. "end of stream", "stopped by SIGTERM", "no frame for 0.5 s".
        frame: the index of the last frame a command was sent for (-1: none yet).
    """
    return {
        "kind": kind, "frame": frame, "timestamp": round(time.time(), 6), "steering": 0.0, "throttle": 0.0,
        "stop": True, "clearance": 0.0, "confidence": 0.0, "reason": reason, "latency_ms": None,
    }


class CommandSink:
    """Sends one JSON object per frame with the driving command (`--commands FILE|-|udp://host:port`).

    Fields: frame, timestamp (capture wall time, Unix seconds), steering, throttle, stop, clearance,
    confidence, reason, latency_ms (capture to this line being sent).

    A file is written as it goes, one flushed line per frame, so a controller can follow it
    (`tail -f`); `-` is standard output; `udp://host:port` sends each object as one datagram
    (send failures, e.g. the network is down, are counted in `send_errors`, not fatal: the
    receiver's own timeout stops the car). A file or standard output that cannot be written
    (disk full, the reader went away) raises `OutputFailed`: the pipeline stops the run.
    The file is created when the run starts (`start()`), not when the sink is made.
    Runs on the navigation thread, right after navigation; the pipeline adds stop lines
    (`send_stop`) while no frames arrive and when the run ends.
    """

    needs_view = False

    def __init__(self, target: str) -> None:
        self.target = str(target)
        self.name = f"commands {self.target}"
        self.lines = 0
        self.send_errors = 0
        self._file: IO[str] | None = None
        self._owns_file = False
        self._socket: socket.socket | None = None
        self._address: Any = None
        self._path: Path | None = None
        if self.target == "-":
            self._file = sys.stdout
        elif self.target.lower().startswith("udp://"):
            host, port = _udp_address(self.target)
            try:
                family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            except socket.gaierror as err:
                raise EdgesegError(f"cannot resolve {self.target}: {err.strerror}; check the host name") from None
            self._socket = socket.socket(family, kind, proto)
            self._address = address
        else:
            self._path = check_writable(self.target, "commands")

    def start(self) -> None:
        """Create the commands file (a file target only)."""
        path = self._path
        if path is None or self._file is not None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", encoding="utf-8", buffering=1)
        except OSError as err:
            raise OutputFailed(f"cannot write commands to {path}: {err.strerror}; choose a writable path") from None
        self._owns_file = True

    def write(self, result: FrameResult, view: np.ndarray | None = None) -> None:
        self._send(command_record(result, result.extra.get("command_latency_s", 0.0)))

    def send_stop(self, kind: str, reason: str, frame: int) -> None:
        """Send a stop line the pipeline makes (see `stop_record`)."""
        self._send(stop_record(kind, reason, frame))

    def _send(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        if self._socket is not None:
            try:
                self._socket.sendto(line.encode() + b"\n", self._address)
            except OSError:
                self.send_errors += 1
                return
        else:
            if self._file is None:
                self.start()
            try:
                self._file.write(line + "\n")  # type: ignore[union-attr]
                self._file.flush()  # type: ignore[union-attr]
            except (OSError, ValueError) as err:  # ValueError: the stream was closed under us
                raise self._failed(err) from None
        self.lines += 1

    def _failed(self, err: BaseException) -> OutputFailed:
        """The error that stops the run when the commands file or stdout cannot be written."""
        if self.target == "-":
            _silence_stdout()  # or Python reports the broken pipe again when it exits
            if isinstance(err, BrokenPipeError) or getattr(err, "errno", None) == errno.EPIPE:
                return OutputFailed("commands output - closed: the program reading standard output went away")
        reason = getattr(err, "strerror", None) or str(err)
        return OutputFailed(f"cannot write commands to {self.target}: {reason}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._file is not None and self._owns_file:
            with contextlib.suppress(OSError):  # a full disk: the failure was reported when writing
                self._file.close()
        self._file = None

    def abort(self) -> None:
        self.close()

    def summary(self) -> str:
        errors = f", {self.send_errors} send errors" if self.send_errors else ""
        return f"commands {self.target}: {self.lines} lines{errors}"


def _silence_stdout() -> None:
    """Point standard output at /dev/null once its reader is gone (Python's advice for EPIPE)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _udp_address(target: str) -> tuple[str, int]:
    rest = target[len("udp://"):].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgesegError(f"a UDP target is udp://HOST:PORT, e.g. udp://192.168.1.20:9000, got {target!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
