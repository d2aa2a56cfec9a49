"""What `edgeseg stream` costs on top of the model: throughput, capture-to-command latency, memory.

    .venv/bin/python benchmarks/stream_pipeline.py --model nav.int8.cpu.onnx [--frames 5000]
        [--rounds 3] [--block-frames 1000] [--camera-frames 300] [--model-frames 300]
        [--modes full read-ahead replay camera] [--threads 1]

The model is the INT8 CPU engine of the 256x256 navigation model; make one from the synthetic run:

    edgeseg export runs/bench-synthetic -o nav.onnx
    edgeseg calibrate nav.onnx --data "synthetic://?seed=0&n=2000" --target cpu -o nav.int8.onnx
    edgeseg build-engine nav.int8.onnx --int8 -o nav.int8.cpu.onnx

Both sides run on one opened `Segmenter`, in alternating blocks (model only, pipeline, model
only, pipeline, ..., model only), and each pipeline block is compared with the mean of the
model-only blocks just before and after it, so background load on a shared machine hits both
alike; the ratios are the median over the blocks of a mode:

- model only: `Segmenter.seg` in a loop over a pool of frames pre-rendered from the synthetic
  source (its first `--pool` frames): throughput, latency p50 (the whole `seg` call: preprocess,
  inference, postprocess) and the inference p50 alone;
- the pipeline: source -> segmenter -> navigator ("balanced") -> commands to a file:
  throughput, capture-to-command latency (each command line's `latency_ms`: from the moment the
  source delivered the frame to the moment its command was written; the first 50 frames left
  out), the telemetry's stage p50s (the last 2048 frames; handoff = segmented -> the navigation
  thread took it), dropped frames, and RSS growth after a warm-up (`--warmup`, default a fifth of
  the run; psutil, sampled twice a second).

First one long run of `--frames` frames in `--memory-mode` (the memory target), then `--rounds`
rounds of short blocks (`--block-frames`) of every mode, the order reversed every other round.

"Full speed" means the source is never paced by a clock: a frame is read whenever the pipeline
may read one. The pipeline modes (`--modes`):

- `full`: `synthetic://?size=256x256&realtime=0`, the pipeline as `edgeseg stream` runs it: every
  frame processed, each frame read (rendered) just in time for inference;
- `read-ahead`: the same with `PipelineConfig(pace_reads=False)` (`edgeseg stream --read-ahead`):
  the next frame rendered while the current one is inferred, so it waits in the slot;
- `replay`: the pool's frames from memory (a source that costs no CPU, like a camera whose
  frames arrive by DMA; the synthetic renderer costs about half as much CPU as the INT8 model and
  runs beside it, which a robot's camera does not): the pipeline's own overhead;
- `camera`: `synthetic://?size=256x256&fps=30` in real time, newest frame wins (`--camera-frames`
  frames): what the robot sees with a 30 fps camera; its throughput is the camera's, so only the
  latency ratio applies.

The issue's targets: pipeline throughput / model-only throughput >= 0.90, capture-to-command
p50 / model latency p50 <= 1.15, RSS growth over the long run < 20 MB.
Prints a table and writes benchmarks/results/stream_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _table import print_table, write_json  # noqa: E402

from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.nav import Navigator  # noqa: E402
from edgeseg.runtime import Segmenter  # noqa: E402
from edgeseg.stream import (  # noqa: E402
    CommandSink,
    PipelineConfig,
    Read,
    Source,
    StreamPipeline,
    Telemetry,
    open_source,
)

DEMO_ENGINE = REPO / "demo" / "model.int8.cpu.onnx"
SKIP_FIRST = 50  # frames left out of the latency percentiles (sessions and caches settle)
TARGETS = {"throughput_ratio": 0.90, "c2c_ratio": 1.15, "growth_MB": 20.0}


@dataclass(frozen=True)
class Mode:
    """One way of feeding the pipeline."""

    what: str
    source: str  # "synthetic" (the renderer at full speed), "replay" (the pool) or "camera" (30 fps)
    pace_reads: bool = True


MODES = {
    "full": Mode("synthetic renderer, full speed, reads just in time (the default)", "synthetic"),
    "read-ahead": Mode("synthetic renderer, full speed, next frame read ahead", "synthetic", pace_reads=False),
    "replay": Mode("pre-rendered frames from memory, reads just in time", "replay"),
    "camera": Mode("synthetic renderer at 30 fps, live, newest frame wins", "camera"),
}


class ReplaySource(Source):
    """Pre-rendered frames from memory, in a loop; not live (every frame waits to be read).

    Reading costs no CPU, unlike the synthetic renderer: like a camera whose frames arrive by DMA.
    """

    def __init__(self, frames: list[np.ndarray]) -> None:
        super().__init__(f"replay://{len(frames)}-frames", fps=30.0)
        self._pool = frames

    def _read(self, timeout: float | None) -> Read:
        return self._deliver(self._pool[self.stats.frames % len(self._pool)])


def find_model(path: str | None) -> Path:
    """The --model engine, else the demo's engine; a clear error saying how to make one."""
    if path:
        model = Path(path).expanduser()
        if not model.is_file():
            raise EdgesegError(f"--model {model} does not exist")
        return model
    if DEMO_ENGINE.is_file():
        return DEMO_ENGINE
    raise EdgesegError(
        "give the INT8 CPU engine of the navigation model with --model; make one with\n"
        "  edgeseg export runs/bench-synthetic -o /tmp/nav.onnx\n"
        '  edgeseg calibrate /tmp/nav.onnx --data "synthetic://?seed=0&n=2000" --target cpu -o /tmp/nav.int8.onnx\n'
        "  edgeseg build-engine /tmp/nav.int8.onnx --int8 -o /tmp/nav.int8.cpu.onnx"
    )


