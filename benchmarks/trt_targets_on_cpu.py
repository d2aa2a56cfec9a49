"""The models TensorRT builds from, run under ONNX Runtime on the CPU and compared with float.

With no GPU here, this is as close to a TensorRT engine as this machine gets: the FP16 ONNX the
TensorRT 11 path builds from (`edgeseg.engine.trt_build.convert_to_fp16`) and the symmetric int8
Q/DQ model of `edgeseg calibrate --target tensorrt` both run under ONNX Runtime, on real frames,
against the float model. Their class maps are compared with the float model's (pixel agreement,
and per-class IoU / mean IoU taking the float map as the reference): what the GPU engine should
reproduce. No ground truth is needed (drive videos, dashcam folders).

    python benchmarks/trt_targets_on_cpu.py float.onnx model.fp16.onnx model.trt-int8.onnx \
        --video drive.mp4 --frames 60 --name twinlitenet_camvid

Each candidate is one `edgeseg verify FLOAT CANDIDATE --video|--images --max-frames N` (the float
model as the reference, no masks): this script only runs those and tabulates their JSON reports.
Prints a table and writes benchmarks/results/trt_targets_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table, run_edgeseg, write_json  # noqa: E402


def verify_row(float_model: Path, candidate: Path, frames_args: list[str], work: Path) -> dict:
    """One `edgeseg verify` of `candidate` against the float model; its agreement and IoU vs float."""
    report = work / f"{candidate.name}.json"
    done = run_edgeseg(["verify", str(float_model.resolve()), str(candidate.resolve()), *frames_args,
                        "--json", str(report), "--out", str(work / candidate.name), "--no-progress"], work)
    if done["rc"] != 0:
        raise SystemExit(f"edgeseg verify failed on {candidate}: {done['stderr']}")
    data = json.loads(report.read_text())
    scores = data["engine_vs_float"]
    return {"model": candidate.name, "frames": data["frames"], "agreement": data["agreement"],
            "worst_frame_agreement": min(frame["agreement"] for frame in data["worst_frames"]),
            "miou_vs_float": scores["mean_iou"],
            **{f"iou_{name}": iou for name, iou in scores["per_class_iou"].items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_model", type=Path)
    parser.add_argument("candidates", type=Path, nargs="+", help="FP16 / Q/DQ ONNX models of the same spec")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path)
    source.add_argument("--images", type=Path)
    parser.add_argument("--frames", type=int, default=60, help="the first N frames (default 60)")
    parser.add_argument("--name", default="run", help="results/trt_targets_NAME.json")
    args = parser.parse_args(argv)

    frames_args = ["--video", str(args.video.resolve())] if args.video else ["--images", str(args.images.resolve())]
    frames_args += ["--max-frames", str(args.frames)]
    with tempfile.TemporaryDirectory(prefix="edgeseg-trt-targets-") as work:
        rows = [verify_row(args.float_model, path, frames_args, Path(work)) for path in args.candidates]
    names = [key for key in rows[0] if key.startswith("iou_")]
    print(f"{rows[0]['frames']} frames from {args.video or args.images}; reference: {args.float_model.name}")
    print_table(rows, ["model", "agreement", "worst_frame_agreement", "miou_vs_float", *names])
    write_json(f"trt_targets_{args.name}", {
        "source": str(args.video or args.images), "frames": rows[0]["frames"],
        "classes": [name[4:] for name in names], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
