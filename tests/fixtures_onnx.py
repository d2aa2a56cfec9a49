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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.spec import ModelSpec

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
