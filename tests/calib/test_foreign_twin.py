"""The Keras twin of each foreign fixture computes what its ONNX graph computes, once weights are poured.

The INT8 benchmark trains the twin on CamVid and measures the ONNX graph; a wrong transpose or
padding in the transfer would measure an untrained network without anyone noticing.
"""

import numpy as np
import onnxruntime as ort
import pytest


@pytest.mark.parametrize("kind", ["prelu_bn", "attention", "hardswish_resize"])
def test_twin_weights_poured_into_onnx_give_the_same_logits(foreign, kind):
    height, width = 32, 48
    model, twin = foreign.keras_twin(kind, height, width, width_mult=0.25)
    rng = np.random.default_rng(0)
    for layer_kind, layer in twin.layers:  # non-trivial statistics and slopes, as after training
        if layer_kind == "bn":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
        elif layer_kind == "prelu":
            layer.set_weights([rng.uniform(0.05, 0.5, w.shape) for w in layer.get_weights()])
    x = rng.normal(size=(1, height, width, 3)).astype(np.float32)
    expected = np.asarray(model(x, training=False)).transpose(0, 3, 1, 2)

    onnx_model = foreign.foreign_model(kind, height, width, width_mult=0.25, params=twin.params())
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.transpose(0, 3, 1, 2)})[0]
    assert got.shape == expected.shape == (1, len(foreign.CLASSES), height, width)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_params_of_another_architecture_are_refused(foreign):
    _, twin = foreign.keras_twin("prelu_bn", 32, 32, width_mult=0.25)
    with pytest.raises(ValueError, match="trained weights are for a"):
        foreign.foreign_model("attention", 32, 32, width_mult=0.25, params=twin.params())
    with pytest.raises(ValueError, match="more trained weights than prelu_bn has layers"):
        foreign.foreign_model("prelu_bn", 32, 32, width_mult=0.25, params=twin.params() * 2)


def test_camvid_split_holds_out_the_tail_of_every_drive(tmp_path, foreign_training):
    training = foreign_training
    for folder in ("train", "trainannot"):
        (tmp_path / folder).mkdir()
        for name in [f"A_{i:03d}.png" for i in range(10)] + [f"B_{i:03d}.png" for i in range(5)]:
            (tmp_path / folder / name).write_bytes(b"")
    held = [f.name for f, _ in training.camvid_pairs(tmp_path, held_out=True)]
    rest = [f.name for f, _ in training.camvid_pairs(tmp_path, held_out=False)]
    assert held == ["A_008.png", "A_009.png", "B_004.png"]
    assert len(rest) == 12 and not set(rest) & set(held)


def test_trained_twin_weights_survive_the_cache_and_change_the_network(foreign, foreign_training, tmp_path):
    training = foreign_training
    height, width = 32, 48
    spec = foreign.foreign_spec(height, width)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (4, height, width, 3), dtype=np.uint8)
    masks = rng.integers(0, 4, (4, height, width), dtype=np.uint8)
    params = training.train_twin(foreign, "hardswish_resize", images, masks, spec, steps=3, batch=2,
                                 crop=(height, width), log=lambda message: None)
    training._save(params, tmp_path / "w.npz")
    loaded = training._load(tmp_path / "w.npz")
    x = rng.normal(size=(1, 3, height, width)).astype(np.float32)

    def logits(p):
        model = foreign.foreign_model("hardswish_resize", height, width, params=p)
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]

    np.testing.assert_array_equal(logits(loaded), logits(params))
    import keras

    keras.utils.set_random_seed(0)  # the initial weights train_twin(seed=0) started from
    untrained = foreign.keras_twin("hardswish_resize", height, width)[1].params()
    assert np.abs(logits(params) - logits(untrained)).max() > 1e-3
