"""The main job: the whole edgeseg path on the built-in synthetic world, one stage after another.

    from edgeseg.demo import DemoConfig, run_demo
    summary = run_demo(DemoConfig(out="demo"))

Stages (each prints the `edgeseg` command that does the same by hand):

    train -> evaluate -> export -> calibrate -> build -> [tensorrt] -> verify -> bench -> sim -> stream -> report

Every stage writes its outputs atomically and a JSON record under `OUT/records/`; a stage is
skipped when its record is newer than everything it reads (make-style), so re-running the demo
reuses what is built, and retraining the model redoes everything downstream. `fresh=True` starts
over. The TensorRT stage runs only where TensorRT and a GPU are present.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeseg.errors import EdgesegError
from edgeseg.fileio import atomic_write_text

DEMO_MODEL = "deeplabv3plus_mobilenetv2"
DEMO_DATA = "synthetic://?seed=0&n=2000"
DEMO_MODES = ("safe", "adventurous")
DEMO_STREAM_SOURCE = "synthetic://?seed=7&size=320x240&fps=30"

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    """What `edgeseg demo` runs.

    Attributes:
        out: the output folder.
        data: training data (the synthetic world by default; test frames come from other worlds).
        size: model input (height, width).
        time_budget_s: training wall-clock budget.
        eval_frames: held-out frames for the float-vs-INT8 parity check.
        episodes, sim_seconds: simulator episodes per mode and their length.
        stream_frames: frames of the recorded synthetic drive.
        bench_runs: timed runs per model in the latency table.
        fresh: delete the output folder first.
        progress: progress bars (on stderr).
    """

    out: str | Path = "demo"
    data: str = DEMO_DATA
    size: tuple[int, int] = (256, 256)
    time_budget_s: float = 11 * 60.0
    eval_frames: int = 100
    episodes: int = 10
    sim_seconds: float = 45.0
    stream_frames: int = 300
    bench_runs: int = 100
    fresh: bool = False
    progress: bool = True


class DemoPaths:
    """Where each stage writes, in one place (the report and the README refer to these names)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.run = self.out / "model"
        self.keras = self.run / "model.keras"
        self.eval_dir = self.out / "eval"
        self.onnx = self.out / "model.onnx"
        self.int8 = self.out / "model.int8.onnx"
        self.cpu_engine = self.out / "model.int8.cpu.onnx"
        self.trt_int8 = self.out / "model.trt-int8.onnx"
        self.trt_engine = self.out / "model.int8.engine"
        self.verify_dir = self.out / "verify"
        self.sim_dir = self.out / "sim"
        self.drive = self.out / "drive.mp4"
        self.commands = self.out / "drive_commands.jsonl"
        self.telemetry = self.out / "drive_telemetry.jsonl"
        self.report = self.out / "report.html"
        self.records = self.out / "records"

    def record(self, stage: str) -> Path:
        return self.records / f"{stage}.json"


@dataclass
class DemoSummary:
    """What the demo did: every stage's record, and the stages it reused."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(config: DemoConfig, log: Log = print) -> DemoSummary:
    """Run every stage that is not up to date; return all records (reused ones too)."""
    paths = DemoPaths(config.out)
    if paths.out.exists() and not paths.out.is_dir():
        raise EdgesegError(f"--out {paths.out} is a file, not a folder; choose a folder for the demo's outputs")
    if config.fresh and paths.out.exists():
        shutil.rmtree(paths.out)
    try:
        paths.records.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EdgesegError(f"cannot create {paths.records}: {err.strerror}; choose a writable --out folder") from None
    summary = DemoSummary()
    started = time.monotonic()
    stages = _stages(config, paths)
    for number, (name, inputs, action) in enumerate(stages, start=1):
        record_path = paths.record(name)
        prefix = f"[{number}/{len(stages)}] {name}"
        if _up_to_date(record_path, [paths.record(i) for i in inputs]):
            summary.records[name] = json.loads(record_path.read_text())
            summary.reused.append(name)
            log(f"{prefix}: up to date, reusing it (--fresh redoes everything)")
            continue
        stage_started = time.monotonic()
        record = action(log=lambda line, p=prefix: log(f"{p}: {line}"))
        record["seconds"] = round(time.monotonic() - stage_started, 1)
        atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
        summary.records[name] = record
        log(f"{prefix}: done in {record['seconds']:.0f} s")
    summary.seconds = time.monotonic() - started
    return summary


def _up_to_date(record: Path, inputs: list[Path]) -> bool:
    """The record and the files it lists under "outputs" exist, and it is newer than its inputs' records."""
    if not record.is_file():
        return False
    outputs = json.loads(record.read_text()).get("outputs", [])
    if not all(Path(output).exists() for output in outputs):
        return False
    mtime = record.stat().st_mtime
    return all(i.is_file() and i.stat().st_mtime <= mtime for i in inputs)


