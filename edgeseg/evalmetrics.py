"""Segmentation scores from a confusion matrix, in numpy only.

Evaluation, the float-versus-engine parity check and the robot-side benchmark all score with
this module, so it must not import TensorFlow. Everything derives from one confusion matrix
(rows: truth, columns: prediction) accumulated over the valid pixels, i.e. those whose truth
is not `ignore_index`. A score that is undefined (a class absent from both truth and
prediction, precision with no positive prediction) is NaN, and `to_dict` writes it as null.
The training-time metrics in `edgeseg.train.metrics` compute the same numbers in TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseg.errors import DataError


def _valid_pairs(truth: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int):
    """Flattened truth and prediction of the valid pixels, checked to lie in [0, num_classes)."""
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise DataError(
            f"truth and prediction shapes differ: {truth.shape} vs {pred.shape}; "
            "resize the prediction to the mask size before scoring"
        )
    valid = truth != ignore_index
    t = truth[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    for what, values in (("mask", t), ("prediction", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise DataError(
                f"{what} holds class {bad}, outside the {num_classes} classes "
                f"(and not the ignore index {ignore_index}); check the class list and mask format"
            )
    return t, p, valid


def finite_or_none(value: float | None) -> float | None:
    """A score as JSON wants it: a float, or None (null) where it is undefined (NaN) or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)


def confusion_matrix(
    truth: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """Pixel counts int64 [C, C]: rows are true classes, columns predicted classes."""
    t, p, _ = _valid_pairs(truth, pred, num_classes, ignore_index)
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else math.nan


def _nanmean(values: np.ndarray) -> float:
    """Mean of the defined values; NaN (without a warning) when none is defined."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def _per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU per class along the last two axes; NaN where a class is in neither truth nor pred."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    union = cm.sum(axis=-1) + cm.sum(axis=-2) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of the defined per-class IoUs of one confusion matrix (NaN if none is defined).

    The same number as `scores_from_confusion(cm).mean_iou`, without the other scores: scoring
    takes it once per image.
    """
    return _nanmean(_per_class_iou(np.asarray(cm)))


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """Scores of one confusion matrix.

    Attributes:
        class_names: one name per class.
        confusion: int64 [C, C], rows truth, columns prediction.
        pixels: valid pixels counted.
        pixel_accuracy: correct pixels / valid pixels.
        mean_accuracy: mean over classes present in the truth of their recall.
        mean_iou: mean of the defined per-class IoUs.
        per_class_iou: NaN for a class absent from both truth and prediction.
        per_class_accuracy: recall per class, NaN for a class absent from the truth.
        dice, iou, precision, recall: of class 1 (the foreground) when there are exactly two
            classes, else None.
    """

    class_names: tuple[str, ...]
    confusion: np.ndarray
    pixels: int
    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    per_class_iou: tuple[float, ...]
    per_class_accuracy: tuple[float, ...]
    dice: float | None = None
    iou: float | None = None
    precision: float | None = None
    recall: float | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict; NaN becomes None (null)."""
        clean = finite_or_none
        data = {
            "class_names": list(self.class_names),
            "pixels": int(self.pixels),
            "pixel_accuracy": clean(self.pixel_accuracy),
            "mean_accuracy": clean(self.mean_accuracy),
            "mean_iou": clean(self.mean_iou),
            "per_class_iou": {n: clean(v) for n, v in zip(self.class_names, self.per_class_iou)},
            "per_class_accuracy": {
                n: clean(v) for n, v in zip(self.class_names, self.per_class_accuracy)
            },
            "confusion_matrix": self.confusion.tolist(),
        }
        if len(self.class_names) == 2:
            for key in ("dice", "iou", "precision", "recall"):
                data[key] = clean(getattr(self, key))
        return data


def scores_from_confusion(
    cm: np.ndarray, class_names: Sequence[str] | None = None
) -> SegmentationScores:
    """All scores of a confusion matrix (rows truth, columns prediction)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise DataError(f"a confusion matrix is square [C, C], got shape {cm.shape}")
    num_classes = cm.shape[0]
    names = tuple(str(n) for n in class_names) if class_names is not None else tuple(
        str(i) for i in range(num_classes)
    )
    if len(names) != num_classes:
        raise DataError(f"{len(names)} class names for a {num_classes}-class confusion matrix")
    cm = cm.astype(np.int64)
    total = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
    iou = _per_class_iou(cm)
    binary: dict[str, float] = {}
    if num_classes == 2:
        fg_tp, fp, fn = tp[1], float(cm[0, 1]), float(cm[1, 0])
        binary = {
            "dice": _ratio(2 * fg_tp, 2 * fg_tp + fp + fn),
            "iou": _ratio(fg_tp, fg_tp + fp + fn),
            "precision": _ratio(fg_tp, fg_tp + fp),
            "recall": _ratio(fg_tp, fg_tp + fn),
        }
    return SegmentationScores(
        class_names=names,
        confusion=cm,
        pixels=total,
        pixel_accuracy=_ratio(tp.sum(), total),
        mean_accuracy=_nanmean(accuracy),
        mean_iou=_nanmean(iou),
        per_class_iou=tuple(float(v) for v in iou),
        per_class_accuracy=tuple(float(v) for v in accuracy),
        **binary,
    )


def format_table(scores: SegmentationScores, class_names: Sequence[str] | None = None) -> str:
    """A plain-text table: IoU, accuracy and pixel count per class, then the summary scores."""
    names = [str(n) for n in (class_names if class_names is not None else scores.class_names)]
    if len(names) != len(scores.per_class_iou):
        raise DataError(f"{len(names)} class names for {len(scores.per_class_iou)} classes")

    def num(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.4f}"

    width = max([len("class")] + [len(n) for n in names])
    support = scores.confusion.sum(axis=1)
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'pixels':>10}"]
    for name, iou, acc, count in zip(
        names, scores.per_class_iou, scores.per_class_accuracy, support
    ):
        lines.append(f"{name:<{width}}  {num(iou):>7}  {num(acc):>7}  {int(count):>10}")
    lines.append(
        f"mean IoU {num(scores.mean_iou)}   pixel accuracy {num(scores.pixel_accuracy)}   "
        f"mean accuracy {num(scores.mean_accuracy)}   pixels {scores.pixels}"
    )
    if scores.dice is not None:
        lines.append(
            f"foreground ({names[1]}): dice {num(scores.dice)}   iou {num(scores.iou)}   "
            f"precision {num(scores.precision)}   recall {num(scores.recall)}"
        )
    return "\n".join(lines)


def per_image_iou(
    truth: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """Mean IoU of each image of a batch [N, H, W] (a single [H, W] counts as N = 1).

    Each image's mean is over the classes present in its truth or prediction; an image with
    no valid pixel scores NaN. Used to rank the best and worst images of an evaluation.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.ndim == 2:
        truth, pred = truth[None], pred[None]
    if truth.ndim != 3:
        raise DataError(f"per_image_iou takes masks [N, H, W] or [H, W], got shape {truth.shape}")
    t, p, valid = _valid_pairs(truth, pred, num_classes, ignore_index)
    n = truth.shape[0]
    image = np.broadcast_to(np.arange(n)[:, None, None], truth.shape)[valid]
    per_pixel = (image * num_classes + t) * num_classes + p
    cms = np.bincount(per_pixel, minlength=n * num_classes * num_classes)
    iou = _per_class_iou(cms.reshape(n, num_classes, num_classes))
    return np.array([_nanmean(row) for row in iou])
