"""INT8 on the CPU: ONNX Runtime FP32 against the QDQ and QOperator INT8 layouts (and TFLite).

    .venv/bin/python benchmarks/int8_cpu.py [--models deeplabv3plus_mobilenetv2 deeplabv3_resnet50]
        [--size 256] [--threads 2] [--runs 50] [--frames 32] [--tflite] [--keep DIR]

For each model (random weights: this measures speed, not accuracy) it exports the Keras model
with `edgeseg.export`, calibrates once with `edgeseg.calib.calibrate` on synthetic-world frames
(the same ranges feed every INT8 variant), and times batch-1 inference with `--threads`
intra-op threads: FP32, INT8 QDQ and INT8 QOperator, each with the head (class convolution +
final resize) quantized and kept in float. `--tflite` adds TFLite INT8 of the same Keras model
(full-integer post-training quantization, float input/output, XNNPACK). All sessions are warmed
up, then run interleaved in blocks of 10 runs of each in turn (`--runs` per variant), so background load hits
every variant alike; the table gives the median and the 10th/90th percentiles. On a shared
machine those move with the background load, so `kernel_ms_1t` adds a load-robust number: the
sum over nodes of each node's fastest kernel time in ONNX Runtime's profiler, one thread.

Prints a table and writes benchmarks/results/int8_cpu.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from _table import print_table, write_json  # noqa: E402

from edgeseg.calib import DatasetImages, calibrate  # noqa: E402
from edgeseg.calib.quantize import cpu_has_vnni, default_reduce_range  # noqa: E402
from edgeseg.data.synthetic import SyntheticDataset  # noqa: E402
from edgeseg.runtime.preprocess import preprocess  # noqa: E402
from edgeseg.spec import ModelSpec  # noqa: E402

NUM_CLASSES = 21


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def build_and_export(name: str, size: int, folder: Path) -> tuple[Path, object, ModelSpec]:
    from edgeseg import models
    from edgeseg.export.keras_to_onnx import export_onnx

    keras_model = models.build(name, NUM_CLASSES, (size, size, 3))
    spec = ModelSpec(class_names=tuple(f"class{i}" for i in range(NUM_CLASSES)), input_height=size,
                     input_width=size, model=name)
    path = folder / f"{name}.onnx"
    export_onnx(keras_model, path, spec=spec, batch=1)
    return path, keras_model, spec


def tflite_runner(keras_model, frames: list[np.ndarray], spec: ModelSpec, threads: int):
    """TFLite full-integer INT8 (float I/O) of the Keras model; returns (run(batch), convert seconds)."""
    import tensorflow as tf

    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([preprocess(frame, spec)] for frame in frames)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = tf.lite.Interpreter(model_content=converter.convert(), num_threads=threads)
    interpreter.allocate_tensors()
    seconds = time.perf_counter() - started
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def run(batch: np.ndarray) -> None:
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        interpreter.get_tensor(output_index)

    return run, seconds


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def kernel_ms(path: Path, batch: np.ndarray, runs: int = 15) -> float:
    """Sum over nodes of each node's fastest kernel time (ORT profiler, one thread).

    A load-robust estimate of the compute time on a quiet machine: background load on a shared
    machine inflates wall-clock medians, but rarely every run of every node.
    """
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="int8_cpu_profile.") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    fastest: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            fastest[event["name"]] = min(fastest.get(event["name"], float("inf")), event["dur"] / 1000)
    return sum(fastest.values())


def time_interleaved(runners: dict, batch: np.ndarray, runs: int, warmup: int = 10,
                     block: int = 10) -> dict[str, list[float]]:
    """Time every variant in interleaved blocks of `block` consecutive runs.

    Blocks, not single runs: each ONNX Runtime session keeps its own thread pool spinning for a
    while after a run, so alternating sessions run by run makes them fight over the two cores and
    inflated every time 4-5x (measured: 34.7 ms interleaved vs 6.7 ms alone for the same FP32
    model). The first run of each block, which pays for the switch, is not counted. Interleaving
    the blocks still spreads background load over every variant alike.
    """
    for run in runners.values():
        for _ in range(warmup):
            run(batch)
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(max(1, runs // block)):
        for key, run in runners.items():
            run(batch)
            for _ in range(block):
                start = time.perf_counter()
                run(batch)
                times[key].append((time.perf_counter() - start) * 1000)
    return times


def bench_model(name: str, args, folder: Path) -> list[dict]:
    print(f"--- {name} {args.size}x{args.size}: export")
    onnx_path, keras_model, spec = build_and_export(name, args.size, folder)
    dataset = SyntheticDataset(seed=0, n=args.frames, height=args.size, width=args.size)
    source = DatasetImages(dataset)
    variants: dict[str, Path] = {}
    calib_seconds = {}
    for fmt in ("qdq", "qoperator"):
        for float_head in (False, True):
            key = f"int8 {fmt}" + (" float-head" if float_head else "")
            out = folder / f"{name}.{fmt}{'.fh' if float_head else ''}.onnx"
            print(f"--- {name}: calibrate {key}")
            report = calibrate(onnx_path, source, target="cpu", num_frames=args.frames, output=out, fmt=fmt,
                               float_head=float_head, method=args.method, progress=False,
                               warn=lambda message: None)
            calib_seconds[key] = round(report.seconds, 1)
            variants[key] = report.output
    runners = {"fp32": ort_runner(onnx_path, args.threads)}
    runners.update({key: ort_runner(path, args.threads) for key, path in variants.items()})
    tflite_seconds = None
    if args.tflite:
        print(f"--- {name}: TFLite INT8 conversion")
        frames = [dataset.load(i)[0] for i in range(min(args.frames, 16))]
        runners["tflite int8"], tflite_seconds = tflite_runner(keras_model, frames, spec, args.threads)
    batch = preprocess(dataset.load(0)[0], spec)
    print(f"--- {name}: timing {len(runners)} variants x {args.runs} runs in interleaved blocks, {args.threads} threads")
    times = time_interleaved(runners, batch, args.runs)
    fp32 = statistics.median(times["fp32"])
    paths = {"fp32": onnx_path, **variants}
    kernels = {key: kernel_ms(path, batch) for key, path in paths.items()}
    rows = []
    for key, values in times.items():
        median = statistics.median(values)
        rows.append({
            "model": name, "variant": key, "ms_median": round(median, 2),
            "ms_p10": round(percentile(values, 10), 2), "ms_p90": round(percentile(values, 90), 2),
            "speedup_vs_fp32": round(fp32 / median, 2),
            "kernel_ms_1t": round(kernels[key], 2) if key in kernels else None,
            "kernel_speedup": round(kernels["fp32"] / kernels[key], 2) if key in kernels else None,
            "calibrate_s": calib_seconds.get(key, tflite_seconds if key == "tflite int8" else None),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["deeplabv3plus_mobilenetv2"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--frames", type=int, default=32, help="calibration frames (speed only)")
    parser.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--tflite", action="store_true", help="also time TFLite INT8 of the same Keras model")
    parser.add_argument("--keep", type=Path, help="keep the ONNX models in this folder")
    args = parser.parse_args()

    import onnxruntime

    rows = []
    with tempfile.TemporaryDirectory(prefix="int8_cpu.") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            rows += bench_model(name, args, folder)
    print()
    print_table(rows, ["model", "variant", "ms_median", "ms_p10", "ms_p90", "speedup_vs_fp32", "kernel_ms_1t",
                       "kernel_speedup", "calibrate_s"])
    write_json("int8_cpu", {
        "settings": {"size": args.size, "batch": 1, "threads": args.threads, "runs": args.runs,
                     "calibration_frames": args.frames, "method": args.method,
                     "onnxruntime": onnxruntime.__version__, "vnni": cpu_has_vnni(),
                     "reduce_range": default_reduce_range(), "weights": "random (speed only)"},
        "results": rows,
    })


if __name__ == "__main__":
    main()
