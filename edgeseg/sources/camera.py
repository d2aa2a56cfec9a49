"""Cameras: USB/V4L2 (`0`, `/dev/video0`) and Jetson CSI (`csi://0`) through OpenCV."""

from __future__ import annotations

import glob
import os
import sys

import cv2

from edgeseg.errors import EdgesegError
from edgeseg.sources.base import ReconnectPolicy, natural_key
from edgeseg.sources.capture import (
    Capture,
    CaptureSource,
    require_gstreamer,
    _set_props,
)


def list_video_devices() -> list[str]:
    """The /dev/video* device nodes, in numeric order."""
    return sorted(glob.glob("/dev/video*"), key=natural_key)


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
        require_gstreamer(uri)
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
