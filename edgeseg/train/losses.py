"""Segmentation losses that skip unlabelled pixels.

Conventions (the whole train package follows them): model outputs are NHWC at input
resolution; a multiclass model gives logits [B, H, W, C], a binary model one sigmoid
probability channel [B, H, W, 1]. Masks are [B, H, W] (or [B, H, W, 1]) class indices with
`ignore_index` (255) for unlabelled pixels. Labels outside [0, C) are excluded like ignored
pixels; the data pipeline is where bad mask values are reported.

Every loss here is a batch statistic (a weighted mean over the valid pixels of the batch, a
Dice over the whole batch). Keras reduces per-sample losses and scales them for
`tf.distribute`, so `call` returns the batch loss repeated once per sample: Keras's
"sum_over_batch_size" reduction then gives back the batch loss and divides it by the number
of replicas as the summed gradients need. A batch with no valid pixel has loss 0, never NaN.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from edgeseg.errors import SpecError

BALANCE_MODES = ("none", "inverse_sqrt", "inverse")
_EPSILON = 1e-7


def _labels_and_valid(y_true: tf.Tensor, num_classes: int, ignore_index: int):
    """Integer labels [B, H, W] with invalid pixels set to 0, and the float validity mask."""
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 4:
        y_true = y_true[..., 0]
    labels = tf.cast(y_true, tf.int32)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    return tf.where(valid, labels, 0), tf.cast(valid, tf.float32)


def _per_sample(loss: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """The batch loss once per sample, so Keras's mean reduction returns it unchanged."""
    return tf.fill(tf.shape(y_pred)[:1], loss)


def _check_balance(balance: str) -> None:
    if balance not in BALANCE_MODES:
        raise SpecError(f"class balance {balance!r} is not one of {', '.join(BALANCE_MODES)}")


def class_weights(class_counts: tf.Tensor, balance: str = "inverse_sqrt") -> tf.Tensor:
    """Per-class weights from the valid-pixel counts of one batch.

    "inverse_sqrt" weighs class c by 1/sqrt(f_c) (f_c: its share of the valid pixels),
    "inverse" by 1/f_c, "none" by 1. Classes absent from the batch get weight 0; they have no
    pixel to weigh anyway. The weights need no normalisation because the weighted loss divides
    by the sum of the pixel weights, so their scale cancels: with "inverse" every present class
    counts equally, which is also what median-frequency balancing gives after that division.
    """
    _check_balance(balance)
    counts = tf.cast(class_counts, tf.float32)
    present = counts > 0
    if balance == "none":
        return tf.cast(present, tf.float32)
    frequency = tf.math.divide_no_nan(counts, tf.reduce_sum(counts))
    safe = tf.where(present, frequency, 1.0)
    weights = tf.math.rsqrt(safe) if balance == "inverse_sqrt" else 1.0 / safe
    return tf.where(present, weights, 0.0)


def weighted_cross_entropy(
    y_true: tf.Tensor,
    logits: tf.Tensor,
    ignore_index: int = 255,
    balance: str = "inverse_sqrt",
) -> tf.Tensor:
    """Softmax cross-entropy averaged over valid pixels, weighted per class (a scalar).

    The result is sum_i w(y_i) CE_i / sum_i w(y_i) over the valid pixels i, with the class
    weights w of `class_weights` computed from this batch, so a rare class is not drowned by
    the background.
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = logits.shape[-1]
    labels, valid = _labels_and_valid(y_true, num_classes, ignore_index)
    counts = tf.reduce_sum(tf.one_hot(labels, num_classes) * valid[..., None], axis=[0, 1, 2])
    weights = tf.stop_gradient(class_weights(counts, balance))
    pixel_weights = tf.gather(weights, labels) * valid
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.math.divide_no_nan(
        tf.reduce_sum(ce * pixel_weights), tf.reduce_sum(pixel_weights)
    )


def soft_dice_loss(
    y_true: tf.Tensor,
    logits: tf.Tensor,
    ignore_index: int = 255,
    smooth: float = 1.0,
) -> tf.Tensor:
    """1 - soft Dice of the softmax, over the whole batch, averaged over present classes.

    Only classes that occur in the batch's valid labels are averaged: an absent class has no
    Dice to speak of, and probability put on it already lowers the present classes' overlap
    because the softmax sums to 1. Ignored pixels count neither in the overlap nor in the sums.
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = logits.shape[-1]
    labels, valid = _labels_and_valid(y_true, num_classes, ignore_index)
    probs = tf.nn.softmax(logits, axis=-1) * valid[..., None]
    truth = tf.one_hot(labels, num_classes) * valid[..., None]
    overlap = tf.reduce_sum(probs * truth, axis=[0, 1, 2])
    total = tf.reduce_sum(probs, axis=[0, 1, 2]) + tf.reduce_sum(truth, axis=[0, 1, 2])
    dice = tf.math.divide_no_nan(2.0 * overlap + smooth, total + smooth)
    present = tf.cast(tf.reduce_sum(truth, axis=[0, 1, 2]) > 0, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum((1.0 - dice) * present), tf.reduce_sum(present))


