"""What every frame source is: reads (FRAME, TIMEOUT, END, ERROR), the `Source` base class, URI redaction
and the option parsing the sources share."""

from __future__ import annotations

import enum
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import cv2
import numpy as np

from edgeseg.errors import EdgesegError

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


# --- shared helpers ---------------------------------------------------------------------------


def natural_key(text: str) -> list[Any]:
    """Sort key comparing digit runs as numbers: frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


def check_options(kind: str, allowed: tuple[str, ...], given: dict[str, Any]) -> None:
    """Refuse options a source kind does not have, naming the ones it does."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise EdgesegError(
            f"{kind} sources have no option(s) {', '.join(unknown)}; their options: {', '.join(allowed) or 'none'}"
        )


def parse_value(text: str) -> Any:
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


def as_bool(value: Any, name: str) -> bool:
    """A boolean option from a URI query or a keyword: true/false/yes/no/on/off/1/0, else an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise EdgesegError(f"option {name} must be true or false, got {value!r}")
