"""Graph preparation: each rewrite on a hand-built graph, run in ONNX Runtime against the original."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeseg.calib.prepare import PrepareReport, check_prepared, prepare_graph, rewrite_graph
from edgeseg.errors import EngineError
from edgeseg.export.keras_to_onnx import synthetic_frames
from tests.fixtures_onnx import denormal_float32


def model_of(b, output: str, channels: int, opset: int = 17, size: int = 16):
    graph = helper.make_graph(
        b.nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, channels, "h", "w"])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def rewritten(model) -> tuple[onnx.ModelProto, PrepareReport, Counter]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    report = PrepareReport()
    rewrite_graph(copy, report)
    onnx.checker.check_model(copy)
    return copy, report, Counter(node.op_type for node in copy.graph.node)


X = np.random.default_rng(0).normal(size=(1, 3, 16, 16)).astype(np.float32)


def test_batchnorm_after_conv_convtranspose_and_a_concat_of_convs_is_folded_exactly(foreign):
    b = foreign._Graph(seed=1)
    x = b.bn(b.conv("input", 3, 8, bias=True), 8)
    up = b.bn(b.conv_transpose(x, 8, 4), 4)
    branches = [b.conv(up, 4, 6), b.conv(up, 4, 2, k=1)]
    out = b.bn(b.node("Concat", branches, axis=1), 8)
    model = model_of(b, out, 8)
    prepared, report, ops = rewritten(model)
    assert report.folded_batchnorms == 3 and "BatchNormalization" not in ops
    np.testing.assert_allclose(run(prepared, X), run(model, X), rtol=1e-4, atol=1e-4)
    names = {o for node in prepared.graph.node for o in node.output}
    # the folded values keep the BN outputs' names; the convs before the Concat now compute other
    # values, so their old names are gone (the TensorRT cache must not give them the new ranges)
    assert out in names and x in names and not names & set(branches)


def test_batchnorm_whose_input_is_read_elsewhere_or_not_after_a_conv_stays(foreign):
    b = foreign._Graph(seed=2)
    x = b.conv("input", 3, 4)
    kept = b.bn(x, 4)  # the conv output also feeds the Add: folding would change the Add
    other = b.bn(b.node("Relu", [b.node("Add", [kept, x])]), 4)  # after a Relu: nothing to fold into
    prepared, report, ops = rewritten(model_of(b, other, 4))
    assert report.folded_batchnorms == 0 and ops["BatchNormalization"] == 2


def test_prelu_with_one_slope_becomes_leakyrelu_and_a_per_channel_slope_stays(foreign):
    b = foreign._Graph(seed=3)
    x = b.prelu(b.conv("input", 3, 4), 4, shared=True)
    model = model_of(b, b.prelu(b.conv(x, 4, 4), 4, shared=False), 4)
    prepared, report, ops = rewritten(model)
    assert report.prelu_to_leakyrelu == 1 and ops["LeakyRelu"] == 1 and ops["PRelu"] == 1
    np.testing.assert_allclose(run(prepared, X), run(model, X), rtol=1e-5, atol=1e-5)


def test_relu6_and_hardswish_forms_are_recognised(foreign):
    b = foreign._Graph(seed=4)
    x = b.relu6_minmax(b.conv("input", 3, 4))
    x = b.hardswish_decomposed(b.conv(x, 4, 4))
    gate = b.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)
    model = model_of(b, b.node("Mul", [x, gate]), 4)
    prepared, report, ops = rewritten(model)
    assert (report.relu6_to_clip, report.hardswish) == (1, 2)
    assert ops["HardSwish"] == 2 and ops["Clip"] == 1 and not ops["Min"] and not ops["Div"]
    np.testing.assert_allclose(run(prepared, X), run(model, X), rtol=1e-5, atol=1e-5)


def test_hardswish_is_left_alone_before_opset_14(foreign):
    b = foreign._Graph(seed=5)
    model = model_of(b, b.hardswish_decomposed(b.conv("input", 3, 4)), 4, opset=13)
    _, report, ops = rewritten(model)
    assert report.hardswish == 0 and ops["Div"] == 1


def test_prepare_graph_converts_old_opsets_and_passes_the_float_check(tmp_path: Path, foreign):
    b = foreign._Graph(seed=6)
    x = b.prelu(b.bn(b.conv("input", 3, 8, stride=2), 8), 8, shared=True)
    x = b.prelu(b.bn(b.conv_transpose(x, 8, 4), 4), 4, shared=False)
    source = tmp_path / "m.onnx"
    onnx.save(model_of(b, x, 4, opset=12, size=32), str(source))  # PyTorch's common export opset
    report = prepare_graph(source, tmp_path / "prepared.onnx")
    assert (report.folded_batchnorms, report.prelu_to_leakyrelu) == (2, 1)
    assert "opset 12 -> 13" in report.describe()
    prepared = onnx.load(str(tmp_path / "prepared.onnx"))
    assert prepared.opset_import[0].version >= 13
    spec = foreign.foreign_spec(32, 32).replace(class_names=("a", "b", "c", "d"))
    check_prepared(source, tmp_path / "prepared.onnx", synthetic_frames(32, 32, 2), spec, 1, report)
    assert report.agreement == 1.0


def test_check_prepared_refuses_a_graph_that_differs(tmp_path: Path, foreign):
    spec = foreign.foreign_spec(32, 32)
    original = foreign.save_foreign_model("hardswish_resize", 32, 32, tmp_path / "a.onnx", seed=0)
    other = foreign.save_foreign_model("hardswish_resize", 32, 32, tmp_path / "b.onnx", seed=1)
    with pytest.raises(EngineError, match="does not match the original"):
        check_prepared(original, other, synthetic_frames(32, 32, 2), spec, 1, PrepareReport())


def test_denormal_weights_are_flushed_to_zero(foreign):
    b = foreign._Graph(seed=7)
    x = b.conv("input", 3, 4, bias=True)
    model = model_of(b, x, 4)
    weight = model.graph.initializer[0]
    value = onnx.numpy_helper.to_array(weight).copy()
    value[0] = denormal_float32(value[0].shape)  # a trained-to-nothing filter, as TwinLiteNet's attention has
    weight.CopyFrom(onnx.numpy_helper.from_array(value, weight.name))
    prepared, report, _ = rewritten(model)
    assert "1 weight tensor(s) with denormal values flushed to 0" in report.describe()
    assert not onnx.numpy_helper.to_array(prepared.graph.initializer[0])[0].any()


def test_the_tensorrt_target_quantizes_the_same_prepared_graph(tmp_path: Path, foreign, write_pictures):
    from edgeseg.calib.quantize import TENSORRT_OP_TYPES, calibrate
    from edgeseg.calib.readers import ImageFolder

    model = foreign.save_foreign_model("prelu_bn", 32, 64, tmp_path / "model.onnx")
    write_pictures(tmp_path / "frames", np.stack(synthetic_frames(32, 64, 4, seed=2)))
    report = calibrate(model, ImageFolder(tmp_path / "frames"), target="tensorrt", num_frames=4, progress=False,
                       warn=lambda message: None)
    assert report.preparation.folded_batchnorms == 8 and report.account is None
    assert set(report.int8_ops) <= set(TENSORRT_OP_TYPES) and report.int8_ops["ConvTranspose"] == 1
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(report.output)).graph.node}
    assert "int8 ops  Conv" in report.summary()


def test_a_graph_with_control_flow_is_left_to_onnx_runtime(foreign):
    b = foreign._Graph(seed=8)
    x = b.bn(b.conv("input", 3, 4), 4)
    branch = helper.make_graph([helper.make_node("Identity", [x], ["y"])], "branch", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    cond = b.const(np.array(True), "cond")
    b.nodes.append(helper.make_node("If", [cond], ["out"], then_branch=branch, else_branch=branch))
    _, report, ops = rewritten_unchecked(model_of(b, "out", 4))
    assert ops["BatchNormalization"] == 1 and "control flow: rewrites skipped" in report.describe()


def rewritten_unchecked(model):
    report = PrepareReport()
    rewrite_graph(model, report)
    return model, report, Counter(node.op_type for node in model.graph.node)


def test_an_unfolded_batchnorm_is_quantized_per_channel_without_warnings(tmp_path: Path, foreign, write_pictures,
                                                                       caplog):
    """A BatchNorm after an Add has no exact fold; its rank-1 scale is quantized along axis 0."""
    import logging

    from edgeseg.calib import ImageFolder, calibrate
    from edgeseg.onnxmeta import write_spec_metadata

    b = foreign._Graph(seed=4)
    x = b.conv("input", 3, 8, bias=True)
    y = b.bn(b.node("Add", [x, b.conv(x, 8, 8)]), 8)
    logits = b.conv(y, 8, 4, k=1, bias=True)
    model = write_spec_metadata(model_of(b, logits, 4, size=32), foreign.foreign_spec(32, 32))
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    frames = tmp_path / "frames"
    write_pictures(frames, np.stack(synthetic_frames(32, 32, 4, seed=1)))
    with caplog.at_level(logging.WARNING):
        report = calibrate(path, ImageFolder(frames), num_frames=4, fmt="qdq", measure_ops=False, float_head=False,
                           progress=False, warn=lambda message: None)
    assert "out-of-range" not in caplog.text
    quantized = onnx.load(str(report.output))
    bn = next(n for n in quantized.graph.node if n.op_type == "BatchNormalization")
    producers = {o: n for n in quantized.graph.node for o in n.output}
    scale_dq = producers[bn.input[1]]
    assert scale_dq.op_type == "DequantizeLinear"
    scales = {i.name: i for i in quantized.graph.initializer}[scale_dq.input[1]]
    assert list(scales.dims) == [8] and helper.get_attribute_value(scale_dq.attribute[0]) == 0
