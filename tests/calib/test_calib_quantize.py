"""Real ONNX Runtime quantization of the tiny trained model, both targets, one set of ranges."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgeseg.calib import trt_cache
from edgeseg.calib.quantize import (
    QUANT_METADATA_KEY,
    TENSORRT_OP_TYPES,
    CalibrationRanges,
    calibrate,
    choose_format,
    head_nodes,
)
from edgeseg.calib.readers import ImageFolder
from edgeseg.errors import DataError, EdgesegError, SpecError
from edgeseg.onnxmeta import read_spec_from_onnx_file, write_spec_metadata
from edgeseg.runtime.preprocess import class_map_from_output, preprocess
from edgeseg.spec import ModelSpec


def run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def quiet_calibrate(*args, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("warn", lambda message: None)
    return calibrate(*args, **kwargs)


def save_graph(graph, spec: ModelSpec, path: Path) -> Path:
    """A hand-built graph saved as an opset-17 model with its spec, as `edgeseg export` writes one."""
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(write_spec_metadata(model, spec), str(path))
    return path


def initializers(model) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def quantized_nodes(model) -> list:
    """Nodes (other than Q/DQ) fed by a DequantizeLinear, i.e. running on quantized inputs."""
    dq_outputs = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    return [
        node for node in model.graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in node.input)
    ]


@pytest.mark.parametrize("fmt, float_head", [("qdq", False), ("qoperator", False), ("qoperator", True)])
def test_cpu_target_is_quantized_keeps_the_spec_and_agrees_with_float(
    model_copy, calib_images, tiny_model, scenes, fmt, float_head
):
    report = quiet_calibrate(model_copy, ImageFolder(calib_images), target="cpu", num_frames=24, fmt=fmt,
                             float_head=float_head)
    assert report.output == model_copy.with_name("model.int8.onnx") and report.output.is_file()
    assert report.format == fmt and report.trt_cache is None
    model = onnx.load(str(report.output))
    ops = Counter(node.op_type for node in model.graph.node)
    if fmt == "qoperator":
        assert ops["QLinearConv"] == (2 if float_head else 3)  # a float head keeps the class conv float
        assert ops["Conv"] == (1 if float_head else 0)
        assert len(report.excluded_nodes) == (3 if float_head else 2)
    else:
        assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
        assert ops["Conv"] == 3 and len(report.excluded_nodes) == 2
    # the tail after the class conv (final resize, output transpose) always stays float: no
    # quantize/dequantize pair over the full-resolution logits
    by_name = {node.name: node for node in model.graph.node}
    assert {by_name[name].op_type for name in report.excluded_nodes} >= {"Resize", "Transpose"}
    producer = {o: node for node in model.graph.node for o in node.output}[model.graph.output[0].name]
    assert producer.op_type == "Transpose"
    assert ops["Resize"] == 1 and ops.get("QLinearResize", 0) == 0
    assert read_spec_from_onnx_file(report.output) == tiny_model.spec

    images, _ = scenes(16, seed=9)  # unseen scenes
    batch = preprocess(list(images), tiny_model.spec)
    float_logits, int8_logits = run(model_copy, batch), run(report.output, batch)
    agreement = np.mean(class_map_from_output(float_logits, tiny_model.spec)
                        == class_map_from_output(int8_logits, tiny_model.spec))
    assert agreement >= 0.95
    assert np.corrcoef(float_logits.ravel(), int8_logits.ravel())[0, 1] > 0.99


def test_auto_format_times_both_layouts(model_copy, calib_images):
    report = quiet_calibrate(model_copy, ImageFolder(calib_images), target="cpu", num_frames=8, fmt="auto")
    assert set(report.latency_ms) == {"qdq", "qoperator"}
    assert report.format == choose_format(report.latency_ms)
    assert all(ms > 0 for ms in report.latency_ms.values())


def test_qoperator_is_chosen_only_when_clearly_faster():
    assert choose_format({"qdq": 10.0, "qoperator": 9.8}) == "qdq"  # within noise: the portable form
    assert choose_format({"qdq": 10.0, "qoperator": 9.6}) == "qoperator"
    assert choose_format({"qdq": 9.0, "qoperator": 10.0}) == "qdq"


def test_tensorrt_target_layout_and_legacy_cache(model_copy, calib_images, tiny_model):
    report = quiet_calibrate(
        model_copy, ImageFolder(calib_images), target="tensorrt", num_frames=24, trt_version="10.3.0"
    )
    assert report.output == model_copy.with_name("model.trt-int8.onnx")
    assert report.trt_cache == model_copy.with_name("model.calib.cache")
    model = onnx.load(str(report.output))
    values = initializers(model)

    # symmetric int8: every zero point of every Q and DQ node is 0, activations and weights int8
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q_nodes
    for node in q_nodes:
        zero_point = values[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) > 2:
            assert values[node.input[2]].dtype in (np.int8, np.int32) and not values[node.input[2]].any()

    # only Conv/ConvTranspose/Add/pooling run on quantized inputs; the head stays float
    quantized = quantized_nodes(model)
    assert {n.op_type for n in quantized} <= set(TENSORRT_OP_TYPES)
    assert Counter(n.op_type for n in quantized) == Counter({"Conv": 2, "Add": 1, "AveragePool": 1})
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert convs[-1] not in quantized and resizes and resizes[-1] not in quantized
    assert set(head_nodes(model)) >= {convs[-1].name, resizes[-1].name}
    assert read_spec_from_onnx_file(report.output) == tiny_model.spec
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17)}  # TensorRT 8.5 reads opset <= 17
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
    assert "tensorrt" in dict((p.key, p.value) for p in model.metadata_props)[QUANT_METADATA_KEY]

    cache = trt_cache.read_cache(report.trt_cache)
    assert (cache.version_code, cache.algorithm) == (100300, "EntropyCalibration2")
    assert report.trt_cache.read_text().startswith("TRT-100300-EntropyCalibration2\n")
    ranges = CalibrationRanges.load(report.ranges_path)
    assert "image" in cache.scales and len(cache.scales) >= 5
    for name, scale in cache.scales.items():
        low, high = ranges.tensors[name]
        assert scale == np.float32(max(abs(low), abs(high)) / 127)
    float_outputs = {o for n in model.graph.node if n.name in report.excluded_nodes for o in n.output}
    assert not float_outputs & set(cache.scales)  # layers kept in float get no scale


def test_one_calibration_feeds_both_layouts(model_copy, calib_images):
    cpu = quiet_calibrate(model_copy, ImageFolder(calib_images), target="cpu", num_frames=24, fmt="qdq")
    ranges_text = cpu.ranges_path.read_text()
    trt = quiet_calibrate(model_copy, ImageFolder(calib_images), target="tensorrt", num_frames=24)
    assert not cpu.ranges_reused and trt.ranges_reused
    assert trt.ranges_path == cpu.ranges_path and cpu.ranges_path.read_text() == ranges_text
    ranges = CalibrationRanges.load(cpu.ranges_path)

    # TensorRT Q/DQ scales: max(|min|, |max|) / 127 of the shared ranges
    trt_model = onnx.load(str(trt.output))
    trt_values = initializers(trt_model)
    checked = 0
    for node in trt_model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in ranges.tensors:
            assert trt_values[node.input[1]] == np.float32(ranges.scale(node.input[0]))
            checked += 1
    # CPU uint8 scales: (max - min) / 255 of the same ranges (0 always inside the range);
    # ops that pass int8 data through (pooling, transpose) reuse their input's scale instead
    cpu_model = onnx.load(str(cpu.output))
    cpu_values = initializers(cpu_model)
    producers = {o: n.op_type for n in cpu_model.graph.node for o in n.output}
    for node in cpu_model.graph.node:
        if (node.op_type == "QuantizeLinear" and node.input[0] in ranges.tensors
                and producers.get(node.input[0]) not in ("AveragePool", "MaxPool", "Transpose", "Resize")):
            low, high = ranges.tensors[node.input[0]]
            expected = np.float32((np.float64(max(high, 0.0)) - min(low, 0.0)) / 255)
            assert cpu_values[node.input[1]] == pytest.approx(expected, rel=1e-6)
            checked += 1
    assert checked >= 8


def test_new_frames_mean_new_ranges(model_copy, calib_images, tmp_path, scenes, write_pictures):
    first = quiet_calibrate(model_copy, ImageFolder(calib_images), target="cpu", num_frames=8, fmt="qdq")
    first_ranges = CalibrationRanges.load(first.ranges_path)
    other = tmp_path / "other"
    write_pictures(other, scenes(8, seed=77)[0])
    second = quiet_calibrate(model_copy, ImageFolder(other), target="cpu", num_frames=8, fmt="qdq")
    second_ranges = CalibrationRanges.load(second.ranges_path)
    assert not second.ranges_reused and second.ranges_path == first.ranges_path
    assert second_ranges.key != first_ranges.key and second_ranges.tensors != first_ranges.tensors


def test_methods_give_ranges_inside_minmax(model_copy, calib_images, tmp_path):
    ranges = {}
    for method in ("minmax", "percentile", "entropy"):
        out = tmp_path / method / "model.int8.onnx"
        report = quiet_calibrate(model_copy, ImageFolder(calib_images), method=method, num_frames=24, fmt="qdq",
                                 output=out)
        ranges[method] = CalibrationRanges.load(report.ranges_path)
        assert ranges[method].method == method and out.is_file()
    minmax = ranges["minmax"].tensors
    for method in ("percentile", "entropy"):
        assert ranges[method].tensors.keys() == minmax.keys()
        for name, (low, high) in ranges[method].tensors.items():
            assert minmax[name][0] - 1e-6 <= low <= high <= minmax[name][1] + 1e-6
    assert ranges["percentile"].tensors != minmax  # it does clip the tails somewhere


def test_model_without_spec_says_how_to_fix(tiny_model, calib_images, tmp_path):
    model = tmp_path / "nospec.onnx"
    model.write_bytes(tiny_model.nospec_path.read_bytes())
    with pytest.raises(SpecError, match=r"missing classes \(--classes A,B,...: 3 names.*--spec FILE.*edgeseg spec"):
        quiet_calibrate(model, ImageFolder(calib_images), num_frames=8, fmt="qdq")
    report = quiet_calibrate(model, ImageFolder(calib_images), num_frames=8, fmt="qdq", spec=tiny_model.spec)
    assert read_spec_from_onnx_file(report.output) == tiny_model.spec


def test_bad_arguments_fail_before_any_work(model_copy, calib_images):
    source = ImageFolder(calib_images)
    with pytest.raises(EdgesegError, match="overwrite"):
        quiet_calibrate(model_copy, source, output=model_copy)
    with pytest.raises(EdgesegError, match="not both"):
        quiet_calibrate(model_copy, source, max_miou_drop=0.5, data="synthetic://", eval_source=source)
    with pytest.raises(EdgesegError, match="TensorRT reads Q/DQ"):
        quiet_calibrate(model_copy, source, target="tensorrt", fmt="qoperator")
    with pytest.raises(EdgesegError, match="MAJOR.MINOR.PATCH"):
        quiet_calibrate(model_copy, source, target="tensorrt", trt_version="newest")
    with pytest.raises(EdgesegError, match="no ONNX model"):
        quiet_calibrate(model_copy.with_name("missing.onnx"), source)
    broken = model_copy.with_name("broken.onnx")
    broken.write_bytes(b"\x08\x07garbage")
    with pytest.raises(EdgesegError, match="not a valid ONNX model"):
        quiet_calibrate(broken, source)
    assert sorted(p.name for p in model_copy.parent.iterdir()) == ["broken.onnx", "model.onnx"]


def test_failure_late_in_the_run_leaves_no_file(model_copy, calib_images, monkeypatch):
    import edgeseg.calib.quantize as quantize

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(quantize, "_finish_metadata", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        quiet_calibrate(model_copy, ImageFolder(calib_images), target="tensorrt", num_frames=8)
    assert [p.name for p in model_copy.parent.iterdir()] == ["model.onnx"]  # no output, no temp folder


def test_fixed_batch_larger_than_the_frames_is_a_clear_error(tmp_path, scenes, write_pictures):
    from onnx import TensorProto, helper

    weights = np.random.default_rng(0).normal(size=(3, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("Conv", ["nchw", "w"], ["scores"])],
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [4, 16, 16, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [4, 3, 16, 16])],
        [numpy_helper.from_array(weights, "w")],
    )
    path = save_graph(graph, ModelSpec(class_names=("a", "b", "c"), input_height=16, input_width=16),
                      tmp_path / "fixed.onnx")
    folder = tmp_path / "two"
    write_pictures(folder, scenes(2, seed=3)[0])
    with pytest.raises(DataError, match="fewer than the model's batch size 4"):
        quiet_calibrate(path, ImageFolder(folder), num_frames=10, fmt="qdq")
    write_pictures(folder, scenes(5, seed=4)[0])  # 5 files (overwriting 2): one whole batch of 4
    report = quiet_calibrate(path, ImageFolder(folder), num_frames=10, fmt="qdq")
    assert report.frames == 4


def test_cpu_concat_inputs_share_the_output_range(tmp_path, scenes, write_pictures):
    """Two branches with very different ranges meet in a Concat: the CPU layout gives both the
    concat's range (so ONNX Runtime copies instead of requantising), the stored ranges keep theirs."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    narrow = rng.normal(0, 0.01, (4, 3, 3, 3)).astype(np.float32)
    wide = rng.normal(0, 1.0, (4, 3, 3, 3)).astype(np.float32)
    classes = rng.normal(0, 0.3, (3, 8, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("Conv", ["nchw", "narrow_w"], ["narrow_conv"], pads=[1, 1, 1, 1], name="narrow_conv"),
         helper.make_node("Relu", ["narrow_conv"], ["narrow"], name="narrow_relu"),
         helper.make_node("Conv", ["nchw", "wide_w"], ["wide_conv"], pads=[1, 1, 1, 1], name="wide_conv"),
         helper.make_node("Relu", ["wide_conv"], ["wide_relu"], name="wide_relu"),
         helper.make_node("Reshape", ["wide_relu", "shape"], ["wide"], name="wide_reshape"),
         helper.make_node("Concat", ["narrow", "wide"], ["both"], axis=1, name="concat"),
         helper.make_node("Conv", ["both", "classes_w"], ["scores"], name="classes")],
        "branches",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16, 16, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 16, 16])],
        [numpy_helper.from_array(narrow, "narrow_w"), numpy_helper.from_array(wide, "wide_w"),
         numpy_helper.from_array(classes, "classes_w"),
         numpy_helper.from_array(np.array([1, 4, 16, 16], np.int64), "shape")],
    )
    spec = ModelSpec(class_names=("a", "b", "c"), input_height=16, input_width=16)
    path = save_graph(graph, spec, tmp_path / "branches.onnx")
    folder = tmp_path / "frames"
    write_pictures(folder, scenes(8, seed=5, size=16)[0])

    report = quiet_calibrate(path, ImageFolder(folder), num_frames=8, fmt="qdq", method="minmax")
    stored = CalibrationRanges.load(report.ranges_path).tensors
    assert stored["wide"][1] > 10 * stored["narrow"][1]  # the stored ranges stay each tensor's own

    quantized = onnx.load(str(report.output))
    values = initializers(quantized)
    producers = {o: node for node in quantized.graph.node for o in node.output}
    concat = next(node for node in quantized.graph.node if node.op_type == "Concat")
    input_scales = [values[producers[name].input[1]] for name in concat.input]
    output_q = next(node for node in quantized.graph.node if node.op_type == "QuantizeLinear" and node.input[0] == "both")
    assert len(input_scales) == 2 and all(scale == values[output_q.input[1]] for scale in input_scales)

    # the same ranges without sharing keep the narrow branch's finer scale
    from edgeseg.calib.quantize import cpu_layout, quantize_layout
    from dataclasses import replace

    unshared = quantize_layout(path, CalibrationRanges.load(report.ranges_path),
                               replace(cpu_layout("qdq"), shared_concat_ranges=False), tmp_path / "unshared.onnx",
                               [], tmp_path)
    unshared_model = onnx.load(str(unshared))
    unshared_values = initializers(unshared_model)
    producers = {o: node for node in unshared_model.graph.node for o in node.output}
    concat = next(node for node in unshared_model.graph.node if node.op_type == "Concat")
    narrow_scale, wide_scale = (unshared_values[producers[name].input[1]] for name in concat.input)
    assert narrow_scale < wide_scale / 10

    images, _ = scenes(4, seed=6, size=16)
    batch = preprocess(list(images), spec)
    float_scores = np.concatenate([run(path, frame[None]) for frame in batch])
    int8_scores = np.concatenate([run(report.output, frame[None]) for frame in batch])
    assert np.corrcoef(float_scores.ravel(), int8_scores.ravel())[0, 1] > 0.98


