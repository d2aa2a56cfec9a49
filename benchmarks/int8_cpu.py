"""INT8 on the CPU: Keras and ONNX Runtime FP32 against edgeseg's INT8 CPU engine (and TFLite INT8).

    .venv/bin/python benchmarks/int8_cpu.py [--models deeplabv3plus_mobilenetv2 deeplabv3_resnet50]
        [--size 256] [--threads 2] [--runs 50] [--frames 32] [--tflite] [--no-spinning] [--keep DIR]

For each model (random weights: this measures speed, not accuracy) it exports the Keras model
with `edgeseg.export`, calibrates with `edgeseg.calib.calibrate` (target cpu, format auto: the
model `edgeseg calibrate --target cpu` writes) on synthetic-world frames and builds the CPU
engine from it with `edgeseg.engine.ort_build.optimize_for_cpu` (what `edgeseg build-engine`
writes for ONNX Runtime). The other INT8 format (QDQ or QOperator, from the same ranges) is
timed too, for reference. Batch-1 inference, `--threads` threads for every runtime: Keras FP32
(`model(x, training=False)` in a `tf.function`, TensorFlow's intra-op pool), ONNX Runtime FP32,
the INT8 models, and with `--tflite` TFLite INT8 of the same Keras model (full-integer
post-training quantization, float input/output, XNNPACK). Every ONNX Runtime session has the
same options: threads, the default optimisation level, and spin-waiting threads unless
`--no-spinning` (on a loaded machine spinning pools lose their turn and inflate every ONNX
Runtime time 2-4x, TFLite's far less). All variants are warmed up, then run interleaved in
blocks of 10 runs of each in turn (`--runs` per variant), so background load hits every variant
alike; the table gives the median, the 10th/90th percentiles, the speed-up over ONNX Runtime
FP32 and the time as a fraction of TFLite INT8's, both from medians of the same run. On a
shared machine the times move with the background load, so `kernel_ms_1t` adds a load-robust
number for the ONNX models: the sum over nodes of each node's fastest kernel time in ONNX
Runtime's profiler, one thread.

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

from edgeseg.artifact.onnxmeta import ort_session  # noqa: E402
from edgeseg.calib import DatasetImages, calibrate  # noqa: E402
from edgeseg.calib.op_profile import profile_ops  # noqa: E402
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


def keras_runner(keras_model):
    """Keras FP32: the model called in inference mode inside a tf.function (one graph, no retracing)."""
    import tensorflow as tf

    infer = tf.function(lambda x: keras_model(x, training=False))

    def run(batch: np.ndarray) -> None:
        infer(tf.constant(batch)).numpy()

    return run


def ort_runner(path: Path, threads: int, spinning: bool = True):
    """The model in ONNX Runtime as edgeseg's runtime opens it (`ort_session`: denormals as zero)."""
    config = {} if spinning else {"session.intra_op.allow_spinning": "0"}
    session = ort_session(path, threads=threads, config=config)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def kernel_ms(path: Path, batch: np.ndarray, runs: int = 15) -> float:
    """Sum over nodes of each node's fastest kernel time (ORT profiler, one thread: `profile_ops`).

    A load-robust estimate of the compute time on a quiet machine: background load on a shared
    machine inflates wall-clock medians, but rarely every run of every node.
    """
    return sum(profile_ops(path, batch, runs=runs).values())


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
    from edgeseg.engine.ort_build import optimize_for_cpu

    print(f"--- {name} {args.size}x{args.size}: export")
    onnx_path, keras_model, spec = build_and_export(name, args.size, folder)
    dataset = SyntheticDataset(seed=0, n=args.frames, height=args.size, width=args.size)
    source = DatasetImages(dataset)
    print(f"--- {name}: calibrate (target cpu, format auto) and build the CPU engine")
    report = calibrate(onnx_path, source, target="cpu", num_frames=args.frames, output=folder / f"{name}.int8.onnx",
                       method=args.method, progress=False, warn=lambda message: None)
    engine = folder / f"{name}.cpu.onnx"
    optimize_for_cpu(report.output, engine)
    edgeseg_key = f"edgeseg int8 ({report.format})"
    other = "qoperator" if report.format == "qdq" else "qdq"
    other_report = calibrate(onnx_path, source, target="cpu", num_frames=args.frames, fmt=other,
                             output=folder / f"{name}.int8.{other}.onnx", method=args.method, progress=False,
                             warn=lambda message: None)
    paths = {"ort fp32": onnx_path, edgeseg_key: engine, f"int8 {other}": other_report.output}
    runners = {"keras fp32": keras_runner(keras_model)}
    runners.update({key: ort_runner(path, args.threads, not args.no_spinning) for key, path in paths.items()})
    tflite_seconds = None
    if args.tflite:
        print(f"--- {name}: TFLite INT8 conversion")
        frames = [dataset.load(i)[0] for i in range(min(args.frames, 16))]
        runners["tflite int8"], tflite_seconds = tflite_runner(keras_model, frames, spec, args.threads)
    batch = preprocess(dataset.load(0)[0], spec)
    print(f"--- {name}: timing {len(runners)} variants x {args.runs} runs in interleaved blocks, {args.threads} threads")
    times = time_interleaved(runners, batch, args.runs)
    medians = {key: statistics.median(values) for key, values in times.items()}
    kernels = {key: kernel_ms(path, batch) for key, path in paths.items()}
    seconds = {edgeseg_key: report.seconds, f"int8 {other}": other_report.seconds, "tflite int8": tflite_seconds}
    rows = []
    for key, values in times.items():
        rows.append({
            "model": name, "variant": key, "ms_median": round(medians[key], 2),
            "ms_p10": round(percentile(values, 10), 2), "ms_p90": round(percentile(values, 90), 2),
            "speedup_vs_ort_fp32": round(medians["ort fp32"] / medians[key], 2),
            "vs_tflite_int8": round(medians[key] / medians["tflite int8"], 2) if "tflite int8" in medians else None,
            "kernel_ms_1t": round(kernels[key], 2) if key in kernels else None,
            "kernel_speedup": round(kernels["ort fp32"] / kernels[key], 2) if key in kernels else None,
            "calibrate_s": round(seconds[key], 1) if seconds.get(key) is not None else None,
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
    parser.add_argument("--no-spinning", action="store_true",
                        help="every ONNX Runtime session without spin-waiting threads (fairer on a loaded machine)")
    args = parser.parse_args()

    import onnxruntime
    import tensorflow as tf

    # before TensorFlow starts its pools: Keras gets the same thread budget as the other runtimes
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8_cpu.") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            rows += bench_model(name, args, folder)
    print()
    print_table(rows, ["model", "variant", "ms_median", "ms_p10", "ms_p90", "speedup_vs_ort_fp32", "vs_tflite_int8",
                       "kernel_ms_1t", "kernel_speedup", "calibrate_s"])
    write_json("int8_cpu", {
        "settings": {"size": args.size, "batch": 1, "threads": args.threads, "runs": args.runs,
                     "calibration_frames": args.frames, "method": args.method,
                     "onnxruntime": onnxruntime.__version__, "vnni": cpu_has_vnni(),
                     "reduce_range": default_reduce_range(), "weights": "random (speed only)",
                     "tensorflow": tf.__version__, "ort_spinning": not args.no_spinning},
        "results": rows,
    })


if __name__ == "__main__":
    main()
