"""The TensorRT-target models of the test suite's tiny trained model, verified against float with labels.

The model is the one tests/calib/conftest.py trains (32x32 colour-block scenes, a block's class is
its dominant colour; strided conv, residual add, average pool, bilinear upsampling; 6 epochs).
Its FP16 conversion (the TensorRT 11 path) and its `edgeseg calibrate --target tensorrt` Q/DQ model
go through `edgeseg verify` on 200 held-out labelled scenes, under ONNX Runtime (no GPU needed).

    python benchmarks/trt_targets_tiny_model.py [--out DIR]

Prints verify's summary per model and writes benchmarks/results/trt_targets_tiny_model.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="trt_targets_tiny_"))

    from edgeseg.cli import main as edgeseg
    from edgeseg.engine.trt_build import convert_to_fp16

    spec = importlib.util.spec_from_file_location("calib_conftest", ROOT / "tests" / "calib" / "conftest.py")
    conftest = sys.modules.setdefault("calib_conftest", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(conftest)

    class Folders:  # what the fixture asks of pytest's tmp_path_factory
        def mktemp(self, name: str) -> Path:
            (out / name).mkdir(parents=True, exist_ok=True)
            return out / name

    model = conftest.tiny_model._get_wrapped_function()(Folders()).onnx_path
    images, masks = conftest.block_scenes(200, seed=11)
    conftest.write_images(out / "val" / "images", images)
    (out / "val" / "masks").mkdir(parents=True, exist_ok=True)
    for index, mask in enumerate(masks):
        cv2.imwrite(str(out / "val" / "masks" / f"{index:03d}.png"), mask)
    conftest.write_images(out / "calib", conftest.block_scenes(100, seed=1)[0])

    fp16 = convert_to_fp16(model, out / "model.fp16.onnx")
    qdq = out / "model.trt-int8.onnx"
    if edgeseg(["calibrate", str(model), "--images", str(out / "calib"), "--target", "tensorrt", "-n", "100",
                "--no-progress", "-o", str(qdq)]):
        return 1
    rows = []
    data = f"index:{out / 'val' / 'images'},{out / 'val' / 'masks'}?classes=red,green,blue"
    for candidate in (fp16, qdq):
        report = out / f"verify-{candidate.stem}.json"
        if edgeseg(["verify", str(model), str(candidate), "--data", data, "--subset", "all", "--no-progress",
                    "--json", str(report)]):
            return 1
        result = json.loads(report.read_text())
        rows.append({"model": candidate.name, "float_miou": result["float_mean_iou"],
                     "engine_miou": result["engine_mean_iou"], "miou_drop_pp": result["miou_drop_pp"],
                     "agreement": result["agreement"], "frames": result["frames"]})
    print_table(rows, ["model", "frames", "float_miou", "engine_miou", "miou_drop_pp", "agreement"])
    write_json("trt_targets_tiny_model", {"data": "200 held-out colour-block scenes", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
