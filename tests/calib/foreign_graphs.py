"""Segmentation graphs built the way PyTorch exports them, with the ops INT8 handles badly.

PyTorch's ONNX export (NCHW, RGB / 255 with ImageNet mean/std) differs from tf2onnx's in
ways that matter for quantization: BatchNormalization left unfused (training-mode exports,
BatchNorm after ConvTranspose), PReLU with per-channel or shared slopes, HardSwish (or its
pre-opset-14 form x * clip(x + 3, 0, 6) / 6), ReLU6 as Clip, attention blocks (MatMul,
Softmax) and Resize.

The architecture of each kind is written once (`_architecture`) and built two ways: as ONNX
(`_Graph`, what a PyTorch export looks like) and as a Keras twin (`keras_twin`) that can be
trained; `foreign_model(..., params=twin.params())` pours trained weights into the ONNX graph.
Without `params` the weights are random but well scaled (He init, BatchNorm statistics and the
class head fitted on synthetic frames), so outputs are not near-ties everywhere.

`foreign_model(kind, height, width)` builds one kind; tests use 32-64 px, the benchmark
(benchmarks/int8_foreign.py) 384x640 (>= 1 GMAC each) with weights trained on CamVid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KINDS = ("prelu_bn", "attention", "hardswish_resize")
BN_EPSILON = 1e-5
CLASSES = ("road", "pavement", "car", "other")


def foreign_spec(height: int, width: int):
    from edgeseg.spec import ModelSpec

    return ModelSpec(class_names=CLASSES, input_height=height, input_width=width, layout="NCHW",
                     scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), model="foreign")


class _Graph:
    """A small builder over onnx.helper: each method adds nodes and returns the output name."""

    def __init__(self, seed: int, params: list[dict] | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.params = iter(params) if params is not None else None
        self.input = "input"
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def trained(self, kind: str) -> dict | None:
        """The next trained layer's weights (ONNX layout), or None to draw random ones."""
        if self.params is None:
            return None
        layer = next(self.params)
        if layer["kind"] != kind:
            raise ValueError(f"trained weights are for a {layer['kind']} where the graph has a {kind}")
        return layer

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
        t = self.trained("conv")
        w = t["weight"] if t else self.rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        inputs = [x, self.const(w.astype(np.float32), "conv.weight")]
        if bias:
            b = t["bias"] if t else self.rng.normal(0, 0.1, cout)
            inputs.append(self.const(b.astype(np.float32), "conv.bias"))
        return self.node("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def conv_transpose(self, x: str, cin: int, cout: int) -> str:
        t = self.trained("conv_transpose")
        w = t["weight"] if t else self.rng.normal(0, np.sqrt(2.0 / cin), (cin, cout, 2, 2))
        return self.node("ConvTranspose", [x, self.const(w.astype(np.float32), "up.weight")], kernel_shape=[2, 2],
                         strides=[2, 2])

    def bn(self, x: str, c: int) -> str:
        t, r = self.trained("bn"), self.rng
        params = ([t["scale"], t["bias"], t["mean"], t["var"]] if t else
                  [r.uniform(0.6, 1.4, c), r.normal(0, 0.1, c), r.normal(0, 0.2, c), r.uniform(0.5, 1.5, c)])
        return self.node("BatchNormalization", [x] + [self.const(p.astype(np.float32), "bn") for p in params],
                         epsilon=BN_EPSILON)

    def prelu(self, x: str, c: int, shared: bool) -> str:
        t = self.trained("prelu")
        if t:
            slope = np.broadcast_to(t["slope"].reshape(-1, 1, 1), (c, 1, 1))
        else:
            slope = np.full((c, 1, 1), 0.25) if shared else self.rng.uniform(0.05, 0.4, (c, 1, 1))
        return self.node("PRelu", [x, self.const(np.ascontiguousarray(slope, np.float32), "prelu.weight")])

    def concat(self, xs: list[str]) -> str:
        return self.node("Concat", xs, axis=1)

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


def _architecture(g, kind: str, height: int, width: int, width_mult: float = 1.0):
    """Build one kind with builder `g` (`_Graph` or `_KerasGraph`); returns the logits at full size.

    kind: "prelu_bn" (Conv/ConvTranspose + unfused BatchNorm + PReLU, per-channel and shared
    slopes; head at 1/8), "attention" (Conv + BN + ReLU6 encoder, a Softmax/MatMul attention
    block at 1/16, head there) or "hardswish_resize" (HardSwish in PyTorch's old decomposed
    form, nearest Resize + skip Concat decoder, head at 1/4); each ends in a 1x1 class
    convolution and a bilinear Resize.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    c1, c2, c3 = (max(8, int(c * width_mult)) for c in (32, 64, 128))
    x = g.input

    def block(x, cin: int, cout: int, stride: int, act: str):
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
        x = g.concat([g.resize(x, 2, mode="nearest"), skip])
        features, c_head, up = block(x, c3 + c2, c2, 1, "hardswish"), c2, 4
    return g.resize(g.conv(features, c_head, len(CLASSES), 1, bias=True), up)


def foreign_model(kind: str, height: int, width: int, seed: int = 0, width_mult: float = 1.0,
                  params: list[dict] | None = None):
    """The ONNX model (opset 17, batch 1, input "input", output "logits") of one kind.

    Args:
        kind: one of KINDS (see `_architecture`).
        height, width: input size; multiples of 16.
        params: trained weights (`keras_twin(...).params()`, any input size); None draws
            random ones and fits BatchNorm statistics and the class head on synthetic frames.
    """
    from onnx import TensorProto, helper

    g = _Graph(seed, params)
    logits = _architecture(g, kind, height, width, width_mult)
    if g.params is not None and next(g.params, None) is not None:
        raise ValueError(f"more trained weights than {kind} has layers: they are for another architecture")
    head = g.nodes[-2]

    graph = helper.make_graph(
        g.nodes, f"foreign_{kind}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, len(CLASSES), height, width])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    if params is None:
        spec = foreign_spec(height, width)
        _fit_batchnorms(model, spec)
        _fit_head(model, head, spec)
    return model


class _KerasGraph:
    """The same builder methods as `_Graph`, as Keras layers (NHWC), so the architecture trains.

    PyTorch's padding is symmetric (pad 1, then a 3x3 convolution), Keras' "same" is not at
    stride 2, so convolutions pad explicitly. Layers are recorded in creation order, which is
    the order `_Graph` asks for weights.
    """

    def __init__(self, height: int, width: int) -> None:
        import keras

        self.keras = keras
        self.input = keras.Input((height, width, 3), name="input")
        self.layers: list[tuple[str, object]] = []

    def conv(self, x, cin: int, cout: int, k: int = 3, stride: int = 1, bias: bool = False):
        L = self.keras.layers
        layer = L.Conv2D(cout, k, strides=stride, padding="valid", use_bias=bias, kernel_initializer="he_normal")
        self.layers.append(("conv", layer))
        return layer(L.ZeroPadding2D(k // 2)(x) if k > 1 else x)

    def conv_transpose(self, x, cin: int, cout: int):
        layer = self.keras.layers.Conv2DTranspose(cout, 2, strides=2, use_bias=False, kernel_initializer="he_normal")
        self.layers.append(("conv_transpose", layer))
        return layer(x)

    def bn(self, x, c: int):
        layer = self.keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9)
        self.layers.append(("bn", layer))
        return layer(x)

    def prelu(self, x, c: int, shared: bool):
        layer = self.keras.layers.PReLU(alpha_initializer=self.keras.initializers.Constant(0.25),
                                        shared_axes=[1, 2, 3] if shared else [1, 2])
        self.layers.append(("prelu", layer))
        return layer(x)

    def hardswish_decomposed(self, x):
        ops = self.keras.ops
        return self.keras.layers.Activation(lambda t: t * ops.clip(t + 3.0, 0.0, 6.0) / 6.0)(x)

    def relu6_minmax(self, x):
        return self.keras.layers.ReLU(max_value=6.0)(x)

    def resize(self, x, scale: int, mode: str = "linear"):
        return self.keras.layers.UpSampling2D(scale, interpolation="bilinear" if mode == "linear" else "nearest")(x)

    def concat(self, xs: list):
        return self.keras.layers.Concatenate()(xs)

    def attention(self, x, c: int, h: int, w: int):
        ops = self.keras.ops
        q, k, v = (self.conv(x, c, c, 1, bias=True) for _ in range(3))

        def mix(tensors):
            q, k, v = (ops.reshape(t, (-1, h * w, c)) for t in tensors)
            weights = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))) / np.sqrt(c), axis=-1)
            return ops.reshape(ops.matmul(weights, v), (-1, h, w, c))

        back = self.keras.layers.Lambda(mix)([q, k, v])
        return self.keras.layers.Add()([x, self.bn(self.conv(back, c, c, 1), c)])

    def params(self) -> list[dict]:
        """The layers' weights in ONNX layout, in the order `_Graph` consumes them."""
        out = []
        for kind, layer in self.layers:
            weights = [np.asarray(w) for w in layer.get_weights()]
            if kind == "conv":
                out.append({"kind": kind, "weight": weights[0].transpose(3, 2, 0, 1),
                            "bias": weights[1] if len(weights) > 1 else None})
            elif kind == "conv_transpose":  # Keras (k, k, out, in) -> ONNX (in, out, k, k)
                out.append({"kind": kind, "weight": weights[0].transpose(3, 2, 0, 1)})
            elif kind == "bn":
                out.append(dict(zip(("scale", "bias", "mean", "var"), weights), kind=kind))
            else:
                out.append({"kind": kind, "slope": weights[0].reshape(-1)})
        return out


def keras_twin(kind: str, height: int, width: int, width_mult: float = 1.0):
    """(Keras model taking normalised NHWC frames, its `_KerasGraph`): the kind's architecture to train."""
    g = _KerasGraph(height, width)
    model = g.keras.Model(g.input, _architecture(g, kind, height, width, width_mult), name=f"foreign_{kind}")
    return model, g


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


def save_foreign_model(kind: str, height: int, width: int, path: Path, seed: int = 0, width_mult: float = 1.0,
                       params: list[dict] | None = None) -> Path:
    """The model of `kind` with its spec embedded, saved at `path`."""
    import onnx

    from edgeseg.onnxmeta import write_spec_metadata

    model = write_spec_metadata(foreign_model(kind, height, width, seed, width_mult, params),
                                foreign_spec(height, width))
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
