"""`edgeseg demo` end to end at toy scale (real TensorFlow, tf2onnx, ONNX Runtime, simulator, OpenCV
video), its reuse of finished stages, and the report made from stage records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import pytest

from edgeseg.cli import main
from edgeseg.demo import DemoPaths, _up_to_date
from edgeseg.report import render_html, summary_table

TOY_ARGS = ["--size", "64x64", "--data", "synthetic://?seed=0&n=64", "--time-budget", "4s", "--eval-frames", "4",
            "--episodes", "1", "--sim-seconds", "2", "--stream-frames", "12", "--no-progress"]


@pytest.fixture(scope="module")
def toy_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    code = main(["demo", "--out", str(out), *TOY_ARGS, "--bench-runs", "3"])
    assert code == 0
    return out


def test_demo_writes_every_artifact(toy_demo, capsys):
    paths = DemoPaths(toy_demo)
    for path in (paths.keras, paths.onnx, paths.int8, paths.cpu_engine, paths.drive, paths.commands, paths.report,
                 paths.out / "bench.json", paths.sim_dir / "sim.json", paths.out / "latency.png"):
        assert path.is_file() and path.stat().st_size > 0, path
    capture = cv2.VideoCapture(str(paths.drive))
    assert 0 < int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) <= 12  # the output stage may drop frames under load
    capture.release()
    *commands, final = [json.loads(line) for line in paths.commands.read_text().splitlines()]
    assert final["kind"] == "final" and final["stop"] and final["reason"] == "max frames reached"
    commands = [c for c in commands if c["kind"] == "frame"]  # (stale stops if a frame took > 0.5 s)
    assert len(commands) == 12 and all(-1 <= c["steering"] <= 1 and 0 <= c["throttle"] <= 1 for c in commands)

    verify = json.loads(paths.record("verify").read_text())["engines"][0]
    # INT8 against float on held-out frames (measured at toy scale: agreement 1.000, drop 0.0 pp)
    assert verify["agreement"] >= 0.95 and verify["engine"].endswith("model.int8.cpu.onnx")
    assert abs(verify["miou_drop_pp"]) <= 5.0
    bench = json.loads(paths.record("bench").read_text())
    assert {(row["backend"], row["precision"]) for row in bench["rows"]} >= {
        ("keras", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    sim = json.loads(paths.record("sim").read_text())
    assert [mode["mode"] for mode in sim["summary"]] == ["safe", "adventurous"]

    page = paths.report.read_text()
    assert "data:image/png;base64," in page and "Closed-loop simulator" in page and "drive.mp4" in page


def test_demo_rerun_reuses_everything_then_redoes_downstream_of_a_change(toy_demo, capsys):
    capsys.readouterr()
    assert main(["demo", "--out", str(toy_demo), *TOY_ARGS]) == 0
    out = capsys.readouterr().out
    assert out.count("up to date, reusing it") >= 10
    assert "training" in out and "simulator safe" in out  # the summary table

    paths = DemoPaths(toy_demo)
    later = time.time() + 5
    os.utime(paths.record("build"), (later, later))  # as if the engine had just been rebuilt
    assert main(["demo", "--out", str(toy_demo), *TOY_ARGS]) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "train: up to date" in out and "export: up to date" in out
    for stage in ("verify", "bench", "sim", "stream", "report"):
        assert f"{stage}: done in" in out, stage


def test_stage_is_stale_when_an_input_is_newer_or_an_output_is_gone(tmp_path):
    record, upstream, output = tmp_path / "b.json", tmp_path / "a.json", tmp_path / "engine.onnx"
    upstream.write_text("{}")
    output.write_text("x")
    record.write_text(json.dumps({"outputs": [str(output)]}))
    assert _up_to_date(record, [upstream])
    os.utime(upstream, (time.time() + 5, time.time() + 5))
    assert not _up_to_date(record, [upstream])
    os.utime(upstream, (time.time() - 50, time.time() - 50))
    output.unlink()
    assert not _up_to_date(record, [upstream])
    assert not _up_to_date(tmp_path / "missing.json", [])


def test_report_from_records_alone(tmp_path):
    records = {
        "verify": {"frames": 10, "engines": [{"engine": "m.int8.cpu.onnx", "float_mean_iou": 0.9, "engine_mean_iou": 0.899,
                                              "miou_drop_pp": 0.1, "agreement": 0.997, "per_class_delta_pp": {"floor": -0.1},
                                              "pictures": []}]},
        "bench": {"rows": [{"model": "m.onnx", "backend": "onnxruntime", "precision": "fp32", "p50_ms": 8.0, "p95_ms": 9.0},
                           {"model": "m.int8.cpu.onnx", "backend": "onnxruntime", "precision": "int8", "p50_ms": 4.0,
                            "p95_ms": 5.0}]},
        "sim": {"episodes": 2, "seconds_per_episode": 5, "pictures": {}, "summary": [
            {"mode": "safe", "episodes": 2, "collisions": 0, "distance_per_minute_m": 12.0, "mean_speed_mps": 0.3,
             "min_clearance_m": 0.2, "stopped_fraction": 0.1}]},
    }
    text = summary_table(records)
    assert "drop 0.10 pp" in text and "2.00x faster than FP32" in text and "0 collisions in 2 episodes" in text
    page = render_html(records, tmp_path)
    assert "99.70%" in page and "<h2>Latency" in page and "<figure>" not in page  # no pictures: none embedded
