"""INT8 on the CPU for models built like PyTorch exports: FP32 against edgeseg's INT8 CPU engine.

    .venv/bin/python benchmarks/int8_foreign.py [--kinds prelu_bn attention hardswish_resize]
        [--onnx third_party.onnx --spec spec.json] [--size 384x640] [--frames 32] [--eval 24]
        [--steps 600 | --random-weights] [--runs 40] [--threads 2] [--method percentile] [--keep DIR]

Models: the fixtures of tests/calib/foreign_graphs.py at a realistic size (>= 1 GMAC each: PReLU
with per-channel and shared slopes, BatchNorm left unfused after Conv and ConvTranspose, a
Softmax/MatMul attention block, HardSwish in PyTorch's pre-opset-14 form, ReLU6 as Min/Max,
nearest and bilinear Resize), trained on CamVid first (benchmarks/foreign_training.py: about 3
minutes a model on 2 cores, cached in .cache/int8_foreign/; `--random-weights` measures the
untrained graphs instead), and with `--onnx` any other model (e.g. a real PyTorch export) with
its spec. Each is calibrated by `edgeseg.calib.calibrate` (target cpu, format auto: what
`edgeseg calibrate` and `build-engine --int8 --calib` do) on CamVid frames, and its CPU engine
written with `optimize_for_cpu` (what build-engine writes). "plain" is the same calibration
without the per-op choice (`measure_ops=False`: only the graph preparation), for reference.

Timing: batch 1, `--threads` threads, FP32 (the model as given), INT8 and INT8 plain run
interleaved in blocks of 10 (`int8_cpu.time_interleaved`); the table gives medians and the
speed-up from medians of the same run. `kernel ms` is the load-robust sum of each node's fastest
kernel time (one thread). Agreement: the share of pixels whose class (argmax per output) is the
same in INT8 and FP32, on CamVid frames that neither training nor calibration saw (the last
fifth of each drive; calibration: frames of the rest); for the fixtures also the mean IoU of
FP32 and INT8 against those frames' labels (road, pavement, car, other). The machine's load average
is recorded before and after each model: on a shared machine every time moves with it.

Prints a table and the per-op accounts, and writes benchmarks/results/int8_foreign.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import foreign_training  # noqa: E402
import numpy as np  # noqa: E402
from _table import print_table, write_json  # noqa: E402
from int8_cpu import kernel_ms, ort_runner, time_interleaved  # noqa: E402

from edgeseg.artifact.onnxmeta import ort_session  # noqa: E402
from edgeseg.calib import ImageFolder, calibrate  # noqa: E402
from edgeseg.engine.ort_build import optimize_for_cpu  # noqa: E402
from edgeseg.runtime.preprocess import preprocess  # noqa: E402
from edgeseg.scoring import Tally  # noqa: E402
from edgeseg.spec import ModelSpec  # noqa: E402

CAMVID = REPO.parent / "shared" / "data" / "camvid"
_spec = importlib.util.spec_from_file_location("foreign_graphs", REPO / "tests" / "calib" / "foreign_graphs.py")
foreign = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(foreign)


def spread(items: list, count: int) -> list:
    """`count` items spread evenly over the list."""
    return [items[i] for i in np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int)]


def compare(float_path: Path, int8_path: Path, frames: np.ndarray, spec: ModelSpec,
            masks: np.ndarray | None) -> tuple[list[float], float | None, float | None]:
    """Per output, the share of pixels whose argmax class is the same; and with masks, both mean IoUs."""
    sessions = [ort_session(p) for p in (float_path, int8_path)]
    name = sessions[0].get_inputs()[0].name
    tallies = [Tally(len(spec.class_names)), Tally(len(spec.class_names))]
    same: list[list[float]] = []
    for i, frame in enumerate(frames):
        batch = preprocess([frame], spec)
        ref, got = (s.run(None, {name: batch}) for s in sessions)
        same.append([float(np.mean(r.argmax(1) == g.argmax(1))) for r, g in zip(ref, got)])
        if masks is not None:
            for tally, outputs in zip(tallies, (ref, got)):
                tally.add(masks[i], outputs[0][0].argmax(0))
    agree = [float(np.mean(column)) for column in zip(*same)]
    if masks is None:
        return agree, None, None
    return agree, tallies[0].scores().mean_iou, tallies[1].scores().mean_iou


def load_average() -> float:
    return os.getloadavg()[0]


def bench_one(name: str, model: Path, spec: ModelSpec, args, calib_dir: Path, eval_frames: np.ndarray,
              folder: Path, eval_masks: np.ndarray | None = None) -> dict:
    load_before = load_average()
    started = time.perf_counter()
    report = calibrate(model, ImageFolder(calib_dir), num_frames=args.frames, spec=spec, method=args.method,
                       output=folder / f"{name}.int8.onnx", progress=False, warn=lambda message: None)
    calibrate_s = time.perf_counter() - started
    plain = calibrate(model, ImageFolder(calib_dir), num_frames=args.frames, spec=spec, method=args.method,
                      output=folder / f"{name}.plain.int8.onnx", progress=False, warn=lambda message: None,
                      measure_ops=False)
    engines = {"int8": folder / f"{name}.int8.cpu.onnx", "plain": folder / f"{name}.plain.cpu.onnx"}
    optimize_for_cpu(report.output, engines["int8"])
    optimize_for_cpu(plain.output, engines["plain"])
    batch = preprocess([eval_frames[0]], spec)
    runners = {"fp32": ort_runner(model, args.threads), "int8": ort_runner(engines["int8"], args.threads),
               "plain": ort_runner(engines["plain"], args.threads)}
    times = time_interleaved(runners, batch, args.runs)
    p50 = {key: statistics.median(values) for key, values in times.items()}
    agree, float_miou, int8_miou = compare(model, engines["int8"], eval_frames, spec, eval_masks)
    agree_plain, _, _ = compare(model, engines["plain"], eval_frames, spec, None)
    import onnx

    gmac = foreign.macs(onnx.load(str(model))) / 1e9
    row = {
        "model": name, "gmac": round(gmac, 2), "format": report.format,
        "fp32_ms": round(p50["fp32"], 2), "int8_ms": round(p50["int8"], 2), "plain_ms": round(p50["plain"], 2),
        "speedup": round(p50["fp32"] / p50["int8"], 2), "speedup_plain": round(p50["fp32"] / p50["plain"], 2),
        "agreement": " ".join(f"{a:.2%}" for a in agree), "agreement_plain": " ".join(f"{a:.2%}" for a in agree_plain),
        "miou_fp32": "-" if float_miou is None else f"{float_miou:.1%}",
        "miou_int8": "-" if int8_miou is None else f"{int8_miou:.1%}",
        "fp32_kernel_ms": round(kernel_ms(model, batch), 1), "int8_kernel_ms": round(kernel_ms(engines["int8"], batch), 1),
        "load": f"{load_before:.1f}/{load_average():.1f}", "calibrate_s": round(calibrate_s, 1),
    }
    print(f"\n== {name}\n{report.summary()}\n", flush=True)
    return {**row, "agreement_per_output": agree, "agreement_plain_per_output": agree_plain,
            "times_ms": {k: [round(v, 3) for v in values] for k, values in times.items()},
            "preparation": report.preparation.to_dict() if report.preparation else None,
            "account": report.account.to_dict() if report.account else None,
            "float_nodes": list(report.excluded_nodes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="*", default=list(foreign.KINDS), choices=foreign.KINDS)
    parser.add_argument("--onnx", type=Path, help="another model to measure the same way (needs --spec)")
    parser.add_argument("--spec", type=Path, help="the spec JSON of --onnx")
    parser.add_argument("--size", default="384x640", help="fixture input HxW (multiples of 16)")
    parser.add_argument("--frames", type=int, default=32, help="calibration frames")
    parser.add_argument("--eval", type=int, default=24, help="agreement frames (held out: the tail of each drive)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of each fixture (batch 8)")
    parser.add_argument("--random-weights", action="store_true", help="measure the untrained fixtures")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default="percentile")
    parser.add_argument("--keep", type=Path, help="keep the models here")
    args = parser.parse_args()
    if not (CAMVID / "trainannot").is_dir():
        sys.exit(f"skipped: no CamVid frames at {CAMVID} (the fixtures train and are measured on real frames)")
    if args.onnx is not None and args.spec is None:
        sys.exit("--onnx needs --spec (its input size, layout and scaling)")
    height, width = (int(v) for v in args.size.lower().split("x"))
    spec = foreign.foreign_spec(height, width)
    train_pairs = foreign_training.camvid_pairs(CAMVID, held_out=False)
    eval_pairs = spread(foreign_training.camvid_pairs(CAMVID, held_out=True), args.eval)
    eval_frames, eval_masks = foreign_training.load_pairs(eval_pairs, spec)
    with tempfile.TemporaryDirectory(prefix="int8_foreign.") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        calib_dir = folder / "calib"
        calib_dir.mkdir(exist_ok=True)
        for frame, _ in spread(train_pairs, args.frames):
            (calib_dir / frame.name).write_bytes(frame.read_bytes())
        rows = []
        if args.kinds and not args.random_weights:
            train_images, train_masks = foreign_training.load_pairs(train_pairs, spec)
        for kind in args.kinds:
            params = None if args.random_weights else foreign_training.trained_params(
                foreign, kind, spec, train_images, train_masks, args.steps)
            model = foreign.save_foreign_model(kind, height, width, folder / f"{kind}.onnx", params=params)
            rows.append(bench_one(kind, model, spec, args, calib_dir, eval_frames, folder, eval_masks))
        if args.onnx is not None:
            model = folder / args.onnx.name
            model.write_bytes(args.onnx.read_bytes())
            other = ModelSpec.load(args.spec)  # its own input size; CamVid's labels are not its classes
            frames, _ = foreign_training.load_pairs(eval_pairs, other)
            rows.append(bench_one(args.onnx.stem, model, other, args, calib_dir, frames, folder))
    columns = ["model", "gmac", "format", "fp32_ms", "int8_ms", "speedup", "plain_ms", "speedup_plain", "agreement",
               "agreement_plain", "miou_fp32", "miou_int8", "fp32_kernel_ms", "int8_kernel_ms", "load"]
    weights = "random weights" if args.random_weights else f"trained {args.steps} steps on CamVid"
    print(f"\nbatch 1, {args.threads} threads, medians of {args.runs} interleaved runs; fixtures: {weights}; "
          f"agreement and mIoU on {len(eval_frames)} held-out CamVid frames (the tail of each drive); "
          f"load = 1-min load average before/after (2 cores)")
    print_table(rows, columns)
    write_json("int8_foreign", {"settings": vars(args) | {"onnx": str(args.onnx), "spec": str(args.spec),
                                                          "keep": str(args.keep)}, "results": rows})


if __name__ == "__main__":
    main()
