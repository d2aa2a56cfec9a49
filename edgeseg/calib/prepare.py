"""Graph preparation before quantizing: exact rewrites that let more of the graph run in INT8.

PyTorch exports carry ops that ONNX Runtime's INT8 kernels handle badly or not at all: each
float op between two quantized ones costs a DequantizeLinear and a QuantizeLinear over the
whole tensor. `prepare_graph` rewrites what has an exact (or float-rounding-exact)
equivalent, then runs ONNX Runtime's own pre-processing:

* Denormal float32 weights are set to 0 (see `flush_denormals`).
* BatchNormalization after Conv/ConvTranspose is folded into the weights (ONNX Runtime's
  pre-processing does this too); BatchNormalization after a channel Concat of convolutions
  (ESPNet-style blocks, which ONNX Runtime leaves alone) is split and folded into each
  convolution. Only where the convolution's output feeds nothing else and every parameter is
  a constant.
* PRelu whose slope is one number (scalar, or the same for every channel) becomes
  LeakyRelu, which has an INT8 kernel (QLinearLeakyRelu); per-channel slopes stay PRelu.
* ReLU6 written as Min(Max(x, 0), 6) becomes Clip(x, 0, 6), which the quantizer folds into
  the producing convolution's output range.
* HardSwish in PyTorch's pre-opset-14 form, x * clip(x + 3, 0, 6) / 6 (or x *
  HardSigmoid(x)), becomes one HardSwish node: one float op instead of four, each of which
  would get its own quantize/dequantize pair.
* Opset 11-12 (common in PyTorch exports) is converted to 13 (onnx.version_converter):
  per-channel weight scales need DequantizeLinear's axis attribute.
* ONNX Runtime's `quant_pre_process` (shape inference and basic graph optimisation; symbolic
  shape inference skipped: it fails on a dynamic batch and needs sympy).

onnxsim and onnxoptimizer were measured and left out (both install on Python 3.11): after
the steps above, onnxsim 0.8.1 removed 2 of TwinLiteNet's 146 nodes (a convolution whose
weights are all zero once denormals are flushed, and a Reshape), onnxoptimizer 0.4.2 none, and
neither changed the PyTorch-like fixtures (docs/results.md).

`check_prepared` runs both graphs on real frames with the export's comparison
(`edgeseg.export.keras_to_onnx.compare_outputs`) before the prepared graph is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.errors import EngineError
from edgeseg.artifact.spec import ModelSpec

PREPARE_VERSION = 1  # part of the calibration ranges' key: a change here renames tensors
FOLD_PRODUCERS = ("Conv", "ConvTranspose")
# per-channel DequantizeLinear (its axis attribute) needs opset 13; PyTorch often exports 11 or 12
MIN_OPSET = 13
# a rewrite is float-exact up to rounding: the prepared graph must match the original this well
CHECK_ATOL = 1e-3
CHECK_RTOL = 1e-3
CHECK_MIN_AGREEMENT = 0.999
CHECK_FRAMES = 4


@dataclass
class PrepareReport:
    """What `prepare_graph` changed (counts of rewritten nodes) and how well it matches."""

    folded_batchnorms: int = 0
    prelu_to_leakyrelu: int = 0
    relu6_to_clip: int = 0
    hardswish: int = 0
    nodes_before: int = 0
    nodes_after: int = 0
    agreement: float | None = None
    max_abs_diff: float | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        done = [f"{n} {what}" for n, what in (
            (self.folded_batchnorms, "BatchNorm folded"), (self.prelu_to_leakyrelu, "PRelu -> LeakyRelu"),
            (self.relu6_to_clip, "ReLU6 -> Clip"), (self.hardswish, "HardSwish recognised")) if n]
        done += self.notes
        text = f"{self.nodes_before} -> {self.nodes_after} nodes" + (f" ({', '.join(done)})" if done else "")
        if self.agreement is not None:
            text += f", float check {self.agreement:.3%} pixels agree (max |diff| {self.max_abs_diff:.2g})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"folded_batchnorms": self.folded_batchnorms, "prelu_to_leakyrelu": self.prelu_to_leakyrelu,
                "relu6_to_clip": self.relu6_to_clip, "hardswish": self.hardswish,
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after, "agreement": self.agreement}


def prepare_graph(model_path: Path, output: Path) -> PrepareReport:
    """Write the prepared float graph of `model_path` to `output` (see the module docstring)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(model_path))
    report = PrepareReport(nodes_before=len(model.graph.node))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset < MIN_OPSET:
        model = _upgrade_opset(model, opset, model_path)
        report.notes.append(f"opset {opset} -> {MIN_OPSET}")
    rewrite_graph(model, report)
    rewritten = output.with_name(output.stem + ".rewritten.onnx")
    onnx.save(model, str(rewritten))
    quant_pre_process(str(rewritten), str(output), skip_symbolic_shape=True)
    rewritten.unlink()
    report.nodes_after = len(onnx.load(str(output), load_external_data=False).graph.node)
    return report


