"""`ort_session`, the one ONNX Runtime session builder: each option reaches the real session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeseg.artifact.onnxmeta import ort_session


def relu_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_options_reach_the_session(tmp_path: Path) -> None:
    path = tmp_path / "relu.onnx"
    onnx.save(relu_model(), str(path))
    session = ort_session(path, threads=2, optimization="ORT_DISABLE_ALL",
                          config={"session.intra_op.allow_spinning": "0"})
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.log_severity_level == 3
    assert str(options.graph_optimization_level).endswith("ORT_DISABLE_ALL")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]
    (out,) = session.run(None, {"x": np.array([[-1, 0, 2, -3]], np.float32)})
    np.testing.assert_array_equal(out, [[0, 0, 2, 0]])


def test_serialized_model_and_extra_settings(tmp_path: Path) -> None:
    session = ort_session(relu_model().SerializeToString(), quiet=False, enable_profiling=True,
                          profile_file_prefix=str(tmp_path / "profile"))
    assert session.get_session_options().log_severity_level != 3
    session.run(None, {"x": np.zeros((1, 4), np.float32)})
    profile = Path(session.end_profiling())
    assert profile.parent == tmp_path and profile.stat().st_size > 0
