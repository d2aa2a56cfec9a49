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


DENORMAL_PRODUCT = """
import sys
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from edgeseg.artifact.onnxmeta import claim_denormals_as_zero, ort_session

graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"])], "square",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
one_thread = ort.SessionOptions()
one_thread.intra_op_num_threads = 1
case = sys.argv[1]
if case == "plain first":  # ONNX Runtime's own tools (quant_pre_process) made the first session
    ort.InferenceSession(model, one_thread, providers=["CPUExecutionProvider"])
if case == "claimed, then plain":
    claim_denormals_as_zero()
if case.endswith("plain"):
    session = ort.InferenceSession(model, one_thread, providers=["CPUExecutionProvider"])
else:
    config = {"session.set_denormal_as_zero": "0"} if case == "ours, turned off" else None
    session = ort_session(model, threads=1, config=config)
(y,) = session.run(None, {"x": np.full((1, 16), 1e-20, np.float32)})
print(float(y.max()))
"""


def test_denormals_are_computed_as_zero_unless_asked_otherwise() -> None:
    """1e-20 squared is a denormal (1e-40): edgeseg's sessions flush it to 0, on the calling thread
    too. Each case runs in a fresh process: ONNX Runtime sets the calling thread's mode once, from
    the first session of a process, which is why calibration claims it first."""
    import subprocess
    import sys

    def largest(case: str) -> float:
        done = subprocess.run([sys.executable, "-c", DENORMAL_PRODUCT, case], capture_output=True, text=True,
                              check=True)
        return float(done.stdout.strip())

    tiny = np.finfo(np.float32).tiny
    assert largest("ours") == 0.0
    assert 0.0 < largest("ours, turned off") < tiny  # IEEE denormals when the caller asks for them
    assert 0.0 < largest("plain first") < tiny  # a plain first session decides the calling thread
    assert largest("claimed, then plain") == 0.0


def test_denormal_weights_are_found_on_a_thread_that_computes_them_as_zero() -> None:
    """Calibration claims denormals-as-zero before it prepares the graph: the flush must still see them."""
    import subprocess
    import sys

    script = """
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from edgeseg.artifact.onnxmeta import claim_denormals_as_zero
from edgeseg.calib.prepare import flush_denormals

claim_denormals_as_zero()
# 5.7e-42, 1.0, -3.6e-43, 0.0 by their bits: converting 1e-41 to float32 would give 0 here already
weight = numpy_helper.from_array(np.array([0x1000, 0x3F800000, 0x80000100, 0], np.uint32).view(np.float32), "w")
graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
model = helper.make_model(graph)
print(flush_denormals(model), numpy_helper.to_array(model.graph.initializer[0]).view(np.uint32).tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split(None, 1) == ["1", f"{[0, 0x3F800000, 0, 0]}\n"]
