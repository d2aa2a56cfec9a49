"""Frame sources: one factory turns a URI into a `Source` whose reads say FRAME, TIMEOUT, END or ERROR.

    from edgeseg.sources import ReadStatus, open_source

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

One module per source family (camera, network, video, images, synthetic; OpenCV captures share
`capture`), the factory in `factory`. This package sits on the floor of data, runtime and nav, so
verify and calibration read footage through it; `edgeseg.stream.sources` re-exports it.
"""

from __future__ import annotations

from edgeseg.sources.base import (
    CORRUPT_IN_A_ROW_LIMIT,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Read,
    ReadStatus,
    ReconnectPolicy,
    Source,
    SourceStats,
    image_to_rgb,
    redact_uri,
)
from edgeseg.sources.camera import (
    CameraSource,
    CsiCameraSource,
    csi_pipeline,
    list_video_devices,
)
from edgeseg.sources.capture import (
    Capture,
    CaptureSource,
    opencv_has_gstreamer,
)
from edgeseg.sources.factory import (
    SOURCE_KINDS,
    SourceKind,
    accepted_forms,
    open_source,
    source_kind,
)
from edgeseg.sources.images import (
    ImageFolderSource,
)
from edgeseg.sources.network import (
    GStreamerSource,
    NetworkSource,
    rtsp_gstreamer_pipeline,
)
from edgeseg.sources.synthetic import (
    SyntheticSource,
)
from edgeseg.sources.video import (
    VideoFileSource,
)

__all__ = [
    "CORRUPT_IN_A_ROW_LIMIT",
    "CameraSource",
    "Capture",
    "CaptureSource",
    "CsiCameraSource",
    "GStreamerSource",
    "IMAGE_SUFFIXES",
    "ImageFolderSource",
    "NetworkSource",
    "Read",
    "ReadStatus",
    "ReconnectPolicy",
    "SOURCE_KINDS",
    "Source",
    "SourceKind",
    "SourceStats",
    "SyntheticSource",
    "VIDEO_SUFFIXES",
    "VideoFileSource",
    "accepted_forms",
    "csi_pipeline",
    "image_to_rgb",
    "list_video_devices",
    "open_source",
    "opencv_has_gstreamer",
    "redact_uri",
    "rtsp_gstreamer_pipeline",
    "source_kind",
]