def binary_cross_entropy(
    y_true: tf.Tensor, probabilities: tf.Tensor, ignore_index: int = 255
) -> tf.Tensor:
    """Binary cross-entropy of sigmoid probabilities, averaged over valid pixels (a scalar)."""
    labels, valid = _labels_and_valid(y_true, 2, ignore_index)
    p = tf.clip_by_value(tf.cast(probabilities[..., 0], tf.float32), _EPSILON, 1.0 - _EPSILON)
    y = tf.cast(labels, tf.float32)
    bce = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
    return tf.math.divide_no_nan(tf.reduce_sum(bce * valid), tf.reduce_sum(valid))


def binary_dice_loss(
    y_true: tf.Tensor, probabilities: tf.Tensor, ignore_index: int = 255, smooth: float = 1.0
) -> tf.Tensor:
    """1 - soft Dice of the foreground over the valid pixels of the batch; 0 if none is valid.

    With the default smoothing a batch without foreground still has a small loss that pushes
    the probabilities towards 0 instead of an undefined Dice.
    """
    labels, valid = _labels_and_valid(y_true, 2, ignore_index)
    p = tf.cast(probabilities[..., 0], tf.float32) * valid
    y = tf.cast(labels, tf.float32) * valid
    overlap = tf.reduce_sum(p * y)
    total = tf.reduce_sum(p) + tf.reduce_sum(y)
    dice = tf.math.divide_no_nan(2.0 * overlap + smooth, total + smooth)
    any_valid = tf.cast(tf.reduce_sum(valid) > 0, tf.float32)
    return (1.0 - dice) * any_valid


class _SegmentationLoss(keras.losses.Loss):
    """Shared constructor and config: the ignore label and Keras's name/reduction/dtype."""

    def __init__(self, ignore_index: int = 255, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_index": self.ignore_index}


@keras.saving.register_keras_serializable(package="edgeseg")
class WeightedCrossEntropy(_SegmentationLoss):
    """Class-balanced softmax cross-entropy from logits; see `weighted_cross_entropy`."""

    def __init__(
        self,
        ignore_index: int = 255,
        balance: str = "inverse_sqrt",
        name: str = "weighted_cross_entropy",
        **kwargs,
    ):
        _check_balance(balance)  # reject an unknown mode now, not when the graph is traced
        super().__init__(ignore_index=ignore_index, name=name, **kwargs)
        self.balance = balance

    def call(self, y_true, y_pred):
        loss = weighted_cross_entropy(y_true, y_pred, self.ignore_index, self.balance)
        return _per_sample(loss, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "balance": self.balance}


@keras.saving.register_keras_serializable(package="edgeseg")
class SoftDiceLoss(_SegmentationLoss):
    """Soft multiclass Dice loss from logits; see `soft_dice_loss`."""

    def __init__(
        self, ignore_index: int = 255, smooth: float = 1.0, name: str = "soft_dice", **kwargs
    ):
        super().__init__(ignore_index=ignore_index, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        return _per_sample(soft_dice_loss(y_true, y_pred, self.ignore_index, self.smooth), y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="edgeseg")
class CrossEntropyDiceLoss(_SegmentationLoss):
    """ce_weight * weighted cross-entropy + dice_weight * soft Dice: the multiclass default.

    Cross-entropy gives well-behaved per-pixel gradients from the first step; Dice keeps
    small classes from being ignored once the background is right.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        balance: str = "inverse_sqrt",
        smooth: float = 1.0,
        name: str = "ce_dice",
        **kwargs,
    ):
        _check_balance(balance)
        super().__init__(ignore_index=ignore_index, name=name, **kwargs)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.balance = balance
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        ce = weighted_cross_entropy(y_true, y_pred, self.ignore_index, self.balance)
        dice = soft_dice_loss(y_true, y_pred, self.ignore_index, self.smooth)
        return _per_sample(self.ce_weight * ce + self.dice_weight * dice, y_pred)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "ce_weight": self.ce_weight,
            "dice_weight": self.dice_weight,
            "balance": self.balance,
            "smooth": self.smooth,
        }


@keras.saving.register_keras_serializable(package="edgeseg")
class BinaryCrossEntropyDiceLoss(_SegmentationLoss):
    """bce_weight * BCE + dice_weight * foreground Dice, on sigmoid probabilities [B,H,W,1]."""

    def __init__(
        self,
        ignore_index: int = 255,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "bce_dice",
        **kwargs,
    ):
        super().__init__(ignore_index=ignore_index, name=name, **kwargs)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        bce = binary_cross_entropy(y_true, y_pred, self.ignore_index)
        dice = binary_dice_loss(y_true, y_pred, self.ignore_index, self.smooth)
        return _per_sample(self.bce_weight * bce + self.dice_weight * dice, y_pred)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
        }


def loss_for_task(task: str, num_classes: int, ignore_index: int = 255) -> keras.losses.Loss:
    """The default loss for a task: CE + Dice (multiclass logits) or BCE + Dice (binary)."""
    if 0 <= ignore_index < num_classes:
        raise SpecError(
            f"ignore_index {ignore_index} is a class index (0..{num_classes - 1}); use 255"
        )
    if task == "multiclass":
        if num_classes < 2:
            raise SpecError(f"a multiclass loss needs at least 2 classes, got {num_classes}")
        loss = CrossEntropyDiceLoss(ignore_index=ignore_index)
    elif task == "binary":
        if num_classes != 2:
            raise SpecError(f"a binary task has exactly 2 classes, got {num_classes}")
        loss = BinaryCrossEntropyDiceLoss(ignore_index=ignore_index)
    else:
        raise SpecError(f"task {task!r} is not one of multiclass, binary")
    return loss
