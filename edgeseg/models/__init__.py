"""Keras segmentation models, built by name.

The registry below is plain data, so listing models, checking a size or reading a model's
options costs nothing; Keras is imported only when `build` constructs a model.

Every model follows the same contract, which training, export and the runtime rely on:

- input `image`: float32 RGB pixels in [0, 255], NHWC. The model normalises inside the
  network, so its ModelSpec is scale 1, mean 0, std 1, channel order rgb.
- output `logits` (the last layer's name) at the input resolution: one channel per class with
  no activation when `num_classes >= 2`; one sigmoid channel when `num_classes == 1` (binary).
- standard Keras layers only: `model.save("x.keras")` reloads with `keras.models.load_model`
  without custom objects, and tf2onnx converts it.
- any input size divisible by the model's output stride (and at least its minimum size).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from edgeseg.errors import ModelError

if TYPE_CHECKING:
    import keras

WEIGHTS = (None, "imagenet")


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is and accepts.

    Attributes:
        name: the registry name passed to `build`.
        output_stride: input height and width must be multiples of this.
        has_backbone: whether `weights="imagenet"` is available (a keras.applications backbone).
        description: one line for listings.
        options: the keyword options `build` accepts for this model, with their defaults.
        min_size: the smallest input side the model accepts, in pixels.
    """

    name: str
    output_stride: int
    has_backbone: bool
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    min_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "min_size", max(self.min_size, self.output_stride))


# name -> (info, "module:function" of the builder, imported only by `build`)
_REGISTRY: dict[str, tuple[ModelInfo, str]] = {
    entry[0].name: entry
    for entry in (
        (
            ModelInfo(
                "deeplabv3_resnet50",
                16,
                True,
                "DeepLabV3: ResNet-50 with dilated conv5 (stride 16), ASPP, x16 bilinear upsampling",
                min_size=32,
            ),
            "edgeseg.models.deeplab:build_deeplabv3_resnet50",
        ),
        (
            ModelInfo(
                "deeplabv3plus_resnet50",
                16,
                True,
                "DeepLabV3+: ResNet-50 to conv4, ASPP, decoder with stride-4 features",
                min_size=32,
            ),
            "edgeseg.models.deeplab:build_deeplabv3plus_resnet50",
        ),
        (
            ModelInfo(
                "deeplabv3plus_mobilenetv2",
                16,
                True,
                "DeepLabV3+ on MobileNetV2, light ASPP, separable decoder: the real-time model",
                options={"width": 1.0, "decoder_filters": 128, "aspp_atrous": True},
                min_size=32,
            ),
            "edgeseg.models.mobile:build_deeplabv3plus_mobilenetv2",
        ),
        (
            ModelInfo(
                "unet",
                16,
                False,
                "classic 4-level U-Net (two 3x3 conv+BN+ReLU per level, transposed-conv upsampling)",
                options={"filters": 64},
            ),
            "edgeseg.models.unet:build_unet",
        ),
        (
            ModelInfo(
                "resunet34",
                32,
                False,
                "U-Net decoder on a ResNet-34 encoder trained from scratch",
                options={"decoder_filters": 256},
            ),
            "edgeseg.models.unet:build_resunet34",
        ),
        (
            ModelInfo(
                "compact_unet",
                8,
                False,
                "3-level U-Net with 16 base filters: the small model for quick experiments",
                options={"filters": 16},
            ),
            "edgeseg.models.unet:build_compact_unet",
        ),
    )
}


def available() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def _closest_name(name: str) -> str | None:
    """The registered name the user most likely meant, or None if nothing is close.

    A name that contains the query (`unet34` in `resunet34`) wins over a merely similar one.
    """
    query = name.strip().lower()

    def score(candidate: str) -> tuple[bool, float]:
        return query in candidate, difflib.SequenceMatcher(None, query, candidate).ratio()

    best = max(_REGISTRY, key=score)
    contained, ratio = score(best)
    return best if contained or ratio >= 0.5 else None


def info(name: str) -> ModelInfo:
    """The registry entry for `name`; an unknown name raises ModelError naming the closest one."""
    entry = _REGISTRY.get(name)
    if entry is None:
        closest = _closest_name(str(name))
        hint = f"; did you mean {closest!r}?" if closest else ";"
        raise ModelError(f"unknown model {name!r}{hint} available: {', '.join(available())}")
    return entry[0]


