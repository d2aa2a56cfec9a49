"""The library-level stream run (`edgeseg.stream.run(StreamOptions)`) and the sink factory (`open_sink`)."""

from __future__ import annotations

import json

import pytest

import edgeseg.cli
from edgeseg.errors import EdgesegError
from edgeseg.stream import (
    CommandSink,
    FrameFolderSink,
    RecordingSink,
    StreamFailed,
    StreamOptions,
    StreamServer,
    open_sink,
    run,
)


@pytest.mark.parametrize("target, kind", [
    ("-", CommandSink), ("stdout", CommandSink), ("udp://127.0.0.1:9000", CommandSink), ("cmds.jsonl", CommandSink),
    ("drive.avi", RecordingSink), ("frames/", FrameFolderSink), ("out.mp4/", FrameFolderSink),
])
def test_open_sink_takes_the_kind_from_the_uri(tmp_path, monkeypatch, target, kind) -> None:
    monkeypatch.chdir(tmp_path)
    sink = open_sink(target)
    try:
        assert type(sink) is kind
        if kind is CommandSink:
            assert sink.target == ("-" if target == "stdout" else target)
    finally:
        sink.abort()


def test_open_sink_serves_http_and_a_named_kind_overrides_the_suffix(tmp_path) -> None:
    server = open_sink("http://127.0.0.1:0")
    try:
        assert isinstance(server, StreamServer) and server.url.startswith("http://127.0.0.1:")
    finally:
        server.abort()
    log = open_sink(str(tmp_path / "car.log"), "commands")  # --commands takes any file name
    assert isinstance(log, CommandSink) and not (tmp_path / "car.log").exists()  # created when the run starts


@pytest.mark.parametrize("target, words", [
    ("car.log", "cannot tell what kind of output"), ("udp://host", "udp://HOST:PORT"),
])
def test_open_sink_refuses_what_it_cannot_name(tmp_path, monkeypatch, target, words) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgesegError, match=words):
        open_sink(target)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_library_run_writes_outputs_from_uris_and_returns_the_summary(tmp_path, kit, stream_models) -> None:
    video = kit.write_video(tmp_path / "in.avi", frames=8)
    lines: list[str] = []
    summary = run(StreamOptions(source=str(video), model=stream_models.onnx_path, threads=1, max_frames=5,
                                outputs=(str(tmp_path / "cmd.jsonl"), str(tmp_path / "out.avi")), status=False),
                  log=lines.append)
    assert summary.ok and summary.processed == 5 and summary.reason == "max frames reached"
    commands = [json.loads(line) for line in (tmp_path / "cmd.jsonl").read_text().splitlines()]
    assert [c["kind"] for c in commands] == ["frame"] * 5 + ["final"] and commands[-1]["stop"] is True
    assert kit.count_video_frames(tmp_path / "out.avi")[0] == 5
    assert lines[0].startswith("edgeseg stream: ") and "navigation safe" in lines[0]
    assert lines[-1] == "edgeseg stream: max frames reached"


def test_library_run_that_fails_raises_with_the_summary(tmp_path, kit, stream_models) -> None:
    """A commands output that cannot be written fails the run: an exception, never a summary that looks fine."""
    with pytest.raises(StreamFailed) as failed:
        run(StreamOptions(source="synthetic://?size=48x32&realtime=0", model=stream_models.onnx_path,
                          commands=("/dev/full",), max_frames=50,
                          status=False), log=lambda line: None)
    assert "/dev/full" in str(failed.value) and not failed.value.summary.ok


def test_library_run_checks_its_options_before_opening_anything(tmp_path, stream_models) -> None:
    with pytest.raises(EdgesegError, match="drop --no-nav"):
        run(StreamOptions(source="synthetic://", model=stream_models.onnx_path, commands=("-",), nav=False))
    with pytest.raises(EdgesegError, match="unknown navigation mode 'fast'"):
        run(StreamOptions(source="synthetic://", model=stream_models.onnx_path, mode="fast"))
    with pytest.raises(EdgesegError, match="cannot tell what kind of output"):
        run(StreamOptions(source="synthetic://", model=stream_models.onnx_path, outputs=(str(tmp_path / "x.log"),),
                          telemetry=str(tmp_path / "t.jsonl")))
    assert not (tmp_path / "t.jsonl").exists()


def test_cli_sink_flag_goes_through_the_factory(tmp_path, stream_models, capsys) -> None:
    main = edgeseg.cli.main
    code = main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model", str(stream_models.onnx_path),
                 "--sink", str(tmp_path / "cmd.jsonl"), "--sink", str(tmp_path / "frames") + "/",
                 "--max-frames", "3", "--no-status"])
    assert code == 0, capsys.readouterr().err
    assert len((tmp_path / "cmd.jsonl").read_text().splitlines()) == 4  # 3 frames and the final stop
    assert len(list((tmp_path / "frames").glob("frame_*.jpg"))) == 3
    assert main(["stream", "--source", "synthetic://", "--model", str(stream_models.onnx_path),
                 "--sink", str(tmp_path / "car.log")]) == 1
    assert "cannot tell what kind of output" in capsys.readouterr().err


@pytest.mark.parametrize("options", [
    StreamOptions(source="0", model="m.onnx"),
    StreamOptions(source="synthetic://?seed=7&size=320x240", model="m.onnx", mode="adventurous", max_frames=300,
                  record="drive.mp4", commands=("udp://10.0.0.2:9000", "log.txt"), outputs=("x.jsonl", "f/"),
                  telemetry="t.jsonl", view="side", alpha=0.25, legend=False, status=False, width=640, height=480,
                  fps=15.0, loop=True, read_ahead=True, threads=2, command_timeout_s=0.3, backend="onnxruntime",
                  verify_engine=False, serve="127.0.0.1:0", show=True, save_frames="frames"),
    StreamOptions(source="clip.mp4", model="m.onnx", nav=False, status=True),
])
def test_to_argv_parses_back_to_the_same_options(options) -> None:
    """What the demo prints as `edgeseg stream ...` runs exactly what it ran."""
    import argparse

    from edgeseg.cli import stream as stream_cli

    parser = argparse.ArgumentParser()
    stream_cli.add_arguments(parser)
    argv = options.to_argv()
    assert argv[0] == "stream"
    assert stream_cli.options_from_args(parser.parse_args(argv[1:])) == options