def _upgrade_opset(model: Any, opset: int, model_path: Path) -> Any:
    """The model converted to MIN_OPSET, or an EngineError that says to re-export it."""
    from onnx import checker, version_converter

    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except (RuntimeError, ValueError, checker.ValidationError) as err:
        raise EngineError(
            f"{model_path} uses ONNX opset {opset}; INT8 with per-channel weights needs opset {MIN_OPSET} or "
            f"later and the conversion failed ({err}); re-export it with opset {MIN_OPSET}+ "
            "(torch.onnx.export(..., opset_version=17))"
        ) from None


def rewrite_graph(model: Any, report: PrepareReport) -> None:
    """The exact rewrites, in place on an onnx.ModelProto (none in a graph with If/Loop/Scan bodies,
    whose uses of outer tensors the producer/consumer maps here do not see)."""
    from onnx import AttributeProto

    flushed = flush_denormals(model)
    if flushed:
        report.notes.append(f"{flushed} weight tensor(s) with denormal values flushed to 0")
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute):
        report.notes.append("control flow: rewrites skipped")
        return
    graph = _Graph(model)
    report.folded_batchnorms += fold_batchnorms(graph)
    report.prelu_to_leakyrelu += prelu_to_leakyrelu(graph)
    report.relu6_to_clip += relu6_to_clip(graph)
    if graph.opset >= 14:
        report.hardswish += recognise_hardswish(graph)
    graph.drop_unused_initializers()


def check_prepared(
    original: Path, prepared: Path, frames: Sequence[np.ndarray], spec: ModelSpec, batch_size: int,
    report: PrepareReport,
) -> None:
    """Run both float graphs on real frames; refuse the prepared one unless it matches.

    Raises:
        EngineError: the prepared graph differs (a bug in a rewrite; nothing is written).
    """
    from edgeseg.artifact.onnxmeta import ort_session
    from edgeseg.export.keras_to_onnx import compare_outputs
    from edgeseg.runtime.preprocess import preprocess

    frames = list(frames[: max(CHECK_FRAMES, batch_size)])
    frames += [frames[-1]] * (-len(frames) % batch_size)
    sessions = [ort_session(original), ort_session(prepared)]
    outputs: list[list[np.ndarray]] = [[], []]
    for start in range(0, len(frames), batch_size):
        batch = preprocess(frames[start : start + batch_size], spec)
        for session, collected in zip(sessions, outputs):
            collected.append(session.run(None, {session.get_inputs()[0].name: batch})[0])
    comparison = compare_outputs(np.concatenate(outputs[0]), np.concatenate(outputs[1]), spec, CHECK_ATOL, CHECK_RTOL)
    report.agreement, report.max_abs_diff = comparison.argmax_agreement, comparison.max_abs_diff
    if not comparison.passed(CHECK_MIN_AGREEMENT):
        raise EngineError(
            f"the prepared float graph of {original.name} does not match the original on {len(frames)} frames "
            f"(max |diff| {comparison.max_abs_diff:.3g}, {comparison.argmax_agreement:.3%} pixels agree); "
            "nothing written. This is a bug in edgeseg.calib.prepare: please report it with the model"
        )


