"""The threaded pipeline end to end with a tiny real ONNX model, plus fakes for drop and failure paths."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.nav import Navigator
from edgeseg.runtime import Segmenter
from edgeseg.stream import (
    CommandSink,
    FrameFolderSink,
    LatestSlot,
    PipelineConfig,
    RecordingSink,
    StreamPipeline,
    Telemetry,
    open_source,
)
from edgeseg.stream.pipeline import END_OF_STREAM, MAX_FRAMES, SOURCE_FAILED
from edgeseg.stream.sources import CaptureSource, ReconnectPolicy, Source


@pytest.fixture
def segmenter(stream_models):
    with Segmenter.open(stream_models.onnx_path, threads=1) as opened:
        yield opened


def test_video_to_recording_commands_telemetry_and_frames(tmp_path, kit, segmenter) -> None:
    video = kit.write_video(tmp_path / "in.avi", frames=10, width=48, height=40)
    out = tmp_path / "out"
    telemetry = Telemetry(out / "telemetry.jsonl")
    with open_source(str(video)) as source:
        sinks = [RecordingSink(out / "drive.mp4", fps=source.fps), CommandSink(str(out / "commands.jsonl")),
                 FrameFolderSink(out / "frames")]
        pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec, "balanced"), sinks,
                                  PipelineConfig(view="overlay"), telemetry)
        summary = pipeline.run()

    assert summary.ok and summary.reason == END_OF_STREAM
    assert summary.processed == 10 and summary.dropped == 0  # a file is not live: nothing dropped
    assert kit.count_video_frames(out / "drive.mp4") == (10, (48, 40))
    *commands, final = [json.loads(line) for line in (out / "commands.jsonl").read_text().splitlines()]
    assert [c["frame"] for c in commands] == list(range(10)) and {c["kind"] for c in commands} == {"frame"}
    assert final == {**final, "kind": "final", "frame": 9, "stop": True, "steering": 0.0, "throttle": 0.0,
                     "reason": "end of stream"}
    for command in commands:
        assert set(command) >= {"steering", "throttle", "stop", "clearance", "confidence", "timestamp", "frame"}
        assert -1 <= command["steering"] <= 1 and 0 <= command["throttle"] <= 1
        assert isinstance(command["stop"], bool) and command["latency_ms"] > 0
    records = [json.loads(line) for line in (out / "telemetry.jsonl").read_text().splitlines()]
    assert len(records) == 10 and {r["status"] for r in records} == {"output"}
    for record in records:
        assert record["capture_to_output_ms"] >= record["capture_to_command_ms"] > 0
        assert {"capture_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "nav_ms", "output_ms"} <= set(record)
    assert sorted(p.name for p in (out / "frames").iterdir())[:2] == ["frame_000000.jpg", "frame_000001.jpg"]
    assert len(list((out / "frames").iterdir())) == 10
    assert kit.leftover_temp_files(out) == []
    assert "infer" in summary.table and any("10 frames 48x40" in line for line in summary.sinks)


def test_side_view_and_size_change_in_recording(tmp_path, kit, segmenter) -> None:
    import cv2

    for name, size in (("1.png", (40, 48)), ("2.png", (60, 80)), ("3.png", (40, 48))):
        cv2.imwrite(str(tmp_path / name), np.full(size + (3,), 90, np.uint8))
    with open_source(str(tmp_path / "*.png")) as source:
        recording = RecordingSink(tmp_path / "side.avi", fps=5)
        summary = StreamPipeline(source, segmenter, None, [recording], PipelineConfig(view="side")).run()
    assert summary.processed == 3 and summary.counters["size_changes"] == 2
    assert recording.resized == 1  # the 80x60 frame was resized to the first frame's size
    assert kit.count_video_frames(tmp_path / "side.avi") == (3, (96, 40))  # frame | mask side by side


def test_max_frames_on_an_endless_source(tmp_path, kit, segmenter) -> None:
    with open_source("synthetic://?size=64x48&realtime=false&seed=1") as source:
        recording = RecordingSink(tmp_path / "drive.mp4", fps=source.fps)
        summary = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec), [recording],
                                 PipelineConfig(max_frames=7, view="mask")).run()
    assert summary.reason == MAX_FRAMES and summary.processed == 7
    assert kit.count_video_frames(tmp_path / "drive.mp4") == (7, (64, 48))


def test_stop_finalises_the_recording(tmp_path, kit, segmenter) -> None:
    with open_source("synthetic://?size=64x48&fps=50") as source:  # live, endless
        recording = RecordingSink(tmp_path / "live.mp4", fps=source.fps)
        pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec), [recording]).start()
        deadline = time.monotonic() + 20
        while pipeline.telemetry.counters["output"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not (tmp_path / "live.mp4").exists()  # still being written to a hidden temporary file
        pipeline.stop()
        summary = pipeline.join()
    assert summary.reason == "stopped" and summary.ok
    frames, size = kit.count_video_frames(tmp_path / "live.mp4")
    assert frames == recording.frames >= 3 and size == (64, 48)
    assert kit.leftover_temp_files(tmp_path) == []


class FailingRecording(RecordingSink):
    def write(self, result, view):
        if self.frames == 2:
            raise OSError(28, "No space left on device")
        super().write(result, view)


def test_failing_side_output_is_disabled_alone_and_reported_once(tmp_path, kit, segmenter) -> None:
    video = kit.write_video(tmp_path / "in.avi", frames=6)
    out = tmp_path / "out"
    warnings = []
    with open_source(str(video)) as source:
        sinks = [CommandSink(str(out / "commands.jsonl")), FailingRecording(out / "drive.mp4", fps=10)]
        pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec), sinks, warn=warnings.append)
        summary = pipeline.run()
    assert summary.reason == END_OF_STREAM and summary.error is None and not summary.ok
    assert len(warnings) == 1
    assert "No space left on device at frame 2" in warnings[0] and "driving goes on" in warnings[0]
    assert summary.failures == warnings and summary.counters["failed_outputs"] == 1
    assert kit.count_video_frames(out / "drive.mp4") == (2, (48, 40))  # the two frames before it, finished
    assert kit.leftover_temp_files(out) == []
    lines = [json.loads(line) for line in (out / "commands.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3, 4, 5, 5]  # driving went on, then the final stop
    assert lines[-1]["kind"] == "final"


class FastLiveSource(Source):
    """A fake camera delivering frames every 2 ms (our own control flow: drops)."""

    live = True

    def _read(self, timeout):
        time.sleep(0.002)
        return self._deliver(np.full((24, 32, 3), self.stats.frames % 256, np.uint8))


def test_stale_frames_dropped_and_counted(tmp_path, kit, stream_models) -> None:
    slow = kit.SlowSegmenter(stream_models.spec, delay_s=0.03)
    telemetry = Telemetry(tmp_path / "t.jsonl")
    pipeline = StreamPipeline(FastLiveSource("fake://fast"), slow, Navigator.from_spec(slow.spec), [],
                              PipelineConfig(max_frames=6), telemetry)
    summary = pipeline.run()
    counters = summary.counters
    assert summary.processed == 6 == slow.calls
    assert counters["dropped_capture"] >= 20  # ~15 frames arrive during each 30 ms inference
    # Every captured frame was processed, dropped, or still waiting in the one slot at the end.
    assert counters["captured"] - counters["processed"] - counters["dropped_capture"] in (0, 1)
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    dropped = [r for r in records if r["status"] == "dropped_before_inference"]
    assert len(dropped) == counters["dropped_capture"]
    processed_indices = [r["frame"] for r in records if r["status"] == "output"]
    assert processed_indices == sorted(processed_indices) and processed_indices[-1] > 20  # newest frames won


def test_dropping_camera_gives_up_with_reason_and_keeps_the_recording(tmp_path, kit, segmenter) -> None:
    opens = []

    def opener():
        opens.append(1)
        if len(opens) == 1:
            return kit.FakeCapture([(True, kit.bgr(40, 48, 60 + i)) for i in range(5)])
        return kit.FakeCapture([], opened=False)

    source = CaptureSource("fake://cam", opener, live=True, fps=10, misses_before_reconnect=1,
                           reconnect=ReconnectPolicy(attempts=2, initial_s=0.01))
    recording = RecordingSink(tmp_path / "cam.mp4", fps=10)
    summary = StreamPipeline(source, segmenter, None, [recording], PipelineConfig(drop_stale=False)).run()
    assert not summary.ok and summary.reason == SOURCE_FAILED
    assert "2 reconnect attempt(s)" in summary.error and "fake://cam" in summary.error
    assert kit.count_video_frames(tmp_path / "cam.mp4") == (5, (48, 40))


def test_command_sinks_need_navigation(tmp_path, segmenter) -> None:
    with open_source("synthetic://?size=32x24") as source:
        with pytest.raises(EdgesegError, match="need navigation"):
            StreamPipeline(source, segmenter, None, [CommandSink(str(tmp_path / "c.jsonl"))])


def test_udp_commands(segmenter) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    with open_source("synthetic://?size=32x24&realtime=0&frames=3") as source:
        sink = CommandSink(f"udp://127.0.0.1:{port}")
        StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec), [sink]).run()
    messages = [json.loads(receiver.recv(4096)) for _ in range(3)]
    receiver.close()
    assert [m["frame"] for m in messages] == [0, 1, 2] and all("steering" in m for m in messages)


def test_unwritable_and_bad_outputs_fail_at_start(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgesegError, match="cannot write"):
        RecordingSink(blocker / "out.mp4")
    with pytest.raises(EdgesegError, match="unknown video type"):
        RecordingSink(tmp_path / "out.gif")
    with pytest.raises(EdgesegError, match="cannot write commands"):
        CommandSink(str(blocker / "c.jsonl"))
    with pytest.raises(EdgesegError, match="udp://HOST:PORT"):
        CommandSink("udp://nowhere")
    with pytest.raises(EdgesegError, match="frames folder"):
        FrameFolderSink(blocker / "frames")
    with pytest.raises(EdgesegError, match="view"):
        PipelineConfig(view="fancy")
    assert list(tmp_path.iterdir()) == [blocker]


def test_latest_slot() -> None:
    import threading

    slot: LatestSlot[int] = LatestSlot()
    assert slot.get(timeout=0.01) is None
    assert slot.put(1) is None
    assert slot.put(2) == 1  # replaced: the caller counts it as dropped
    assert slot.get(timeout=0.01) == 2
    cancelled = threading.Event()
    slot.put(3)
    threading.Timer(0.05, cancelled.set).start()
    assert slot.put_wait(4, cancelled) is False  # full until cancelled
    slot.close()
    assert not slot.finished and slot.get(timeout=0.01) == 3 and slot.finished


# --- pace_reads: a source that waits to be read is read just in time, not one frame ahead ---------


class _SleepySegmenter:
    """Takes 20 ms per frame and sees only floor."""

    from edgeseg.spec import ModelSpec as _Spec

    spec = _Spec(class_names=("floor", "obstacle", "wall", "background"), input_height=32, input_width=32,
                 traversable=("floor",), model="fake")

    def seg(self, frame, probabilities=False):
        from edgeseg.runtime.segmenter import Segmentation

        time.sleep(0.02)
        return Segmentation(np.zeros(frame.shape[:2], np.uint8), None, {"infer": 0.02}, self.spec)


class _InstantSource(Source):
    """Not live, and reading costs nothing: read ahead, a frame waits a whole inference or two."""

    def _read(self, timeout):
        return self._deliver(np.zeros((24, 32, 3), np.uint8))


def _paced_run(pace: bool) -> dict:
    from edgeseg.stream import PipelineConfig, StreamPipeline, Telemetry

    telemetry = Telemetry()
    segmenter = _SleepySegmenter()
    summary = StreamPipeline(_InstantSource("fake://instant"), segmenter, Navigator.from_spec(segmenter.spec), [],
                             PipelineConfig(max_frames=25, pace_reads=pace), telemetry).run()
    assert summary.processed == 25 and summary.dropped == 0
    latency = telemetry.snapshot()["latency_ms"]
    return {"fps": 25 / summary.elapsed_s, "queue": latency["queue"]["p50"]}


def test_pace_reads_cuts_the_wait_not_the_throughput() -> None:
    ahead, paced = _paced_run(False), _paced_run(True)
    assert ahead["queue"] > 30  # read ahead: the frame waits for the one being inferred and the one in the slot
    assert paced["queue"] < 15
    assert paced["fps"] > 0.8 * ahead["fps"]


@pytest.mark.parametrize("mode, with_probabilities", [("safe", True), ("adventurous", False)])
def test_safe_mode_segments_with_probabilities_and_the_navigator_gets_them(segmenter, mode, with_probabilities):
    """Safe mode drives only on floor the model is sure of (min_free_probability), on a robot as in
    `edgeseg sim`: its frames are segmented with class probabilities and the navigator receives the
    traversable probability; the other modes pay for no softmax."""
    navigator = Navigator.from_spec(segmenter.spec, mode)
    asked, given = [], []
    real_seg, real_step = segmenter.seg, navigator.step

    def seg(frame, probabilities=False):
        asked.append(probabilities)
        return real_seg(frame, probabilities=probabilities)

    def step(class_map, free_probability=None):
        given.append(free_probability)
        return real_step(class_map, free_probability=free_probability)

    segmenter.seg, navigator.step = seg, step
    with open_source("synthetic://?size=64x48&realtime=false&seed=1") as source:
        summary = StreamPipeline(source, segmenter, navigator, [], PipelineConfig(max_frames=4)).run()
    assert summary.processed == 4 and asked == [with_probabilities] * 4
    if with_probabilities:
        assert all(p is not None and p.ndim == 2 for p in given)  # at the model output size
        assert all(0.0 <= float(p.min()) and float(p.max()) <= 1.0 + 1e-6 for p in given)
    else:
        assert given == [None] * 4