def _stages(config: DemoConfig, paths: DemoPaths) -> list[tuple[str, list[str], Callable[..., dict]]]:
    """(name, the stages it reads, the action) in running order."""
    stages: list[tuple[str, list[str], Callable[..., dict]]] = [
        ("train", [], lambda log: _train(config, paths, log)),
        ("evaluate", ["train"], lambda log: _evaluate(config, paths, log)),
        ("export", ["train"], lambda log: _export(paths, log)),
        ("calibrate", ["export"], lambda log: _calibrate(config, paths, log)),
        ("build", ["calibrate"], lambda log: _build(paths, log)),
    ]
    engines = ["build"]
    if _tensorrt_problem() is None:
        stages.append(("tensorrt", ["export"], lambda log: _tensorrt(config, paths, log)))
        engines.append("tensorrt")
    stages += [
        ("verify", engines, lambda log: _verify(config, paths, log)),
        ("bench", engines, lambda log: _bench(config, paths, log)),
        ("sim", ["build"], lambda log: _sim(config, paths, log)),
        ("stream", ["build"], lambda log: _stream(config, paths, log)),
    ]
    everything = [name for name, _, _ in stages]
    stages.append(("report", everything, lambda log: _report(paths, log)))
    return stages


def _tensorrt_problem() -> str | None:
    """None where TensorRT and a GPU are usable, else why not."""
    from edgeseg.engine import probe_environment

    env = probe_environment()
    if env.tensorrt_problem:
        return env.tensorrt_problem
    return env.gpu_problem or None


def _same_as(log: Log, command: str) -> None:
    log(f"same as: {command}")


# --- the stages --------------------------------------------------------------------------------