# --------------------------------------------------------------------------------------------
# The rewrites


class _Graph:
    """Producer/consumer maps and constants of one graph, kept up to date by the rewrites."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.constants = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        self.outputs = {value.name for value in self.graph.output}

    def producer(self, name: str) -> Any:
        return next((node for node in self.graph.node if name in node.output), None)

    def consumers(self, name: str) -> list[Any]:
        return [node for node in self.graph.node if name in node.input]

    def private(self, name: str) -> bool:
        """Only one node reads this tensor and it is no graph output."""
        return name not in self.outputs and len(self.consumers(name)) == 1

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def scalar(self, name: str) -> float | None:
        """The single value of a constant tensor whose elements are all equal, else None."""
        value = self.const(name)
        if value is None or value.size == 0 or not np.all(value == value.flat[0]):
            return None
        return float(value.flat[0])

    def add_constant(self, value: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = hint
        while name in self.constants:
            name += "_"
        self.constants[name] = value
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def remove(self, node: Any) -> None:
        self.graph.node.remove(node)

    def rename_output(self, node: Any, old: str, new: str) -> None:
        node.output[list(node.output).index(old)] = new

    def drop_unused_initializers(self) -> None:
        used = {name for node in self.graph.node for name in node.input} | self.outputs
        for init in [init for init in self.graph.initializer if init.name not in used]:
            self.graph.initializer.remove(init)


def flush_denormals(model: Any) -> int:
    """Set float32 weights under the smallest normal number (1.2e-38) to 0, in place on an
    onnx.ModelProto; returns how many tensors changed.

    They change no result beyond float rounding, and a tensor of them (a trained-to-nothing
    attention branch in TwinLiteNet) breaks ONNX Runtime's histogram calibrators ("Too many bins
    for data range"). (Their cost in time is ONNX Runtime's denormals-as-zero mode's, set by
    `artifact.onnxmeta.ort_session`.)
    """
    from onnx import TensorProto, numpy_helper

    changed = 0
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        # by the bits (exponent 0, mantissa not): under denormals-as-zero, which edgeseg's ONNX
        # Runtime sessions set on this thread, `value != 0` is False for a denormal
        bits = value.view(np.uint32)
        denormal = ((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)
        if denormal.any():
            init.CopyFrom(numpy_helper.from_array(np.where(denormal, np.float32(0), value), init.name))
            changed += 1
    return changed


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _batchnorm_affine(graph: _Graph, bn: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per channel of an inference-mode BatchNormalization with constant parameters."""
    if len(bn.output) != 1 or _attr(bn, "training_mode", 0):
        return None
    params = [graph.const(name) for name in bn.input[1:5]]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    scale = gamma / np.sqrt(var + _attr(bn, "epsilon", 1e-5))
    return scale, beta - mean * scale


def _fold_into(graph: _Graph, conv: Any, scale: np.ndarray, shift: np.ndarray) -> bool:
    """Scale a Conv/ConvTranspose's output channels in its weights and bias (new constants)."""
    weight = graph.const(conv.input[1])
    if weight is None or len(conv.input) > 2 and conv.input[2] and graph.const(conv.input[2]) is None:
        return False
    groups = _attr(conv, "group", 1)
    if conv.op_type == "Conv":
        axis_shape = (-1,) + (1,) * (weight.ndim - 1)
        if weight.shape[0] != scale.size:
            return False
        new_weight = weight * scale.reshape(axis_shape)
    else:  # ConvTranspose weights are [in, out / group, k...]
        if groups != 1 or weight.shape[1] != scale.size:
            return False
        new_weight = weight * scale.reshape((1, -1) + (1,) * (weight.ndim - 2))
    bias = graph.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(scale.size)
    new_bias = bias * scale + shift
    inputs = [conv.input[0], graph.add_constant(new_weight.astype(np.float32), conv.input[1] + "_bnfold"),
              graph.add_constant(new_bias.astype(np.float32), (conv.name or conv.input[1]) + "_bnfold_bias")]
    del conv.input[:]
    conv.input.extend(inputs)
    return True