def _multiples_near(size: int, stride: int, minimum: int) -> list[int]:
    """Valid sides near `size`: the nearest multiple of `stride` first, then the other neighbour."""
    floor = max(size // stride * stride, minimum)
    ceil = max(-(-size // stride) * stride, minimum)
    nearest = floor if size - floor < ceil - size else ceil
    return [nearest] + ([floor if nearest == ceil else ceil] if floor != ceil else [])


def check_input_size(name: str, height: int, width: int) -> None:
    """Raise ModelError unless `name` accepts a `height` x `width` input, suggesting valid sizes."""
    model = info(name)
    stride = model.output_stride
    minimum = (model.min_size + stride - 1) // stride * stride
    too_small = height < model.min_size or width < model.min_size
    if not too_small and height % stride == 0 and width % stride == 0:
        return
    heights = _multiples_near(height, stride, minimum)
    widths = _multiples_near(width, stride, minimum)
    suggestions = [f"{heights[0]}x{widths[0]}"]
    for h, w in ((heights[-1], widths[0]), (heights[0], widths[-1])):
        if f"{h}x{w}" not in suggestions:
            suggestions.append(f"{h}x{w}")
    hint = " or ".join(suggestions)
    if too_small:
        raise ModelError(
            f"size {height}x{width} is smaller than the {model.min_size} pixels a side "
            f"that {name} needs; use e.g. {hint}"
        )
    raise ModelError(
        f"size {height}x{width} is not divisible by the output stride {stride} of {name}; "
        f"use e.g. {hint}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_options(model: ModelInfo, options: dict[str, Any]) -> dict[str, Any]:
    """The model's defaults updated with `options`, each checked against its default's type."""
    unknown = sorted(set(options) - set(model.options))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in model.options.items()) or "none"
        raise ModelError(
            f"{model.name} has no option {', '.join(unknown)}; its options are: {accepted}"
        )
    merged = dict(model.options)
    for key, value in options.items():
        default = model.options[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif _is_int(default):
            ok = _is_int(value) and value > 0
        else:  # float
            ok = (_is_int(value) or isinstance(value, float)) and value > 0
            value = float(value) if ok else value
        if not ok:
            kind = "true or false"
            if not isinstance(default, bool):
                kind = f"a positive {type(default).__name__}"
            raise ModelError(
                f"{model.name} option {key}={value!r} must be {kind} (default {default!r})"
            )
        merged[key] = value
    return merged


def build(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    weights: str | None = None,
    **options: Any,
) -> "keras.Model":
    """Build a registered model.

    Args:
        name: a name from `available()`.
        num_classes: classes of a multiclass task (>= 2, one logit each), or 1 for a binary task
            (one sigmoid channel).
        input_shape: (height, width, 3); height and width multiples of the output stride.
        weights: None (random initialisation) or "imagenet" (pretrained backbone; only for
            models whose `info(name).has_backbone` is true; downloaded by Keras once).
        **options: model options, see `info(name).options`.

    Returns:
        An uncompiled keras.Model named `name` with input "image" and output "logits".
    """
    model = info(name)
    if not _is_int(num_classes) or num_classes < 1:
        raise ModelError(
            "num_classes must be an integer >= 1 (1 means binary with a sigmoid output), "
            f"got {num_classes!r}"
        )
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(shape) != 3 or not all(_is_int(v) for v in shape) or shape[2] != 3:
        raise ModelError(f"input_shape must be (height, width, 3) integers, got {input_shape!r}")
    check_input_size(name, shape[0], shape[1])
    if weights not in WEIGHTS:
        raise ModelError(f"weights must be None or 'imagenet', got {weights!r}")
    if weights == "imagenet" and not model.has_backbone:
        with_backbone = [n for n in available() if _REGISTRY[n][0].has_backbone]
        raise ModelError(
            f"{name} has no pretrained backbone, so weights='imagenet' is not available; use "
            f"weights=None or one of {', '.join(with_backbone)}"
        )
    merged = _checked_options(model, options)
    module_name, function_name = _REGISTRY[name][1].split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    built = builder(num_classes=num_classes, input_shape=shape, weights=weights, **merged)
    _set_batchnorm_momentum(built, BATCHNORM_MOMENTUM)
    return built


# PyTorch's default (its momentum 0.1). Keras' 0.99, and keras.applications' 0.999 for
# MobileNetV2, leave the moving statistics far behind the batch statistics after the few hundred
# steps of a short training run on a robot team's laptop, and the model then collapses in
# inference mode (measured: pixel accuracy 0.88 in training mode, 0.53 in inference mode).
BATCHNORM_MOMENTUM = 0.9


def _set_batchnorm_momentum(model: "keras.Model", momentum: float) -> None:
    import keras

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


__all__ = ["ModelInfo", "available", "build", "check_input_size", "info"]
