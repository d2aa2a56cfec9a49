"""numpy scores: hand-computed tiny masks, ignore handling, JSON and table output."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from edgeseg.errors import DataError
from edgeseg.evalmetrics import (
    confusion_matrix,
    format_table,
    per_image_iou,
    scores_from_confusion,
)

# Multiclass 2x3 example; the 255 pixel is ignored whatever is predicted there.
TRUTH = np.array([[0, 1, 1], [255, 2, 0]], np.uint8)
PRED = np.array([[0, 1, 2], [1, 2, 1]], np.uint8)
# By hand: valid pairs (t, p) = (0,0) (1,1) (1,2) (2,2) (0,1).
HAND_CM = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])

# Binary example: TP=2 at (0,1),(1,1); FP=2 at (0,0),(1,2); FN=1 at (0,2); (1,0) ignored.
BIN_TRUTH = np.array([[0, 1, 1], [255, 1, 0]], np.uint8)
BIN_PRED = np.array([[1, 1, 0], [0, 1, 1]], np.uint8)


def test_confusion_matrix_by_hand_and_ignore():
    cm = confusion_matrix(TRUTH, PRED, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, HAND_CM)
    changed = PRED.copy()
    changed[1, 0] = 0  # the ignored pixel
    np.testing.assert_array_equal(confusion_matrix(TRUTH, changed, 3), HAND_CM)
    # With another ignore index, 255 is an ordinary (out-of-range) value and is reported.
    with pytest.raises(DataError, match="mask holds class 255"):
        confusion_matrix(TRUTH, PRED, 3, ignore_index=0)


def test_multiclass_scores_by_hand():
    s = scores_from_confusion(confusion_matrix(TRUTH, PRED, 3), ["road", "grass", "sky"])
    assert s.pixels == 5
    assert s.pixel_accuracy == pytest.approx(3 / 5)
    assert s.per_class_accuracy == pytest.approx((1 / 2, 1 / 2, 1.0))
    assert s.mean_accuracy == pytest.approx(2 / 3)
    # IoU: road 1/(2+1-1), grass 1/(2+2-1), sky 1/(1+2-1)
    assert s.per_class_iou == pytest.approx((1 / 2, 1 / 3, 1 / 2))
    assert s.mean_iou == pytest.approx(4 / 9)
    assert s.dice is None and s.precision is None  # not a two-class problem


def test_absent_class_is_nan_and_left_out_of_means():
    s = scores_from_confusion(confusion_matrix(TRUTH, PRED, 4))
    assert math.isnan(s.per_class_iou[3]) and math.isnan(s.per_class_accuracy[3])
    assert s.mean_iou == pytest.approx(4 / 9)
    assert s.mean_accuracy == pytest.approx(2 / 3)
    data = s.to_dict()
    assert data["per_class_iou"]["3"] is None
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN literal anywhere


def test_predicted_only_class_has_zero_iou():
    truth = np.array([[0, 0]], np.uint8)
    pred = np.array([[0, 1]], np.uint8)
    s = scores_from_confusion(confusion_matrix(truth, pred, 2))
    assert s.per_class_iou == pytest.approx((0.5, 0.0))
    assert math.isnan(s.per_class_accuracy[1])
    assert s.mean_iou == pytest.approx(0.25)


def test_binary_scores_by_hand():
    cm = confusion_matrix(BIN_TRUTH, BIN_PRED, 2)
    np.testing.assert_array_equal(cm, [[0, 2], [1, 2]])
    s = scores_from_confusion(cm, ["background", "person"])
    assert s.dice == pytest.approx(4 / 7)
    assert s.iou == pytest.approx(2 / 5)
    assert s.precision == pytest.approx(1 / 2)
    assert s.recall == pytest.approx(2 / 3)
    assert s.pixel_accuracy == pytest.approx(2 / 5)
    assert s.to_dict()["dice"] == pytest.approx(4 / 7)


def test_undefined_binary_scores_are_nan():
    s = scores_from_confusion(np.array([[5, 0], [0, 0]]))  # no foreground anywhere
    assert math.isnan(s.dice) and math.isnan(s.precision) and math.isnan(s.recall)
    assert s.to_dict()["precision"] is None
    empty = scores_from_confusion(np.zeros((3, 3), np.int64))
    assert math.isnan(empty.mean_iou) and math.isnan(empty.pixel_accuracy)


def test_bincount_matches_a_loop_on_random_data():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, (3, 17, 23)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.2] = 255
    pred = rng.integers(0, 5, truth.shape).astype(np.uint8)
    expected = np.zeros((5, 5), np.int64)
    for t, p in zip(truth.ravel(), pred.ravel()):
        if t != 255:
            expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(truth, pred, 5), expected)


def test_per_image_iou_ranks_images():
    truth = np.stack([TRUTH, TRUTH, np.full_like(TRUTH, 255)])
    pred = np.stack([PRED, np.where(TRUTH == 255, 0, TRUTH), PRED])
    iou = per_image_iou(truth, pred, 3)
    assert iou.shape == (3,)
    assert iou[0] == pytest.approx(4 / 9)
    assert iou[1] == pytest.approx(1.0)
    assert math.isnan(iou[2])  # nothing labelled
    assert per_image_iou(TRUTH, PRED, 3) == pytest.approx([4 / 9])


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="shapes differ"):
        confusion_matrix(TRUTH, PRED[:, :2], 3)
    with pytest.raises(DataError, match="prediction holds class 2"):
        confusion_matrix(np.where(TRUTH == 2, 1, TRUTH), PRED, 2)
    with pytest.raises(DataError, match="square"):
        scores_from_confusion(np.zeros((2, 3)))
    with pytest.raises(DataError, match="class names"):
        scores_from_confusion(HAND_CM, ["a", "b"])


def test_format_table_lists_every_class():
    s = scores_from_confusion(confusion_matrix(TRUTH, PRED, 4), ["road", "grass", "sky", "car"])
    table = format_table(s)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU", "acc", "pixels"]
    assert lines[1].split() == ["road", "0.5000", "0.5000", "2"]
    assert lines[4].split() == ["car", "-", "-", "0"]
    assert "mean IoU 0.4444" in table
    bin_scores = scores_from_confusion(confusion_matrix(BIN_TRUTH, BIN_PRED, 2))
    binary = format_table(bin_scores, ["bg", "fg"])
    assert "dice 0.5714" in binary and "fg" in binary


def test_module_does_not_import_tensorflow():
    code = "import sys, edgeseg.evalmetrics; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
