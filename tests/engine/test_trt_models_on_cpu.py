"""The FP16 model TensorRT 11 builds from, run under ONNX Runtime: same class maps as float.

TensorRT 11 is strongly typed, so `build-engine --fp16` first converts the ONNX to mixed
precision (`trt_build.convert_to_fp16`) and TensorRT builds exactly that graph. No GPU is needed
to check the conversion itself: the converted model runs under ONNX Runtime here and goes
through `edgeseg verify` against the float model on labelled frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.engine.trt_build import convert_to_fp16
from edgeseg.onnxmeta import read_spec_from_onnx_file
from edgeseg.verify import verify

pytest.importorskip("onnxconverter_common", reason="needs onnxconverter-common (pip install -e '.[dev]')")


def test_fp16_model_for_tensorrt_11_keeps_parity_under_onnx_runtime(tiny, tmp_path, helpers):
    import onnx
    from onnx import TensorProto

    fp16 = convert_to_fp16(tiny.dynamic, tmp_path / "tiny.fp16.onnx")
    model = onnx.load(str(fp16))
    io_types = [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]
    assert io_types == [TensorProto.FLOAT, TensorProto.FLOAT], "float32 in and out, as edgeseg feeds and reads"
    assert {init.data_type for init in model.graph.initializer if init.name in ("w1", "w2")} == {TensorProto.FLOAT16}
    assert read_spec_from_onnx_file(fp16) == helpers.spec

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for index, frame in enumerate(helpers.colour_frames(24, size=16, seed=5)):
        cv2.imwrite(str(images / f"{index:02d}.png"), frame[..., ::-1])
        cv2.imwrite(str(masks / f"{index:02d}.png"), np.argmax(frame, axis=-1).astype(np.uint8))
    data = f"index:{images},{masks}?classes=red,green,blue"
    report = verify(tiny.dynamic, fp16, data, subset="all", progress=False)
    assert report.frames == 24 and report.float_scores.mean_iou > 0.9, "the float model itself must be right"
    assert report.agreement >= 0.999 and abs(report.miou_drop_pp) <= 0.1, report.table()
