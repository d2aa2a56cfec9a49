"""Tiny real models for the runtime tests, built once per session.

A 32x32 three-class Keras model (saved as a run folder) and its export through `edgeseg.export`
with the spec embedded (the shared `export_tiny_model` fixture of tests/conftest.py); a 32x32
binary Keras model; and a fixed-batch NCHW ONNX model written with onnx.helper (no TensorFlow)
whose output is easy to compute by hand.
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


@pytest.fixture(scope="session")
def tiny_models(export_tiny_model, tiny_net) -> TinyModels:
    spec = ModelSpec(class_names=("ground", "grass", "obstacle"), input_height=32, input_width=32,
                     traversable=("ground", "grass"), model="tiny")
    exported = export_tiny_model(tiny_net(3), spec, "tiny_models")
    onnx_without_spec = exported.with_spec(None, exported.onnx_path.with_name("nospec.onnx"))

    binary_spec = ModelSpec(class_names=("background", "road"), input_height=32, input_width=32,
                            task="binary", output="sigmoid")
    binary_run = export_tiny_model(tiny_net(1, activation="sigmoid"), binary_spec, "tiny_binary").run_dir
    return TinyModels(spec, exported.run_dir, exported.onnx_path, onnx_without_spec, binary_run, binary_spec)


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
