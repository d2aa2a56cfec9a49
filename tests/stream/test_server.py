"""The browser view over real HTTP on 127.0.0.1: MJPEG frames, status JSON, the page."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.nav import Navigator
from edgeseg.runtime import Segmenter
from edgeseg.stream import StreamPipeline, StreamServer, Telemetry, open_source, parse_address


def test_parse_address() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("host", "1.2.3.4:", "70000", "a:b:c"):
        with pytest.raises(EdgesegError, match="--serve"):
            parse_address(bad)


def read_mjpeg_frames(response, count: int) -> list[np.ndarray]:
    """Parse `count` JPEG parts from a multipart/x-mixed-replace body."""
    frames = []
    while len(frames) < count:
        line = response.readline()
        if not line:
            raise AssertionError("the MJPEG stream ended early")
        if line.strip() != b"--frame":
            continue
        headers = {}
        while (header := response.readline().strip()):
            key, _, value = header.decode().partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        data = response.read(int(headers["content-length"]))
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, "a part is not a decodable JPEG"
        frames.append(image)
    return frames


def test_mjpeg_status_and_page_while_streaming(stream_models) -> None:
    telemetry = Telemetry()
    server = StreamServer("127.0.0.1:0", telemetry)
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    with open_source("synthetic://?size=64x48&fps=30") as source, \
            Segmenter.open(stream_models.onnx_path, threads=1) as segmenter:
        pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec), [server],
                                  telemetry=telemetry).start()
        try:
            with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as response:
                assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
                frames = read_mjpeg_frames(response, 2)
            assert all(frame.shape == (48, 64, 3) for frame in frames)
            with urllib.request.urlopen(server.url + "status.json", timeout=10) as response:
                status = json.loads(response.read())
            assert status["running"] and status["counters"]["processed"] >= 2
            assert status["fps"]["processed"] > 0 and "p95" in status["latency_ms"]["capture_to_command"]
            assert {"steering", "throttle", "stop", "reason"} <= set(status["latest"])
            assert status["info"]["classes"] == list(segmenter.spec.class_names)
            with urllib.request.urlopen(server.url, timeout=10) as response:
                page = response.read().decode()
            assert "/stream.mjpg" in page and "/status.json" in page and "steer" in page
            with urllib.request.urlopen(server.url + "frame.jpg", timeout=10) as response:
                assert cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(server.url + "nope", timeout=10)
            assert missing.value.code == 404
        finally:
            pipeline.stop()
            summary = pipeline.join()
    assert summary.ok and server.frames >= 2
    with pytest.raises(OSError):  # the pipeline closed the server with the run
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_port_in_use_fails_at_start() -> None:
    first = StreamServer(":0")
    try:
        with pytest.raises(EdgesegError, match="in use"):
            StreamServer(f"127.0.0.1:{first.port}")
    finally:
        first.close()


def test_closing_ends_open_mjpeg_clients() -> None:
    server = StreamServer(":0")
    response = urllib.request.urlopen(server.url + "stream.mjpg", timeout=10)
    started = time.monotonic()
    server.close()
    assert response.read() == b""  # the stream ends instead of hanging
    assert time.monotonic() - started < 9  # before urlopen's 10 s timeout (wide: busy CI)
    response.close()
