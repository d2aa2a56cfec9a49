"""ONNX models built the way PyTorch exports them, for the foreign-model tests (no torch needed).

`torch.onnx.export` of a segmentation network gives: an NCHW float input (often with a dynamic
batch, sometimes dynamic height and width), no edgeseg metadata, opset 11-17, nodes named like
`/head/Conv`, one or several heads, and often branches that are constant for every input
(an all-zero tensor: a masked feature, a Mul by 0). Those constant tensors are what broke
ONNX Runtime's histogram calibrators ("Too many bins for data range").

    path = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), dynamic=True, zero_branch=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def foreign_onnx(
    path: str | Path,
    *,
    heads: Sequence[str] = ("out",),
    channels: int = 2,
    size: tuple[int, int] = (24, 32),
    layout: str = "NCHW",
    dynamic: bool = False,
    dynamic_batch: bool = True,
    zero_branch: bool = False,
    sigmoid_head: bool = False,
    opset: int = 17,
    seed: int = 0,
) -> Path:
    """Write a small PyTorch-like segmentation ONNX and return its path.

    Args:
        heads: output names; each is a 1x1 conv head of `channels` channels on a shared trunk.
        layout: "NCHW" (PyTorch) or "NHWC" (a Transpose first, as tf2onnx writes).
        dynamic: height and width are symbolic ("height", "width").
        dynamic_batch: the batch is symbolic ("batch").
        zero_branch: add a branch that is all zeros for any input (Mul by a zero constant,
            then added to the first head), and a constant tensor feeding a Conv.
        sigmoid_head: the first head ends in a Sigmoid (and should then have 1 channel).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    height, width = size
    batch = "batch" if dynamic_batch else 1
    h_dim, w_dim = ("height", "width") if dynamic else (height, width)
    shape = [batch, 3, h_dim, w_dim] if layout == "NCHW" else [batch, h_dim, w_dim, 3]
    inits = []
    nodes = []

    def weight(name: str, out_ch: int, in_ch: int, k: int) -> str:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (out_ch, in_ch, k, k)).astype(np.float32), name))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (out_ch,)).astype(np.float32), name + ".bias"))
        return name

    x = "input"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["/Transpose_output_0"], perm=[0, 3, 1, 2], name="/Transpose"))
        x = "/Transpose_output_0"
    trunk = 8
    nodes.append(helper.make_node("Conv", [x, weight("trunk.0.weight", trunk, 3, 3), "trunk.0.weight.bias"],
                                  ["/trunk/Conv_output_0"], pads=[1, 1, 1, 1], name="/trunk/Conv"))
    nodes.append(helper.make_node("Relu", ["/trunk/Conv_output_0"], ["/trunk/Relu_output_0"], name="/trunk/Relu"))
    features = "/trunk/Relu_output_0"
    outputs = []
    for index, head in enumerate(heads):
        out_ch = 1 if (sigmoid_head and index == 0) else channels
        conv_out = f"/{head}/Conv_output_0"
        head_weight = weight(f"{head}.weight", out_ch, trunk, 1)
        nodes.append(helper.make_node("Conv", [features, head_weight, f"{head}.weight.bias"], [conv_out],
                                      name=f"/{head}/Conv"))
        last = conv_out
        if zero_branch and index == 0:
            # a mask that is 0 everywhere, and one so small (float32 denormals) that 2048 histogram
            # bins over its range are not representable: ONNX Runtime's percentile calibrator crashed
            inits.append(numpy_helper.from_array(np.zeros((1,), np.float32), "zero"))
            inits.append(numpy_helper.from_array(np.full((1,), 1e-44, np.float32), "tiny"))
            mean = {"axes": [1]} if opset < 18 else {}
            for kind, constant in (("Zero", "zero"), ("Tiny", "tiny")):
                nodes.append(helper.make_node("Mul", [features, constant], [f"/mask/{kind}_output_0"],
                                              name=f"/mask/{kind}"))
                nodes.append(helper.make_node("ReduceMean", [f"/mask/{kind}_output_0"], [f"/mask/{kind}Mean_output_0"],
                                              keepdims=1, name=f"/mask/{kind}Mean", **mean))
                nodes.append(helper.make_node("Add", [last, f"/mask/{kind}Mean_output_0"],
                                              [f"/mask/{kind}Add_output_0"], name=f"/mask/{kind}Add"))
                last = f"/mask/{kind}Add_output_0"
        if sigmoid_head and index == 0:
            nodes.append(helper.make_node("Sigmoid", [last], [head], name=f"/{head}/Sigmoid"))
        else:
            nodes.append(helper.make_node("Identity", [last], [head], name=f"/{head}/Identity"))
        out_shape = [batch, out_ch, h_dim, w_dim]
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, out_shape))
    graph = helper.make_graph(nodes, "torch_jit", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch",
                              producer_version="2.5.0")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
