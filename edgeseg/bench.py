"""Speed, memory and accuracy of models and engines, side by side: what `edgeseg bench` prints.

    from edgeseg.bench import bench
    report = bench(["model.onnx", "model.int8.onnx", "runs/road"], data="synthetic://", runs=100)
    print(report.table())          # markdown, as the docs' performance tables are made
    report.to_dict()               # machine, settings and one row per model, JSON-ready

Each model runs alone in a fresh child process (`python -m edgeseg.bench --worker JOB RESULT`),
one after the other. That keeps two things honest: peak memory belongs to that model alone, and
no other model's ONNX Runtime thread pool is still spinning while it is timed (interleaving
sessions run by run made them fight over the cores and inflated every time 4-5x; see
benchmarks/int8_cpu.py).

What is measured, in this order:

1. the parent renders the timing frame at the model's input size: frame 0 of the synthetic world
   (seed 0), or the first scored frame of `data` when given (then the resize to the input size
   counts), and hands it to the worker, so rendering's scratch memory is not the worker's;
2. the worker reads its baseline: its resident memory before loading the model (interpreter,
   numpy, OpenCV, edgeseg, the frame);
3. it opens the model (`load_s`, which includes importing the runtime), runs `warmup` untimed
   `Segmenter.seg(frame)` calls, then `runs` timed ones: end to end, preprocessing + inference
   + class map at frame resolution;
4. it reads its peak RSS. `peak_rss_mib` is the whole process's peak: what a robot needs to
   run this model with edgeseg. `model_mib` is that peak minus the baseline: what the model
   added, i.e. its runtime library (TensorFlow is large, ONNX Runtime small), weights, arenas
   and buffers. GPU memory (CUDA, TensorRT) is not RSS and is not counted;
5. with `data`: the mean IoU over up to `max_frames` frames of the subset at mask resolution,
   through the same Segmenter (after the memory reading, so the frames do not count).

Latency: p50 and p95 of the timed calls in ms, FPS = 1000 / p50, and the inference-stage p50
from the Segmentation timings (the rest is pre- and postprocessing in Python).

Precision: an engine manifest beside the file (`model.engine.json`, `model.cpu.onnx.json`) says
it; else an ONNX graph with quantized operators (QuantizeLinear, QLinearConv, ConvInteger, ...)
is int8, one with float16 initializers fp16, any other fp32; Keras models are fp32.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import edgeseg
from edgeseg.artifact.spec import ModelSpec
from edgeseg.errors import DataError, EdgesegError, EngineError, ModelError, SpecError, check_field_range
from edgeseg.fileio import atomic_write_text

DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10
DEFAULT_MAX_FRAMES = 100
WORKER_FLAG = "--worker"
_ERRORS = {cls.__name__: cls for cls in (EdgesegError, DataError, EngineError, ModelError, SpecError)}
_STDERR_TAIL = 4000  # characters of a crashed worker's stderr kept in the error


@dataclass(frozen=True)
class BenchSettings:
    """How every model is measured.

    Attributes:
        runs: timed `seg` calls per model.
        warmup: untimed calls before them (first-run allocations, lazy initialisation).
        threads: inference threads (ONNX Runtime intra-op, TensorFlow intra-op for Keras);
            None leaves the runtime's default. Not applicable to TensorRT.
        backend: "auto" or a registered backend name.
        data: a `--data` string with masks for the mean IoU, or None for speed only.
        subset, split: which frames of `data` (folders are split with training's fixed seed).
        max_frames: frames scored per model, spread over the subset.
    """

    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None
    backend: str = "auto"
    data: str | None = None
    subset: str = "test"
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_frames: int = DEFAULT_MAX_FRAMES

    def check(self) -> None:
        check_field_range(self, "runs", 1, 1_000_000)
        check_field_range(self, "warmup", 0, 1_000_000)
        check_field_range(self, "max_frames", 1, 1_000_000)
        if self.threads is not None:
            check_field_range(self, "threads", 1, 1024)


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model file before it is opened: found cheaply, in the parent."""

    path: Path
    backend: str  # the registry entry that opens it
    precision: str  # fp32, fp16, int8, int8+fp16, or "unknown"
    spec: ModelSpec | None  # None when only its backend can read it


@dataclass(frozen=True)
class BenchRow:
    """One model's results. Times in milliseconds, memory in MiB (see the module docstring).

    Attributes:
        model: the path as given.
        backend: the backend that ran it; provider: ONNX Runtime's execution provider, short
            ("cpu", "cuda"), else None.
        precision: fp32, fp16, int8, int8+fp16 or "unknown".
        input: the network input size, "HxW".
        threads: the thread count applied, None for the runtime's default or not applicable.
        mean_iou: 0..1 over `frames` frames, None without data (or no labelled pixel).
    """

    model: str
    backend: str
    provider: str | None
    precision: str
    input: str
    threads: int | None
    runs: int
    warmup: int
    latency_p50_ms: float
    latency_p95_ms: float
    fps: float
    infer_p50_ms: float
    load_s: float
    peak_rss_mib: float | None
    model_mib: float | None
    mean_iou: float | None = None
    frames: int = 0

    @property
    def backend_label(self) -> str:
        return f"{self.backend}/{self.provider}" if self.provider else self.backend


@dataclass
class BenchReport:
    """Every model's row, the settings they share and the machine they ran on."""

    rows: list[BenchRow]
    settings: BenchSettings
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. an INT8 model's calibration-time verdict

    def table(self) -> str:
        """A markdown table (pasteable into the docs) under one line of settings."""
        with_iou = self.settings.data is not None
        headers = ["model", "backend", "precision", "input", "p50 ms", "p95 ms", "FPS", "infer p50 ms",
                   "peak RSS MiB", "model MiB"] + (["mIoU %"] if with_iou else [])
        cells = []
        for row in self.rows:
            line = [row.model, row.backend_label, row.precision, row.input, f"{row.latency_p50_ms:.2f}",
                    f"{row.latency_p95_ms:.2f}", f"{row.fps:.1f}", f"{row.infer_p50_ms:.2f}",
                    _mib(row.peak_rss_mib), _mib(row.model_mib)]
            if with_iou:
                line.append("-" if row.mean_iou is None else f"{100 * row.mean_iou:.2f}")
            cells.append(line)
        notes = "".join(f"\n{note}" for note in self.notes)
        return self.caption() + "\n\n" + markdown_table(headers, cells, numeric_from=4) + ("\n" + notes if notes else "")

    def caption(self) -> str:
        s = self.settings
        threads = "runtime default" if s.threads is None else str(s.threads)
        text = (f"{s.runs} timed runs after {s.warmup} warm-up, batch 1, threads: {threads}, "
                f"one fresh process per model")
        if s.data is not None:
            frames = max((row.frames for row in self.rows), default=0)
            text += f"; mIoU on {s.data} [{s.subset}], {frames} frames"
        return text

    def to_dict(self) -> dict[str, Any]:
        settings = dataclasses.asdict(self.settings)
        settings["split"] = list(self.settings.split)
        return {
            "machine": self.machine,
            "settings": settings,
            "results": [dataclasses.asdict(row) for row in self.rows],
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 0) -> str:
    """A markdown table padded to aligned columns; columns from `numeric_from` on align right."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        cells = [v.rjust(w) if i >= numeric_from else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "| " + " | ".join(cells) + " |"

    rule = ["-" * (w + 1) + ":" if i >= numeric_from else "-" * (w + 2) for i, w in enumerate(widths)]
    return "\n".join([line(headers), "|" + "|".join(rule) + "|"] + [line(r) for r in rows])


# --- what the parent knows before running ----------------------------------------------------


def inspect_model(path: str | Path, backend: str = "auto", spec: ModelSpec | None = None) -> ModelInfo:
    """Backend, precision and spec of a model file (from `edgeseg.artifact.describe`), unopened.

    Raises:
        EngineError: no such file, no backend for it, or an unreadable ONNX file or manifest.
    """
    from edgeseg.artifact import describe
    from edgeseg.runtime.backends import select_backend

    path = Path(path)
    if not path.exists():
        raise EngineError(f"no model at {path}; check the path")
    entry = select_backend(path, backend)
    found = describe(path, spec=spec)
    return ModelInfo(path, entry.name, found.precision, found.spec)


# --- the benchmark ---------------------------------------------------------------------------


def bench(
    paths: Sequence[str | Path],
    *,
    data: str | None = None,
    subset: str = "test",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    max_frames: int = DEFAULT_MAX_FRAMES,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    backend: str = "auto",
    spec: ModelSpec | None = None,
    json_path: str | Path | None = None,
    progress: bool = True,
) -> BenchReport:
    """Measure each model in its own fresh process, one after the other; see the module docstring.

    Args:
        paths: model files: `.onnx` (float or INT8), `.keras` or a run folder, `.engine`.
        data: a `--data` string with masks: adds each model's mean IoU. None: speed only.
        subset, split, max_frames: which frames of `data` are scored.
        runs, warmup: timed and untimed `seg` calls per model.
        threads: inference threads (None: the runtime's default).
        backend: "auto" or a backend name, for every model.
        spec: a spec for models that carry none (applies to every model).
        json_path: write the report as JSON here (atomically).
        progress: one line per model on stderr.

    Raises:
        EdgesegError: a model is missing or unreadable, a setting is out of range, or a model
            fails to load or run (the worker's message, naming the file).
    """
    settings = BenchSettings(runs=runs, warmup=warmup, threads=threads, backend=backend, data=data,
                             subset=subset, split=tuple(split), max_frames=max_frames)
    settings.check()
    if not paths:
        raise EdgesegError("bench needs at least one model file")
    if data is not None:
        from edgeseg.data.sources import parse_data_spec

        parse_data_spec(data)  # a typo fails now, not after the first model's timing
    infos = [inspect_model(path, backend, spec) for path in paths]  # every path checked before any run
    rows = []
    for number, (given, info) in enumerate(zip(paths, infos), start=1):
        label = f"bench [{number}/{len(infos)}] {given}"
        if progress:
            print(f"{label}: {info.backend} {info.precision}, {warmup} warm-up + {runs} runs in a fresh process",
                  file=sys.stderr, flush=True)
        row = _run_worker(str(given), info, settings, spec is not None)
        rows.append(row)
        if progress:
            print(f"{label}: {_summary(row)}", file=sys.stderr, flush=True)
    report = BenchReport(rows, settings, machine_info(), _int8_verdicts(paths, infos))
    if json_path is not None:
        atomic_write_text(json_path, report.to_json())
    return report


def _int8_verdicts(paths: Sequence[str | Path], infos: Sequence[ModelInfo]) -> list[str]:
    """What calibration measured for each INT8 ONNX model: INT8 against FP32 on that machine."""
    from edgeseg.calib.op_profile import read_account

    notes = []
    for given, info in zip(paths, infos):
        if info.precision == "int8" and info.path.suffix == ".onnx" and (account := read_account(info.path)):
            notes.append(f"{given}: when calibrated, {account.verdict()}")
    return notes


def _summary(row: BenchRow) -> str:
    text = f"p50 {row.latency_p50_ms:.2f} ms, {row.fps:.1f} FPS, peak RSS {_mib(row.peak_rss_mib)} MiB"
    if row.mean_iou is not None:
        text += f", mIoU {100 * row.mean_iou:.2f}% on {row.frames} frames"
    return text


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: they mean little without it."""
    from importlib.metadata import PackageNotFoundError, version

    runtimes = {}
    for package in ("onnxruntime", "onnxruntime-gpu", "tensorflow", "tensorflow-cpu", "tensorrt"):
        try:
            runtimes[package] = version(package)
        except PackageNotFoundError:
            continue
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "edgeseg": edgeseg.__version__,
        "runtimes": runtimes,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware")):  # x86, then ARM boards
                    return line.split(":", 1)[1].strip()
    except OSError:  # no /proc: not Linux
        return platform.processor() or platform.machine()
    return platform.processor() or platform.machine()


def _run_worker(given: str, info: ModelInfo, settings: BenchSettings, spec_given: bool) -> BenchRow:
    """Run one model's measurement in a child process; return its row or raise its error."""
    job = {
        "path": str(info.path),
        "backend": info.backend,
        "spec": info.spec.to_dict() if info.spec is not None else None,
        "spec_given": spec_given,
        "settings": dataclasses.asdict(settings),
    }
    package_root = str(Path(edgeseg.__file__).resolve().parents[1])  # the child imports this same edgeseg
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench.") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        if info.spec is not None:  # rendered here, so the world's scratch memory is not the child's
            job["frame"] = str(Path(tmp) / "frame.npy")
            np.save(job["frame"], _timing_frame(settings, info.spec))
        job_path.write_text(json.dumps(job))
        command = [sys.executable, "-m", "edgeseg.bench", WORKER_FLAG, str(job_path), str(result_path)]
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
    if result is not None and "error" in result:
        raise _ERRORS.get(result["kind"], EdgesegError)(result["error"])
    if done.returncode < 0:
        hint = " (out of memory?)" if done.returncode == -9 else ""
        raise EngineError(f"the bench worker for {given} was killed by signal {-done.returncode}{hint}")
    if done.returncode != 0 or result is None:
        raise RuntimeError(
            f"the bench worker for {given} failed with exit code {done.returncode}; its output:\n"
            f"{done.stderr[-_STDERR_TAIL:]}"
        )
    return BenchRow(model=given, precision=info.precision, **result["row"])


# --- the worker (child process) --------------------------------------------------------------


def rss_mib() -> float | None:
    """This process's resident memory now, in MiB (Linux; elsewhere the peak so far)."""
    now = _proc_status_mib("VmRSS")
    return now if now is not None else peak_rss_mib()


def peak_rss_mib() -> float | None:
    """This process's peak resident memory, in MiB (None where the OS does not say).

    Linux's VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a
    child of a 600 MiB parent would start with a 600 MiB "peak". Elsewhere ru_maxrss.
    """
    peak = _proc_status_mib("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak_units = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_units / (1 << 20) if sys.platform == "darwin" else peak_units / 1024  # bytes on macOS, else KiB


def _proc_status_mib(key: str) -> float | None:
    """A "kB" line of /proc/self/status in MiB; None without /proc (macOS, Windows)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """The worker's measurement of one model (steps 1-5 of the module docstring)."""
    from edgeseg.runtime import Segmenter
    from edgeseg.runtime.backends import select_backend

    settings = BenchSettings(**{**job["settings"], "split": tuple(job["settings"]["split"])})
    spec = ModelSpec.from_dict(job["spec"]) if job["spec"] is not None else None
    frame = np.load(job["frame"]) if job.get("frame") else None
    baseline = rss_mib()

    entry = select_backend(job["path"], job["backend"])
    options, threads = _thread_options(entry, settings.threads)
    started = time.perf_counter()
    with Segmenter.open(job["path"], backend=entry.name, spec=spec if job["spec_given"] else None,
                        **options) as segmenter:
        load_s = time.perf_counter() - started
        if frame is None:  # a backend only it can read the spec of: the frame comes after loading
            frame = _timing_frame(settings, segmenter.spec)
        for _ in range(settings.warmup):
            segmenter.seg(frame)
        totals, infers = [], []
        for _ in range(settings.runs):
            tick = time.perf_counter()
            result = segmenter.seg(frame)
            totals.append(time.perf_counter() - tick)
            infers.append(result.timings["infer"])
        peak = peak_rss_mib()
        mean_iou, frames = (None, 0) if settings.data is None else _score(segmenter, settings)
        providers = getattr(segmenter.backend, "providers", None)
        p50 = 1000 * float(np.percentile(totals, 50))
        spec = segmenter.spec
        return {  # every BenchRow field but model and precision, which the parent knows
            "backend": segmenter.backend_name,
            "provider": providers[0].removesuffix("ExecutionProvider").lower() if providers else None,
            "input": f"{spec.input_height}x{spec.input_width}",
            "threads": threads,
            "runs": settings.runs,
            "warmup": settings.warmup,
            "latency_p50_ms": round(p50, 3),
            "latency_p95_ms": round(1000 * float(np.percentile(totals, 95)), 3),
            "fps": round(1000 / p50, 2),
            "infer_p50_ms": round(1000 * float(np.percentile(infers, 50)), 3),
            "load_s": round(load_s, 3),
            "peak_rss_mib": None if peak is None else round(peak, 1),
            "model_mib": None if peak is None or baseline is None else round(peak - baseline, 1),
            "mean_iou": mean_iou,
            "frames": frames,
        }


def _thread_options(entry: Any, threads: int | None) -> tuple[dict[str, Any], int | None]:
    """Backend options that apply `threads`, and the thread count really applied (or None)."""
    if threads is None:
        return {}, None
    if "threads" in entry.options:
        return {"threads": threads}, threads
    if entry.name == "keras":  # TensorFlow takes its thread count before it starts, so set it here
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        return {}, threads
    return {}, None  # TensorRT: threads do not apply


def _open_data(settings: BenchSettings, spec: ModelSpec):
    from edgeseg.data.sources import open_dataset_for_model

    return open_dataset_for_model(settings.data, spec, settings.subset, settings.split,
                                  hint="bench with data that has the model's classes, or without --data")


def _scored_indices(dataset: Any, settings: BenchSettings) -> list[int]:
    from edgeseg.calib.readers import spread_indices

    return spread_indices(len(dataset), settings.max_frames)


def _timing_frame(settings: BenchSettings, spec: ModelSpec) -> np.ndarray:
    """The frame every timed call segments: the first scored data frame, else a synthetic one."""
    if settings.data is not None:
        dataset = _open_data(settings, spec)
        return dataset.load(_scored_indices(dataset, settings)[0])[0]
    from edgeseg.data.synthetic import SyntheticDataset

    return SyntheticDataset(seed=0, n=1, height=spec.input_height, width=spec.input_width).load(0)[0]


def _score(segmenter: Any, settings: BenchSettings) -> tuple[float | None, int]:
    """Mean IoU (0..1, None if undefined) at mask resolution, and the frames scored."""
    from edgeseg.scoring import score

    spec = segmenter.spec
    dataset = _open_data(settings, spec)
    indices = _scored_indices(dataset, settings)
    tally = score(segmenter, (dataset.load(index) for index in indices), batch=1)
    mean_iou = tally.scores(spec.class_names).mean_iou
    return (None if math.isnan(mean_iou) else float(mean_iou)), len(indices)


def worker_main(argv: Sequence[str]) -> int:
    """`python -m edgeseg.bench --worker JOB RESULT`: measure JOB, write RESULT (JSON) atomically.

    A user error is written to RESULT as {"error", "kind"} (exit 1) for the parent to raise; a
    bug keeps its traceback on stderr.
    """
    if len(argv) != 3 or argv[0] != WORKER_FLAG:
        print(f"usage: python -m edgeseg.bench {WORKER_FLAG} JOB.json RESULT.json (run by edgeseg bench)",
              file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    try:
        payload = {"row": measure(job)}
    except EdgesegError as err:
        atomic_write_text(argv[2], json.dumps({"error": str(err), "kind": type(err).__name__}))
        return 1
    atomic_write_text(argv[2], json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
