"""Soak test of `edgeseg stream`: does anything grow per frame? RSS growth and throughput over a long run.

Runs the full pipeline (synthetic source -> tiny ONNX model -> navigator -> a recording, command
lines, per-frame telemetry lines and the HTTP server; no frame folder, which would only fill the
disk) for `--frames` frames and samples the process RSS (psutil) twice a second. Growth is
measured from the end of a warm-up (`--warmup`, default the first fifth of the frames: ONNX
Runtime's arena, the allocator and the fixed latency rings settle first) to the end of the run,
both end to end and as a least-squares slope.

    .venv/bin/python benchmarks/stream_soak.py [--frames 10000] [--size 160x120] [--live]

`--live` runs the synthetic source in real time at 1000 fps, so the drop path (newest frame wins)
is exercised too. Prints a table and writes benchmarks/results/stream_soak.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import print_table, write_json  # noqa: E402

from edgeseg.nav import Navigator  # noqa: E402
from edgeseg.runtime import Segmenter  # noqa: E402
from edgeseg.spec import ModelSpec  # noqa: E402
from edgeseg.stream import (  # noqa: E402
    CommandSink,
    PipelineConfig,
    RecordingSink,
    StreamPipeline,
    StreamServer,
    Telemetry,
    open_source,
)


def tiny_model(path: Path) -> ModelSpec:
    """A 2-layer conv net on 32x32 NCHW input, 4 classes, written with onnx.helper (no TensorFlow)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.onnxmeta import write_spec_metadata

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w1"], ["h"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 32, 32])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(class_names=("floor", "obstacle", "wall", "background"), input_height=32, input_width=32,
                     layout="NCHW", scale=1 / 255, traversable=("floor",), model="soak-tiny")
    onnx.save(write_spec_metadata(model, spec), str(path))
    return spec


def main() -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, help="frames before growth is measured (default: a fifth of --frames)")
    parser.add_argument("--size", default="160x120", help="synthetic frame size WxH")
    parser.add_argument("--live", action="store_true", help="real-time source at 1000 fps (drops frames)")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = args.frames // 5

    process = psutil.Process()
    samples: list[tuple[float, int, float]] = []  # (seconds, frames processed, RSS MiB)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tiny_model(tmp / "tiny.onnx")
        telemetry = Telemetry(tmp / "telemetry.jsonl")
        uri = f"synthetic://?seed=0&size={args.size}" + ("&fps=1000" if args.live else "&realtime=0")
        with open_source(uri) as source, Segmenter.open(tmp / "tiny.onnx", threads=1) as segmenter:
            sinks = [CommandSink(str(tmp / "commands.jsonl")), RecordingSink(tmp / "soak.avi", fps=30),
                     StreamServer(":0", telemetry)]
            pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec, "balanced"), sinks,
                                      PipelineConfig(max_frames=args.frames), telemetry)
            started = time.perf_counter()

            def sample() -> None:
                processed = telemetry.counters["processed"]
                samples.append((time.perf_counter() - started, processed, process.memory_info().rss / 2**20))
                print(f"\r{processed} frames, RSS {samples[-1][2]:.1f} MiB", end="", file=sys.stderr, flush=True)

            summary = pipeline.run(tick=sample, tick_interval_s=0.5)
            rss_after_close = process.memory_info().rss / 2**20
            print(file=sys.stderr)
        recording_mb = (tmp / "soak.avi").stat().st_size / 2**20

    import numpy as np

    elapsed = summary.elapsed_s
    after_warmup = next((s for s in samples if s[1] >= args.warmup), samples[0])
    end = samples[-1]  # the last sample while the pipeline ran
    growth = end[2] - after_warmup[2]
    frames_measured = max(1, end[1] - after_warmup[1])
    peak = max(s[2] for s in samples)
    warm = [s for s in samples if s[1] >= args.warmup]
    slope = 0.0  # least-squares RSS growth per frame after the warm-up, robust to one noisy sample
    if len(warm) >= 3 and warm[-1][1] > warm[0][1]:
        slope = float(np.polyfit([s[1] for s in warm], [s[2] for s in warm], 1)[0])
    snapshot = telemetry.snapshot()
    latency = snapshot["latency_ms"]
    row = {
        "frames": summary.processed,
        "seconds": elapsed,
        "fps": summary.processed / elapsed,
        "rss_warm_MiB": after_warmup[2],
        "rss_end_MiB": end[2],
        "rss_peak_MiB": peak,
        "growth_MiB": growth,
        "growth_KiB_per_1k_frames": growth * 1024 / frames_measured * 1000,
        "fit_KiB_per_1k_frames": slope * 1024 * 1000,
        "rss_after_close_MiB": rss_after_close,
        "dropped": summary.dropped,
        "c2c_p50_ms": latency["capture_to_command"]["p50"],
        "c2c_p99_ms": latency["capture_to_command"]["p99"],
    }
    print(summary.table)
    print()
    print_table([row], list(row))
    print(f"recording {recording_mb:.1f} MiB; source {uri}")
    write_json("stream_soak" + ("_live" if args.live else ""), {
        "args": vars(args), "result": row, "rss_samples": samples[:: max(1, len(samples) // 200)],
        "latency_ms": latency, "counters": snapshot["counters"],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
