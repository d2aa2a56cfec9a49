"""The models TensorRT builds from, run under ONNX Runtime on the CPU and compared with float.

With no GPU here, this is as close to a TensorRT engine as this machine gets: the FP16 ONNX the
TensorRT 11 path builds from (`edgeseg.engine.trt_build.convert_to_fp16`) and the symmetric int8
Q/DQ model of `edgeseg calibrate --target tensorrt` both run under ONNX Runtime, on real frames,
against the float model. Their class maps are compared with the float model's (pixel agreement,
and per-class IoU / mean IoU taking the float map as the reference): what the GPU engine should
reproduce. No ground truth is needed (drive videos, dashcam folders).

    python benchmarks/trt_targets_on_cpu.py float.onnx model.fp16.onnx model.trt-int8.onnx \
        --video drive.mp4 --frames 60 --name twinlitenet_camvid

Prints a table and writes benchmarks/results/trt_targets_<name>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table, write_json  # noqa: E402


def read_frames(video: Path | None, images: Path | None, count: int) -> list[np.ndarray]:
    """`count` RGB frames spread over a video, or the first `count` images of a folder."""
    import cv2

    frames = []
    if video is not None:
        capture = cv2.VideoCapture(str(video))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in np.linspace(0, total - 1, min(count, total)).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
    else:
        for path in sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]:
            frames.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    if not frames:
        raise SystemExit(f"no frames read from {video or images}")
    return frames


def class_maps(path: Path, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Each frame's class map, and the class names (parity only: no timing, see int8_cpu.py)."""
    from edgeseg.runtime import Segmenter

    with Segmenter.open(path) as segmenter:
        return [segmenter.seg(frame).class_map for frame in frames], list(segmenter.spec.class_names)


def compare(reference: list[np.ndarray], candidate: list[np.ndarray], names: list[str]) -> dict:
    ref, cand = np.concatenate([m.ravel() for m in reference]), np.concatenate([m.ravel() for m in candidate])
    ious = {}
    for index, name in enumerate(names):
        union = np.count_nonzero((ref == index) | (cand == index))
        ious[name] = np.count_nonzero((ref == index) & (cand == index)) / union if union else None
    present = [v for v in ious.values() if v is not None]
    per_frame = [float(np.mean(a == b)) for a, b in zip(reference, candidate)]
    return {"agreement": float(np.mean(ref == cand)), "worst_frame_agreement": min(per_frame),
            "miou_vs_float": float(np.mean(present)), "iou_vs_float": ious}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_model", type=Path)
    parser.add_argument("candidates", type=Path, nargs="+", help="FP16 / Q/DQ ONNX models of the same spec")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path)
    source.add_argument("--images", type=Path)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--name", default="run", help="results/trt_targets_NAME.json")
    args = parser.parse_args(argv)

    frames = read_frames(args.video, args.images, args.frames)
    reference, names = class_maps(args.float_model, frames)
    rows = []
    for path in args.candidates:
        maps, _ = class_maps(path, frames)
        rows.append({"model": path.name, **compare(reference, maps, names)})
        rows[-1].update({f"iou_{name}": iou for name, iou in rows[-1].pop("iou_vs_float").items()})
    print(f"{len(frames)} frames from {args.video or args.images}; reference: {args.float_model.name}")
    print_table(rows, ["model", "agreement", "worst_frame_agreement", "miou_vs_float", *(f"iou_{n}" for n in names)])
    write_json(f"trt_targets_{args.name}", {
        "source": str(args.video or args.images), "frames": len(frames), "classes": names, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
