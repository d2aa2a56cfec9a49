"""A third-party PyTorch-exported segmentation ONNX through the whole edgeseg chain, as a new user.

    .venv/bin/python benchmarks/third_party_onnx.py --model road.onnx --spec road.spec.json \\
        --calib-video drive.mp4 --images /work/shared/data/camvid/train --match 0016E5 --max-frames 36 \\
        [--video drive.mp4] [--budget 0.5] [--keep DIR]

No labels anywhere: the float model is the reference. Each step is a subprocess of `edgeseg`:

    edgeseg calibrate road.onnx --spec S --video CALIB --target cpu --method M -o road.M.int8.onnx  # each M
    edgeseg verify road.onnx road.M.int8.onnx --spec S --images FRAMES        # each M that calibrated
    edgeseg build-engine road.M.int8.onnx --int8 -o road.int8.cpu.onnx        # --method (default percentile),
                                                                             # else the best agreement
    edgeseg verify road.onnx road.int8.cpu.onnx --spec S --images FRAMES [--video VIDEO]
    edgeseg bench road.onnx road.int8.cpu.onnx --spec S                       # FP32 vs INT8 latency
    edgeseg calibrate ... --max-miou-drop PP --eval-images FRAMES            # with --budget

FRAMES are the first --max-frames images of --images whose names start with --match, in name
order (linked into the work folder), so verification reads frames calibration did not. A failing
step is recorded with its last error line, not hidden, and the chain goes on where it can. Prints
a table and writes benchmarks/results/third_party_onnx.json. Without --model it says so and
exits 0 (the model is not part of the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _table import print_table, run_edgeseg, write_json  # noqa: E402

METHODS = ("minmax", "entropy", "percentile")


def verify_frames(images: Path, match: str, count: int, work: Path) -> Path:
    """Link the first `count` images named `match*` into work/frames (name order)."""
    from edgeseg.stream.sources import IMAGE_SUFFIXES

    chosen = sorted(p for p in images.iterdir() if p.name.startswith(match) and p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = chosen[:count]
    if not chosen:
        raise SystemExit(f"no images named {match}* in {images}")
    folder = work / "frames"
    folder.mkdir(exist_ok=True)
    for path in chosen:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return folder


def parity(report_path: Path) -> dict:
    """The numbers of a verify JSON that the table and docs need."""
    report = json.loads(report_path.read_text())
    ious = report["engine_vs_float"]["per_class_iou"]
    return {
        "frames": report["frames"],
        "agreement": report["agreement"],
        "miou_vs_float": report["engine_vs_float"]["mean_iou"],
        "per_class_iou_vs_float": ious,
        "commands": {c["mode"]: {k: c[k] for k in ("both_drive", "steering_diff_mean", "steering_diff_max",
                                                   "stop_mismatch", "throttle_diff_mean", "float_stops", "engine_stops")}
                     for c in report["commands"]},
        "timings_s": report["timings_s"],
    }


def summary(numbers: dict) -> str:
    def steering(c: dict) -> str:
        if not c["both_drive"]:
            return "steer - (never both drive)"
        return f"steer {c['steering_diff_mean']:.3f}/{c['steering_diff_max']:.2f} on {c['both_drive']}"

    commands = ", ".join(f"{mode} {steering(c)} stop-mismatch {c['stop_mismatch']:.0%}"
                         for mode, c in numbers["commands"].items())
    return (f"agreement {numbers['agreement']:.4f}, mIoU vs float {100 * numbers['miou_vs_float']:.2f}%; "
            f"{commands}")


def last_error(step: dict) -> str:
    lines = [line for line in step["stderr"].splitlines() if line.strip()]
    return lines[-1][:160] if lines else "(no error line)"


def run_chain(args: argparse.Namespace, work: Path) -> dict:
    model = work / args.model.name
    if not model.exists():
        model.symlink_to(args.model.resolve())
    spec = ["--spec", str(args.spec.resolve())]
    frames = verify_frames(args.images, args.match, args.max_frames, work)
    calib = ["--video", str(args.calib_video.resolve())] if args.calib_video else ["--images", str(frames)]
    results: dict = {"model": str(args.model), "spec": json.loads(args.spec.read_text()),
                     "calibration_frames": calib[1], "verify_frames": f"{frames} ({args.max_frames} first "
                     f"{args.match}* of {args.images})", "steps": []}
    rows = []

    def step(name: str, argv: list[str]) -> dict:
        done = run_edgeseg(argv, work)
        done["step"] = name
        results["steps"].append(done)
        return done

    int8 = {}
    for method in METHODS:
        out = f"{model.stem}.{method}.int8.onnx"
        done = step(f"calibrate {method}", ["calibrate", model.name, *spec, *calib, "-n", str(args.calib_frames),
                                            "--target", "cpu", "--method", method, "-o", out, "--no-progress"])
        if done["rc"] == 0:
            int8[method] = out
        rows.append({"step": f"calibrate {method}", "rc": done["rc"], "s": done["seconds"],
                     "result": "ok" if done["rc"] == 0 else last_error(done)})
    results["methods"] = {}
    for method, out in int8.items():
        report = work / f"verify_{method}" / "report.json"
        done = step(f"verify {method}", ["verify", model.name, out, *spec, "--images", str(frames),
                                         "--json", str(report), "--no-progress"])
        numbers = parity(report) if done["rc"] == 0 else None
        results["methods"][method] = numbers
        rows.append({"step": f"verify {method} (images)", "rc": done["rc"], "s": done["seconds"],
                     "result": summary(numbers) if numbers else last_error(done)})
    if not int8:
        rows.append({"step": "build-engine", "rc": None, "s": None, "result": "skipped: no method calibrated"})
        return {**results, "rows": rows}

    verified = {m: n["agreement"] for m, n in results["methods"].items() if n}
    chosen = args.method if args.method in int8 else max(verified, key=verified.get, default=next(iter(int8)))
    engine = f"{model.stem}.int8.cpu.onnx"
    done = step("build-engine", ["build-engine", int8[chosen], "--int8", "-o", engine])
    rows.append({"step": f"build-engine ({chosen})", "rc": done["rc"], "s": done["seconds"],
                 "result": "ok" if done["rc"] == 0 else last_error(done)})
    results["engine_method"] = chosen
    if done["rc"] == 0:
        for source, where in (("images", str(frames)), ("video", str(args.video.resolve()) if args.video else None)):
            if where is None:
                continue
            report = work / f"verify_engine_{source}" / "report.json"
            done = step(f"verify engine {source}", ["verify", model.name, engine, *spec, f"--{source}", where,
                                                    "--json", str(report), "--no-progress"])
            numbers = parity(report) if done["rc"] == 0 else None
            results[f"engine_{source}"] = numbers
            rows.append({"step": f"verify engine ({source})", "rc": done["rc"], "s": done["seconds"],
                         "result": summary(numbers) if numbers else last_error(done)})
        bench_json = work / "bench.json"
        done = step("bench", ["bench", model.name, engine, *spec, "--runs", str(args.runs), "--warmup", "5",
                              "--json", str(bench_json), "--no-progress"])
        if done["rc"] == 0:
            bench = json.loads(bench_json.read_text())["results"]
            results["latency_ms"] = {row["precision"]: {"p50": row["latency_p50_ms"], "p95": row["latency_p95_ms"]}
                                     for row in bench}
            result = ", ".join(f"{p} p50 {v['p50']:.1f} ms p95 {v['p95']:.1f} ms"
                               for p, v in results["latency_ms"].items())
        else:
            result = last_error(done)
        rows.append({"step": "bench FP32 vs INT8", "rc": done["rc"], "s": done["seconds"], "result": result})
    if args.budget is not None:
        out = f"{model.stem}.budget.int8.onnx"
        done = step("calibrate budget", ["calibrate", model.name, *spec, *calib, "-n", str(args.calib_frames),
                                         "--target", "cpu", "--method", chosen, "-o", out, "--max-miou-drop",
                                         str(args.budget), "--eval-images", str(frames), "--eval-frames",
                                         str(args.max_frames), "--max-rounds", str(args.max_rounds), "--no-progress"])
        accuracy = [line for line in done["stdout"].splitlines() if line.startswith(("accuracy", "float "))]
        results["budget"] = {"max_miou_drop": args.budget, "rc": done["rc"], "lines": accuracy}
        rows.append({"step": f"calibrate --max-miou-drop {args.budget:g} (no masks)", "rc": done["rc"],
                     "s": done["seconds"], "result": "; ".join(accuracy) or last_error(done)})
    return {**results, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="the third-party float .onnx (not in the repository)")
    parser.add_argument("--spec", type=Path, help="its spec JSON (classes, size, layout, scale, traversable)")
    parser.add_argument("--calib-video", type=Path, help="footage to calibrate on (default: the verify frames)")
    parser.add_argument("--calib-frames", type=int, default=100, help="calibration frames (default 100)")
    parser.add_argument("--images", type=Path, default=Path("/work/shared/data/camvid/train"),
                        help="folder of real frames to verify on (default: the shared CamVid train folder)")
    parser.add_argument("--match", default="0016E5", help="only images whose names start with this (one sequence)")
    parser.add_argument("--max-frames", type=int, default=36, help="verify frames: the first N that match")
    parser.add_argument("--video", type=Path, help="also verify the engine on this video, frame by frame")
    parser.add_argument("--method", default="percentile",
                        help="the method the engine is built from if it calibrated (default percentile, edgeseg's "
                             "default); else the one whose INT8 model agreed best with float")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model in bench (default 30)")
    parser.add_argument("--budget", type=float, help="also calibrate with --max-miou-drop PP on the verify frames")
    parser.add_argument("--max-rounds", type=int, default=4, help="rounds of the --budget search (default 4)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.model is None or not args.model.is_file():
        why = "--model was not given" if args.model is None else f"there is no file at {args.model}"
        print(f"skipped: no third-party model ({why}); pass --model PATH --spec FILE")
        return
    if args.spec is None or not args.spec.is_file():
        raise SystemExit("--spec FILE is needed: the model carries no edgeseg spec")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run_chain(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="edgeseg-third-party-") as work:
            results = run_chain(args, Path(work))
    print()
    print_table(results["rows"], ["step", "rc", "s", "result"])
    write_json("third_party_onnx", {k: v for k, v in results.items() if k != "rows"} | {"table": results["rows"]})


if __name__ == "__main__":
    main()
