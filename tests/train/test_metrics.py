"""Streaming TF metrics: by hand, against edgeseg.evalmetrics, inside Keras fit/evaluate."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from edgeseg.errors import SpecError
from edgeseg.evalmetrics import confusion_matrix, scores_from_confusion
from edgeseg.train.losses import loss_for_task
from edgeseg.train.metrics import (
    ConfusionMatrixMetric,
    Dice,
    IoU,
    MeanAccuracy,
    MeanIoU,
    PixelAccuracy,
    Precision,
    Recall,
    metrics_for_task,
)

# The same 2x3 examples as tests/test_evalmetrics.py, worked out by hand there and here.
TRUTH = np.array([[[0, 1, 1], [255, 2, 0]]], np.uint8)
PRED = np.array([[[0, 1, 2], [1, 2, 1]]], np.uint8)
BIN_TRUTH = np.array([[[0, 1, 1], [255, 1, 0]]], np.uint8)
BIN_PRED = np.array([[[1, 1, 0], [0, 1, 1]]], np.uint8)


def _logits(pred, num_classes):
    return (np.eye(num_classes, dtype=np.float32)[pred] * 4.0) - 2.0


def _probabilities(pred):
    return np.where(pred == 1, 0.8, 0.3).astype(np.float32)[..., None]


def _value(metric, y_true, y_pred):
    metric.reset_state()
    metric.update_state(y_true, y_pred)
    return float(metric.result())


def test_multiclass_metrics_by_hand():
    logits = _logits(PRED, 3)
    assert _value(MeanIoU(3), TRUTH, logits) == pytest.approx(4 / 9)
    assert _value(PixelAccuracy(3), TRUTH, logits) == pytest.approx(3 / 5)
    assert _value(MeanAccuracy(3), TRUTH, logits) == pytest.approx(2 / 3)
    matrix = ConfusionMatrixMetric(3)
    matrix.update_state(TRUTH[..., None], logits)  # masks with a channel axis work too
    np.testing.assert_array_equal(matrix.result().numpy(), [[1, 1, 0], [0, 1, 1], [0, 0, 1]])


def test_binary_metrics_by_hand():
    probs = _probabilities(BIN_PRED)
    assert _value(Dice(), BIN_TRUTH, probs) == pytest.approx(4 / 7)
    assert _value(IoU(), BIN_TRUTH, probs) == pytest.approx(2 / 5)
    assert _value(Precision(), BIN_TRUTH, probs) == pytest.approx(1 / 2)
    assert _value(Recall(), BIN_TRUTH, probs) == pytest.approx(2 / 3)
    # The threshold is configurable: at 0.9 nothing is foreground, so recall is 0.
    assert _value(Recall(threshold=0.9), BIN_TRUTH, probs) == 0.0


@pytest.mark.parametrize("metric", [MeanIoU(3), PixelAccuracy(3), MeanAccuracy(3)])
def test_ignored_pixels_do_not_count(metric):
    logits = _logits(PRED, 3)
    before = _value(metric, TRUTH, logits)
    changed = logits.copy()
    changed[0, 1, 0] = [9.0, -9.0, -9.0]  # a different prediction at the ignored pixel
    assert _value(metric, TRUTH, changed) == pytest.approx(before)
    changed[0, 0, 0] = [-9.0, 9.0, -9.0]  # ...while a labelled pixel does count
    assert _value(metric, TRUTH, changed) != pytest.approx(before)


def test_streaming_and_reset():
    metric = MeanIoU(3)
    logits = _logits(PRED, 3)
    metric.update_state(TRUTH, logits)
    metric.update_state(TRUTH, logits)
    assert float(metric.result()) == pytest.approx(4 / 9)  # same data twice: same score
    np.testing.assert_array_equal(metric.confusion.numpy(), 2 * confusion_matrix(TRUTH, PRED, 3))
    metric.reset_state()
    assert float(metric.result()) == 0.0  # nothing seen: 0, not NaN
    assert not np.any(metric.confusion.numpy())


def test_tf_metrics_equal_numpy_scores_on_random_data():
    rng = np.random.default_rng(5)
    num_classes = 5
    multiclass = [MeanIoU(num_classes), PixelAccuracy(num_classes), MeanAccuracy(num_classes)]
    binary = [Dice(), IoU(), Precision(), Recall()]
    truths, preds, bin_truths, bin_preds = [], [], [], []
    for _ in range(3):  # three batches streamed into the same metrics
        truth = rng.integers(0, num_classes, (2, 16, 16)).astype(np.uint8)
        truth[rng.random(truth.shape) < 0.15] = 255
        logits = rng.normal(size=truth.shape + (num_classes,)).astype(np.float32)
        bin_truth = (rng.random(truth.shape) < 0.3).astype(np.uint8)
        bin_truth[truth == 255] = 255
        probs = rng.random(truth.shape + (1,)).astype(np.float32)
        for metric in multiclass:
            metric.update_state(truth, logits)
        for metric in binary:
            metric.update_state(bin_truth, probs)
        truths.append(truth)
        preds.append(logits.argmax(-1))
        bin_truths.append(bin_truth)
        bin_preds.append((probs[..., 0] > 0.5).astype(np.uint8))

    scores = scores_from_confusion(confusion_matrix(np.stack(truths), np.stack(preds), num_classes))
    expected = [scores.mean_iou, scores.pixel_accuracy, scores.mean_accuracy]
    for metric, value in zip(multiclass, expected):
        assert float(metric.result()) == pytest.approx(value, abs=1e-6), metric.name
    bin_cm = confusion_matrix(np.stack(bin_truths), np.stack(bin_preds), 2)
    bin_scores = scores_from_confusion(bin_cm)
    expected = [bin_scores.dice, bin_scores.iou, bin_scores.precision, bin_scores.recall]
    for metric, value in zip(binary, expected):
        assert float(metric.result()) == pytest.approx(value, abs=1e-6), metric.name


def test_factory_names_and_config_round_trip():
    names = [m.name for m in metrics_for_task("multiclass", 4)]
    assert names == ["mean_iou", "pixel_accuracy", "mean_accuracy"]
    assert [m.name for m in metrics_for_task("binary", 2)] == ["dice", "iou", "precision", "recall"]
    with pytest.raises(SpecError, match="exactly 2"):
        metrics_for_task("binary", 3)
    with pytest.raises(SpecError, match="depth"):
        metrics_for_task("depth", 3)
    with pytest.raises(SpecError, match="ignore_index 1"):
        MeanIoU(3, ignore_index=1)
    for original in [MeanIoU(4, ignore_index=254), Recall(threshold=0.7)]:
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(original)
        )
        assert type(restored) is type(original)
        assert restored.get_config() == original.get_config()


def test_metrics_inside_fit_evaluate_and_reload(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (8, 16, 16, 3)).astype(np.float32)
    labels = images.argmax(-1).astype(np.uint8)
    labels[:, :3] = 255
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 1)])
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=loss_for_task("multiclass", 3),
        metrics=metrics_for_task("multiclass", 3),
        jit_compile=True,  # what "auto" picks on a GPU: the metrics must compile with XLA
    )
    model.fit(images, labels, batch_size=4, epochs=2, verbose=0)
    result = model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
    pred = model.predict(images, verbose=0).argmax(-1)
    scores = scores_from_confusion(confusion_matrix(labels, pred, 3))
    assert result["mean_iou"] == pytest.approx(scores.mean_iou, abs=1e-6)
    assert result["pixel_accuracy"] == pytest.approx(scores.pixel_accuracy, abs=1e-6)
    assert result["mean_accuracy"] == pytest.approx(scores.mean_accuracy, abs=1e-6)

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # compile info: the edgeseg loss and metrics
    again = reloaded.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
    for key in ("loss", "mean_iou", "pixel_accuracy", "mean_accuracy"):
        assert again[key] == pytest.approx(result[key], abs=1e-5), key


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    from edgeseg.evalmetrics import confusion_matrix, scores_from_confusion
    from edgeseg.train.losses import loss_for_task
    from edgeseg.train.metrics import metrics_for_task

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    labels = images.argmax(-1).astype(np.uint8)
    labels[:, :3] = 255
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 1)])
        model.compile(
            optimizer="adam",
            loss=loss_for_task("multiclass", 3),
            metrics=metrics_for_task("multiclass", 3),
        )
    history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0)
    result = model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
    logits = model.predict(images, batch_size=4, verbose=0)
    loss = loss_for_task("multiclass", 3)
    halves = [float(loss(labels[i:i + 2], logits[i:i + 2])) for i in (0, 2)]
    scores = scores_from_confusion(confusion_matrix(labels, logits.argmax(-1), 3))
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "fit_loss": history.history["loss"],
        "loss": result["loss"],
        "expected_loss": float(np.mean(halves)),
        "mean_iou": result["mean_iou"],
        "expected_mean_iou": scores.mean_iou,
    }))
    """
)


def test_mirrored_strategy_on_two_cpu_devices():
    """Each replica's batch loss is scaled for the gradient sum and the metrics are summed."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        capture_output=True, text=True, env=env, cwd=root, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert all(np.isfinite(out["fit_loss"]))
    # Without the per-replica scaling Keras would report twice the loss.
    assert out["loss"] == pytest.approx(out["expected_loss"], rel=1e-5)
    assert out["mean_iou"] == pytest.approx(out["expected_mean_iou"], abs=1e-6)
