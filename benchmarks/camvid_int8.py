"""INT8 accuracy on CamVid: export, calibrate, build and verify an edgeseg CamVid run, as a user would.

    .venv/bin/python benchmarks/camvid_int8.py [--run runs/bench-camvid] [--data camvid:DIR]
        [--split 0.8,0.2,0] [--out /tmp/camvid] [--frames 200] [--variants default,float-head,...]

The claim it checks: INT8 mean-IoU drop <= 1.0 pp on the CamVid validation split and pixel
agreement >= 99%. Each step is a subprocess of `.venv/bin/edgeseg`; per calibration variant V
(extra calibrate flags, see VARIANTS: default none, float-head `--float-head`, search
`--max-miou-drop 1.0`, ...):

    edgeseg export RUN -o OUT/camvid.onnx
    edgeseg calibrate OUT/camvid.onnx --target cpu --data DATA -n 200 -o OUT/camvid.V.int8.onnx [flags]
    edgeseg build-engine OUT/camvid.V.int8.onnx --int8 -o OUT/camvid.V.int8.cpu.onnx
    edgeseg verify RUN OUT/camvid.V.int8.cpu.onnx --data DATA --split SPLIT --subset val \
        --max-miou-drop 1.0 --min-agreement 0.99 --json OUT/verify.V.json

The float reference in verify is the Keras model of the run folder. `--data` and `--split` default
to the run's config.json, so verify scores on exactly the frames training held out. Calibration
reads the train subset of `--data`; `edgeseg calibrate` has no --split flag and splits with the
default 0.8,0.1,0.1, whose train part (the first 80% of the same seeded permutation) lies inside
the training split 0.8,0.2,0 of a CamVid folder without its own val/: it calibrates on training
frames only. (The `search` variant's own evaluation uses that default split's val subset, 36 of
whose 37 frames are in the real val subset.) Prints a table and writes
benchmarks/results/camvid_int8.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _table import print_table, run_edgeseg, write_json  # noqa: E402

from edgeseg.cli.common import split as parse_split  # noqa: E402

# Calibration variants: extra `edgeseg calibrate` flags. Ranges of one method are computed once
# and reused by the later variants (camvid.calib.json).
VARIANTS = {
    "default": [],
    "float-head": ["--float-head"],
    "qdq": ["--format", "qdq"],
    "qdq-float-head": ["--format", "qdq", "--float-head"],
    "search": ["--max-miou-drop", "1.0"],
    "minmax": ["--method", "minmax"],
    "percentile": ["--method", "percentile"],
}


def edgeseg(args: list[str]) -> dict:
    """Run one `edgeseg` command line in the repository root."""
    return run_edgeseg(args, REPO)


def grab(pattern: str, text: str, cast=float):
    match = re.search(pattern, text)
    return cast(match.group(1)) if match else None


def calibrate_build_verify(name: str, flags: list[str], onnx: Path, run: Path, data: str, split_text: str,
                           args) -> dict:
    """One calibration variant: calibrate with `flags`, build the CPU engine, verify it against the run."""
    out = onnx.parent
    int8, engine = out / f"camvid.{name}.int8.onnx", out / f"camvid.{name}.int8.cpu.onnx"
    steps: dict[str, dict] = {}
    calib = steps["calibrate"] = edgeseg(["calibrate", str(onnx), "--target", "cpu", "--data", data,
                                          "-n", str(args.frames), "-o", str(int8), "--no-progress", *flags])
    calib["layout"] = grab(r"target\s+cpu: (.+)", calib["stdout"], str)
    calib["format"] = grab(r"format\s+(.+)", calib["stdout"], str)
    calib["float_nodes"] = grab(r"float\s+(.+)", calib["stdout"], str)
    calib["search"] = grab(r"accuracy\s+(.+)", calib["stdout"], str)
    if calib["rc"]:
        return steps
    build = steps["build-engine"] = edgeseg(["build-engine", str(int8), "--int8", "-o", str(engine)])
    if build["rc"]:
        return steps
    verify_json = out / f"verify.{name}.json"
    verify = steps["verify"] = edgeseg(["verify", str(run), str(engine), "--data", data, "--split", split_text,
                                        "--subset", "val", "--max-miou-drop", f"{args.gate_drop:g}",
                                        "--min-agreement", f"{args.gate_agreement:g}", "--json", str(verify_json),
                                        "--out", str(out / f"pictures.{name}"), "--no-progress"])
    if verify_json.is_file():
        report = json.loads(verify_json.read_text())
        verify.update({key: report[key] for key in ("frames", "pixels", "float_backend", "engine_backend",
                                                    "float_mean_iou", "engine_mean_iou", "miou_drop_pp",
                                                    "agreement", "per_class_iou_delta_pp")})
        verify["claim_met"] = verify["rc"] == 0
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "bench-camvid", help="edgeseg run folder")
    parser.add_argument("--data", help="the run's --data (default: from its config.json)")
    parser.add_argument("--split", type=parse_split, help="the run's --split (default: from its config.json)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/camvid"), help="folder for the artifacts")
    parser.add_argument("--frames", type=int, default=200, help="calibration frames (default 200)")
    parser.add_argument("--variants", default="default",
                        help=f"comma-separated calibration variants among {', '.join(VARIANTS)} (default: default)")
    parser.add_argument("--gate-drop", type=float, default=1.0, help="verify's mIoU drop gate in pp (default 1.0)")
    parser.add_argument("--gate-agreement", type=float, default=0.99, help="verify's agreement gate (default 0.99)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"unknown variants {unknown}; choose among {', '.join(VARIANTS)}")

    run = args.run.resolve()
    config = json.loads((run / "config.json").read_text())
    data = args.data or config["data"]
    split = args.split or tuple(config["split"])
    split_text = ",".join(f"{v:g}" for v in split)
    onnx = args.out.resolve() / "camvid.onnx"
    onnx.parent.mkdir(parents=True, exist_ok=True)
    results = {"run": str(run), "model": config.get("model"), "data": data, "split": list(split),
               "size": config.get("size"), "calibration_frames": args.frames,
               "claim": {"max_miou_drop_pp": args.gate_drop, "min_agreement": args.gate_agreement}}

    export = results["export"] = edgeseg(["export", str(run), "-o", str(onnx)])
    export["max_abs_diff"] = grab(r"max \|diff\| (\S+)", export["stdout"])
    export["argmax_agreement_pct"] = grab(r"argmax agreement ([\d.]+)%", export["stdout"])
    rows = []
    if export["rc"] == 0:
        results["variants"] = {}
        for name in variants:
            steps = results["variants"][name] = {"calibrate_flags": VARIANTS[name],
                                                 **calibrate_build_verify(name, VARIANTS[name], onnx, run, data,
                                                                          split_text, args)}
            calib, verify = steps["calibrate"], steps.get("verify", {})
            layout = calib.get("format") or (calib.get("layout") or "").split(",")[0]
            row = {"variant": name, "layout": layout, "float nodes": calib.get("float_nodes"),
                   "calib s": calib["seconds"]}
            if "float_mean_iou" in verify:
                row.update({"float mIoU": round(100 * verify["float_mean_iou"], 2),
                            "int8 mIoU": round(100 * verify["engine_mean_iou"], 2),
                            "drop pp": round(verify["miou_drop_pp"], 3),
                            "agreement %": round(100 * verify["agreement"], 3),
                            "claim": "met" if verify["claim_met"] else "NOT met"})
            else:
                failed = next(s for s in (calib, steps.get("build-engine", {}), verify) if s.get("rc"))
                row["claim"] = "step failed: " + failed["stderr"][-80:]
            rows.append(row)
    print(f"\nexport {export['rc'] == 0 and 'ok' or 'FAILED'}: max|diff| {export['max_abs_diff']}, "
          f"argmax agreement {export['argmax_agreement_pct']}%; verify on the {split_text} split's val subset")
    print_table(rows, ["variant", "layout", "float nodes", "calib s", "float mIoU", "int8 mIoU", "drop pp",
                       "agreement %", "claim"])
    write_json("camvid_int8", results)


if __name__ == "__main__":
    main()
