"""Telemetry: bounded latency windows, rates, the status line, the summary table, JSON lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.stream.telemetry import STAGES, LatencyWindow, RateMeter, StatusLine, Telemetry


def test_latency_window_is_bounded_and_uses_recent_samples() -> None:
    window = LatencyWindow(size=100)
    for ms in range(10_000):
        window.add(ms / 1000.0)
    assert window.recent.shape == (100,)  # never grows
    assert window.count == 10_000
    assert window.max == pytest.approx(9.999)
    assert window.mean_ms == pytest.approx(4999.5)
    p = window.percentiles_ms()
    assert p["p50"] == pytest.approx(9949.5)  # over the last 100 samples only
    assert 9990 < p["p99"] <= 9999
    assert LatencyWindow(5).percentiles_ms() == {}


def test_rate_meter() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(11):
        meter.tick(now=10.0 + i * 0.1)
    assert meter.rate(now=11.0) == pytest.approx(10.0)
    assert meter.rate(now=20.0) == 0.0  # nothing recent


def test_snapshot_status_line_and_summary(tmp_path: Path) -> None:
    telemetry = Telemetry(tmp_path / "sub" / "t.jsonl")
    assert not (tmp_path / "sub").exists()  # made when the run starts, not before
    telemetry.start()
    for i in range(5):
        for stage in STAGES:
            telemetry.add_timing(stage, 0.001 * (i + 1))
        telemetry.count("captured")
        telemetry.count("processed")
        telemetry.frame({"frame": i, "status": "output"})
    telemetry.count("dropped_capture", 2)
    telemetry.set_counter("corrupt", 3)
    telemetry.set_latest({"frame": 4, "steering": -0.25, "throttle": 0.4, "stop": False})
    snap = telemetry.snapshot()
    json.dumps(snap)  # the /status.json body
    assert snap["counters"]["processed"] == 5 and snap["counters"]["corrupt"] == 3
    assert snap["latency_ms"]["infer"]["p50"] == pytest.approx(3.0)
    line = telemetry.status_line()
    assert "fps" in line and "dropped 2" in line and "corrupt 3" in line and "steer -0.25" in line
    telemetry.close()
    table = telemetry.summary_table()
    for stage in STAGES:
        assert stage in table
    assert "5 frames processed" in table and "dropped 2 before inference" in table
    lines = (tmp_path / "sub" / "t.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2, 3, 4]
    assert not telemetry.snapshot()["running"]


def test_unwritable_telemetry_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgesegError, match="cannot write telemetry"):
        Telemetry(blocker / "t.jsonl")


def test_status_line_only_on_terminals_unless_asked() -> None:
    telemetry = Telemetry()
    quiet = io.StringIO()
    StatusLine(telemetry, quiet).update(force=True)
    assert quiet.getvalue() == ""  # StringIO is not a terminal
    loud = io.StringIO()
    status = StatusLine(telemetry, loud, enabled=True, interval_s=10.0)
    status.update()
    status.update()  # within the interval: not written again
    status.finish()
    text = loud.getvalue()
    assert text.count("\r") == 1 and text.endswith("\n") and "fps" in text