def fold_batchnorms(graph: _Graph) -> int:
    """Fold BatchNormalization into the Conv/ConvTranspose before it, or into each conv of a Concat."""
    folded = 0
    for bn in [node for node in graph.graph.node if node.op_type == "BatchNormalization"]:
        affine = _batchnorm_affine(graph, bn)
        producer = graph.producer(bn.input[0])
        if affine is None or producer is None or not graph.private(bn.input[0]):
            continue
        scale, shift = affine
        if producer.op_type in FOLD_PRODUCERS:
            convs, sizes = [producer], [scale.size]
        elif producer.op_type == "Concat" and _attr(producer, "axis", 0) == 1:
            convs = [graph.producer(name) for name in producer.input]
            if any(c is None or c.op_type not in FOLD_PRODUCERS or not graph.private(n)
                   for c, n in zip(convs, producer.input)):
                continue
            sizes = [_out_channels(graph, c) for c in convs]
            if None in sizes or sum(sizes) != scale.size or len({id(c) for c in convs}) != len(convs):
                continue
        else:
            continue
        bounds = np.cumsum([0] + sizes)
        if not all(_fold_into(graph, c, scale[a:b], shift[a:b]) for c, a, b in zip(convs, bounds, bounds[1:])):
            continue  # a partial fold cannot happen: _fold_into refuses before it changes anything
        if producer.op_type == "Concat":  # the convs' outputs now hold other values: new names, so no
            for index, conv in enumerate(convs):  # range of theirs is taken for the float model's tensor
                renamed = conv.output[0] + "_bnfold"
                producer.input[index] = renamed
                conv.output[0] = renamed
        graph.rename_output(producer, bn.input[0], bn.output[0])
        graph.remove(bn)
        folded += 1
    return folded


def _out_channels(graph: _Graph, conv: Any) -> int | None:
    weight = graph.const(conv.input[1])
    if weight is None:
        return None
    return weight.shape[0] if conv.op_type == "Conv" else weight.shape[1] * _attr(conv, "group", 1)


def prelu_to_leakyrelu(graph: _Graph) -> int:
    """PRelu with one slope for all channels -> LeakyRelu(alpha=slope)."""
    from onnx import helper

    rewritten = 0
    for index, node in enumerate(list(graph.graph.node)):
        if node.op_type != "PRelu":
            continue
        slope = graph.scalar(node.input[1])
        if slope is None:
            continue
        leaky = helper.make_node("LeakyRelu", [node.input[0]], list(node.output), name=node.name, alpha=slope)
        node.CopyFrom(leaky)
        rewritten += 1
    return rewritten


def relu6_to_clip(graph: _Graph) -> int:
    """Min(Max(x, 0), 6) or Max(Min(x, 6), 0) -> Clip(x, 0, 6)."""
    from onnx import helper

    rewritten = 0
    gone: set[str] = set()
    for outer in [node for node in graph.graph.node if node.op_type in ("Min", "Max")]:
        inner_op = "Max" if outer.op_type == "Min" else "Min"
        operands = None if outer.output[0] in gone else _tensor_and_scalar(graph, outer)
        if operands is None:
            continue
        inner = graph.producer(operands[0])
        if inner is None or inner.op_type != inner_op or not graph.private(operands[0]):
            continue
        inner_operands = _tensor_and_scalar(graph, inner)
        if inner_operands is None:
            continue
        low, high = (inner_operands[1], operands[1]) if inner_op == "Max" else (operands[1], inner_operands[1])
        if low >= high:
            continue
        lo = graph.add_constant(np.array(low, np.float32), f"{outer.name or 'clip'}_min")
        hi = graph.add_constant(np.array(high, np.float32), f"{outer.name or 'clip'}_max")
        clip = helper.make_node("Clip", [inner_operands[0], lo, hi], list(outer.output), name=outer.name)
        gone.update(inner.output)
        graph.remove(inner)
        outer.CopyFrom(clip)
        rewritten += 1
    return rewritten


