"""Shared by the benchmark scripts: print a plain table and write the JSON results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import os

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}


def print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def run_edgeseg(args: list[str], cwd: Path) -> dict:
    """Run one `edgeseg` command line as a user would; keep exit code, time, output.

    Runs this repository's edgeseg with this Python (`python -m edgeseg`), so a checkout that is
    not the installed copy measures its own code.
    """
    repo = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": repo + (os.pathsep + path if path else "")}
    print("$ edgeseg " + " ".join(args), flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgeseg", *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = done.stdout.strip()
    err = "\n".join(line for line in done.stderr.splitlines()
                     if line.startswith(("edgeseg", "Traceback")) or "Error" in line)
    print(out[-3000:] if done.returncode == 0 else f"{out[-1500:]}\n{done.stderr[-1500:]}", flush=True)
    return {"command": "edgeseg " + " ".join(args), "rc": done.returncode, "seconds": round(seconds, 1),
            "stdout": out[-4000:], "stderr": err[-2000:]}
