"""Scoring a model on masked frames: one loop for evaluation, verify, bench and the INT8 budget.

Every score of a model goes the robot's way: a `Segmenter` (ONNX Runtime, TensorRT or Keras)
segments the frames, and its class maps are compared with the masks at the mask's resolution.
`Tally` accumulates one confusion matrix and the per-image mean IoUs; `score` runs a
Segmenter over (frame, mask) pairs into a Tally; `compare` runs two (a float model and its
engine) over the same frames into three Tallies: each against the masks, and one against the
other. Numpy only: this module sits beside the runtime and imports no
framework.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from edgeseg.evalmetrics import SegmentationScores, confusion_matrix, mean_iou, scores_from_confusion


class Tally:
    """A confusion matrix and the mean IoU of each image, added one image at a time.

    Attributes:
        confusion: int64 [C, C] over all images so far, rows truth, columns prediction.
        per_image: each image's mean IoU in the order added (NaN: no valid pixel).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.per_image: list[float] = []

    def add(self, truth: np.ndarray, prediction: np.ndarray) -> float:
        """Count one image (same shapes); returns its mean IoU."""
        cm = confusion_matrix(truth, prediction, self.num_classes, self.ignore_index)
        self.confusion += cm
        iou = mean_iou(cm)
        self.per_image.append(iou)
        return iou

    def scores(self, class_names: Sequence[str] | None = None) -> SegmentationScores:
        """All scores of the accumulated confusion matrix."""
        return scores_from_confusion(self.confusion, class_names)


def score(
    segmenter: Any,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    batch: int = 8,
    fit_to_mask: bool = False,
    progress: str | None = None,
    total: int | None = None,
) -> Tally:
    """Segment each (RGB frame, mask) pair and tally the class maps against the masks.

    Args:
        segmenter: a `Segmenter` (anything with `spec` and `seg_batch`), any backend.
        samples: (frame, mask) pairs; a frame and its mask have one size unless `fit_to_mask`.
        batch: frames per `seg_batch` call.
        fit_to_mask: resize each class map to its mask's size (nearest neighbour), for frames
            already fitted to the network input while their masks kept the original size.
        progress: a progress-bar label, or None for no bar.
        total: the number of samples, for the progress bar.
    """
    from edgeseg.runtime.preprocess import resize_class_map

    spec = segmenter.spec
    tally = Tally(spec.num_classes, spec.ignore_index)
    bar = tqdm(total=total, desc=progress, unit="img", disable=progress is None)
    for chunk in chunks(samples, batch):
        segmented = segmenter.seg_batch([frame for frame, _ in chunk])
        for (_, mask), result in zip(chunk, segmented):
            class_map = result.class_map
            if fit_to_mask and class_map.shape != mask.shape[:2]:
                class_map = resize_class_map(class_map, *mask.shape[:2])
            tally.add(mask, class_map)
        bar.update(len(chunk))
    bar.close()
    return tally


@dataclass
class Comparison:
    """Two Segmenters on the same frames (verify's float model and its engine).

    Attributes:
        first, second: each model's Tally against the masks (frames without a mask skipped).
        second_vs_first: the second model's Tally with the first model's class maps as the truth.
        seconds: time spent in each model's `seg_batch`, [first, second].
    """

    first: Tally
    second: Tally
    second_vs_first: Tally
    seconds: list[float]


def compare(
    first: Any,
    second: Any,
    samples: Iterable[tuple[np.ndarray, np.ndarray | None, Any]],
    batch: int = 8,
    on_frame: Callable[[Any, np.ndarray, np.ndarray, np.ndarray, float, float], None] | None = None,
    progress: str | None = None,
    total: int | None = None,
) -> Comparison:
    """Segment each frame with both models; tally both against the mask and second against first.

    Args:
        first, second: Segmenters with the same classes (the reference first).
        samples: (RGB frame, mask of the frame's size or None, key) in order; the key is passed
            through to `on_frame`.
        on_frame: called per frame, in order, with (key, frame, first map, second map, first
            IoU, second IoU); the IoUs are NaN without a mask.
        progress, total: as for `score`.
    """
    spec = first.spec
    result = Comparison(*(Tally(spec.num_classes, spec.ignore_index) for _ in range(3)), [0.0, 0.0])
    bar = tqdm(total=total, desc=progress, unit="frame", disable=progress is None)
    for chunk in chunks(samples, batch):
        frames = [frame for frame, _, _ in chunk]
        tick = time.perf_counter()
        first_maps = [s.class_map for s in first.seg_batch(frames)]
        tock = time.perf_counter()
        second_maps = [s.class_map for s in second.seg_batch(frames)]
        result.seconds[0] += tock - tick
        result.seconds[1] += time.perf_counter() - tock
        for (frame, mask, key), first_map, second_map in zip(chunk, first_maps, second_maps):
            first_iou = second_iou = math.nan
            if mask is not None:
                first_iou = result.first.add(mask, first_map)
                second_iou = result.second.add(mask, second_map)
            result.second_vs_first.add(first_map, second_map)
            if on_frame is not None:
                on_frame(key, frame, first_map, second_map, first_iou, second_iou)
        bar.update(len(chunk))
    bar.close()
    return result


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last may be shorter), read lazily."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
