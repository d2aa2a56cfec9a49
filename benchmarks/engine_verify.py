"""What the engine integrity check costs: opening an engine with and without `verify`.

    python benchmarks/engine_verify.py [ENGINE ...]     # default: demo/model.int8.cpu.onnx

For each engine (a `build-engine` output with its manifest beside it): the median of 15 opens of
the ONNX Runtime backend with `verify=True` and with `verify=False`, and the sha256 alone. Also
the sha256 of random files of 1, 10 and 100 MB, for engines larger than the demo's. Prints a table
and writes benchmarks/results/engine_verify.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table, write_json  # noqa: E402

REPEATS = 15


def median_s(action) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def engine_row(path: Path) -> dict:
    from edgeseg.fileio import file_sha256
    from edgeseg.runtime import open_backend

    def opened(verify: bool) -> None:
        open_backend(path, threads=1, verify=verify).close()

    checked, unchecked = median_s(lambda: opened(True)), median_s(lambda: opened(False))
    return {"file": path.name, "MB": round(path.stat().st_size / 1e6, 2),
            "sha256 ms": round(median_s(lambda: file_sha256(path)) * 1e3, 2),
            "open ms (verify)": round(checked * 1e3, 1), "open ms (no verify)": round(unchecked * 1e3, 1),
            "added ms": round((checked - unchecked) * 1e3, 1)}


def hash_rows() -> list[dict]:
    import numpy as np

    from edgeseg.fileio import file_sha256

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in (1, 10, 100):
            path = Path(folder) / f"{megabytes}.bin"
            path.write_bytes(np.random.default_rng(0).bytes(megabytes * 1_000_000))
            rows.append({"file": f"random {megabytes} MB", "MB": megabytes,
                         "sha256 ms": round(median_s(lambda: file_sha256(path)) * 1e3, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="*", type=Path, default=[Path("demo/model.int8.cpu.onnx")])
    args = parser.parse_args()
    rows = [engine_row(path) for path in args.engines if path.is_file()]
    rows += hash_rows()
    print_table(rows, ["file", "MB", "sha256 ms", "open ms (verify)", "open ms (no verify)", "added ms"])
    write_json("engine_verify", {"rows": rows})


if __name__ == "__main__":
    main()
