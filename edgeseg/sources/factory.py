"""One factory turns a URI into a `Source`: the table of source kinds, `open_source`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeseg.errors import EdgesegError
from edgeseg.sources.base import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Source,
    check_options,
    redact_uri,
)
from edgeseg.sources.camera import CameraSource, CsiCameraSource
from edgeseg.sources.images import ImageFolderSource
from edgeseg.sources.network import GStreamerSource, NetworkSource
from edgeseg.sources.synthetic import SyntheticSource, _open_synthetic
from edgeseg.sources.video import VideoFileSource


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
    check_options(kind.name, kind.options, given)
    return kind.open(text, **given)
