"""Fault injection: `edgeseg stream` run as the CLI (in-process, or a process for signals and
pipes) against each fault of issue 11. The car must always end on a stop line with a reason,
a failing side output must not stop driving, and nothing may report a failure as success.

Real where it can be: /dev/full for a disk that is full (ENOSPC from the kernel), a closed pipe
for stdout, a real UDP socket for the car, a tmpfs mount for a full disk under a recording
(skipped with the reason where mounting is not allowed). Simulated where it cannot: a video
writer that drops frames silently as FFmpeg does on a full disk, a free-space probe.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import edgeseg.cli
from edgeseg.errors import EngineError
from edgeseg.stream import sinks, sources
from edgeseg.stream.sources import CaptureSource, ReconnectPolicy

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "import sys, edgeseg.cli as cli; sys.exit(cli.main(sys.argv[1:]))"
DEV_FULL = Path("/dev/full")


@pytest.fixture
def main():
    return edgeseg.cli.main


def read_commands(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_ends_on_a_stop(commands: list[dict], reason: str) -> None:
    final = commands[-1]
    assert final["kind"] == "final" and final["stop"] is True, final
    assert final["steering"] == 0.0 and final["throttle"] == 0.0 and final["reason"] == reason
    assert [c["kind"] for c in commands].count("final") == 1


def stream_args(model: Path, source: str, *extra: str) -> list[str]:
    return ["stream", "--source", source, "--model", str(model), "--threads", "1", "--no-status", *extra]


# --- the final stop on every way out ------------------------------------------------------------


@pytest.mark.parametrize("flags, reason", [([], "end of stream"), (["--max-frames", "3"], "max frames reached")])
def test_end_of_stream_and_max_frames_end_on_a_stop(main, tmp_path, kit, stream_models, capsys, flags, reason):
    video = kit.write_video(tmp_path / "in.avi", frames=5)
    code = main(stream_args(stream_models.onnx_path, str(video), "--commands", str(tmp_path / "c.jsonl"), *flags))
    assert code == 0, capsys.readouterr().err
    assert_ends_on_a_stop(read_commands(tmp_path / "c.jsonl"), reason)


def flaky_camera(kit, uri: str, frames: int = 3, delay_s: float = 0.2):
    """A live camera that delivers `frames` frames, then is gone: every reopen fails."""
    def fake_open_source(_uri, **options):
        opens = []

        def opener():
            opens.append(1)
            if len(opens) == 1:
                return kit.FakeCapture([(True, kit.bgr()) for _ in range(frames)])
            return kit.FakeCapture([], opened=False)

        return CaptureSource(uri, opener, live=True, misses_before_reconnect=1,
                             reconnect=ReconnectPolicy(attempts=2, initial_s=delay_s))

    return fake_open_source


def test_lost_source_sends_stale_stops_while_reconnecting_then_a_final_stop(main, monkeypatch, tmp_path, kit,
                                                                            stream_models, capsys):
    monkeypatch.setattr(sources, "open_source", flaky_camera(kit, "rtsp://cam.local/live", delay_s=0.6))
    code = main(stream_args(stream_models.onnx_path, "rtsp://cam.local/live", "--commands", str(tmp_path / "c.jsonl"),
                            "--command-timeout", "0.1"))
    assert code == 1
    assert "stopped delivering frames and 2 reconnect attempt(s)" in capsys.readouterr().err
    commands = read_commands(tmp_path / "c.jsonl")
    assert_ends_on_a_stop(commands, "source failed")
    driven = [c for c in commands if c["kind"] == "frame"]  # a live source: stale frames may be dropped
    assert driven and commands[: len(driven)] == driven
    stale = [c for c in commands if c["kind"] == "stale"]  # 1.8 s of backoff: stops every 0.1 s meanwhile
    assert len(stale) >= 3 and len(commands) == len(driven) + len(stale) + 1
    assert all(c["stop"] and c["throttle"] == 0.0 and c["frame"] == driven[-1]["frame"] for c in stale)
    assert stale[0]["reason"].startswith("no new frame for ")
    gaps = np.diff([c["timestamp"] for c in commands])
    # Never quiet through a backoff wait (0.6 s, then 1.2 s): without the heartbeat the longest gap
    # would be >= 1.2 s; 1.0 s leaves 0.9 s for thread scheduling on a loaded 2-core machine.
    assert gaps.max() < 1.0


def test_model_error_ends_on_a_stop_and_one_line(main, monkeypatch, tmp_path, stream_models, capsys):
    from edgeseg.runtime.segmenter import Segmenter

    real_seg = Segmenter.seg
    calls = []

    def failing_seg(self, frame, probabilities=False):
        calls.append(1)
        if len(calls) == 4:
            raise EngineError("the model failed on frame 3 (simulated)")
        return real_seg(self, frame, probabilities)

    monkeypatch.setattr(Segmenter, "seg", failing_seg)
    code = main(stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0", "--commands",
                            str(tmp_path / "c.jsonl")))
    err = capsys.readouterr().err
    assert code == 1 and "error: the model failed on frame 3 (simulated)" in err and "Traceback" not in err
    commands = read_commands(tmp_path / "c.jsonl")
    # Frames 0-2 were segmented; the navigation thread may still hold frame 2 when the failure stops
    # the run, and then that frame's command is dropped for the final stop (never a command after it).
    assert [c["frame"] for c in commands if c["kind"] == "frame"] in ([0, 1], [0, 1, 2])
    assert_ends_on_a_stop(commands, "inference failed: EngineError")


@pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this system")
def test_commands_output_failing_stops_the_run_and_the_car_still_gets_the_stop(main, tmp_path, stream_models, capsys):
    car = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    car.bind(("127.0.0.1", 0))
    car.settimeout(5)
    try:
        code = main(stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0",
                                "--commands", f"udp://127.0.0.1:{car.getsockname()[1]}", "--commands", str(DEV_FULL)))
        received = []
        car.settimeout(0.5)
        while True:
            try:
                received.append(json.loads(car.recv(4096)))
            except socket.timeout:
                break
    finally:
        car.close()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "error: cannot write commands to /dev/full: No space left on device" in err
    assert_ends_on_a_stop(received, "commands output failed")


def test_closed_stdout_stops_cleanly_with_one_line(tmp_path, stream_models):
    """`edgeseg stream --commands - | head -1`: the reader goes away after one line."""
    command = [sys.executable, "-c", SCRIPT, *stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0",
                                                          "--commands", "-")]
    stream = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    first = stream.stdout.readline()
    stream.stdout.close()  # what `head -1` does after its line
    _, err = stream.communicate(timeout=60)
    assert json.loads(first)["kind"] == "frame"
    assert stream.returncode == 1, err
    assert "commands output - closed: the program reading standard output went away" in err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_a_blocked_commands_output_ends_the_run_instead_of_hanging(monkeypatch, tmp_path, stream_models):
    """A commands pipe nobody reads blocks the write: the watchdog notices, the run stops and fails,
    and the car, on another output, still gets its stale stops and the final stop."""
    import threading

    from edgeseg.nav import Navigator
    from edgeseg.stream import CommandSink, PipelineConfig, StreamPipeline, open_source
    from edgeseg.stream import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "THREAD_EXIT_S", 0.5)
    release = threading.Event()

    class BlockingCommands(CommandSink):
        def write(self, result, view=None):
            if self.lines == 2:
                release.wait(30)  # the reader stopped reading: the pipe is full
            super().write(result, view)

    from edgeseg.runtime import Segmenter

    car = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    car.bind(("127.0.0.1", 0))
    sinks = [BlockingCommands(str(tmp_path / "c.jsonl")), CommandSink(f"udp://127.0.0.1:{car.getsockname()[1]}")]
    with open_source("synthetic://?size=48x32&realtime=0") as source, Segmenter.open(stream_models.onnx_path) as seg:
        pipeline = StreamPipeline(source, seg, Navigator.from_spec(seg.spec), sinks,
                                  PipelineConfig(command_timeout_s=0.2))
        started = time.monotonic()
        try:
            summary = pipeline.run()
        finally:
            release.set()
    assert time.monotonic() - started < 10
    assert summary.reason == "commands output failed" and "blocked for" in summary.error
    received = []
    car.settimeout(0.2)
    with contextlib.suppress(socket.timeout):
        while True:
            received.append(json.loads(car.recv(4096)))
    car.close()
    assert "stale" in [line["kind"] for line in received]  # while the log output was stuck
    assert_ends_on_a_stop(received, "commands output failed")


# --- side outputs fail alone ------------------------------------------------------------------


@pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this system")
def test_telemetry_on_a_full_disk_is_disabled_and_driving_goes_on(main, tmp_path, stream_models, capsys):
    code = main(stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0&frames=150",
                            "--telemetry", str(DEV_FULL), "--commands", str(tmp_path / "c.jsonl")))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.count("warning: cannot write telemetry to /dev/full: No space left on device") == 1
    assert "FAILED: cannot write telemetry" in err and "failed outputs 1" in err
    assert "error: end of stream (" in err and "but 1 output(s) failed" in err
    commands = read_commands(tmp_path / "c.jsonl")
    assert len([c for c in commands if c["kind"] == "frame"]) == 150  # every frame was driven
    assert_ends_on_a_stop(commands, "end of stream")


_REAL_WRITER = __import__("cv2").VideoWriter


class DroppingWriter:
    """A real cv2.VideoWriter that silently stops writing after `keep` frames, as OpenCV's FFmpeg
    writer does on a full disk (it logs "Failed to write frame" and returns nothing)."""

    keep = 3

    def __init__(self, *args):
        self._writer = _REAL_WRITER(*args)
        self.written = 0

    def isOpened(self):  # noqa: N802
        return self._writer.isOpened()

    def write(self, image):
        self.written += 1
        if self.written <= self.keep:
            self._writer.write(image)

    def release(self):
        self._writer.release()


def test_recording_that_lost_frames_is_not_kept_and_the_run_says_so(main, monkeypatch, tmp_path, kit, stream_models,
                                                                    capsys):
    import cv2

    video = kit.write_video(tmp_path / "in.avi", frames=8)
    monkeypatch.setattr(cv2, "VideoWriter", DroppingWriter)
    out = tmp_path / "out"
    code = main(stream_args(stream_models.onnx_path, str(video), "--record", str(out / "drive.mp4"),
                            "--commands", str(out / "c.jsonl")))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "recording" in err and "8 frames were written but the finished file holds 3" in err
    assert not (out / "drive.mp4").exists() and kit.leftover_temp_files(out) == []
    assert "recording " + str(out / "drive.mp4") + ": no frames kept" in err  # the summary does not claim 8
    assert_ends_on_a_stop(read_commands(out / "c.jsonl"), "end of stream")


def test_recording_stops_before_the_disk_is_full_and_keeps_what_it_has(main, monkeypatch, tmp_path, kit,
                                                                      stream_models, capsys):
    frees = iter([100 << 20] * 4 + [1 << 20] * 100)  # 100 MiB for four frames, then 1 MiB
    monkeypatch.setattr(sinks, "free_bytes", lambda folder: next(frees))
    video = kit.write_video(tmp_path / "in.avi", frames=8)
    code = main(stream_args(stream_models.onnx_path, str(video), "--record", str(tmp_path / "drive.avi"),
                            "--commands", str(tmp_path / "c.jsonl")))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("warning: recording") == 1 and "only 1.0 MiB left on its file system" in err
    assert "at frame 4" in err
    assert kit.count_video_frames(tmp_path / "drive.avi")[0] == 4  # finished, playable, all it says
    assert "drive.avi: 4 frames" in err
    commands = read_commands(tmp_path / "c.jsonl")
    assert len([c for c in commands if c["kind"] == "frame"]) == 8


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 2 MiB file system, so a recording fills it for real; skips where mounting is not allowed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("reserve", [1 << 20, 0])
def test_recording_onto_a_real_full_disk(main, monkeypatch, tmp_path, kit, small_tmpfs, stream_models, capsys,
                                         reserve):
    """With the reserve the recording stops in time and is kept, playable; without it FFmpeg's
    writes fail for real and the broken file is caught and deleted. Either way: exit 1."""
    monkeypatch.setattr(sinks, "RECORDING_RESERVE_BYTES", reserve)
    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(48):  # noise barely compresses: about 57 kB per MJPG frame, 2.7 MB in all
        import cv2

        cv2.imwrite(str(frames / f"{i:02d}.png"), rng.integers(0, 255, (240, 320, 3), np.uint8))
    target = small_tmpfs / "drive.avi"
    code = main(stream_args(stream_models.onnx_path, str(frames), "--record", str(target), "--alpha", "0",
                            "--no-legend", "--commands", str(tmp_path / "c.jsonl")))
    err = capsys.readouterr().err
    assert code == 1, err
    if reserve:
        assert "left on its file system" in err
        written = kit.count_video_frames(target)[0]
        assert 0 < written < 48 and f"drive.avi: {written} frames" in err
    else:
        assert "is broken" in err and not target.exists()
    assert kit.leftover_temp_files(small_tmpfs) == []
    commands = read_commands(tmp_path / "c.jsonl")
    assert len([c for c in commands if c["kind"] == "frame"]) == 48
    assert_ends_on_a_stop(commands, "end of stream")


# --- engines --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_engine(stream_models, tmp_path_factory):
    from edgeseg.engine import BuildOptions, build_engine

    out = tmp_path_factory.mktemp("engine") / "model.cpu.onnx"
    started = time.perf_counter()
    build_engine(BuildOptions(stream_models.onnx_path, backend="onnxruntime", output=out), log=lambda line: None)
    assert time.perf_counter() - started < 60
    return out


def test_swapped_or_changed_engine_is_refused(main, tmp_path, cpu_engine, stream_models, capsys):
    engine = tmp_path / "model.cpu.onnx"
    shutil.copy(cpu_engine, engine)
    shutil.copy(cpu_engine.with_name(cpu_engine.name + ".json"), tmp_path / "model.cpu.onnx.json")
    run = stream_args(engine, "synthetic://?size=48x32&realtime=0", "--max-frames", "2")
    assert main(run) == 0, capsys.readouterr().err  # the engine as built runs

    shutil.copy(stream_models.onnx_path, engine)  # another model copied over the engine
    assert main(run) == 1
    err = capsys.readouterr().err
    assert "model.cpu.onnx is not the engine its manifest describes" in err and "--no-verify-engine" in err
    assert main(run + ["--no-verify-engine"]) == 0  # for those who know why

    shutil.copy(cpu_engine, engine)
    manifest = json.loads((tmp_path / "model.cpu.onnx.json").read_text())
    manifest["spec"]["traversable"] = ["floor", "wall"]  # an edited spec drives differently
    (tmp_path / "model.cpu.onnx.json").write_text(json.dumps(manifest))
    assert main(run) == 1
    assert "was changed after the build" in capsys.readouterr().err


# --- credentials, the browser view ----------------------------------------------------------


def test_credentials_never_printed(main, monkeypatch, kit, stream_models, capsys):
    secret = "rtsp://admin:hunter2@cam.local/live"
    monkeypatch.setattr(sources, "open_source", flaky_camera(kit, secret, delay_s=0.01))
    code = main(stream_args(stream_models.onnx_path, secret, "--max-frames", "50"))
    err = capsys.readouterr().err
    assert code == 1 and "rtsp://***@cam.local/live" in err and "hunter2" not in err and "admin" not in err
    assert sources.redact_uri("gst:rtspsrc location=rtsp://u:p@h/x user-id=u user-pw=p ! appsink") == \
        "gst:rtspsrc location=rtsp://***@h/x user-id=*** user-pw=*** ! appsink"


def test_status_json_has_no_credentials_and_the_view_is_read_only(kit, stream_models):
    from edgeseg.nav import Navigator
    from edgeseg.stream import PipelineConfig, StreamPipeline, StreamServer, Telemetry

    telemetry = Telemetry()
    server = StreamServer("127.0.0.1:0", telemetry)
    source = CaptureSource("http://user:hunter2@cam.local/mjpg", lambda: kit.FakeCapture([(True, kit.bgr())] * 40),
                           live=False)
    slow = kit.SlowSegmenter(stream_models.spec, delay_s=0.02)
    pipeline = StreamPipeline(source, slow, Navigator.from_spec(slow.spec), [server], PipelineConfig(), telemetry)
    pipeline.start()
    try:
        body = urllib.request.urlopen(server.url + "status.json", timeout=5).read().decode()
        assert "cam.local" in body and "hunter2" not in body
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            request = urllib.request.Request(server.url + "status.json", data=b"{}", method=method)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 501
    finally:
        pipeline.stop()
        pipeline.join()


def test_idle_connections_time_out(monkeypatch):
    from edgeseg.stream import server as server_module

    monkeypatch.setattr(server_module, "IDLE_TIMEOUT_S", 0.3)
    server = server_module.StreamServer("127.0.0.1:0")
    try:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        started = time.monotonic()
        assert idle.recv(1) == b""  # the server hung up on a client that sent nothing
        assert time.monotonic() - started < 3
        idle.close()
    finally:
        server.close()


def test_serving_on_all_interfaces_warns(main, stream_models, capsys):
    code = main(stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0", "--max-frames", "1",
                            "--serve", "0.0.0.0:0"))
    assert code == 0
    assert "reachable by anyone on the network" in capsys.readouterr().err


# --- sources that deliver nothing, or less than they say ----------------------------------------


def test_a_source_with_no_readable_frame_is_an_error(main, tmp_path, stream_models, capsys):
    for name in ("a.png", "b.png", "c.jpg"):
        (tmp_path / name).write_bytes(b"not an image")
    code = main(stream_args(stream_models.onnx_path, str(tmp_path), "--commands", str(tmp_path / "c.jsonl")))
    err = capsys.readouterr().err
    assert code == 1 and "ended without delivering a single frame; 3 frame(s) or file(s) could not be decoded" in err
    assert_ends_on_a_stop(read_commands(tmp_path / "c.jsonl"), "end of stream")


def test_a_truncated_video_says_how_much_it_read(main, tmp_path, kit, stream_models, capsys):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    for i in range(20):
        writer.write(np.random.default_rng(i).integers(0, 255, (40, 48, 3), np.uint8))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    assert main(stream_args(stream_models.onnx_path, str(video))) == 0
    err = capsys.readouterr().err
    assert "ended after 9 of the 20 frames its container lists" in err


# --- leftovers --------------------------------------------------------------------------------


def test_no_output_before_the_run_starts_and_stale_temporaries_cleaned(main, tmp_path, stream_models, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".drive.avi.edgeseg-{int(dead.stdout)}-x1y2z3.avi"  # a run killed with -9
    stale.write_bytes(b"half a video")
    outputs = ["--record", str(tmp_path / "drive.avi"), "--commands", str(tmp_path / "c.jsonl"),
               "--telemetry", str(tmp_path / "t.jsonl")]
    assert main(stream_args(stream_models.onnx_path, str(tmp_path / "missing.avi"), *outputs)) == 1
    assert "no video file at" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the stale temporary went, nothing was made
    assert main(stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0", "--max-frames", "2",
                            *outputs)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "drive.avi", "t.jsonl"]


def test_a_recording_cut_by_kill_9_is_kept_by_the_next_run(main, tmp_path, kit, stream_models, capsys):
    """A power cut mid-recording: the .mkv in the hidden temporary plays up to its last flushed
    frames; the next run keeps it under a visible name instead of deleting it."""
    target = tmp_path / "drive.mkv"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from edgeseg.stream.sinks import FrameResult, RecordingSink
        sink = RecordingSink({str(target)!r}, fps=30)
        rng = np.random.default_rng(0)
        for i in range(60):  # noise: about 60 kB a frame, so FFmpeg's buffer reaches the disk
            sink.write(None, rng.integers(0, 255, (240, 320, 3), np.uint8))
        print("ready", flush=True)
        time.sleep(60)
    """)
    recorder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert recorder.stdout.readline().strip() == "ready"
    finally:
        recorder.kill()  # SIGKILL: no finally, no release
        recorder.wait(10)
    assert len(kit.leftover_temp_files(tmp_path)) == 1
    code = main(stream_args(stream_models.onnx_path, "synthetic://?size=48x32&realtime=0", "--max-frames", "2",
                            "--record", str(target)))
    err = capsys.readouterr().err
    assert code == 0, err
    kept = list(tmp_path.glob("drive.interrupted-*.mkv"))
    assert len(kept) == 1 and f"kept the recording an interrupted run left behind as {kept[0]}" in err
    assert kit.count_video_frames(kept[0])[0] >= 30  # most of the 60 frames survive
    assert kit.count_video_frames(target)[0] == 2 and kit.leftover_temp_files(tmp_path) == []
