"""Tiny real models for the runtime tests, built once per session.

A 32x32 three-class Keras model (saved as a run folder) and its tf2onnx export with the spec
embedded; a 32x32 binary Keras model; and a fixed-batch NCHW ONNX model written with
onnx.helper (no TensorFlow) whose output is easy to compute by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgeseg.spec import ModelSpec


@dataclass(frozen=True)
class TinyModels:
    spec: ModelSpec
    run_dir: Path  # model.keras + spec.json
    onnx_path: Path  # the export, spec embedded
    onnx_without_spec: Path
    binary_run_dir: Path
    binary_spec: ModelSpec


def _save_run(model, spec: ModelSpec, run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    spec.save(run_dir / "spec.json")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from edgeseg.onnxmeta import write_spec_metadata

    root = tmp_path_factory.mktemp("tiny_models")
    keras.utils.set_random_seed(0)

    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    logits = keras.layers.Conv2D(3, 1, name="logits")(x)
    model = keras.Model(inputs, logits)
    spec = ModelSpec(class_names=("ground", "grass", "obstacle"), input_height=32, input_width=32,
                     traversable=("ground", "grass"), model="tiny")
    _save_run(model, spec, root / "run")

    model.output_names = ["logits"]  # tf2onnx 1.17 with Keras 3 needs this
    signature = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    onnx_without_spec = root / "nospec.onnx"
    onnx.save(proto, str(onnx_without_spec))
    onnx_path = root / "model.onnx"
    onnx.save(write_spec_metadata(proto, spec), str(onnx_path))

    binary_inputs = keras.Input((32, 32, 3), name="image")
    y = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(binary_inputs)
    y = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="mask")(y)
    binary_spec = ModelSpec(class_names=("background", "road"), input_height=32, input_width=32,
                            task="binary", output="sigmoid")
    _save_run(keras.Model(binary_inputs, y), binary_spec, root / "binary_run")

    return TinyModels(spec, root / "run", onnx_path, onnx_without_spec, root / "binary_run", binary_spec)


@pytest.fixture(scope="session")
def nchw_fixed_batch_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, ModelSpec]:
    """A 1x1 convolution, NCHW input [2, 3, 8, 8] (fixed batch 2), 4 classes.

    Returns (path, weights, spec).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.onnxmeta import write_spec_metadata

    weights = np.random.default_rng(1).normal(size=(4, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w"], ["scores"])],
        "conv1x1",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 4, 8, 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(class_names=("a", "b", "c", "d"), input_height=8, input_width=8, layout="NCHW",
                     scale=1 / 255)
    path = tmp_path_factory.mktemp("nchw") / "conv.onnx"
    onnx.save(write_spec_metadata(model, spec), str(path))
    return path, weights, spec