def _train(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.train.fit import TrainConfig, train

    height, width = config.size
    minutes = config.time_budget_s / 60
    _same_as(log, f"edgeseg train --model {DEMO_MODEL} --data '{config.data}' --size {height}x{width} "
                  f"--time-budget {minutes:g}m --out {paths.run}")
    if paths.run.exists():
        shutil.rmtree(paths.run)  # an interrupted demo: start its training again
    result = train(TrainConfig(
        model=DEMO_MODEL, data=config.data, out=str(paths.run), size=config.size, epochs=100, batch=8,
        learning_rate=2e-3, steps_per_epoch=100, time_budget_s=config.time_budget_s, patience=100,
    ))
    log(f"{result.epochs_run} epochs in {result.seconds:.0f} s, best {result.monitor} {result.best_metric:.3f}")
    return {"model": DEMO_MODEL, "data": config.data, "size": list(config.size), "epochs": result.epochs_run,
            "train_seconds": round(result.seconds, 1), "monitor": result.monitor,
            "best": round(float(result.best_metric), 4),
            "curves": str(paths.run / "curves.png"), "samples": str(paths.run / "samples.png"),
            "outputs": [str(paths.keras)]}


def _evaluate(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.train.evaluate import evaluate

    json_path = paths.out / "eval.json"
    _same_as(log, f"edgeseg evaluate {paths.run} --data '{config.data}' --subset test --out {paths.eval_dir}")
    report = evaluate(paths.run, config.data, subset="test", out_dir=paths.eval_dir, json_path=json_path,
                      progress=config.progress)
    log("scores on the test split of unseen worlds:\n" + report.table)
    return {"json": str(json_path), "outputs": [str(json_path)], "images": report.images, "mean_iou": report.scores.mean_iou,
            "pictures": dict(report.pictures)}


def _export(paths: DemoPaths, log: Log) -> dict:
    from edgeseg.export import export_onnx

    _same_as(log, f"edgeseg export {paths.run} -o {paths.onnx}")
    report = export_onnx(paths.run, paths.onnx)
    log(f"ONNX Runtime vs Keras: max |diff| {report.max_abs_diff:.2g}, argmax agreement {report.argmax_agreement:.2%}")
    return {"outputs": [str(paths.onnx)], "max_abs_diff": report.max_abs_diff,
            "argmax_agreement": report.argmax_agreement, "opset": report.opset}


def _calibrate(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.calib import DatasetImages, calibrate

    _same_as(log, f"edgeseg calibrate {paths.onnx} --data '{config.data}' --target cpu -o {paths.int8}")
    report = calibrate(paths.onnx, DatasetImages(config.data, subset="train"), target="cpu",
                       output=paths.int8, progress=config.progress)
    log(f"{report.layout}; {report.frames} frames")
    return {"outputs": [str(paths.int8)], "format": report.format, "layout": report.layout,
            "method": report.method, "frames": report.frames, "latency_ms": report.latency_ms}


def _build(paths: DemoPaths, log: Log) -> dict:
    from edgeseg.engine import BuildOptions, build_engine

    _same_as(log, f"edgeseg build-engine {paths.int8} --int8 --backend onnxruntime -o {paths.cpu_engine}")
    report = build_engine(BuildOptions(paths.int8, output=paths.cpu_engine, backend="onnxruntime", int8=True), log=log)
    return {"engine": str(report.output), "outputs": [str(report.output), str(report.manifest_path)],
            "backend": report.choice.name, "precision": report.manifest.precision,
            "megabytes": round(report.manifest.engine_bytes / 1e6, 2)}


def _tensorrt(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    """Only where TensorRT and a GPU are present: symmetric Q/DQ calibration, then the engine."""
    from edgeseg.calib import DatasetImages, calibrate
    from edgeseg.engine import BuildOptions, build_engine

    _same_as(log, f"edgeseg calibrate {paths.onnx} --data '{config.data}' --target tensorrt -o {paths.trt_int8}")
    calibrate(paths.onnx, DatasetImages(config.data, subset="train"), target="tensorrt", output=paths.trt_int8,
              progress=config.progress)
    _same_as(log, f"edgeseg build-engine {paths.trt_int8} --int8 --fp16 --backend tensorrt -o {paths.trt_engine}")
    report = build_engine(BuildOptions(paths.trt_int8, output=paths.trt_engine, backend="tensorrt",
                                       int8=True, fp16=True), log=log)
    return {"engine": str(report.output), "outputs": [str(report.output)], "backend": report.choice.name,
            "precision": report.manifest.precision}


def _engines(paths: DemoPaths) -> list[Path]:
    """The INT8 engines built so far: the CPU one, and the TensorRT one where it was built."""
    return [paths.cpu_engine] + ([paths.trt_engine] if paths.record("tensorrt").is_file() else [])


def _verify(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.verify import verify

    results = []
    for engine in _engines(paths):
        out_dir = paths.verify_dir / engine.name
        _same_as(log, f"edgeseg verify {paths.onnx} {engine} --data '{config.data}' --subset test "
                      f"--max-frames {config.eval_frames} --json {out_dir}/verify.json")
        report = verify(paths.onnx, engine, config.data, subset="test", max_frames=config.eval_frames,
                        out_dir=out_dir, json_path=out_dir / "verify.json", progress=config.progress)
        log("float against the engine on the same frames:\n" + report.table())
        results.append({"engine": str(engine), "json": str(out_dir / "verify.json"),
                        "float_mean_iou": report.float_scores.mean_iou,
                        "engine_mean_iou": report.engine_scores.mean_iou,
                        "miou_drop_pp": report.miou_drop_pp, "agreement": report.agreement,
                        "per_class_delta_pp": report.per_class_delta, "pictures": list(report.pictures)})
    return {"frames": config.eval_frames, "engines": results, "outputs": [r["json"] for r in results]}


def _bench(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.bench import bench
    from edgeseg.report import latency_picture

    models = [paths.keras, paths.onnx, *_engines(paths)]
    json_path = paths.out / "bench.json"
    _same_as(log, f"edgeseg bench {' '.join(str(m) for m in models)} --runs {config.bench_runs} --json {json_path}")
    report = bench([str(m) for m in models], runs=config.bench_runs, json_path=json_path, progress=config.progress)
    log("batch-1 latency, each model alone in a fresh process:\n" + report.table())
    rows = [{"model": r.model, "backend": r.backend, "precision": r.precision, "p50_ms": r.latency_p50_ms,
             "p95_ms": r.latency_p95_ms, "fps": r.fps, "peak_mib": r.peak_rss_mib} for r in report.rows]
    record = {"json": str(json_path), "rows": rows, "machine": report.machine, "outputs": [str(json_path)]}
    record["picture"] = str(latency_picture(rows, paths.out / "latency.png"))
    return record


def _sim(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.nav.sim import SimConfig
    from edgeseg.nav.simrun import SimRunOptions, run_sim

    json_path = paths.sim_dir / "sim.json"
    picture = paths.sim_dir / "trajectories.png"
    options = SimRunOptions(
        model=paths.cpu_engine, modes=DEMO_MODES, config=SimConfig(episodes=config.episodes,
                                                                   max_seconds=config.sim_seconds),
        json=json_path, picture=picture, progress=config.progress)
    _same_as(log, "edgeseg " + shlex.join(options.to_argv()))
    result = run_sim(options, log=log)
    log("per mode, the same worlds from the same starts:\n" + result.table)
    pictures = {mode: str(path) for mode, path in result.pictures.items()}
    return {"json": str(json_path), "outputs": [str(json_path)], "summary": result.to_dict()["summary"],
            "pictures": pictures, "episodes": config.episodes, "seconds_per_episode": config.sim_seconds}


def _stream(config: DemoConfig, paths: DemoPaths, log: Log) -> dict:
    from edgeseg.stream import StreamOptions, run

    options = StreamOptions(
        source=DEMO_STREAM_SOURCE, model=paths.cpu_engine, mode="safe", max_frames=config.stream_frames,
        record=str(paths.drive), commands=(str(paths.commands),), telemetry=str(paths.telemetry), view="overlay",
        status=None if config.progress else False)
    _same_as(log, "edgeseg " + shlex.join(options.to_argv()))
    summary = run(options, log=log)
    lines = paths.commands.read_text().splitlines()
    frames = sum(json.loads(line)["kind"] == "frame" for line in lines)  # one per frame, then stop lines
    return {"video": str(paths.drive), "commands": str(paths.commands), "telemetry": str(paths.telemetry),
            "frames": frames, "processed": summary.processed, "source": DEMO_STREAM_SOURCE,
            "still": _still(paths.drive, paths.out / "drive_still.jpg"), "outputs": [str(paths.drive)]}


def _still(video: Path, path: Path) -> str | None:
    """The middle frame of the recording, for the report."""
    import cv2

    from edgeseg.fileio import atomic_path

    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) // 2)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        return None
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), frame)
    return str(path)


def _report(paths: DemoPaths, log: Log) -> dict:
    from edgeseg.report import write_report

    records = {p.stem: json.loads(p.read_text()) for p in sorted(paths.records.glob("*.json")) if p.stem != "report"}
    write_report(paths.report, records, base=paths.out)
    log(f"wrote {paths.report}")
    return {"report": str(paths.report), "outputs": [str(paths.report)]}

