"""edgeseg.scoring: the one loop that scores a Segmenter on masked frames.

The Tally is checked against hand-counted pixels; `score` runs real Segmenters (ONNX Runtime
and Keras over the same tiny exported network) on real frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.errors import DataError
from edgeseg.scoring import Tally, chunks, compare, score
from edgeseg.spec import ModelSpec

SPEC = ModelSpec(class_names=("a", "b", "c"), input_height=16, input_width=16, model="tiny")


def test_tally_counts_pixels_and_each_images_mean_iou_by_hand():
    tally = Tally(3, ignore_index=255)
    truth = np.array([[0, 0], [1, 255]], np.uint8)
    pred = np.array([[0, 1], [1, 2]], np.uint8)  # the ignored pixel's prediction does not count
    # class 0: tp 1, union 2 -> 0.5; class 1: tp 1, union 2 -> 0.5; class 2: absent -> undefined
    assert tally.add(truth, pred) == pytest.approx(0.5)
    assert math.isnan(tally.add(np.full((2, 2), 255, np.uint8), pred))  # no valid pixel
    assert tally.add(np.full((1, 3), 2, np.uint8), np.full((1, 3), 2, np.uint8)) == 1.0
    np.testing.assert_array_equal(tally.confusion, [[1, 1, 0], [0, 1, 0], [0, 0, 3]])
    assert tally.per_image[0] == pytest.approx(0.5) and tally.per_image[2] == 1.0
    assert len(tally.per_image) == 3
    scores = tally.scores(("a", "b", "c"))
    assert scores.mean_iou == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert scores.pixels == 6


def test_chunks_keeps_order_and_the_short_tail():
    assert list(chunks(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


@pytest.fixture(scope="module")
def tiny(export_tiny_model, tiny_net):
    return export_tiny_model(tiny_net(3, size=16, seed=3), SPEC, "scoring_model")


def _frames(count: int, size: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def test_score_runs_any_backend_and_batching_does_not_change_the_numbers(tiny):
    from edgeseg.runtime.segmenter import Segmenter

    frames = _frames(5, size=24)  # not the network size: class maps come back at 24x24
    with Segmenter.open(tiny.run_dir, backend="keras") as keras_seg:
        truth = [s.class_map for s in keras_seg.seg_batch(frames)]
        keras_tally = score(keras_seg, zip(frames, truth), batch=2)
    assert keras_tally.scores().mean_iou == 1.0  # a model scored against its own maps
    assert keras_tally.confusion.sum() == 5 * 24 * 24
    # against a shifted truth the score is lower, and the same whatever the batch
    shifted = [np.roll(mask, 3, axis=1) for mask in truth]
    with Segmenter.open(tiny.onnx_path, backend="onnxruntime") as onnx_seg:
        one = score(onnx_seg, zip(frames, shifted), batch=1)
        three = score(onnx_seg, zip(frames, shifted), batch=3)
        direct = Tally(3, 255)
        for frame, mask in zip(frames, shifted):
            direct.add(mask, onnx_seg.seg(frame).class_map)
    np.testing.assert_array_equal(one.confusion, three.confusion)
    np.testing.assert_array_equal(one.confusion, direct.confusion)
    assert one.per_image == three.per_image == direct.per_image
    assert one.scores().mean_iou < 0.999


def test_fit_to_mask_scores_network_sized_frames_against_full_size_masks(tiny):
    from edgeseg.runtime.preprocess import resize_class_map
    from edgeseg.runtime.segmenter import Segmenter

    frames = _frames(3)
    with Segmenter.open(tiny.onnx_path) as segmenter:
        masks = [resize_class_map(s.class_map, 40, 48) for s in segmenter.seg_batch(frames)]
        tally = score(segmenter, zip(frames, masks), fit_to_mask=True)
        assert tally.scores().mean_iou == 1.0 and tally.confusion.sum() == 3 * 40 * 48
        with pytest.raises(DataError, match="shapes differ"):
            score(segmenter, zip(frames, masks))


def test_compare_tallies_both_models_and_one_against_the_other(tiny):
    from edgeseg.runtime.segmenter import Segmenter

    frames = _frames(5, size=24)
    rng = np.random.default_rng(1)
    masks = [rng.integers(0, 3, (24, 24), dtype=np.uint8) for _ in frames]
    masks[2] = None  # a frame without a mask: compared, not scored against truth
    seen = []
    with Segmenter.open(tiny.run_dir, backend="keras") as keras_seg, Segmenter.open(tiny.onnx_path) as onnx_seg:
        compared = compare(keras_seg, onnx_seg, zip(frames, masks, range(5)), batch=2,
                           on_frame=lambda key, frame, a, b, ia, ib: seen.append((key, math.isnan(ia), b.shape)))
        labelled = [(f, m) for f, m in zip(frames, masks) if m is not None]
        alone = score(onnx_seg, labelled, batch=4)
    assert seen == [(i, i == 2, (24, 24)) for i in range(5)]
    np.testing.assert_array_equal(compared.second.confusion, alone.confusion)
    assert compared.second.per_image == alone.per_image and len(compared.first.per_image) == 4
    # the export keeps Keras's class maps: ONNX Runtime against Keras is (almost) perfect
    assert compared.second_vs_first.confusion.sum() == 5 * 24 * 24
    assert compared.second_vs_first.scores().pixel_accuracy >= 0.999
    assert compared.seconds[0] > 0 and compared.seconds[1] > 0
