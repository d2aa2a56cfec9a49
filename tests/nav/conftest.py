"""Shared fixtures of the navigation tests."""

from __future__ import annotations

import pytest

from edgeseg.nav.sim import synthetic_spec


@pytest.fixture(scope="session")
def tiny_synthetic_onnx(tmp_path_factory):
    """A 32x32 two-layer Keras model over the synthetic classes, exported with tf2onnx, spec embedded."""
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from edgeseg.onnxmeta import write_spec_metadata
    from edgeseg.spec import ModelSpec

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="logits")(x))
    model.output_names = ["logits"]
    base = synthetic_spec()
    spec = ModelSpec(class_names=base.class_names, input_height=32, input_width=32, palette=base.palette,
                     traversable=("floor",), model="tiny")
    signature = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    path = tmp_path_factory.mktemp("sim_model") / "tiny.onnx"
    onnx.save(write_spec_metadata(proto, spec), str(path))
    return path
