"""Training-time segmentation metrics: a streaming confusion matrix and scores read from it.

Each metric accumulates a confusion matrix (rows truth, columns prediction) over the valid
pixels in a float64 variable, exact up to 2**53 pixels, which Keras sums across replicas under
`tf.distribute`. Multiclass predictions are the argmax of the logits; binary ones are
`sigmoid probability > threshold`. The numbers equal `edgeseg.evalmetrics` on the same pixels,
except that an undefined score (nothing seen yet, no foreground at all) reads 0 here, where
Keras logs need a number, and NaN there. Labels outside [0, C) are skipped like `ignore_index`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from edgeseg.errors import SpecError

TASKS = ("multiclass", "binary")


def confusion_counts(
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    num_classes: int,
    ignore_index: int = 255,
    task: str = "multiclass",
    threshold: float = 0.5,
    sample_weight: tf.Tensor | None = None,
) -> tf.Tensor:
    """The float64 [C, C] confusion matrix of one batch.

    Args:
        y_true: class indices [B, H, W] or [B, H, W, 1].
        y_pred: logits [B, H, W, C] (multiclass) or probabilities [B, H, W, 1] (binary).
        sample_weight: optional weights broadcastable to [B, H, W] ([B] weighs whole images).
    """
    y_true = tf.convert_to_tensor(y_true)
    y_pred = tf.convert_to_tensor(y_pred)
    if y_true.shape.rank == 4:
        y_true = y_true[..., 0]
    labels = tf.cast(y_true, tf.int32)
    if task == "binary":
        predicted = tf.cast(y_pred[..., 0] > threshold, tf.int32)
    else:
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    weights = tf.cast(valid, tf.float64)
    if sample_weight is not None:
        sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float64)
        if sample_weight.shape.rank == 1:
            sample_weight = sample_weight[:, None, None]
        elif sample_weight.shape.rank == 4:
            sample_weight = sample_weight[..., 0]
        weights = weights * sample_weight
    # Invalid pixels land in cell 0 with weight 0, which keeps every shape static (XLA).
    cell = tf.where(valid, labels * num_classes + predicted, 0)
    counts = tf.math.unsorted_segment_sum(
        tf.reshape(weights, [-1]), tf.reshape(cell, [-1]), num_classes * num_classes
    )
    return tf.reshape(counts, [num_classes, num_classes])


@keras.saving.register_keras_serializable(package="edgeseg")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Streams the confusion matrix; subclasses turn it into a score.

    `result()` returns the matrix as float32 for logging; `.confusion` holds the exact float64
    counts.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        task: str = "multiclass",
        threshold: float = 0.5,
        name: str = "confusion_matrix",
        dtype=None,
    ):
        if task not in TASKS:
            raise SpecError(f"task {task!r} is not one of {', '.join(TASKS)}")
        if task == "binary" and num_classes != 2:
            raise SpecError(f"a binary task has exactly 2 classes, got {num_classes}")
        if num_classes < 2:
            raise SpecError(f"segmentation metrics need at least 2 classes, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise SpecError(
                f"ignore_index {ignore_index} is a class index (0..{num_classes - 1}); use 255"
            )
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.task = task
        self.threshold = float(threshold)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            name="confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.confusion.assign_add(
            confusion_counts(
                y_true,
                y_pred,
                self.num_classes,
                self.ignore_index,
                self.task,
                self.threshold,
                sample_weight,
            )
        )

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def score(self, cm: tf.Tensor) -> tf.Tensor:
        """The score of a float64 confusion matrix; the base class returns the matrix."""
        return cm

    def result(self):
        return tf.cast(self.score(tf.convert_to_tensor(self.confusion)), self.dtype)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "task": self.task,
            "threshold": self.threshold,
        }


def _mean_where(values: tf.Tensor, defined: tf.Tensor) -> tf.Tensor:
    defined = tf.cast(defined, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * defined), tf.reduce_sum(defined))


@keras.saving.register_keras_serializable(package="edgeseg")
class MeanIoU(ConfusionMatrixMetric):
    """Mean IoU over the classes present in the truth or the prediction."""

    def __init__(self, num_classes: int, ignore_index: int = 255, name: str = "mean_iou", **kw):
        super().__init__(num_classes, ignore_index, name=name, **kw)

    def score(self, cm):
        tp = tf.linalg.diag_part(cm)
        union = tf.reduce_sum(cm, axis=0) + tf.reduce_sum(cm, axis=1) - tp
        return _mean_where(tf.math.divide_no_nan(tp, union), union > 0)


@keras.saving.register_keras_serializable(package="edgeseg")
class PixelAccuracy(ConfusionMatrixMetric):
    """Correct pixels over valid pixels."""

    def __init__(
        self, num_classes: int, ignore_index: int = 255, name: str = "pixel_accuracy", **kw
    ):
        super().__init__(num_classes, ignore_index, name=name, **kw)

    def score(self, cm):
        return tf.math.divide_no_nan(tf.linalg.trace(cm), tf.reduce_sum(cm))


@keras.saving.register_keras_serializable(package="edgeseg")
class MeanAccuracy(ConfusionMatrixMetric):
    """Mean over the classes present in the truth of their pixel recall."""

    def __init__(
        self, num_classes: int, ignore_index: int = 255, name: str = "mean_accuracy", **kw
    ):
        super().__init__(num_classes, ignore_index, name=name, **kw)

    def score(self, cm):
        support = tf.reduce_sum(cm, axis=1)
        return _mean_where(tf.math.divide_no_nan(tf.linalg.diag_part(cm), support), support > 0)


class _BinaryMetric(ConfusionMatrixMetric):
    """A foreground (class 1) score of sigmoid probabilities thresholded at `threshold`."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.5, name=None, **kw):
        kw.pop("num_classes", None)  # fixed at 2; present in configs saved by the base class
        kw.pop("task", None)
        super().__init__(2, ignore_index, task="binary", threshold=threshold, name=name, **kw)

    def score(self, cm):
        tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
        numerator, denominator = self.ratio(tp, fp, fn)
        return tf.math.divide_no_nan(numerator, denominator)

    def ratio(self, tp, fp, fn):
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="edgeseg")
class Dice(_BinaryMetric):
    """2 TP / (2 TP + FP + FN) of the foreground."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.5, name="dice", **kw):
        super().__init__(ignore_index, threshold, name=name, **kw)

    def ratio(self, tp, fp, fn):
        return 2.0 * tp, 2.0 * tp + fp + fn


@keras.saving.register_keras_serializable(package="edgeseg")
class IoU(_BinaryMetric):
    """TP / (TP + FP + FN) of the foreground."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.5, name="iou", **kw):
        super().__init__(ignore_index, threshold, name=name, **kw)

    def ratio(self, tp, fp, fn):
        return tp, tp + fp + fn


