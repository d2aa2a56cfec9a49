"""OpenCV captures: the base of cameras, network streams, GStreamer pipelines and video files."""

from __future__ import annotations

import functools
import re
import time
from typing import Any, Callable, Protocol

import cv2

from edgeseg.errors import EdgesegError
from edgeseg.sources.base import (
    CORRUPT_IN_A_ROW_LIMIT,
    Read,
    ReadStatus,
    ReconnectPolicy,
    Source,
    redact_uri,
)


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


def require_gstreamer(what: str) -> None:
    """Refuse `what` (a pipeline or URI) up front when this OpenCV cannot open GStreamer pipelines."""
    if not opencv_has_gstreamer():
        raise EdgesegError(
            f"{what} needs OpenCV built with GStreamer, and this OpenCV {cv2.__version__} has none "
            "(cv2.getBuildInformation(): GStreamer NO); on a Jetson use JetPack's OpenCV "
            "(sudo apt install python3-opencv, venv with --system-site-packages) instead of the pip wheel"
        )


def _set_props(capture: Any, props: dict[int, float]) -> None:
    for prop, value in props.items():
        capture.set(prop, value)
