"""Sources through the one factory: real video files and images, the synthetic drive, fakes for reconnects."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import DataError, EdgesegError
from edgeseg.stream import sources
from edgeseg.stream.sources import (
    CaptureSource,
    ReadStatus,
    ReconnectPolicy,
    csi_pipeline,
    open_source,
)


def read_all(source, limit: int = 100, timeout: float | None = 1.0):
    reads = []
    for _ in range(limit):
        read = source.read(timeout)
        reads.append(read)
        if read.status in (ReadStatus.END, ReadStatus.ERROR):
            break
    return reads


# --- video files ------------------------------------------------------------------------------


def test_video_file_frames_then_end(video_file: Path, kit) -> None:
    with open_source(str(video_file)) as source:
        assert isinstance(source, sources.VideoFileSource)
        assert not source.live
        assert source.fps == pytest.approx(10.0)
        reads = read_all(source)
        assert [r.status for r in reads] == [ReadStatus.FRAME] * 6 + [ReadStatus.END]
        assert [r.index for r in reads[:-1]] == list(range(6))
        first = reads[0].frame
        assert first.shape == (40, 48, 3) and first.dtype == np.uint8
        # BGR was converted to RGB at the edge: the background has frame_colour(0) in RGB order.
        np.testing.assert_allclose(first[30, 40], kit.frame_colour(0), atol=12)
        times = [r.timestamp for r in reads[:-1]]
        assert times == sorted(times)
        assert source.read().status is ReadStatus.END  # stays ended
        assert source.stats.frames == 6 and source.stats.corrupt == 0


def test_video_file_loop(video_file: Path, kit) -> None:
    with open_source(str(video_file), loop=True) as source:
        reads = [source.read() for _ in range(15)]
    assert all(r.status is ReadStatus.FRAME for r in reads)
    assert [r.index for r in reads] == list(range(15))
    np.testing.assert_allclose(reads[6].frame[30, 40], kit.frame_colour(0), atol=12)  # started again
    np.testing.assert_allclose(reads[13].frame[30, 40], kit.frame_colour(1), atol=12)


def test_missing_video_and_unknown_uri(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no video file"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(EdgesegError, match="accepted"):
        open_source("ftp://example.com/x")
    with pytest.raises(EdgesegError, match="synthetic sources have no option.*loop"):
        open_source("synthetic://", loop=True)


def test_unknown_option_for_a_file(video_file: Path) -> None:
    with pytest.raises(EdgesegError, match="video sources have no option.*width"):
        open_source(str(video_file), width=64)


# --- image folders and globs ------------------------------------------------------------------


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 32)) -> None:
    rgb = np.zeros(size + (3,), np.uint8)
    rgb[:] = colour
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_image_folder_sorted_naturally_and_size_changes(tmp_path: Path) -> None:
    write_image(tmp_path / "frame10.png", (0, 0, 255))
    write_image(tmp_path / "frame2.png", (0, 255, 0), size=(20, 30))
    write_image(tmp_path / "frame1.png", (255, 0, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as source:
        reads = read_all(source)
    assert [r.status for r in reads] == [ReadStatus.FRAME] * 3 + [ReadStatus.END]
    assert [tuple(r.frame[0, 0]) for r in reads[:3]] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert reads[1].frame.shape == (20, 30, 3)
    assert source.stats.size_changes == 2


def test_glob_and_single_image_with_loop(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (10, 20, 30))
    write_image(tmp_path / "b.jpg", (200, 200, 200))
    with open_source(str(tmp_path / "*.png")) as source:
        frames = list(source.frames())
    assert len(frames) == 1 and tuple(frames[0][0, 0]) == (10, 20, 30)
    with open_source(str(tmp_path / "b.jpg"), loop=True) as source:
        reads = [source.read() for _ in range(4)]
    assert all(r.ok for r in reads) and [r.index for r in reads] == [0, 1, 2, 3]


def test_corrupt_image_skipped_and_counted(tmp_path: Path) -> None:
    write_image(tmp_path / "1.png", (255, 0, 0))
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    write_image(tmp_path / "3.png", (0, 0, 255))
    with open_source(str(tmp_path)) as source:
        frames = list(source.frames())
        assert source.stats.corrupt == 1
    assert [tuple(f[0, 0]) for f in frames] == [(255, 0, 0), (0, 0, 255)]


def test_all_corrupt_folder_with_loop_errors(tmp_path: Path) -> None:
    (tmp_path / "1.png").write_bytes(b"junk")
    with open_source(str(tmp_path), loop=True) as source:
        read = source.read()
    assert read.status is ReadStatus.ERROR and "none of the 1 images" in read.message


def test_empty_folder_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images in folder"):
        open_source(str(tmp_path))


# --- the synthetic drive ----------------------------------------------------------------------


def test_synthetic_frames_deterministic_and_moving() -> None:
    uri = "synthetic://?seed=2&size=64x48&realtime=false&frames=4"
    with open_source(uri) as first, open_source(uri) as second:
        a = list(first.frames())
        b = list(second.frames())
        assert first.last_mask is not None and first.last_mask.shape == (48, 64)
    assert len(a) == 4 and a[0].shape == (48, 64, 3) and a[0].dtype == np.uint8
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[3])  # the car drives
    with open_source("synthetic://?seed=3&size=64x48&realtime=false&frames=1") as other:
        assert not np.array_equal(next(other.frames()), a[0])


def test_synthetic_keyword_options_and_timeout() -> None:
    with open_source("synthetic://?seed=0", width=40, height=30, fps=1) as source:
        assert source.live and source.fps == 1
        first = source.read(timeout=1.0)
        assert first.ok and first.frame.shape == (30, 40, 3)
        started = time.perf_counter()
        second = source.read(timeout=0.02)  # the next frame is due in 1 s
        assert second.status is ReadStatus.TIMEOUT
        assert time.perf_counter() - started < 0.6  # returned at its timeout, not with the frame (wide: busy CI)
        assert source.read(timeout=2.0).ok


def test_synthetic_slalom_never_drives_into_solids() -> None:
    with open_source("synthetic://?seed=4&size=32x24&realtime=0&policy=slalom&frames=60&speed=2") as source:
        for _ in source.frames():
            assert source.world.clearance(source.pose.x, source.pose.y) > 0
        assert source.stats.frames == 60


def test_synthetic_bad_options() -> None:
    with pytest.raises(EdgesegError, match="policy"):
        open_source("synthetic://?policy=fly")
    with pytest.raises(EdgesegError, match="no option.*colour"):
        open_source("synthetic://?colour=red")
    with pytest.raises(EdgesegError, match="WIDTHxHEIGHT"):
        open_source("synthetic://?size=big")


def test_interrupt_wakes_a_waiting_read() -> None:
    with open_source("synthetic://?size=32x24", fps=0.5) as source:
        assert source.read().ok
        threading.Timer(0.1, source.interrupt).start()
        started = time.perf_counter()
        read = source.read(timeout=None)  # would wait 2 s for the next frame
    assert read.status is ReadStatus.END and time.perf_counter() - started < 1.6  # woken, not timed out


# --- cameras and streams ----------------------------------------------------------------------


def test_camera_not_found_lists_devices() -> None:
    existing = sources.list_video_devices()
    with pytest.raises(EdgesegError) as info:
        open_source("/dev/video99")
    message = str(info.value)
    assert "/dev/video99" in message
    if existing:
        assert "cameras present: " + existing[0] in message
    else:
        assert "no /dev/video* devices" in message
    with pytest.raises(EdgesegError, match="camera 7 not found"):
        open_source("7")


def test_csi_pipeline_and_missing_gstreamer() -> None:
    pipeline = csi_pipeline(1, 640, 480, 15, flip=2)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 !")
    assert "width=640, height=480, framerate=15/1" in pipeline and "flip-method=2" in pipeline
    assert pipeline.endswith("appsink drop=1 max-buffers=1 sync=false")
    with pytest.raises(EdgesegError, match="flip"):
        csi_pipeline(flip=9)
    if sources.opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer; the missing-GStreamer message cannot be checked")
    with pytest.raises(EdgesegError, match="GStreamer"):
        open_source("csi://0")
    with pytest.raises(EdgesegError, match="appsink"):
        open_source("gst:videotestsrc ! videoconvert")


def test_rtsp_unreachable_fails_fast_and_restores_env() -> None:
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ
    started = time.perf_counter()
    with pytest.raises(EdgesegError, match="cannot open stream rtsp://127.0.0.1:1/cam"):
        open_source("rtsp://127.0.0.1:1/cam", backend="ffmpeg", timeout_s=2)
    assert time.perf_counter() - started < 15  # OpenCV's FFmpeg open timeout is 30 s by default (wide: busy CI)
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ


# --- reconnects and corrupt frames (fake captures: our own control flow) -----------------------


def test_dropping_stream_reconnects_with_backoff_then_gives_up(kit) -> None:
    opens = []

    def opener():
        opens.append(time.monotonic())
        if len(opens) == 1:
            return kit.FakeCapture([(True, kit.bgr()), (True, kit.bgr())])
        return kit.FakeCapture([], opened=False)  # the camera is gone

    policy = ReconnectPolicy(attempts=3, initial_s=0.02, factor=2.0, max_s=1.0)
    source = CaptureSource("fake://cam", opener, live=True, reconnect=policy, misses_before_reconnect=2)
    reads = read_all(source)
    assert [r.status for r in reads] == [ReadStatus.FRAME, ReadStatus.FRAME, ReadStatus.TIMEOUT, ReadStatus.ERROR]
    assert "fake://cam stopped delivering frames and 3 reconnect attempt(s)" in reads[-1].message
    assert len(opens) == 4
    gaps = np.diff(opens[1:])  # backoff doubles: about 0.04 s then 0.08 s
    # Sleeps are never shorter than asked, only longer on a busy machine: lower bounds only.
    assert gaps[0] >= 0.035 and gaps[1] >= 0.075
    assert source.stats.reconnects == 0


def test_dropping_stream_recovers(kit) -> None:
    captures = [kit.FakeCapture([(True, kit.bgr(value=10))]), kit.FakeCapture([], opened=False),
                kit.FakeCapture([(True, kit.bgr(value=20)), (True, kit.bgr(value=30))])]
    source = CaptureSource("fake://cam", lambda: captures.pop(0), live=True,
                           reconnect=ReconnectPolicy(attempts=3, initial_s=0.01), misses_before_reconnect=1)
    reads = [source.read() for _ in range(3)]
    assert [r.status for r in reads] == [ReadStatus.FRAME] * 3
    assert [int(r.frame[0, 0, 0]) for r in reads] == [10, 20, 30]
    assert [r.index for r in reads] == [0, 1, 2]
    assert source.stats.reconnects == 1


def test_corrupt_frames_skipped_and_counted(kit) -> None:
    reads = [(True, None), (True, np.zeros((0, 0, 3), np.uint8)), (True, np.zeros((4, 4, 3), np.float32)),
             (True, kit.bgr(value=50)), (True, np.full((8, 8), 7, np.uint8))]
    source = CaptureSource("fake://file", lambda: kit.FakeCapture(reads), live=False)
    frames = list(source.frames())
    assert len(frames) == 2 and source.stats.corrupt == 3
    assert frames[1].shape == (8, 8, 3) and int(frames[1][0, 0, 0]) == 7  # grey becomes RGB


def test_first_open_failure_is_an_error(kit) -> None:
    with pytest.raises(EdgesegError, match="cannot open fake://x"):
        CaptureSource("fake://x", lambda: kit.FakeCapture([], opened=False), live=True)