@keras.saving.register_keras_serializable(package="edgeseg")
class Precision(_BinaryMetric):
    """TP / (TP + FP) of the foreground."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.5, name="precision", **kw):
        super().__init__(ignore_index, threshold, name=name, **kw)

    def ratio(self, tp, fp, fn):
        return tp, tp + fp


@keras.saving.register_keras_serializable(package="edgeseg")
class Recall(_BinaryMetric):
    """TP / (TP + FN) of the foreground."""

    def __init__(self, ignore_index: int = 255, threshold: float = 0.5, name="recall", **kw):
        super().__init__(ignore_index, threshold, name=name, **kw)

    def ratio(self, tp, fp, fn):
        return tp, tp + fn


def metrics_for_task(
    task: str, num_classes: int, ignore_index: int = 255
) -> list[ConfusionMatrixMetric]:
    """What `train` monitors: mIoU, pixel and mean accuracy, or binary dice/IoU/precision/recall."""
    if task == "multiclass":
        return [
            MeanIoU(num_classes, ignore_index),
            PixelAccuracy(num_classes, ignore_index),
            MeanAccuracy(num_classes, ignore_index),
        ]
    if task == "binary":
        if num_classes != 2:
            raise SpecError(f"a binary task has exactly 2 classes, got {num_classes}")
        return [cls(ignore_index) for cls in (Dice, IoU, Precision, Recall)]
    raise SpecError(f"task {task!r} is not one of {', '.join(TASKS)}")
