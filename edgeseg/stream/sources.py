"""Video sources: one factory turns a URI into a `Source` whose reads say FRAME, TIMEOUT, END or ERROR.

    from edgeseg.stream.sources import ReadStatus, open_source

    with open_source("synthetic://?seed=3", fps=15) as source:
        while True:
            read = source.read(timeout=0.5)
            if read.status is ReadStatus.FRAME:
                use(read.frame)                    # RGB uint8 HxWx3
            elif read.status is ReadStatus.TIMEOUT:
                continue                           # no frame yet; the stream is still there
            else:
                break                              # END, or ERROR with read.message

| URI                                 | source              | notes                                   |
|-------------------------------------|---------------------|-----------------------------------------|
| `0`, `/dev/video0`                  | `CameraSource`      | USB/V4L2 camera through OpenCV          |
| `csi://0`                           | `CsiCameraSource`   | Jetson CSI camera (GStreamer, nvargus)  |
| `rtsp://host:554/path`              | `NetworkSource`     | low latency: GStreamer, else FFmpeg     |
| `http://...`, `https://...`         | `NetworkSource`     | MJPEG/HLS streams through FFmpeg        |
| `gst:PIPELINE`                      | `GStreamerSource`   | any pipeline ending in `appsink`        |
| `clip.mp4`, `clip.avi`, ...         | `VideoFileSource`   | `loop` to play forever                  |
| `DIR`, `DIR/*.png`, `photo.jpg`     | `ImageFolderSource` | sorted by name, numbers compared as numbers |
| `synthetic://?seed=0&size=320x240`  | `SyntheticSource`   | a drive through the synthetic world     |

Each class documents its options in a table; `open_source(uri, **options)` rejects options the
kind does not have. OpenCV's BGR frames become RGB here, at the edge. Frames that are None, empty
or of the wrong dtype are skipped and counted (`source.stats.corrupt`). Live sources (cameras,
network streams) that stop delivering frames reconnect with exponential backoff and give up with
an ERROR read that says why.

Credentials in a URI (`rtsp://user:password@camera/stream`) are used to open the stream and
nowhere else: `source.uri`, every message and everything the pipeline prints, logs or serves
shows `rtsp://***@camera/stream` (`redact_uri`).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import glob
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol
from urllib.parse import parse_qsl

import cv2
import numpy as np

from edgeseg.errors import DataError, EdgesegError
from edgeseg.size import Size, parse_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".ts", ".h264", ".h265", ".mjpg", ".mjpeg", ".gif")
CORRUPT_IN_A_ROW_LIMIT = 100  # this many bad frames in a row is a broken stream, not a glitch
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_GST_SECRETS = re.compile(r"(?i)\b(user-pw|user-id|password)=(\"[^\"]*\"|\S+)")


def redact_uri(text: str) -> str:
    """`text` with the user and password of every URL in it (and GStreamer's user-id/user-pw) as ***."""
    return _GST_SECRETS.sub(r"\1=***", _USERINFO.sub(r"\1***@", str(text)))


# --- reads ------------------------------------------------------------------------------------


class ReadStatus(enum.Enum):
    """What a read returned."""

    FRAME = "frame"  # a frame: Read.frame, .timestamp, .index are set
    TIMEOUT = "timeout"  # no frame within the timeout; the stream is still alive, read again
    END = "end"  # the stream ended (end of file, last image, source closed): stop reading
    ERROR = "error"  # the stream failed for good (Read.message says why): stop reading


@dataclass(frozen=True, eq=False)  # holds an array
class Read:
    """The result of `Source.read`.

    Attributes:
        status: see `ReadStatus`.
        frame: RGB uint8 HxWx3 when status is FRAME, else None.
        timestamp: `time.perf_counter()` when the frame arrived (monotonic; latencies are measured
            from it).
        wall_time: `time.time()` at the same moment, for logs read by other programs.
        index: the frame's number from this source, from 0 (counts every frame delivered,
            including ones a pipeline later drops).
        message: why, for END and ERROR.
    """

    status: ReadStatus
    frame: np.ndarray | None = None
    timestamp: float = 0.0
    wall_time: float = 0.0
    index: int = -1
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ReadStatus.FRAME


@dataclass
class SourceStats:
    """Counters every source keeps (read them at any time; they only grow)."""

    frames: int = 0  # frames delivered
    corrupt: int = 0  # frames or image files skipped because they were unreadable
    reconnects: int = 0  # successful reconnections of a live source
    size_changes: int = 0  # times the frame size differed from the previous frame's
    last_size: tuple[int, int] | None = None  # (height, width) of the last frame


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source retries after it stops delivering frames.

    Attempt k (from 1) waits `initial_s * factor**(k-1)` seconds, at most `max_s`, then reopens.
    The budget of `attempts` resets once a frame arrives again.
    """

    attempts: int = 5
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise EdgesegError(f"reconnect attempts must be 0 or more, got {self.attempts}")
        if self.initial_s < 0 or self.max_s < 0 or self.factor < 1:
            raise EdgesegError(
                f"reconnect delays must be >= 0 and the factor >= 1, got initial {self.initial_s} s, "
                f"factor {self.factor}, max {self.max_s} s"
            )

    def delay(self, attempt: int) -> float:
        return min(self.initial_s * self.factor ** (attempt - 1), self.max_s)


# --- the base class ---------------------------------------------------------------------------


class Source:
    """A stream of RGB frames. Subclasses implement `_read(timeout)` and `_release()`.

    Attributes:
        uri: what was opened, for messages.
        live: True for cameras and network streams (frames arrive in real time and are lost if not
            read); False for files, folders and the non-real-time synthetic drive (every frame
            waits to be read). The pipeline drops stale frames only from live sources.
        fps: the nominal frame rate, or None when unknown.
        stats: `SourceStats`.
    """

    OPTIONS: tuple[str, ...] = ()
    live = False

    def __init__(self, uri: str, fps: float | None = None) -> None:
        self.uri = redact_uri(uri)  # for messages; the real URI stays with the opener
        self.fps = fps if fps and fps > 0 and math.isfinite(fps) else None
        self.stats = SourceStats()
        self._interrupted = threading.Event()
        self._closed = False

    def read(self, timeout: float | None = None) -> Read:
        """The next frame, or TIMEOUT, END or ERROR.

        Args:
            timeout: seconds to wait for a frame before returning TIMEOUT (None: wait as long as
                the source needs). OpenCV captures block inside their backend; for them this is a
                hint and the backend's own timeout applies.
        """
        if self._closed:
            return Read(ReadStatus.END, message=f"{self.uri} is closed")
        if self._interrupted.is_set():
            return Read(ReadStatus.END, message=f"{self.uri} was interrupted")
        return self._read(timeout)

    def interrupt(self) -> None:
        """Make waits inside `read` (pacing, reconnect backoff) return at once; safe from any thread.

        Reads after this return END. Used by the pipeline to stop promptly.
        """
        self._interrupted.set()

    def close(self) -> None:
        """Release the device or file. Call it from the thread that reads, or after reading stopped."""
        if not self._closed:
            self._closed = True
            self._release()

    def frames(self, timeout: float | None = None) -> Iterator[np.ndarray]:
        """Iterate over the frames until END; raises EdgesegError on ERROR."""
        while True:
            read = self.read(timeout)
            if read.status is ReadStatus.FRAME:
                yield read.frame  # type: ignore[misc]
            elif read.status is ReadStatus.END:
                return
            elif read.status is ReadStatus.ERROR:
                raise EdgesegError(read.message)

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "live" if self.live else "file"
        return f"<{type(self).__name__} {self.uri} ({kind}), {self.stats.frames} frames>"

    # -- for subclasses

    def _read(self, timeout: float | None) -> Read:
        raise NotImplementedError

    def _release(self) -> None:
        """Release resources (called once by close)."""

    def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if interrupted meanwhile."""
        return self._interrupted.wait(max(0.0, seconds))

    def _deliver(self, frame: np.ndarray) -> Read:
        """A FRAME read for an RGB frame, with the counters and size tracking updated."""
        now, wall = time.perf_counter(), time.time()
        size = (int(frame.shape[0]), int(frame.shape[1]))
        stats = self.stats
        if stats.last_size is not None and size != stats.last_size:
            stats.size_changes += 1
        stats.last_size = size
        index = stats.frames
        stats.frames += 1
        return Read(ReadStatus.FRAME, frame, now, wall, index)

    def _to_rgb(self, image: Any, bgr: bool = True) -> np.ndarray | None:
        """RGB uint8 HxWx3 from an OpenCV image (BGR, BGRA or grey); None (and counted) if corrupt."""
        rgb = image_to_rgb(image, bgr=bgr)
        if rgb is None:
            self.stats.corrupt += 1
        return rgb


def image_to_rgb(image: Any, bgr: bool = True) -> np.ndarray | None:
    """Convert an OpenCV image to RGB uint8 HxWx3; None for None, empty or non-uint8 images."""
    if not isinstance(image, np.ndarray) or image.size == 0 or image.dtype != np.uint8:
        return None
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        return None
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    if bgr:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


# --- OpenCV captures: cameras, network streams, GStreamer, video files -------------------------


class Capture(Protocol):
    """The part of `cv2.VideoCapture` the sources use (so tests can pass a fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


class CaptureSource(Source):
    """A source over an OpenCV capture that `opener()` creates; reopens it to loop or reconnect.

    Live captures treat a failed read as a TIMEOUT for the first `misses_before_reconnect - 1`
    misses, then reconnect with `reconnect`'s backoff, and return ERROR when the attempts are
    spent. File captures return END (or start again when `loop` is set).
    """

    def __init__(
        self,
        uri: str,
        opener: Callable[[], Capture | None],
        *,
        live: bool,
        loop: bool = False,
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        misses_before_reconnect: int = 3,
        fps: float | None = None,
        open_error: Callable[[], str] | None = None,
    ) -> None:
        """
        Args:
            opener: returns an opened capture, or None / an unopened one on failure.
            open_error: the message when the first open fails (default: a generic one).
        """
        self.live = live
        self.loop = bool(loop)
        self.reconnect = reconnect
        self.misses_before_reconnect = max(1, int(misses_before_reconnect))
        self._opener = opener
        self._misses = 0
        self._failed_attempts = 0
        self._frames_since_open = 0
        capture = self._open()
        if capture is None:
            message = open_error() if open_error else f"cannot open {uri}"
            raise EdgesegError(redact_uri(message))
        self._capture: Capture | None = capture
        if fps is None:
            fps = _capture_fps(capture)
        super().__init__(uri, fps)

    def _open(self) -> Capture | None:
        capture = self._opener()
        if capture is None:
            return None
        if not capture.isOpened():
            capture.release()
            return None
        self._frames_since_open = 0
        return capture

    def _read(self, timeout: float | None) -> Read:
        corrupt_in_a_row = 0
        while corrupt_in_a_row < CORRUPT_IN_A_ROW_LIMIT:
            if self._interrupted.is_set():
                return Read(ReadStatus.END, message=f"{self.uri} was interrupted")
            ok, image = self._capture.read() if self._capture is not None else (False, None)
            if ok:
                self._misses = 0
                frame = self._to_rgb(image)
                if frame is None:
                    corrupt_in_a_row += 1
                    continue
                self._failed_attempts = 0
                self._frames_since_open += 1
                return self._deliver(frame)
            if not self.live:
                if self.loop and self._frames_since_open > 0:
                    self._release()
                    self._capture = self._open()
                    if self._capture is not None:
                        continue
                    return Read(ReadStatus.ERROR, message=f"cannot reopen {self.uri} to loop it")
                return Read(ReadStatus.END, message=self._end_message())
            self._misses += 1
            opened = self._capture is not None and self._capture.isOpened()
            if opened and self._misses < self.misses_before_reconnect:
                return Read(ReadStatus.TIMEOUT, message=f"no frame from {self.uri}")
            failure = self._reconnect()
            if failure is not None:
                return failure
        return Read(
            ReadStatus.ERROR,
            message=f"{self.uri} delivered {CORRUPT_IN_A_ROW_LIMIT} corrupt frames in a row; "
            "check the camera's pixel format (e.g. fourcc=MJPG) or the stream's encoding",
        )

    def _end_message(self) -> str:
        return f"end of {self.uri}"

    def _reconnect(self) -> Read | None:
        """Reopen with backoff; None once reopened, else the END/ERROR read that ends the stream."""
        self._release()
        self._misses = 0
        policy = self.reconnect
        started = time.monotonic()
        while self._failed_attempts < policy.attempts:
            self._failed_attempts += 1
            if self._wait(policy.delay(self._failed_attempts)):
                return Read(ReadStatus.END, message=f"{self.uri} was interrupted while reconnecting")
            self._capture = self._open()
            if self._capture is not None:
                self.stats.reconnects += 1
                return None
        waited = time.monotonic() - started
        return Read(
            ReadStatus.ERROR,
            message=(
                f"{self.uri} stopped delivering frames and {policy.attempts} reconnect attempt(s) "
                f"over {waited:.1f} s failed; check the cable, power or network, or allow more "
                "attempts (reconnect_attempts option)"
            ),
        )

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _capture_fps(capture: Capture) -> float | None:
    get = getattr(capture, "get", None)
    if get is None:
        return None
    fps = float(get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 0 < fps < 1000 else None


@functools.lru_cache(maxsize=None)
def opencv_has_gstreamer() -> bool:
    """True if this OpenCV build can open GStreamer pipelines."""
    info = cv2.getBuildInformation()
    match = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(match) and match.group(1).upper() == "YES"


def _require_gstreamer(what: str) -> None:
    if not opencv_has_gstreamer():
        raise EdgesegError(
            f"{what} needs OpenCV built with GStreamer, and this OpenCV {cv2.__version__} has none "
            "(cv2.getBuildInformation(): GStreamer NO); on a Jetson use JetPack's OpenCV "
            "(sudo apt install python3-opencv, venv with --system-site-packages) instead of the pip wheel"
        )


def _set_props(capture: Any, props: dict[int, float]) -> None:
    for prop, value in props.items():
        capture.set(prop, value)


def list_video_devices() -> list[str]:
    """The /dev/video* device nodes, in numeric order."""
    return sorted(glob.glob("/dev/video*"), key=_natural_key)


def _devices_hint() -> str:
    devices = list_video_devices()
    if devices:
        return "cameras present: " + ", ".join(devices)
    if sys.platform.startswith("linux"):
        return "no /dev/video* devices exist: is the camera plugged in (lsusb) and its driver loaded?"
    return "on this OS cameras are numbered from 0"


class CameraSource(CaptureSource):
    """A USB or built-in camera through OpenCV (V4L2 on Linux). URI: `0`, `1`, ... or `/dev/videoN`.

    | option               | default | meaning                                                     |
    |----------------------|---------|-------------------------------------------------------------|
    | width, height        | driver  | requested capture size in pixels                            |
    | fps                  | driver  | requested frame rate                                        |
    | fourcc               | driver  | pixel format, e.g. MJPG (needed by many USB cameras for HD) |
    | reconnect_attempts   | 5       | reopen tries after the camera stops delivering frames       |
    | reconnect_delay_s    | 0.5     | first backoff delay; it doubles per attempt, up to 8 s      |

    The capture buffer is set to one frame, so reads return the newest frame, not a queued one.
    """

    OPTIONS = ("width", "height", "fps", "fourcc", "reconnect_attempts", "reconnect_delay_s")
    live = True

    def __init__(
        self,
        device: str | int,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
        reconnect_attempts: int = 5,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        text = str(device).strip()
        linux = sys.platform.startswith("linux")
        target: str | int = int(text) if text.isdigit() else text
        path = f"/dev/video{text}" if text.isdigit() else text
        if linux and not os.path.exists(path):
            raise EdgesegError(f"camera {text} not found ({path} does not exist); {_devices_hint()}")
        if linux:
            target = path
        api = cv2.CAP_V4L2 if linux else cv2.CAP_ANY
        props: dict[int, float] = {cv2.CAP_PROP_BUFFERSIZE: 1}
        if fourcc:
            if len(fourcc) != 4:
                raise EdgesegError(f"camera fourcc must be 4 characters like MJPG or YUYV, got {fourcc!r}")
            props[cv2.CAP_PROP_FOURCC] = cv2.VideoWriter_fourcc(*fourcc)
        if width:
            props[cv2.CAP_PROP_FRAME_WIDTH] = int(width)
        if height:
            props[cv2.CAP_PROP_FRAME_HEIGHT] = int(height)
        if fps:
            props[cv2.CAP_PROP_FPS] = float(fps)

        def opener() -> Capture:
            capture = cv2.VideoCapture(target, api)
            if capture.isOpened():
                _set_props(capture, props)
            return capture

        super().__init__(
            path,
            opener,
            live=True,
            reconnect=ReconnectPolicy(attempts=int(reconnect_attempts), initial_s=float(reconnect_delay_s)),
            fps=fps,
            open_error=lambda: (
                f"cannot open camera {path}: it exists but OpenCV could not open it (in use by another "
                f"program, or no permission: add yourself to the 'video' group); {_devices_hint()}"
            ),
        )


def csi_pipeline(sensor: int = 0, width: int = 1280, height: int = 720, fps: float = 30, flip: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), ending in a BGR appsink."""
    if not 0 <= int(flip) <= 7:
        raise EdgesegError(f"csi flip must be 0-7 (nvvidconv flip-method), got {flip}")
    rate = f"{int(round(fps))}/1"
    return (
        f"nvarguscamerasrc sensor-id={int(sensor)} ! "
        f"video/x-raw(memory:NVMM), width={int(width)}, height={int(height)}, framerate={rate}, format=NV12 ! "
        f"nvvidconv flip-method={int(flip)} ! video/x-raw, width={int(width)}, height={int(height)}, format=BGRx ! "
        "videoconvert ! video/x-raw, format=BGR ! appsink drop=1 max-buffers=1 sync=false"
    )


class CsiCameraSource(CaptureSource):
    """A Jetson CSI camera (e.g. Raspberry Pi camera v2, IMX219) via GStreamer. URI: `csi://N`.

    | option               | default | meaning                                                   |
    |----------------------|---------|-----------------------------------------------------------|
    | width, height        | 1280x720| sensor mode to capture                                    |
    | fps                  | 30      | frame rate                                                |
    | flip                 | 0       | nvvidconv flip-method: 0 none, 2 rotate 180, 4 mirror ... |
    | reconnect_attempts   | 5       | reopen tries after the camera stops delivering frames     |
    | reconnect_delay_s    | 0.5     | first backoff delay; it doubles per attempt, up to 8 s    |

    Needs OpenCV with GStreamer (JetPack's OpenCV has it; the pip wheels do not).
    """

    OPTIONS = ("width", "height", "fps", "flip", "reconnect_attempts", "reconnect_delay_s")
    live = True

    def __init__(
        self,
        sensor: int = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        flip: int = 0,
        reconnect_attempts: int = 5,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        uri = f"csi://{sensor}"
        pipeline = csi_pipeline(sensor, width or 1280, height or 720, fps or 30, flip)
        _require_gstreamer(uri)
        super().__init__(
            uri,
            lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
            live=True,
            reconnect=ReconnectPolicy(attempts=int(reconnect_attempts), initial_s=float(reconnect_delay_s)),
            fps=float(fps or 30),
            open_error=lambda: (
                f"cannot open {uri}: GStreamer could not start `{pipeline}`; check the ribbon cable and "
                "that nvargus-daemon runs (sudo systemctl restart nvargus-daemon)"
            ),
        )


_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()


@contextlib.contextmanager
def _ffmpeg_options(value: str) -> Iterator[None]:
    """Set OpenCV's FFmpeg capture options while a capture opens (a user's own setting wins)."""
    with _env_lock:
        previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
        if previous is None:
            os.environ[_FFMPEG_OPTIONS_ENV] = value
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(_FFMPEG_OPTIONS_ENV, None)


def rtsp_gstreamer_pipeline(uri: str, latency_ms: int = 0) -> str:
    """A low-latency GStreamer pipeline for an RTSP URI: no jitter buffer, newest frame only."""
    return (
        f"rtspsrc location={uri} latency={int(latency_ms)} ! decodebin ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=1 max-buffers=1 sync=false"
    )


class NetworkSource(CaptureSource):
    """An RTSP or HTTP stream, tuned for latency. URI: `rtsp://...`, `http://...`, `https://...`.

    | option               | default | meaning                                                      |
    |----------------------|---------|--------------------------------------------------------------|
    | backend              | auto    | gstreamer, ffmpeg, or auto (GStreamer for RTSP if available) |
    | transport            | tcp     | RTSP over tcp or udp (FFmpeg backend)                        |
    | timeout_s            | 5       | give up opening or reading after this long                   |
    | reconnect_attempts   | 5       | reopen tries after the stream stops delivering frames        |
    | reconnect_delay_s    | 0.5     | first backoff delay; it doubles per attempt, up to 8 s       |

    GStreamer: `rtspsrc latency=0 ! decodebin ! videoconvert ! appsink drop=1 max-buffers=1`.
    FFmpeg: `OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;tcp|fflags;nobuffer|flags;low_delay"`
    (set only while opening, and only if you have not set it yourself) and a 1-frame buffer.
    """

    OPTIONS = ("backend", "transport", "timeout_s", "reconnect_attempts", "reconnect_delay_s")
    live = True

    def __init__(
        self,
        uri: str,
        backend: str = "auto",
        transport: str = "tcp",
        timeout_s: float = 5.0,
        reconnect_attempts: int = 5,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        if backend not in ("auto", "gstreamer", "ffmpeg"):
            raise EdgesegError(f"network source backend must be auto, gstreamer or ffmpeg, got {backend!r}")
        if transport not in ("tcp", "udp"):
            raise EdgesegError(f"RTSP transport must be tcp or udp, got {transport!r}")
        rtsp = uri.lower().startswith(("rtsp://", "rtsps://"))
        use_gst = backend == "gstreamer" or (backend == "auto" and rtsp and opencv_has_gstreamer())
        if use_gst:
            _require_gstreamer(uri)
            if not rtsp:
                raise EdgesegError(
                    f"the gstreamer backend handles rtsp:// only, got {redact_uri(uri)}; use backend=ffmpeg"
                )
            pipeline = rtsp_gstreamer_pipeline(uri)

            def opener() -> Capture:
                return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)

        else:
            options = "fflags;nobuffer|flags;low_delay"
            if rtsp:
                options = f"rtsp_transport;{transport}|" + options
            timeout_ms = int(float(timeout_s) * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]

            def opener() -> Capture:
                with _ffmpeg_options(options):
                    capture = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
                if capture.isOpened():
                    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
                return capture

        self.backend = "gstreamer" if use_gst else "ffmpeg"
        super().__init__(
            uri,
            opener,
            live=True,
            reconnect=ReconnectPolicy(attempts=int(reconnect_attempts), initial_s=float(reconnect_delay_s)),
            open_error=lambda: (
                f"cannot open stream {uri} with {self.backend}: check the address, credentials and that "
                f"the camera is reachable (e.g. ffplay {uri})"
            ),
        )


class GStreamerSource(CaptureSource):
    """Any GStreamer pipeline that ends in an appsink delivering BGR. URI: `gst:PIPELINE`.

    | option               | default | meaning                                                 |
    |----------------------|---------|---------------------------------------------------------|
    | live                 | true    | false for pipelines reading files (END at the end)      |
    | reconnect_attempts   | 5       | reopen tries after a live pipeline stops                |
    | reconnect_delay_s    | 0.5     | first backoff delay; it doubles per attempt, up to 8 s  |
    """

    OPTIONS = ("live", "reconnect_attempts", "reconnect_delay_s")

    def __init__(self, pipeline: str, live: bool = True, reconnect_attempts: int = 5,
                 reconnect_delay_s: float = 0.5) -> None:
        pipeline = pipeline.strip()
        uri = f"gst:{pipeline}"
        if "appsink" not in pipeline.rsplit("!", 1)[-1]:
            raise EdgesegError(
                f"a gst: pipeline must end in appsink, e.g. `... ! videoconvert ! video/x-raw,format=BGR ! "
                f"appsink drop=1 max-buffers=1`; got {redact_uri(pipeline)!r}"
            )
        _require_gstreamer("gst: sources")
        super().__init__(
            uri,
            lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
            live=_as_bool(live, "live"),
            reconnect=ReconnectPolicy(attempts=int(reconnect_attempts), initial_s=float(reconnect_delay_s)),
            open_error=lambda: f"GStreamer could not start {pipeline!r}; try it with gst-launch-1.0 first",
        )


class VideoFileSource(CaptureSource):
    """A video file decoded by OpenCV (FFmpeg). URI: a path such as `clip.mp4` or `drive.avi`.

    | option | default | meaning                                                            |
    |--------|---------|--------------------------------------------------------------------|
    | loop   | false   | start again at the end instead of returning END                    |
    | fps    | file's  | nominal frame rate (recordings); files are read as fast as needed |

    Every frame is delivered (a file is not live): a pipeline waits for each instead of dropping.
    """

    OPTIONS = ("loop", "fps")

    def __init__(self, path: str | Path, loop: bool = False, fps: float | None = None) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"no video file at {path}; check the path")
        self.path = path
        self.frame_count = 0
        super().__init__(
            str(path),
            lambda: cv2.VideoCapture(str(path)),
            live=False,
            loop=_as_bool(loop, "loop"),
            fps=float(fps) if fps else None,
            open_error=lambda: (
                f"OpenCV cannot decode {path}; convert it (e.g. ffmpeg -i {path.name} out.mp4) or check "
                "that the file is complete"
            ),
        )
        if self._capture is not None and hasattr(self._capture, "get"):
            self.frame_count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))

    def _end_message(self) -> str:
        """Says so when the decoder stopped before the frame count the container states."""
        read = self.stats.frames + self.stats.corrupt
        if not self.loop and 0 < read < self.frame_count:
            return (f"{self.uri} ended after {read} of the {self.frame_count} frames its container lists: "
                    "decoder errors or a truncated file")
        return f"end of {self.uri}"


