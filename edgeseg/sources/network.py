"""Network streams (`rtsp://`, `http://`) and GStreamer pipelines (`gst:...`) through OpenCV."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import cv2

from edgeseg.errors import EdgesegError
from edgeseg.sources.base import ReconnectPolicy, as_bool, redact_uri
from edgeseg.sources.capture import (
    Capture,
    CaptureSource,
    require_gstreamer,
    opencv_has_gstreamer,
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
            require_gstreamer(uri)
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
        require_gstreamer("gst: sources")
        super().__init__(
            uri,
            lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
            live=as_bool(live, "live"),
            reconnect=ReconnectPolicy(attempts=int(reconnect_attempts), initial_s=float(reconnect_delay_s)),
            open_error=lambda: f"GStreamer could not start {pipeline!r}; try it with gst-launch-1.0 first",
        )
