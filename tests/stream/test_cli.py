"""`edgeseg stream` in-process through `edgeseg.cli.main`, and once as a real process stopped by a signal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import edgeseg.cli
from edgeseg.cli import stream as stream_cli
from edgeseg.nav import NAV_MODES
from edgeseg.stream import sources
from edgeseg.stream.sources import CaptureSource, ReconnectPolicy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def main():
    return edgeseg.cli.main


def test_parser_choices_match_the_library() -> None:
    parser = argparse.ArgumentParser()
    stream_cli.add_arguments(parser)
    assert set(stream_cli.NAV_MODE_CHOICES) == set(NAV_MODES)
    args = parser.parse_args(["--camera", "0", "--model", "m.onnx", "--serve", ":8080", "--max-frames", "5"])
    assert args.camera == "0" and args.serve == ":8080" and args.max_frames == 5 and args.view == "overlay"
    with pytest.raises(SystemExit):
        parser.parse_args(["--camera", "0", "--source", "x.mp4", "--model", "m.onnx"])  # one source only


def test_stream_video_with_outputs(main, tmp_path, kit, stream_models, capsys) -> None:
    video = kit.write_video(tmp_path / "in.avi", frames=8)
    code = main(["stream", "--source", str(video), "--model", str(stream_models.onnx_path), "--threads", "1",
                 "--record", str(tmp_path / "out.mp4"), "--commands", str(tmp_path / "cmd.jsonl"),
                 "--telemetry", str(tmp_path / "t.jsonl"), "--max-frames", "5", "--view", "side", "--no-status",
                 "--serve", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "watch at http://127.0.0.1:" in err and "served 5 frames" in err
    assert kit.count_video_frames(tmp_path / "out.mp4") == (5, (96, 40))
    commands = [json.loads(line) for line in (tmp_path / "cmd.jsonl").read_text().splitlines()]
    assert [c["kind"] for c in commands] == ["frame"] * 5 + ["final"]
    assert commands[-1]["reason"] == "max frames reached" and commands[-1]["stop"] is True
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 5
    assert "capture_to_command" in err and "max frames reached" in err


def test_commands_to_stdout(main, stream_models, capsys) -> None:
    code = main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model",
                 str(stream_models.onnx_path), "--commands", "-", "--max-frames", "3", "--mode", "adventurous"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]  # stdout holds only JSON
    lines = [line for line in lines if line["kind"] != "stale"]  # heartbeat stops when a frame is slow
    assert [line["frame"] for line in lines] == [0, 1, 2, 2] and lines[-1]["kind"] == "final"


@pytest.mark.parametrize("flags, paced", [([], True), (["--read-ahead"], False)])
def test_reads_just_in_time_unless_read_ahead(main, stream_models, monkeypatch, capsys, flags, paced) -> None:
    from edgeseg.stream import pipeline

    configs = []
    real = pipeline.StreamPipeline

    def recording(*args, **kwargs):
        made = real(*args, **kwargs)
        configs.append(made.config)
        return made

    monkeypatch.setattr(pipeline, "StreamPipeline", recording)
    code = main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model",
                 str(stream_models.onnx_path), "--max-frames", "3", "--no-status", *flags])
    assert code == 0, capsys.readouterr().err
    assert [config.pace_reads for config in configs] == [paced]


def test_camera_not_found(main, stream_models, capsys) -> None:
    code = main(["stream", "--camera", "/dev/video99", "--model", str(stream_models.onnx_path)])
    assert code == 1
    assert "camera /dev/video99 not found" in capsys.readouterr().err


def test_unwritable_record_path_fails_before_the_run(main, tmp_path, stream_models, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["stream", "--source", "synthetic://?realtime=0", "--model", str(stream_models.onnx_path),
                 "--record", str(blocker / "out.mp4"), "--telemetry", str(tmp_path / "t.jsonl"),
                 "--commands", str(tmp_path / "c.jsonl")])
    assert code == 1
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no output was created


def test_show_without_a_gui_or_display_fails_before_the_run(main, tmp_path, stream_models, capsys) -> None:
    from edgeseg.stream.sinks import display_available, opencv_has_gui

    if opencv_has_gui() and display_available():
        pytest.skip("this machine can show windows")
    code = main(["stream", "--source", "synthetic://?realtime=0", "--model", str(stream_models.onnx_path),
                 "--record", str(tmp_path / "out.mp4"), "--show"])
    assert code == 1
    err = capsys.readouterr().err
    assert "--show needs" in err and "--serve :8080" in err
    assert list(tmp_path.iterdir()) == []  # the recording made before the error was cleaned up


def test_model_that_cannot_drive(main, tmp_path, stream_models, capsys) -> None:
    args = ["stream", "--source", "synthetic://?size=32x24&realtime=0", "--model", str(stream_models.no_traversable),
            "--max-frames", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "no traversable classes" in err and "--no-nav" in err
    assert main(args + ["--no-nav"]) == 0
    assert main(args + ["--no-nav", "--commands", "-"]) == 1
    assert "drop --no-nav" in capsys.readouterr().err


def test_model_without_spec(main, stream_models, capsys) -> None:
    code = main(["stream", "--source", "synthetic://", "--model", str(stream_models.no_spec)])
    assert code == 1
    assert "no model spec" in capsys.readouterr().err


def test_dropping_source_exits_1_with_the_reason(main, monkeypatch, tmp_path, kit, stream_models, capsys) -> None:
    def fake_open_source(uri, **options):
        opens = []

        def opener():
            opens.append(1)
            if len(opens) == 1:
                return kit.FakeCapture([(True, kit.bgr()) for _ in range(3)])
            return kit.FakeCapture([], opened=False)

        return CaptureSource(uri, opener, live=True, misses_before_reconnect=1,
                             reconnect=ReconnectPolicy(attempts=2, initial_s=0.01))

    monkeypatch.setattr(sources, "open_source", fake_open_source)
    code = main(["stream", "--source", "rtsp://camera.local/live", "--model", str(stream_models.onnx_path),
                 "--record", str(tmp_path / "cam.avi")])
    err = capsys.readouterr().err
    assert code == 1
    assert "rtsp://camera.local/live stopped delivering frames and 2 reconnect attempt(s)" in err
    assert kit.count_video_frames(tmp_path / "cam.avi")[0] >= 1  # what was seen is kept, complete


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_finalises_the_recording(signum, tmp_path, kit, stream_models) -> None:
    script = textwrap.dedent("""
        import sys
        import edgeseg.cli as cli
        sys.exit(cli.main(sys.argv[1:]))
    """)
    telemetry = tmp_path / "t.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", script, "stream", "--source", "synthetic://?size=64x48&fps=30", "--model",
         str(stream_models.onnx_path), "--threads", "1", "--record", str(tmp_path / "live.mp4"),
         "--telemetry", str(telemetry), "--commands", str(tmp_path / "c.jsonl")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if telemetry.exists() and len(telemetry.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1]
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    frames, size = kit.count_video_frames(tmp_path / "live.mp4")
    assert frames >= 3 and size == (64, 48)
    assert kit.leftover_temp_files(tmp_path) == []
    final = json.loads((tmp_path / "c.jsonl").read_text().splitlines()[-1])  # the car was told to stop
    assert final == {**final, "kind": "final", "stop": True, "throttle": 0.0, "steering": 0.0,
                     "reason": f"stopped by {signal.Signals(signum).name}"}
