"""Segmentation graphs built the way PyTorch exports them, with the ops INT8 handles badly.

PyTorch's ONNX export (NCHW, RGB / 255 with ImageNet mean/std) differs from tf2onnx's in
ways that matter for quantization: BatchNormalization left unfused (training-mode exports,
BatchNorm after ConvTranspose), PReLU with per-channel or shared slopes, HardSwish (or its
pre-opset-14 form x * clip(x + 3, 0, 6) / 6), ReLU6 as Clip, attention blocks (MatMul,
Softmax) and Resize. The weights are random but well scaled (He init, BatchNorm statistics
near what such a layer sees), so outputs are not near-ties everywhere.

`foreign_model(kind, height, width)` builds one kind; tests use 32-64 px, the benchmark
(benchmarks/int8_foreign.py) 360x640 (>= 1 GMAC each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KINDS = ("prelu_bn", "attention", "hardswish_resize")
CLASSES = ("road", "lane", "car", "other")


def foreign_spec(height: int, width: int):
    from edgeseg.spec import ModelSpec

    return ModelSpec(class_names=CLASSES, input_height=height, input_width=width, layout="NCHW",
                     scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), model="foreign")


class _Graph:
    """A small builder over onnx.helper: each method adds nodes and returns the output name."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, op: str) -> str:
        self.count += 1
        return f"/{op.lower()}_{self.count}"

    def const(self, value: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = f"{hint}.const{self.count}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        name = self.name(op)
        self.nodes.append(helper.make_node(op, inputs, [name + "/out"], name=name, **attrs))
        return name + "/out"

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, bias: bool = False) -> str:
        w = self.rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        inputs = [x, self.const(w, "conv.weight")]
        if bias:
            inputs.append(self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "conv.bias"))
        return self.node("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def conv_transpose(self, x: str, cin: int, cout: int) -> str:
        w = self.rng.normal(0, np.sqrt(2.0 / cin), (cin, cout, 2, 2)).astype(np.float32)
        return self.node("ConvTranspose", [x, self.const(w, "up.weight")], kernel_shape=[2, 2], strides=[2, 2])

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        params = [r.uniform(0.6, 1.4, c), r.normal(0, 0.1, c), r.normal(0, 0.2, c), r.uniform(0.5, 1.5, c)]
        return self.node("BatchNormalization", [x] + [self.const(p.astype(np.float32), "bn") for p in params],
                         epsilon=1e-5)

    def prelu(self, x: str, c: int, shared: bool) -> str:
        slope = np.full((c, 1, 1), 0.25, np.float32) if shared else self.rng.uniform(0.05, 0.4, (c, 1, 1))
        return self.node("PRelu", [x, self.const(slope.astype(np.float32), "prelu.weight")])

    def hardswish_decomposed(self, x: str) -> str:
        """x * clip(x + 3, 0, 6) / 6, PyTorch's export of Hardswish before opset 14."""
        shifted = self.node("Add", [x, self.const(np.float32(3.0), "three")])
        clipped = self.node("Clip", [shifted, self.const(np.float32(0.0), "zero"), self.const(np.float32(6.0), "six")])
        return self.node("Div", [self.node("Mul", [x, clipped]), self.const(np.float32(6.0), "six")])

    def relu6_minmax(self, x: str) -> str:
        """min(max(x, 0), 6): ReLU6 as some exporters write it."""
        return self.node("Min", [self.node("Max", [x, self.const(np.float32(0.0), "zero")]),
                                 self.const(np.float32(6.0), "six")])

    def resize(self, x: str, scale: int, mode: str = "linear") -> str:
        scales = self.const(np.array([1, 1, scale, scale], np.float32), "scales")
        return self.node("Resize", [x, "", scales], mode=mode, coordinate_transformation_mode="half_pixel"
                         if mode == "linear" else "asymmetric", nearest_mode="floor")

    def attention(self, x: str, c: int, h: int, w: int) -> str:
        """Non-local block: softmax(Q^T K / sqrt(c)) applied to V, projected, added back."""
        n = h * w
        shape = self.const(np.array([1, c, n], np.int64), "shape")
        q = self.node("Transpose", [self.node("Reshape", [self.conv(x, c, c, 1, bias=True), shape])], perm=[0, 2, 1])
        k = self.node("Reshape", [self.conv(x, c, c, 1, bias=True), shape])
        v = self.node("Reshape", [self.conv(x, c, c, 1, bias=True), shape])
        scores = self.node("Mul", [self.node("MatMul", [q, k]), self.const(np.float32(1 / np.sqrt(c)), "scale")])
        weights = self.node("Softmax", [scores], axis=-1)
        mixed = self.node("MatMul", [v, self.node("Transpose", [weights], perm=[0, 2, 1])])
        back = self.node("Reshape", [mixed, self.const(np.array([1, c, h, w], np.int64), "shape")])
        return self.node("Add", [x, self.bn(self.conv(back, c, c, 1), c)])


def foreign_model(kind: str, height: int, width: int, seed: int = 0, width_mult: float = 1.0):
    """The ONNX model (opset 17, batch 1, input "input", output "logits") of one kind.

    Args:
        kind: "prelu_bn" (Conv/ConvTranspose + unfused BatchNorm + PReLU, per-channel and
            shared slopes; head at 1/8), "attention" (Conv + BN + ReLU6 encoder, a
            Softmax/MatMul attention block at 1/16, head there) or "hardswish_resize"
            (HardSwish in PyTorch's old decomposed form, nearest Resize + skip Concat decoder,
            head at 1/4); each ends in a 1x1 class convolution and a bilinear Resize.
        height, width: input size; multiples of 16.
    """
    from onnx import TensorProto, helper

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    g = _Graph(seed)
    c1, c2, c3 = (max(8, int(c * width_mult)) for c in (32, 64, 128))
    x = "input"

    def block(x: str, cin: int, cout: int, stride: int, act: str) -> str:
        y = g.bn(g.conv(x, cin, cout, 3, stride), cout)
        if act == "prelu":
            return g.prelu(y, cout, shared=False)
        if act == "prelu_shared":
            return g.prelu(y, cout, shared=True)
        if act == "relu6":
            return g.relu6_minmax(y)
        return g.hardswish_decomposed(y)

    if kind == "prelu_bn":
        x = block(x, 3, c1, 2, "prelu")
        x = block(x, c1, c2, 2, "prelu_shared")
        x = block(x, c2, c2, 1, "prelu_shared")
        x = block(x, c2, c3, 2, "prelu")
        x = block(x, c3, c3, 1, "prelu_shared")
        x = block(x, c3, c3, 2, "prelu")
        x = g.prelu(g.bn(g.conv_transpose(x, c3, c2), c2), c2, shared=True)
        features, c_head, up = block(x, c2, c2, 1, "prelu"), c2, 8
    elif kind == "attention":
        x = block(x, 3, c1, 2, "relu6")
        x = block(x, c1, c2, 2, "relu6")
        x = block(x, c2, c2, 1, "relu6")
        x = block(x, c2, c3, 2, "relu6")
        x = block(x, c3, c3, 1, "relu6")
        x = block(x, c3, c3, 2, "relu6")
        x = g.attention(x, c3, height // 16, width // 16)
        features, c_head, up = block(x, c3, c2, 1, "relu6"), c2, 16
    else:
        x = block(x, 3, c1, 2, "hardswish")
        x = block(x, c1, c2, 2, "hardswish")
        skip = block(x, c2, c2, 1, "hardswish")
        x = block(skip, c2, c3, 2, "hardswish")
        x = block(x, c3, c3, 1, "hardswish")
        x = g.node("Concat", [g.resize(x, 2, mode="nearest"), skip], axis=1)
        features, c_head, up = block(x, c3 + c2, c2, 1, "hardswish"), c2, 4
    logits = g.resize(g.conv(features, c_head, len(CLASSES), 1, bias=True), up)
    head = g.nodes[-2]

    graph = helper.make_graph(
        g.nodes, f"foreign_{kind}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, len(CLASSES), height, width])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    spec = foreign_spec(height, width)
    _fit_batchnorms(model, spec)
    _fit_head(model, head, spec)
    return model


def _probe(model, tensor: str, spec) -> np.ndarray:
    """`tensor`'s values on two scene-like synthetic frames, as [channels, values]."""
    import onnx
    import onnxruntime as ort

    from edgeseg.export.keras_to_onnx import synthetic_frames
    from edgeseg.runtime.preprocess import preprocess

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    frames = synthetic_frames(spec.input_height, spec.input_width, count=2)
    values = np.concatenate([session.run([tensor], {"input": preprocess([f], spec)})[0] for f in frames])
    return values.transpose(1, 0, 2, 3).reshape(values.shape[1], -1).astype(np.float64)


def _fit_batchnorms(model, spec) -> None:
    """Set each BatchNorm's running mean and variance to what its input shows, as training does.

    Random statistics make every layer amplify or squash at random, a chaotic network whose
    output a rounding flips; trained BatchNorm normalises. Fitted in graph order.
    """
    from onnx import numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    for node in [n for n in model.graph.node if n.op_type == "BatchNormalization"]:
        values = _probe(model, node.input[0], spec)
        for name, stat in ((node.input[3], values.mean(axis=1)), (node.input[4], values.var(axis=1))):
            inits[name].CopyFrom(numpy_helper.from_array(stat.astype(np.float32), name))


def _fit_head(model, head, spec) -> None:
    """Point the class convolution along the features' main directions, and centre its logits.

    A trained head reads the few directions the features vary most along; a random one reads
    noise-sized differences, so its classes are near-ties everywhere and any rounding flips
    them. Fitted on scene-like synthetic frames (principal components), never on test frames.
    """
    from onnx import numpy_helper

    feats = _probe(model, head.input[0], spec)
    mean = feats.mean(axis=1)
    values, vectors = np.linalg.eigh(np.cov(feats))
    top = vectors[:, ::-1][:, : len(CLASSES)].T / np.sqrt(values[::-1][: len(CLASSES), None] + 1e-6)
    inits = {init.name: init for init in model.graph.initializer}
    weight = (3.0 * top).astype(np.float32).reshape(len(CLASSES), -1, 1, 1)
    inits[head.input[1]].CopyFrom(numpy_helper.from_array(weight, head.input[1]))
    inits[head.input[2]].CopyFrom(numpy_helper.from_array(-(weight[:, :, 0, 0] @ mean).astype(np.float32), head.input[2]))


def save_foreign_model(kind: str, height: int, width: int, path: Path, seed: int = 0, width_mult: float = 1.0) -> Path:
    """The model of `kind` with its spec embedded, saved at `path`."""
    import onnx

    from edgeseg.onnxmeta import write_spec_metadata

    model = write_spec_metadata(foreign_model(kind, height, width, seed, width_mult), foreign_spec(height, width))
    onnx.save(model, str(path))
    return path


def macs(model) -> int:
    """Multiply-accumulates of the Conv, ConvTranspose and MatMul nodes (shapes inferred)."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    total = 0
    for node in inferred.graph.node:
        out = shapes.get(node.output[0])
        if not out:
            continue
        if node.op_type == "Conv":
            w = weights[node.input[1]]
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":
            w = weights[node.input[1]]
            total += int(np.prod(shapes[node.input[0]])) * int(np.prod(w[1:]))
        elif node.op_type == "MatMul":
            total += int(np.prod(out)) * shapes[node.input[0]][-1]
    return total
