"""Losses: hand-computed values, ignore handling, class weighting, graph mode and Keras fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from edgeseg.errors import SpecError
from edgeseg.train.losses import (
    BinaryCrossEntropyDiceLoss,
    CrossEntropyDiceLoss,
    SoftDiceLoss,
    WeightedCrossEntropy,
    binary_cross_entropy,
    binary_dice_loss,
    class_weights,
    loss_for_task,
    soft_dice_loss,
    weighted_cross_entropy,
)

MASK = np.array([[[0, 1, 1], [255, 2, 0]]], np.uint8)  # [1, 2, 3], one ignored pixel
LOGITS = np.random.default_rng(7).normal(size=(1, 2, 3, 3)).astype(np.float32)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _random_batch(num_classes=4, shape=(2, 8, 8), ignore_share=0.2, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape).astype(np.uint8)
    labels[rng.random(shape) < ignore_share] = 255
    logits = rng.normal(size=shape + (num_classes,)).astype(np.float32)
    return labels, logits


def test_weighted_cross_entropy_by_hand():
    valid = MASK[0] != 255
    labels = MASK[0][valid]  # [0, 1, 1, 2, 0]
    ce = -np.take_along_axis(_log_softmax(LOGITS[0][valid]), labels[:, None], 1)[:, 0]
    counts = np.bincount(labels, minlength=3)  # 2, 2, 1 of 5
    weights = 1 / np.sqrt(counts / counts.sum())
    expected = (weights[labels] * ce).sum() / weights[labels].sum()
    got = weighted_cross_entropy(MASK, LOGITS, balance="inverse_sqrt")
    assert float(got) == pytest.approx(expected, rel=1e-5)
    plain = weighted_cross_entropy(MASK, LOGITS, balance="none")
    assert float(plain) == pytest.approx(ce.mean(), rel=1e-5)
    # "inverse": every present class counts equally, i.e. the mean of per-class mean CEs.
    inverse = weighted_cross_entropy(MASK, LOGITS, balance="inverse")
    per_class = [ce[labels == c].mean() for c in range(3)]
    assert float(inverse) == pytest.approx(np.mean(per_class), rel=1e-5)


def test_class_weights_values():
    w = class_weights(tf.constant([90.0, 10.0, 0.0]), "inverse_sqrt").numpy()
    np.testing.assert_allclose(w, [1 / np.sqrt(0.9), 1 / np.sqrt(0.1), 0.0], rtol=1e-6)
    w = class_weights(tf.constant([90.0, 10.0, 0.0]), "none").numpy()
    np.testing.assert_allclose(w, [1.0, 1.0, 0.0])
    with pytest.raises(SpecError, match="median"):
        class_weights(tf.constant([1.0, 1.0]), "median")


def test_soft_dice_by_hand():
    valid = MASK[0] != 255
    probs = np.exp(_log_softmax(LOGITS[0][valid]))
    truth = np.eye(3)[MASK[0][valid]]
    overlap = (probs * truth).sum(0)
    dice = (2 * overlap + 1.0) / (probs.sum(0) + truth.sum(0) + 1.0)
    assert float(soft_dice_loss(MASK, LOGITS, smooth=1.0)) == pytest.approx(
        1 - dice.mean(), rel=1e-5
    )
    # A class absent from the truth is not averaged: with classes 0 and 1 only, class 2 drops.
    two = np.where(MASK == 2, 255, MASK).astype(np.uint8)
    valid2 = two[0] != 255
    probs2 = np.exp(_log_softmax(LOGITS[0][valid2]))
    truth2 = np.eye(3)[two[0][valid2]]
    dice2 = (2 * (probs2 * truth2).sum(0)) / (probs2.sum(0) + truth2.sum(0))
    assert float(soft_dice_loss(two, LOGITS, smooth=0.0)) == pytest.approx(
        1 - dice2[:2].mean(), rel=1e-5
    )


def test_perfect_logits_beat_random_logits():
    labels, logits = _random_batch()
    perfect = np.eye(4, dtype=np.float32)[np.where(labels == 255, 0, labels)] * 12.0
    loss = CrossEntropyDiceLoss()
    good, bad = float(loss(labels, perfect)), float(loss(labels, logits))
    assert good < 0.01 < bad


@pytest.mark.parametrize(
    "loss", [WeightedCrossEntropy(), SoftDiceLoss(), CrossEntropyDiceLoss(balance="inverse")]
)
def test_ignored_pixels_do_not_change_the_loss(loss):
    rng = np.random.default_rng(1)
    labels, logits = _random_batch()
    changed = logits.copy()
    changed[labels == 255] = rng.normal(scale=20.0, size=changed[labels == 255].shape)
    assert float(loss(labels, changed)) == pytest.approx(float(loss(labels, logits)), abs=1e-6)
    # A different prediction on a labelled pixel does change it (the test can fail).
    changed[labels != 255] += 3.0 * rng.normal(size=changed[labels != 255].shape)
    assert float(loss(labels, changed)) != pytest.approx(float(loss(labels, logits)), abs=1e-3)
    # Masks with a trailing channel axis give the same value.
    assert float(loss(labels[..., None], logits)) == pytest.approx(float(loss(labels, logits)))


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_all_ignore_batch_is_zero_with_finite_gradients(task):
    labels = np.full((2, 4, 4), 255, np.uint8)
    channels = 3 if task == "multiclass" else 1
    start = np.random.default_rng(2).normal(size=(2, 4, 4, channels)).astype(np.float32)
    logits = tf.Variable(start)
    loss = loss_for_task(task, 3 if task == "multiclass" else 2)
    with tf.GradientTape() as tape:
        pred = logits if task == "multiclass" else tf.sigmoid(logits)
        value = loss(labels, pred)
    grad = tape.gradient(value, logits)
    assert float(value) == 0.0
    assert np.all(np.isfinite(grad.numpy()))


def test_class_weighting_lifts_a_rare_class():
    # 62 background pixels predicted right, 2 rare-class pixels predicted wrong.
    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, 0, :2] = 1
    logits = np.zeros((1, 8, 8, 2), np.float32)
    logits[..., 0] = 2.0
    plain = float(weighted_cross_entropy(labels, logits, balance="none"))
    balanced = float(weighted_cross_entropy(labels, logits, balance="inverse_sqrt"))
    assert balanced > plain

    def gradient_ratio(balance):
        x = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = weighted_cross_entropy(labels, x, balance=balance)
        g = np.abs(tape.gradient(value, x).numpy()[0, ..., 1])
        return g[0, 0] / g[4, 4]  # rare pixel vs background pixel

    assert gradient_ratio("inverse_sqrt") > 3 * gradient_ratio("none")


def test_binary_bce_dice_behaves():
    labels = np.random.default_rng(3).integers(0, 2, (2, 8, 8)).astype(np.uint8)
    labels[:, 0] = 255
    right = np.where(labels == 1, 0.99, 0.01).astype(np.float32)[..., None]
    wrong = 1.0 - right
    loss = BinaryCrossEntropyDiceLoss()
    assert float(loss(labels, right)) < 0.05 < 1.0 < float(loss(labels, wrong))
    # BCE equals the plain formula over the valid pixels.
    valid = labels != 255
    p, y = right[..., 0][valid], labels[valid]
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    assert float(binary_cross_entropy(labels, right)) == pytest.approx(expected, rel=1e-4)
    # Ignored pixels do not matter.
    changed = right.copy()
    changed[:, 0] = 0.5
    assert float(loss(labels, changed)) == pytest.approx(float(loss(labels, right)), abs=1e-6)
    # Dice by hand, and a batch with no foreground gives a small, finite Dice loss.
    fg = (labels == 1) & valid
    by_hand = 1 - (2 * right[..., 0][fg].sum() + 1) / (right[..., 0][valid].sum() + fg.sum() + 1)
    assert float(binary_dice_loss(labels, right)) == pytest.approx(by_hand, rel=1e-5)
    empty = np.zeros_like(labels)
    assert 0.0 < float(binary_dice_loss(empty, np.full_like(right, 0.01))) < 0.7


def test_graph_mode_matches_eager():
    labels, logits = _random_batch()
    loss = CrossEntropyDiceLoss()
    spec = (
        tf.TensorSpec([None, None, None], tf.uint8),
        tf.TensorSpec([None, None, None, 4], tf.float32),
    )
    graph = tf.function(lambda y, p: loss(y, p), input_signature=spec)
    assert float(graph(labels, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)


def test_factory_and_config_round_trip():
    assert isinstance(loss_for_task("multiclass", 5), CrossEntropyDiceLoss)
    assert isinstance(loss_for_task("binary", 2, ignore_index=254), BinaryCrossEntropyDiceLoss)
    with pytest.raises(SpecError, match="regression"):
        loss_for_task("regression", 3)
    with pytest.raises(SpecError, match="exactly 2"):
        loss_for_task("binary", 3)
    with pytest.raises(SpecError, match="ignore_index 0"):
        loss_for_task("multiclass", 3, ignore_index=0)
    original = CrossEntropyDiceLoss(ignore_index=254, dice_weight=0.5, balance="inverse")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(restored) is CrossEntropyDiceLoss
    assert restored.get_config() == original.get_config()
    labels, logits = _random_batch()
    assert float(restored(labels, logits)) == pytest.approx(float(original(labels, logits)))


def _colour_task(task, n=8, size=16):
    """Images whose class is their strongest colour channel: a 1x1 convolution can learn it."""
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (n, size, size, 3)).astype(np.float32)
    channels = 3 if task == "multiclass" else 2
    labels = np.argmax(images[..., :channels], axis=-1).astype(np.uint8)
    labels[:, :2] = 255
    return images, labels


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_keras_fit_lowers_the_loss(task):
    images, labels = _colour_task(task)
    num_classes = 3 if task == "multiclass" else 2
    keras.utils.set_random_seed(0)
    activation = None if task == "multiclass" else "sigmoid"
    channels = num_classes if task == "multiclass" else 1
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(channels, 1, activation=activation)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=loss_for_task(task, num_classes))
    history = model.fit(images, labels, batch_size=4, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]