def _tensor_and_scalar(graph: _Graph, node: Any) -> tuple[str, float] | None:
    """(tensor input, constant value) of a two-input node with one scalar-constant operand."""
    if len(node.input) != 2:
        return None
    for tensor, constant in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        value = graph.scalar(constant)
        if value is not None and graph.const(tensor) is None and graph.const(constant).size == 1:
            return tensor, value
    return None


def recognise_hardswish(graph: _Graph) -> int:
    """x * clip(x + 3, 0, 6) / 6, x * (clip(x + 3, 0, 6) / 6) and x * HardSigmoid(x) -> HardSwish(x)."""
    from onnx import helper

    found = 0
    gone: set[str] = set()
    for last in [node for node in graph.graph.node if node.op_type in ("Div", "Mul")]:
        match = None if last.output[0] in gone else _hardswish_match(graph, last)
        if match is None:
            continue
        x, removed = match
        for node in removed:
            gone.update(node.output)
            graph.remove(node)
        last.CopyFrom(helper.make_node("HardSwish", [x], list(last.output), name=last.name))
        found += 1
    return found


def _hardswish_match(graph: _Graph, last: Any) -> tuple[str, list[Any]] | None:
    """(x, nodes to remove) if `last` ends a HardSwish pattern, else None."""

    def private_producer(name: str, op: str) -> Any:
        node = graph.producer(name)
        return node if node is not None and node.op_type == op and graph.private(name) else None

    def relu6_of_x_plus_3(name: str) -> tuple[str, list[Any]] | None:
        """clip(x + 3, 0, 6) -> (x, [clip, add])."""
        clip = private_producer(name, "Clip")
        if clip is None or len(clip.input) < 3:
            return None
        if graph.scalar(clip.input[1]) != 0.0 or graph.scalar(clip.input[2]) != 6.0:
            return None
        add = private_producer(clip.input[0], "Add")
        operands = None if add is None else _tensor_and_scalar(graph, add)
        if operands is None or operands[1] != 3.0:
            return None
        return operands[0], [clip, add]

    def scaled_gate(name: str) -> tuple[str, list[Any]] | None:
        """clip(x + 3, 0, 6) / 6 or HardSigmoid(x, 1/6, 0.5) -> (x, nodes)."""
        hard = private_producer(name, "HardSigmoid")
        if hard is not None:
            if abs(_attr(hard, "alpha", 0.2) - 1 / 6) < 1e-6 and abs(_attr(hard, "beta", 0.5) - 0.5) < 1e-6:
                return hard.input[0], [hard]
            return None
        div = private_producer(name, "Div")
        if div is None or graph.scalar(div.input[1]) != 6.0:
            return None
        inner = relu6_of_x_plus_3(div.input[0])
        return None if inner is None else (inner[0], [div] + inner[1])

    if last.op_type == "Div":  # (x * clip(x + 3, 0, 6)) / 6
        if graph.scalar(last.input[1]) != 6.0:
            return None
        mul = private_producer(last.input[0], "Mul")
        if mul is None:
            return None
        for x, gate in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
            inner = relu6_of_x_plus_3(gate)
            if inner is not None and inner[0] == x:
                return x, [mul] + inner[1]
        return None
    for x, gate in ((last.input[0], last.input[1]), (last.input[1], last.input[0])):  # x * gate(x)
        inner = scaled_gate(gate)
        if inner is not None and inner[0] == x:
            return x, inner[1]
    return None