def render_pool(uri: str, count: int) -> list[np.ndarray]:
    """The source's first `count` frames, rendered once, for the model-only loop and the replay."""
    with open_source(uri) as source:
        return [source.read().frame for _ in range(count)]


def model_block(segmenter: Segmenter, pool: list[np.ndarray], frames: int) -> dict:
    """`seg` on pre-rendered frames in a loop: throughput and latency percentiles."""
    seg_s, infer_s = [], []
    started = time.perf_counter()
    for i in range(frames):
        begin = time.perf_counter()
        result = segmenter.seg(pool[i % len(pool)])
        seg_s.append(time.perf_counter() - begin)
        infer_s.append(result.timings["infer"])
    elapsed = time.perf_counter() - started
    return {"frames": frames, "seconds": elapsed, "fps": frames / elapsed,
            "seg_p50_ms": 1000 * float(np.median(seg_s)), "infer_p50_ms": 1000 * float(np.median(infer_s))}


def pipeline_block(segmenter: Segmenter, source: Source, mode: Mode, frames: int, warmup: int,
                   folder: Path) -> dict:
    """The full pipeline for `frames` frames: throughput, capture-to-command latency, RSS growth."""
    import psutil

    process = psutil.Process()
    commands = folder / "commands.jsonl"
    samples: list[tuple[float, int, float]] = []  # (seconds, frames processed, RSS MiB)
    telemetry = Telemetry()
    pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec, "balanced"),
                              [CommandSink(str(commands))],
                              PipelineConfig(max_frames=frames, pace_reads=mode.pace_reads), telemetry)
    started = time.perf_counter()

    def sample() -> None:
        processed = telemetry.counters["processed"]
        samples.append((time.perf_counter() - started, processed, process.memory_info().rss / 2**20))
        print(f"\r  {processed} frames, RSS {samples[-1][2]:.1f} MiB", end="", file=sys.stderr, flush=True)

    summary = pipeline.run(tick=sample, tick_interval_s=0.5)
    elapsed = time.perf_counter() - started
    print(file=sys.stderr)
    records = [json.loads(line) for line in commands.read_text().splitlines()]
    latency = np.array([r["latency_ms"] for r in records[SKIP_FIRST:]])
    stages = telemetry.snapshot()["latency_ms"]  # the last 2048 frames
    warm = [s for s in samples if s[1] >= warmup] or samples[-1:]
    slope = 0.0  # least-squares RSS growth per frame after the warm-up, robust to one noisy sample
    if len(warm) >= 3 and warm[-1][1] > warm[0][1]:
        slope = float(np.polyfit([s[1] for s in warm], [s[2] for s in warm], 1)[0])
    return {
        "source": source.uri, "pace_reads": mode.pace_reads, "drop_stale": pipeline.drop_stale,
        "frames": summary.processed, "seconds": elapsed, "fps": summary.processed / elapsed,
        "captured": summary.counters["captured"], "dropped": summary.dropped, "commands": len(records),
        "c2c_p50_ms": float(np.percentile(latency, 50)), "c2c_p95_ms": float(np.percentile(latency, 95)),
        "c2c_p99_ms": float(np.percentile(latency, 99)),
        "stage_p50_ms": {stage: stats["p50"] for stage, stats in stages.items()},
        "rss_warm_MiB": warm[0][2], "rss_end_MiB": warm[-1][2],
        "growth_MB": (warm[-1][2] - warm[0][2]) * 2**20 / 1e6, "fit_KiB_per_1k_frames": slope * 1024 * 1000,
        "rss_samples": samples[:: max(1, len(samples) // 100)],
    }


def open_mode_source(mode: Mode, size: str, pool: list[np.ndarray]) -> Source:
    if mode.source == "replay":
        return ReplaySource(pool)
    if mode.source == "camera":
        return open_source(f"synthetic://?seed=0&size={size}&fps=30")
    return open_source(f"synthetic://?seed=0&size={size}&realtime=0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=f"INT8 CPU engine (.onnx); default {DEMO_ENGINE.relative_to(REPO)}")
    parser.add_argument("--frames", type=int, default=5000, help="frames of the long (memory) pipeline run")
    parser.add_argument("--memory-mode", choices=list(MODES), default="full", help="mode of the long run")
    parser.add_argument("--block-frames", type=int, default=1000, help="frames per short pipeline block")
    parser.add_argument("--camera-frames", type=int, default=300, help="frames per 30 fps camera block")
    parser.add_argument("--model-frames", type=int, default=300, help="frames per model-only block")
    parser.add_argument("--rounds", type=int, default=3, help="short blocks of every mode (ratios: the median)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="pipeline modes")
    parser.add_argument("--pool", type=int, default=200, help="pre-rendered frames (model only, replay)")
    parser.add_argument("--warmup", type=int, help="frames of a run before RSS growth is measured (default: a fifth)")
    parser.add_argument("--size", default="256x256", help="synthetic frame size WxH")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads (default 1: the capture thread needs the other core)")
    args = parser.parse_args()
    try:
        model = find_model(args.model)
    except EdgesegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    schedule = [("long", args.memory_mode, args.frames)] if args.frames else []
    for round_ in range(1, args.rounds + 1):
        for name in args.modes if round_ % 2 else args.modes[::-1]:  # alternate the order between rounds
            schedule.append((str(round_), name, args.camera_frames if MODES[name].source == "camera"
                             else args.block_frames))
    pool = render_pool(f"synthetic://?seed=0&size={args.size}&realtime=0", args.pool)
    model_blocks: list[dict] = []
    runs: list[dict] = []  # one per pipeline block, in the order run
    with Segmenter.open(model, threads=args.threads) as segmenter, tempfile.TemporaryDirectory() as tmp:
        model_block(segmenter, pool, min(100, args.model_frames))  # warm-up
        model_blocks.append(model_block(segmenter, pool, args.model_frames))
        for label, name, frames in schedule:
            mode = MODES[name]
            warmup = args.warmup if args.warmup is not None else frames // 5
            print(f"pipeline {name} ({label}): {mode.what}, {frames} frames", file=sys.stderr)
            with open_mode_source(mode, args.size, pool) as source:
                block = pipeline_block(segmenter, source, mode, frames, warmup, Path(tmp))
            model_blocks.append(model_block(segmenter, pool, args.model_frames))
            around = model_blocks[-2:]  # the model-only blocks before and after it
            model_fps = float(np.mean([b["fps"] for b in around]))
            model_p50 = float(np.mean([b["seg_p50_ms"] for b in around]))
            block.update(mode=name, block=label, model_fps=model_fps, model_latency_p50_ms=model_p50,
                         throughput_ratio=None if mode.source == "camera" else block["fps"] / model_fps,
                         c2c_ratio=block["c2c_p50_ms"] / model_p50)
            runs.append(block)

    def model_row(block: dict) -> dict:
        return {"run": "model only", "frames": block["frames"], "fps": block["fps"],
                "latency_p50_ms": block["seg_p50_ms"], "infer_p50_ms": block["infer_p50_ms"]}

    rows = [model_row(model_blocks[0])]  # in the order run: model only, pipeline, model only, ...
    for block, after in zip(runs, model_blocks[1:]):
        stages = block["stage_p50_ms"]
        rows.append({"run": f"pipeline {block['mode']} ({block['block']})", "frames": block["frames"],
                     "fps": block["fps"], "latency_p50_ms": block["c2c_p50_ms"], "c2c_p95_ms": block["c2c_p95_ms"],
                     "queue_p50_ms": stages.get("queue"), "infer_p50_ms": stages.get("infer"),
                     "handoff_p50_ms": stages.get("handoff"), "nav_p50_ms": stages.get("nav"), "capture_p50_ms": stages.get("capture"),
                     "dropped": block["dropped"], "growth_MB": block["growth_MB"],
                     "fps_ratio": block["throughput_ratio"], "c2c_ratio": block["c2c_ratio"]})
        rows.append(model_row(after))
    print()
    print_table(rows, ["run", "frames", "fps", "latency_p50_ms", "c2c_p95_ms", "queue_p50_ms", "infer_p50_ms",
                       "handoff_p50_ms", "nav_p50_ms", "capture_p50_ms", "dropped", "growth_MB", "fps_ratio", "c2c_ratio"])
    print("latency_p50_ms: model only = the seg call; pipeline = capture to command (queue + seg + handoff + nav + send);\n"
          "queue = frame delivered -> inference took it; capture = inside source.read() (camera: includes the wait);\n"
          "ratios against the mean of the model-only blocks before and after")
    print()

    ratios = {}
    for name in args.modes:
        blocks = [b for b in runs if b["mode"] == name]
        throughput = [b["throughput_ratio"] for b in blocks if b["throughput_ratio"] is not None]
        ratios[name] = {
            "throughput_ratio": float(np.median(throughput)) if throughput else None,
            "c2c_ratio": float(np.median([b["c2c_ratio"] for b in blocks])),
            "blocks": len(blocks),
        }
    long_runs = [b for b in runs if b["block"] == "long"]
    memory = {k: long_runs[0][k] for k in ("mode", "frames", "rss_warm_MiB", "rss_end_MiB", "growth_MB",
                                          "fit_KiB_per_1k_frames")} if long_runs else None

    def met(ratio: dict) -> str:
        ok = ratio["c2c_ratio"] <= TARGETS["c2c_ratio"]
        if ratio["throughput_ratio"] is not None:
            ok = ok and ratio["throughput_ratio"] >= TARGETS["throughput_ratio"]
        return "yes" if ok else "no"

    print("ratios: the median over the blocks of each mode")
    print_table([{"mode": name, "source": MODES[name].what, **r, "targets met": met(r)}
                 for name, r in ratios.items()],
                ["mode", "source", "blocks", "throughput_ratio", "c2c_ratio", "targets met"])
    print(f"targets: throughput ratio >= {TARGETS['throughput_ratio']}, capture-to-command p50 / model p50 <= "
          f"{TARGETS['c2c_ratio']}; model {model}, {args.threads} inference thread(s)")
    if memory:
        ok = "met" if memory["growth_MB"] < TARGETS["growth_MB"] else "NOT met"
        print(f"memory: {memory['frames']} frames of {memory['mode']}: RSS {memory['rss_warm_MiB']:.1f} MiB after "
              f"the warm-up -> {memory['rss_end_MiB']:.1f} MiB, growth {memory['growth_MB']:.2f} MB "
              f"(fit {memory['fit_KiB_per_1k_frames']:.1f} KiB per 1000 frames); target < "
              f"{TARGETS['growth_MB']:g} MB {ok}")
    write_json("stream_pipeline", {"args": vars(args), "model": str(model), "targets": TARGETS,
                                   "modes": {name: MODES[name].what for name in args.modes},
                                   "ratios": ratios, "memory": memory, "model_only": model_blocks,
                                   "pipeline": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