# --- image folders ----------------------------------------------------------------------------


def _natural_key(text: str) -> list[Any]:
    """Sort key comparing digit runs as numbers: frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


class ImageFolderSource(Source):
    """Still images as frames. URI: a folder, a glob (`shots/*.png`) or one image file.

    | option | default | meaning                                                     |
    |--------|---------|-------------------------------------------------------------|
    | loop   | false   | start again after the last image instead of returning END   |
    | fps    | none    | nominal frame rate (for recordings); images are not paced   |

    Files are sorted by name with numbers compared as numbers (frame2 before frame10). Files
    OpenCV cannot decode are skipped and counted in `stats.corrupt`.
    """

    OPTIONS = ("loop", "fps")

    def __init__(self, pattern: str | Path, loop: bool = False, fps: float | None = None) -> None:
        text = str(pattern)
        path = Path(text).expanduser()
        if path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            where = f"folder {path}"
        elif path.is_file():
            files = [path]
            where = str(path)
        else:
            files = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()
                     and Path(p).suffix.lower() in IMAGE_SUFFIXES]
            where = f"glob {text!r}"
        if not files:
            raise DataError(f"no images in {where} (looked for {' '.join(IMAGE_SUFFIXES)})")
        self.files = sorted(files, key=lambda p: _natural_key(str(p)))
        self.loop = _as_bool(loop, "loop")
        self.last_path: Path | None = None  # the file of the last frame delivered, for reports
        self._next = 0
        self._delivered_this_pass = 0
        super().__init__(text, float(fps) if fps else None)

    def _read(self, timeout: float | None) -> Read:
        while True:
            if self._next >= len(self.files):
                if not self.loop:
                    return Read(ReadStatus.END, message=f"end of {self.uri} ({len(self.files)} images)")
                if self._delivered_this_pass == 0:
                    return Read(ReadStatus.ERROR, message=f"none of the {len(self.files)} images in {self.uri} "
                                "can be decoded")
                self._next = 0
                self._delivered_this_pass = 0
            path = self.files[self._next]
            self._next += 1
            frame = self._to_rgb(cv2.imread(str(path), cv2.IMREAD_COLOR))
            if frame is not None:
                self._delivered_this_pass += 1
                self.last_path = path
                return self._deliver(frame)


# --- the synthetic world ----------------------------------------------------------------------


class SyntheticSource(Source):
    """A drive through the synthetic RC-car world: no camera needed. URI: `synthetic://?seed=0&...`.

    | option           | default | meaning                                                          |
    |------------------|---------|------------------------------------------------------------------|
    | seed             | 0       | which world (`World.generate(seed)`) and start pose               |
    | size             | 320x240 | frame size WIDTHxHEIGHT, width first (or width=, height=)         |
    | fps              | 30      | frame rate; the car moves 1/fps seconds per frame                 |
    | realtime         | true    | true: frames at fps like a camera (live: a slow pipeline drops    |
    |                  |         | frames); false: as fast as read, every frame kept                 |
    | policy           | wander  | wander (steer towards open space) or slalom (scripted sine steer) |
    | speed            | 0.8     | car speed in m/s                                                  |
    | frames           | none    | END after this many frames                                        |

    The car is `edgeseg.robot.Car()`, the simulator's default car (camera at the front bumper);
    it never drives through solids: when it is about to hit one it is put down at a new random
    free pose (a cut in the video). Frames come from `World.render` with neutral lighting,
    so the same options give the same frames. `last_mask` holds the true class map of the last
    frame (FLOOR, OBSTACLE, WALL, BACKGROUND).
    """

    OPTIONS = ("seed", "size", "width", "height", "fps", "realtime", "policy", "speed", "frames")
    POLICIES = ("wander", "slalom")

    def __init__(
        self,
        seed: int = 0,
        size: str | Size = "320x240",  # text is WIDTHxHEIGHT, as cameras are given
        width: int | None = None,
        height: int | None = None,
        fps: float = 30.0,
        realtime: bool = True,
        policy: str = "wander",
        speed: float = 0.8,
        frames: int | None = None,
    ) -> None:
        from edgeseg.world import World
        from edgeseg.robot import Camera, Car

        frame = parse_size(size, width_first=True)
        frame_width, frame_height = int(width or frame.width), int(height or frame.height)
        fps = float(fps)
        if not 0 < fps <= 1000:
            raise EdgesegError(f"synthetic fps must be in (0, 1000], got {fps}")
        if policy not in self.POLICIES:
            raise EdgesegError(f"synthetic policy must be one of {', '.join(self.POLICIES)}, got {policy!r}")
        if frames is not None and int(frames) < 0:
            raise EdgesegError(f"synthetic frames must be 0 or more, got {frames}")
        self.seed = int(seed)
        self.live = _as_bool(realtime, "realtime")
        self.policy = policy
        self.speed = float(speed)
        self.limit = None if frames is None else int(frames)
        self.camera = Camera(width=frame_width, height=frame_height)
        self.car = Car()
        self.world = World.generate(self.seed)
        self._rng = np.random.default_rng(self.seed)
        self.pose = self.world.random_free_pose(self._rng, margin_m=0.5)
        self._steering = 0.0
        self._started: float | None = None
        self.last_mask: np.ndarray | None = None
        query = f"seed={self.seed}&size={frame_width}x{frame_height}&fps={fps:g}"
        super().__init__(f"synthetic://?{query}", fps)

    def _read(self, timeout: float | None) -> Read:
        index = self.stats.frames
        if self.limit is not None and index >= self.limit:
            return Read(ReadStatus.END, message=f"end of {self.uri} ({self.limit} frames)")
        if self.live:
            now = time.perf_counter()
            if self._started is None:
                self._started = now
            due = self._started + index / self.fps
            wait = due - now
            if timeout is not None and wait > timeout:
                if self._wait(timeout):
                    return Read(ReadStatus.END, message=f"{self.uri} was interrupted")
                return Read(ReadStatus.TIMEOUT, message=f"next frame of {self.uri} not due yet")
            if wait > 0 and self._wait(wait):
                return Read(ReadStatus.END, message=f"{self.uri} was interrupted")
        rgb, mask = self.world.render(self.car.camera_pose(self.pose), self.camera)
        self.last_mask = mask
        self._drive(index)  # before delivery: the frame's timestamp is when read() returns it
        return self._deliver(rgb)

    def _drive(self, index: int) -> None:
        """Move the car one frame along the policy; respawn it if it would hit something."""
        dt = 1.0 / self.fps
        if self.policy == "slalom":
            target = 0.6 * math.sin(2 * math.pi * index * dt / 6.0)
        else:
            target = self._wander_steering()
        self._steering += 0.5 * (target - self._steering)
        pose = self.car.step(self.pose, self._steering, self.speed, dt)
        ahead = self.car.step(pose, self._steering, self.speed, 0.3)  # about to hit something?
        if self.world.collides(ahead.x, ahead.y, self.car.radius_m):
            pose = self.world.random_free_pose(self._rng, margin_m=0.5)
            self._steering = 0.0
        self.pose = pose

    def _wander_steering(self) -> float:
        """Steer towards the farthest free direction within +-60 degrees, preferring straight on."""
        angles = np.radians(np.linspace(-60.0, 60.0, 9))
        distances = np.minimum(self.world.ray_distance(self.pose, angles), 4.0)
        score = distances - 0.4 * np.abs(angles)
        best = float(angles[int(np.argmax(score))])
        return float(np.clip(-best / math.radians(60.0), -1.0, 1.0))  # left angles are positive


# --- the factory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceKind:
    """One row of the URI table: a name, a test on the URI, and how to open it."""

    name: str
    example: str
    matches: Callable[[str], bool]
    open: Callable[..., Source]
    options: tuple[str, ...] = field(default=())


def _is_camera(uri: str) -> bool:
    return uri.isdigit() or re.fullmatch(r"/dev/video\d+", uri) is not None


def _is_video_file(uri: str) -> bool:
    return Path(uri).suffix.lower() in VIDEO_SUFFIXES and not any(ch in uri for ch in "*?[")


def _is_images(uri: str) -> bool:
    path = Path(uri).expanduser()
    return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES or any(ch in uri for ch in "*?[")


def _open_synthetic(uri: str, **options: Any) -> Source:
    _, _, query = uri.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise EdgesegError(f"cannot read the options of {uri!r}; write them as ?key=value&key=value") from None
    merged: dict[str, Any] = {}
    for key, value in pairs:
        merged[key] = _parse_value(value)
    _check_options("synthetic://", SyntheticSource.OPTIONS, merged)
    merged.update(options)  # keyword options win over the query
    return SyntheticSource(**merged)


SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind("synthetic", "synthetic://?seed=0&size=320x240&fps=30",
               lambda u: u.lower().startswith("synthetic://") or u.lower() == "synthetic:",
               _open_synthetic, SyntheticSource.OPTIONS),
    SourceKind("camera", "0 or /dev/video0", _is_camera, lambda u, **o: CameraSource(u, **o), CameraSource.OPTIONS),
    SourceKind("csi", "csi://0", lambda u: u.lower().startswith("csi://"),
               lambda u, **o: CsiCameraSource(_csi_sensor(u), **o), CsiCameraSource.OPTIONS),
    SourceKind("network", "rtsp://host:554/stream",
               lambda u: re.match(r"(?i)(rtsp|rtsps|http|https)://", u) is not None,
               lambda u, **o: NetworkSource(u, **o), NetworkSource.OPTIONS),
    SourceKind("gstreamer", "gst:videotestsrc ! videoconvert ! appsink", lambda u: u.startswith("gst:"),
               lambda u, **o: GStreamerSource(u[4:], **o), GStreamerSource.OPTIONS),
    SourceKind("video", "clip.mp4", _is_video_file, lambda u, **o: VideoFileSource(u, **o), VideoFileSource.OPTIONS),
    SourceKind("images", "frames/ or 'frames/*.png'", _is_images,
               lambda u, **o: ImageFolderSource(u, **o), ImageFolderSource.OPTIONS),
)


def _csi_sensor(uri: str) -> int:
    rest = uri[len("csi://"):].strip("/") or "0"
    if not rest.isdigit():
        raise EdgesegError(f"csi:// takes a sensor number, e.g. csi://0, got {uri!r}")
    return int(rest)


def accepted_forms() -> str:
    return "; ".join(f"{kind.name}: {kind.example}" for kind in SOURCE_KINDS)


def source_kind(uri: str) -> SourceKind:
    """The table row that opens `uri`; raises EdgesegError listing the accepted forms."""
    text = str(uri).strip()
    for kind in SOURCE_KINDS:
        if kind.matches(text):
            return kind
    path = Path(text).expanduser()
    text = redact_uri(text)
    if path.exists():
        raise EdgesegError(
            f"{text} is neither a video ({' '.join(VIDEO_SUFFIXES[:6])} ...), an image nor a folder of images; "
            f"accepted sources: {accepted_forms()}"
        )
    raise EdgesegError(f"cannot open source {text!r}: no such file, and not a known URI; accepted: {accepted_forms()}")


def open_source(uri: str | int, **options: Any) -> Source:
    """Open a frame source from a URI; see the module docstring for the forms and each class for options.

    Options that are None are ignored, so a CLI can pass every flag through.

    Raises:
        EdgesegError: unknown URI or option, camera or file not found, stream cannot be opened.
    """
    text = str(uri).strip()
    kind = source_kind(text)
    given = {key: value for key, value in options.items() if value is not None}
    _check_options(kind.name, kind.options, given)
    return kind.open(text, **given)


def _check_options(kind: str, allowed: tuple[str, ...], given: dict[str, Any]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise EdgesegError(
            f"{kind} sources have no option(s) {', '.join(unknown)}; their options: {', '.join(allowed) or 'none'}"
        )


def _parse_value(text: str) -> Any:
    """Query-string values: integers, floats and true/false become numbers and booleans."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    return text


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise EdgesegError(f"option {name} must be true or false, got {value!r}")
