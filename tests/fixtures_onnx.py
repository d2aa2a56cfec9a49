"""ONNX models made the way PyTorch exports look, with the onnx helper API (no torch needed).

What a user brings from PyTorch (`torch.onnx.export`) differs from edgeseg's own export:
NCHW float input named "input", normalisation outside the graph (x / 255, or ImageNet mean/std),
no edgeseg metadata, "/module/Op" node names, Resize upsampling, sometimes a sigmoid
single-channel head, sometimes several heads, often a dynamic batch or dynamic height/width,
opset 11 to 17. `pytorch_like_onnx` writes any of those combinations.

The weights are set by hand so the class maps mean something on `road_scenes`: the network
averages 3x3 neighbourhoods (stride 2), and a class's logit is a fixed mix of the colour
channels, so green pixels are "road" and red or blue ones are not. A navigator driving on
"road" then steers around the red blocks, which is what the command-parity tests need.

`foreign_onnx` writes the structural variants that stress the deployment plumbing rather than
the pixels: NHWC inputs, named heads to prune, dynamic dims to fix, and branches that are
constant for every input (an all-zero tensor, a constant feeding a Conv) — what broke ONNX
Runtime's histogram calibrators ("Too many bins for data range").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeseg.artifact.spec import ModelSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("unit", "imagenet")  # x / 255; (x / 255 - mean) / std
HEADS = ("logits", "sigmoid", "two_heads")
CLASSES = ("background", "road")


@dataclass(frozen=True)
class ForeignModel:
    """A PyTorch-like ONNX file and the spec a user would write for it.

    Attributes:
        path: the .onnx (no edgeseg metadata).
        spec: what goes in the user's spec JSON (`spec.save(...)`) or flags.
        outputs: the graph's output names, the driving head first.
    """

    path: Path
    spec: ModelSpec
    outputs: tuple[str, ...]


def pytorch_like_onnx(
    path: str | Path,
    *,
    size: tuple[int, int] = (32, 32),
    normalize: str = "unit",
    head: str = "logits",
    batch: int | None = 1,
    dynamic_hw: bool = False,
    opset: int = 17,
    resize: str = "nearest",
) -> ForeignModel:
    """Write a small segmentation network as `torch.onnx.export` would, and return it with its spec.

    Args:
        size: (height, width) the spec names; the graph's own input shape unless `dynamic_hw`.
        normalize: "unit" (x / 255) or "imagenet" (ImageNet mean/std after / 255).
        head: "logits" (two classes, softmax-style), "sigmoid" (one channel through a Sigmoid)
            or "two_heads" (outputs "da" and "ll", two channels each, "da" first).
        batch: the fixed batch size, or None for a dynamic batch ("batch_size").
        dynamic_hw: height and width are dynamic ("height", "width").
        opset: 11 to 17; Resize is written with the (X, roi, scales) inputs valid in both.
        resize: the final upsampling's mode, "nearest" or "linear".
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if normalize not in NORMALIZATIONS or head not in HEADS or resize not in ("nearest", "linear"):
        raise ValueError(f"normalize={normalize!r}, head={head!r}, resize={resize!r}")
    height, width = size
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize == "imagenet" else ((0.0,) * 3, (1.0,) * 3)

    # stem: a 3x3 box filter per colour channel, stride 2, undoing the normalisation so the
    # features are the colours in [0, 1] whatever the input statistics are
    stem = np.zeros((3, 3, 3, 3), np.float32)
    for channel in range(3):
        stem[channel, channel] = std[channel] / 9.0
    stem_bias = np.asarray(mean, np.float32)
    # class mixes of (r, g, b): road where green beats red and blue
    road = np.array([-4.0, 6.0, -4.0], np.float32)
    mixes = {
        "logits": (np.stack([-road, road]), np.zeros(2, np.float32)),
        "sigmoid": (road[None], np.array([-0.5], np.float32)),
        "da": (np.stack([-road, road]), np.zeros(2, np.float32)),
        "ll": (np.stack([road, -road]), np.array([0.3, -0.3], np.float32)),
    }
    heads = {"logits": ["output"], "sigmoid": ["output"], "two_heads": ["da", "ll"]}[head]

    initializers = [
        numpy_helper.from_array(stem, "backbone.conv1.weight"),
        numpy_helper.from_array(stem_bias, "backbone.conv1.bias"),
        numpy_helper.from_array(np.array([], np.float32), "/head/Resize_roi"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "/head/Resize_scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "backbone.conv1.weight", "backbone.conv1.bias"], ["/backbone/conv1/Conv_output_0"],
                         name="/backbone/conv1/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["/backbone/conv1/Conv_output_0"], ["/backbone/relu/Relu_output_0"],
                         name="/backbone/relu/Relu"),
    ]
    outputs = []
    for name in heads:
        key = "logits" if head == "logits" else ("sigmoid" if head == "sigmoid" else name)
        weight, bias = mixes[key]
        channels = len(weight)
        prefix = f"/{name}_head" if head == "two_heads" else "/head"
        initializers += [
            numpy_helper.from_array(weight.reshape(channels, 3, 1, 1), f"{prefix[1:]}.classifier.weight"),
            numpy_helper.from_array(bias, f"{prefix[1:]}.classifier.bias"),
        ]
        scores = f"{prefix}/classifier/Conv_output_0"
        upsampled = name if head != "sigmoid" else f"{prefix}/Resize_output_0"
        nodes += [
            helper.make_node("Conv", ["/backbone/relu/Relu_output_0", f"{prefix[1:]}.classifier.weight",
                                      f"{prefix[1:]}.classifier.bias"], [scores], name=f"{prefix}/classifier/Conv",
                             kernel_shape=[1, 1]),
            helper.make_node("Resize", [scores, "/head/Resize_roi", "/head/Resize_scales"], [upsampled],
                             name=f"{prefix}/Resize", mode=resize,
                             coordinate_transformation_mode="asymmetric" if resize == "nearest" else "half_pixel",
                             **({"nearest_mode": "floor"} if resize == "nearest" else {})),
        ]
        if head == "sigmoid":
            nodes.append(helper.make_node("Sigmoid", [upsampled], [name], name="/head/Sigmoid"))
        dims = [batch if batch else "batch_size", channels,
                "height" if dynamic_hw else height, "width" if dynamic_hw else width]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    input_dims = [batch if batch else "batch_size", 3, "height" if dynamic_hw else height,
                  "width" if dynamic_hw else width]
    graph = helper.make_graph(nodes, "main_graph",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_dims)],
                              outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pytorch", producer_version="2.5.0")
    model.ir_version = 7 if opset <= 12 else 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))

    binary = head == "sigmoid"
    spec = ModelSpec(
        class_names=CLASSES, input_height=height, input_width=width, layout="NCHW", scale=1 / 255,
        mean=mean, std=std, task="binary" if binary else "multiclass", output="sigmoid" if binary else "logits",
        traversable=("road",),
    )
    return ForeignModel(path, spec, tuple(heads))


