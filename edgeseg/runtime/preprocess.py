"""The one preprocessing function: calibration, verification and streaming all call it.

Built from the ModelSpec alone, so a model is always fed exactly what it was trained on.
Only numpy and OpenCV: this runs on the robot.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.spec import ModelSpec


def check_frame(frame: np.ndarray) -> None:
    """Raise EdgesegError unless `frame` is an RGB uint8 HxWx3 array."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise EdgesegError(f"expected an RGB uint8 HxWx3 frame, got shape {shape} dtype {dtype}")


_check_frame = check_frame  # the earlier private name


def resize_frame(frame: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Fit an RGB uint8 frame to the network input size (bilinear, like training)."""
    check_frame(frame)
    height, width = spec.input_size
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def preprocess(frames: np.ndarray | Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Turn RGB uint8 frames (one HxWx3 or a sequence of them) into the model's input batch.

    Returns a float32 array of shape (N, H, W, 3) or (N, 3, H, W) as the spec's layout says.
    """
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        frames = [frames]
    batch = np.stack([resize_frame(frame, spec) for frame in frames]).astype(np.float32)
    if spec.channel_order == "bgr":
        batch = batch[..., ::-1]
    if spec.scale != 1.0:
        batch *= np.float32(spec.scale)
    if any(spec.mean):
        batch -= np.asarray(spec.mean, dtype=np.float32)
    if any(s != 1.0 for s in spec.std):
        batch /= np.asarray(spec.std, dtype=np.float32)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch)


def output_to_nhwc(output: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Bring a model output batch to (N, H, W, C), whatever layout the model produced."""
    if output.ndim == 3:  # (N, H, W): a single-channel output with the channel squeezed
        return output[..., None]
    channels = spec.output_channels
    if output.shape[-1] == channels:
        return output
    if output.shape[1] == channels:
        return output.transpose(0, 2, 3, 1)
    raise EdgesegError(
        f"model output shape {output.shape} has no axis of {channels} channels "
        f"(spec: {spec.task}, {spec.num_classes} classes); the spec does not match the model"
    )


def class_map_from_output(output: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Class indices (N, H, W) uint8 from logits, probabilities or a sigmoid map."""
    output = output_to_nhwc(output, spec)
    if spec.task == "binary":
        threshold = 0.0 if spec.output == "logits" else 0.5
        return (output[..., 0] > threshold).astype(np.uint8)
    return np.argmax(output, axis=-1).astype(np.uint8)


def resize_class_map(class_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an HxW class map back to frame resolution."""
    if class_map.shape[:2] == (height, width):
        return class_map
    return cv2.resize(class_map, (width, height), interpolation=cv2.INTER_NEAREST)


def probabilities_from_output(output: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Per-class probabilities (N, H, W, C) float32 that sum to 1 over C.

    Logits get a softmax; a binary sigmoid map p becomes the two channels [1 - p, p]; outputs
    that already hold probabilities pass through (per-class sigmoids are renormalised).
    """
    output = output_to_nhwc(output, spec).astype(np.float32, copy=False)
    if spec.task == "binary":
        foreground = output[..., :1]
        return np.concatenate([1.0 - foreground, foreground], axis=-1)
    if spec.output == "logits":
        shifted = np.exp(output - output.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if spec.output == "sigmoid":
        return output / np.maximum(output.sum(axis=-1, keepdims=True), np.float32(1e-12))
    return output
