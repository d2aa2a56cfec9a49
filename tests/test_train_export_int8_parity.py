"""Parity for real: train a small model, export it, quantize it to INT8, verify in task metrics.

A compact U-Net (filters=8, 64x64) trains for a few epochs on the synthetic world, is exported
with `export_onnx` and quantized for the CPU with `calibrate` on frames of the training subset;
`verify` then compares, on the held-out val world (64 frames):

- the float ONNX with the Keras model: pixel agreement >= 0.999 (same graph, float32 both ways);
- the INT8 model with the float ONNX: mean-IoU drop <= 2 percentage points and pixel agreement
  >= 0.97. A model this small (a few thousand weights, a few epochs) has less redundancy than
  a real one, so the tolerances are looser than the 0.5 pp a production gate would use.
  Measured here: drop about -0.4 pp (INT8 slightly better), agreement about 0.994.
"""

from __future__ import annotations

import pytest

from edgeseg.verify import check_gates, verify

DATA = "synthetic://?seed=1&n=64"
SIZE = (64, 64)
MAX_INT8_MIOU_DROP_PP = 2.0
MIN_INT8_AGREEMENT = 0.97
MIN_EXPORT_AGREEMENT = 0.999
MIN_FLOAT_MIOU = 0.35  # the model must have learnt something, or parity would be about noise


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """(run folder, float ONNX, INT8 ONNX) of a model trained here, once for the module."""
    from edgeseg.calib import DatasetImages, calibrate
    from edgeseg.export import export_onnx
    from edgeseg.train.fit import TrainConfig, train

    root = tmp_path_factory.mktemp("parity")
    config = TrainConfig(model="compact_unet", data=DATA, out=str(root / "run"), size=SIZE, epochs=6, batch=8,
                         learning_rate=3e-3, model_options={"filters": 8}, augment=False, patience=100)
    train(config, progress=False)
    float_onnx = root / "model.onnx"
    export_onnx(root / "run", float_onnx)
    warnings: list[str] = []
    report = calibrate(float_onnx, DatasetImages(DATA, "train"), target="cpu", num_frames=64,
                       output=root / "model.int8.onnx", fmt="qoperator", progress=False, warn=warnings.append)
    return root / "run", float_onnx, report.output


def test_float_onnx_matches_keras(deployed):
    run_dir, float_onnx, _ = deployed
    report = verify(run_dir, float_onnx, DATA, progress=False)
    print(report.table())
    assert report.float_backend == "keras" and report.engine_backend == "onnxruntime"
    assert report.float_scores.mean_iou >= MIN_FLOAT_MIOU, (
        f"the trained model reaches only mean IoU {report.float_scores.mean_iou:.4f} on val"
    )
    assert report.agreement >= MIN_EXPORT_AGREEMENT, (
        f"float ONNX agrees with Keras on {report.agreement:.5f} of the pixels, "
        f"want >= {MIN_EXPORT_AGREEMENT}; mean IoU drop {report.miou_drop_pp:+.3f} pp"
    )
    assert abs(report.miou_drop_pp) <= 0.1, f"float ONNX vs Keras mean IoU differs by {report.miou_drop_pp:+.3f} pp"


def test_int8_matches_float_in_task_metrics(deployed, tmp_path):
    _, float_onnx, int8_onnx = deployed
    report = verify(float_onnx, int8_onnx, DATA, json_path=tmp_path / "parity.json", progress=False)
    print(report.table())
    numbers = (
        f"float mean IoU {report.float_scores.mean_iou:.4f}, INT8 {report.engine_scores.mean_iou:.4f}, "
        f"drop {report.miou_drop_pp:+.3f} pp, pixel agreement {report.agreement:.5f} "
        f"over {report.frames} frames"
    )
    assert report.frames == 64
    assert report.float_scores.mean_iou >= MIN_FLOAT_MIOU, numbers
    assert report.miou_drop_pp <= MAX_INT8_MIOU_DROP_PP, numbers
    assert report.agreement >= MIN_INT8_AGREEMENT, numbers
    assert report.agreement < 1.0, f"INT8 identical to float is suspicious: {numbers}"
    assert check_gates(report, MAX_INT8_MIOU_DROP_PP, MIN_INT8_AGREEMENT) == [], numbers
    assert len(report.pictures) == 4 and all((tmp_path / p).exists() for p in report.pictures)