def denormal_float32(shape: tuple[int, ...] | int, bits: int = 0x1000) -> np.ndarray:
    """float32 denormals (by default 5.7e-42) made from their bit pattern: arithmetic would flush them
    to 0 in a process whose ONNX Runtime sessions compute denormals as zero (tests/conftest.py)."""
    return np.full(shape, bits, np.uint32).view(np.float32)


def road_scenes(count: int, size: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    """RGB uint8 frames [count, H, W, 3] of a drive: green road in the lower part, red blocks on it.

    Consecutive frames change a little (the blocks move down and sideways), like a video, so a
    stateful navigator sees a plausible sequence.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    frames = np.zeros((count, height, width, 3), np.uint8)
    x = rng.uniform(0.2, 0.7)
    for index in range(count):
        frame = frames[index]
        frame[:] = (90, 110, 200)  # sky: blue
        frame[height // 3 :] = (60, 170, 60)  # road: green
        frame += rng.integers(0, 25, frame.shape, dtype=np.uint8)
        x = float(np.clip(x + rng.normal(0, 0.03), 0.05, 0.75))
        top = height // 3 + (index * 2) % (height // 2)
        left = int(x * width)
        frame[top : top + height // 5, left : left + width // 5] = (200, 40, 40)  # an obstacle: red
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write RGB frames as an MJPG .avi with OpenCV (the codec every OpenCV build has)."""
    path = Path(path)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def write_frames(folder: str | Path, frames: np.ndarray) -> Path:
    """Write RGB frames as frame0.png, frame1.png, ... (lossless)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        if not cv2.imwrite(str(folder / f"frame{index}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"OpenCV cannot write into {folder}")
    return folder


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
            inits.append(numpy_helper.from_array(denormal_float32(1, bits=7), "tiny"))  # 9.8e-45
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
