"""Segmenter on real tiny models: ONNX equals Keras, any frame size, probabilities, batches."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError, EngineError
from edgeseg.runtime import Segmentation, Segmenter
from edgeseg.runtime.overlay import overlay
from edgeseg.runtime.preprocess import preprocess


def _frames(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_onnx_segmenter_equals_keras_segmenter(tiny_models):
    frames = _frames([(32, 32)] * 4 + [(48, 20), (100, 75)])
    with Segmenter.open(tiny_models.onnx_path) as onnx_seg, Segmenter.open(tiny_models.run_dir) as keras_seg:
        assert (onnx_seg.backend_name, keras_seg.backend_name) == ("onnxruntime", "keras")
        assert onnx_seg.spec == keras_seg.spec == tiny_models.spec
        onnx_maps = [result.class_map for result in onnx_seg.seg_batch(frames)]
        keras_maps = [result.class_map for result in keras_seg.seg_batch(frames)]
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(onnx_maps, keras_maps)]))
    assert agreement >= 0.999
    assert len(np.unique(np.concatenate([m.ravel() for m in onnx_maps]))) >= 2  # not a constant map


@pytest.mark.parametrize("height, width", [(32, 32), (48, 20), (7, 91), (240, 320)])
def test_class_map_comes_back_at_frame_size(tiny_models, height, width):
    with Segmenter.open(tiny_models.onnx_path) as segmenter:
        result = segmenter.seg(_frames([(height, width)])[0])
    assert isinstance(result, Segmentation)
    assert result.class_map.shape == (height, width) and result.class_map.dtype == np.uint8
    assert result.class_map.max() < 3
    assert result.probabilities is None


def test_probabilities_are_a_softmax_at_network_resolution(tiny_models):
    frame = _frames([(60, 90)])[0]
    with Segmenter.open(tiny_models.onnx_path) as segmenter:
        result = segmenter.seg(frame, probabilities=True)
        logits = segmenter.backend.infer(preprocess(frame, segmenter.spec))[0]
    probs = result.probabilities
    assert probs.shape == (32, 32, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    np.testing.assert_array_equal(np.argmax(probs, axis=-1), np.argmax(logits, axis=-1))
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


def test_binary_model_gives_two_channel_probabilities(tiny_models):
    frame = _frames([(32, 32)], seed=3)[0]
    with Segmenter.open(tiny_models.binary_run_dir) as segmenter:
        assert segmenter.spec == tiny_models.binary_spec
        result = segmenter.seg(frame, probabilities=True)
    probs = result.probabilities
    assert probs.shape == (32, 32, 2)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(result.class_map, (probs[..., 1] > 0.5).astype(np.uint8))


def test_batch_equals_single(tiny_models):
    frames = _frames([(32, 32), (50, 40), (17, 64)], seed=5)
    with Segmenter.open(tiny_models.onnx_path) as segmenter:
        batch = segmenter.seg_batch(frames, probabilities=True)
        singles = [segmenter.seg(frame, probabilities=True) for frame in frames]
        assert segmenter.seg_batch([]) == []
    for together, alone in zip(batch, singles):
        np.testing.assert_array_equal(together.class_map, alone.class_map)
        np.testing.assert_allclose(together.probabilities, alone.probabilities, atol=1e-5)


def test_timings_cover_every_stage(tiny_models):
    with Segmenter.open(tiny_models.onnx_path) as segmenter:
        timings = segmenter.seg(_frames([(64, 64)])[0]).timings
    assert set(timings) == {"preprocess", "infer", "postprocess", "total"}
    assert all(value >= 0 for value in timings.values())
    parts = timings["preprocess"] + timings["infer"] + timings["postprocess"]
    assert timings["total"] == pytest.approx(parts, rel=1e-6)
    assert timings["infer"] > 0


def test_fixed_batch_nchw_model_runs_in_padded_chunks(nchw_fixed_batch_onnx):
    path, weights, spec = nchw_fixed_batch_onnx
    frames = _frames([(8, 8)] * 3, seed=7)  # 3 frames on a batch-2 model: one full chunk, one padded
    with Segmenter.open(path) as segmenter:
        assert segmenter.backend.input_shape == (2, 3, 8, 8)
        results = segmenter.seg_batch(frames, probabilities=True)
    assert len(results) == 3
    for frame, result in zip(frames, results):
        scores = np.einsum("hwc,kc->hwk", frame.astype(np.float32) / 255, weights[:, :, 0, 0])
        np.testing.assert_array_equal(result.class_map, np.argmax(scores, axis=-1))
        assert result.probabilities.shape == (8, 8, 4)


def test_segmentation_overlay_and_lifecycle(tiny_models):
    frame = _frames([(40, 30)])[0]
    segmenter = Segmenter.open(tiny_models.onnx_path, threads=1)
    result = segmenter.seg(frame)
    drawn = result.overlay(frame, alpha=0.3)
    np.testing.assert_array_equal(drawn, overlay(frame, result.class_map, tiny_models.spec.palette, 0.3))
    assert drawn.shape == frame.shape
    with pytest.raises(EdgesegError, match="expected an RGB uint8 HxWx3 frame"):
        segmenter.seg(frame[..., 0])
    with pytest.raises(EdgesegError, match="expected an RGB uint8 HxWx3 frame"):
        segmenter.seg(frame.astype(np.float32))
    segmenter.close()
    with pytest.raises(EngineError, match="closed"):
        segmenter.seg(frame)
