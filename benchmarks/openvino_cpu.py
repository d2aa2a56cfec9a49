"""Is another CPU runtime's INT8 faster on this CPU? ONNX Runtime against OpenVINO, same ONNX files.

    .venv/bin/python benchmarks/int8_cpu.py --method percentile --keep /tmp/mnv2    # the models
    python3 -m venv /tmp/ovenv && /tmp/ovenv/bin/pip install onnxruntime openvino numpy
    /tmp/ovenv/bin/python benchmarks/openvino_cpu.py /tmp/mnv2 [--runs 60] [--threads 1 2]

Evidence for the INT8 speed ceiling in docs/results.md, not a backend: OpenVINO is not an edgeseg
dependency (its wheel is not needed on a robot and is about 50 MB). Times the float ONNX
(`MODEL.onnx`) and the INT8 Q/DQ model (`MODEL.int8.onnx`, the layout any runtime reads) under
ONNX Runtime (CPU provider, spinning off) and OpenVINO's CPU plugin (LATENCY hint), in
alternating blocks of 10 runs so background load hits each alike, at each thread count. Prints a
table and writes benchmarks/results/openvino_cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from _table import print_table, write_json  # noqa: E402

from edgeseg.artifact.onnxmeta import ort_session  # noqa: E402

BLOCK = 10


def onnxruntime_runner(path: Path, threads: int):
    session = ort_session(path, threads=threads, config={"session.intra_op.allow_spinning": "0"})
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def openvino_runner(path: Path, threads: int):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the --keep folder of benchmarks/int8_cpu.py")
    parser.add_argument("--model", default="deeplabv3plus_mobilenetv2")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    try:
        import openvino  # noqa: F401
    except ImportError:
        sys.exit("openvino is not installed here; see the usage at the top of this file")
    files = {"fp32": args.folder / f"{args.model}.onnx", "int8 q/dq": args.folder / f"{args.model}.int8.onnx"}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run benchmarks/int8_cpu.py --keep {args.folder} first")
    x = np.random.default_rng(0).uniform(0, 255, (1, args.size, args.size, 3)).astype(np.float32)
    rows = []
    for threads in args.threads:
        runners = {}
        for precision, path in files.items():
            runners[("onnxruntime", precision)] = onnxruntime_runner(path, threads)
            runners[("openvino", precision)] = openvino_runner(path, threads)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for run in runners.values():  # warm-up
            for _ in range(5):
                run(x)
        for _ in range(max(1, args.runs // BLOCK)):
            for key, run in runners.items():
                for _ in range(BLOCK):
                    start = time.perf_counter()
                    run(x)
                    times[key].append(time.perf_counter() - start)
        base = float(np.median(times[("onnxruntime", "fp32")])) * 1000
        for (runtime, precision), seconds in times.items():
            ms = float(np.median(seconds)) * 1000
            rows.append({"model": args.model, "threads": threads, "runtime": runtime, "precision": precision,
                         "ms_median": ms, "ms_p90": float(np.percentile(seconds, 90)) * 1000,
                         "speedup_vs_ort_fp32": base / ms})
    print_table(rows, ["model", "threads", "runtime", "precision", "ms_median", "ms_p90", "speedup_vs_ort_fp32"])
    import onnxruntime
    import openvino

    write_json("openvino_cpu", {"versions": {"onnxruntime": onnxruntime.__version__,
                                             "openvino": openvino.__version__},
                                "runs": args.runs, "rows": rows})


if __name__ == "__main__":
    main()