def test_shared_concat_ranges_never_undo_an_activation():
    """ONNX Runtime drops a Relu/Clip after a quantized op and clips through the output range, so
    a union reaching below 0 (a ConvTranspose beside a Relu skip, as in a U-Net) is not shared."""
    from onnx import helper

    from edgeseg.calib.quantize import shared_concat_ranges

    def graph(first_op: str) -> onnx.ModelProto:
        nodes = [helper.make_node(first_op, ["x"], ["a"]), helper.make_node("Relu", ["y"], ["b"]),
                 helper.make_node("Resize", ["b", "", "scales"], ["b_up"]),
                 helper.make_node("Concat", ["a", "b_up"], ["both"], axis=1)]
        return helper.make_model(helper.make_graph(nodes, "g", [], []))

    ranges = {"x": (-3.0, 2.0), "y": (-1.0, 1.0), "b": (0.0, 6.0), "b_up": (0.0, 6.0), "both": (-3.0, 6.0)}
    negative = dict(ranges, a=(-3.0, 2.0))
    assert shared_concat_ranges(graph("Identity"), negative) == negative  # the Relu would be undone
    positive = dict(ranges, a=(0.0, 2.0), both=(0.0, 6.0))
    shared = shared_concat_ranges(graph("Relu"), positive)
    assert shared["a"] == shared["b"] == shared["b_up"] == shared["both"] == (0.0, 6.0)
    assert shared["x"] == (-3.0, 2.0) and shared["y"] == (-1.0, 1.0)  # inputs of the Relus untouched
    clipped = dict(positive, a=(0.0, 2.0))
    assert shared_concat_ranges(graph("Clip"), clipped)["a"] == (0.0, 2.0)  # a Clip keeps its own range
