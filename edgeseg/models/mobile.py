"""DeepLabV3+ on MobileNetV2: the real-time robot model (output stride 16).

Everything in it quantizes well and runs fast in ONNX Runtime INT8: Conv, DepthwiseConv,
ReLU/ReLU6, Add, Concatenate, global mean and bilinear Resize. The ASPP is light (1x1, image
pooling and optionally one separable atrous 3x3) and the decoder uses separable convs, since
at stride 4 a dense 3x3 conv would cost more than the whole backbone.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from edgeseg.errors import ModelError
from edgeseg.models.layers import (
    conv_bn_relu,
    deeplabv3plus_decoder,
    image_input,
    image_pooling,
    keras_application,
    scale_to_symmetric,
    segmentation_head,
    separable_conv_bn_relu,
)

IMAGENET_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # the alphas Keras has ImageNet weights for
ATROUS_RATE = 6
HIGH_LEVEL = "block_13_expand_relu"  # stride 16: the expansion of the first stride-32 block
LOW_LEVEL = "block_3_expand_relu"  # stride 4


def mobilenetv2_backbone(image: keras.KerasTensor, width: float, weights: str | None) -> keras.Model:
    """keras.applications.MobileNetV2 on the model's [0, 255] RGB input, scaling to [-1, 1] inside."""
    if weights == "imagenet" and width not in IMAGENET_WIDTHS:
        raise ModelError(
            f"ImageNet weights exist only for width in {IMAGENET_WIDTHS}, got width={width}; "
            "pick one of those or use weights=None"
        )
    x = scale_to_symmetric(image)
    with warnings.catch_warnings():
        # Keras warns that it loads the 224x224 weights for other input sizes; a fully
        # convolutional backbone's weights do not depend on the input size, so that is right.
        warnings.filterwarnings("ignore", message=".*input_shape. is undefined or non-square")
        backbone = keras_application(
            keras.applications.MobileNetV2,
            alpha=width,
            include_top=False,
            weights=weights,
            input_tensor=x,
        )
    if weights is None:
        _he_init(backbone)
    return backbone


def _he_init(backbone: keras.Model, seed: int = 0) -> None:
    """Re-initialise the backbone's conv kernels He-normal over their fan-in.

    keras.applications' default (Glorot, and for depthwise kernels Glorot over 9 x channels)
    shrinks activations by orders of magnitude through the network. BatchNorm hides that while
    training, but the moving variances then need thousands of steps to decay from 1 to the true
    tiny values, so a model trained for minutes collapses in inference mode. He-normal keeps
    activations at unit scale from the first step.
    """
    rng = np.random.default_rng(seed)
    for layer in backbone.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel = layer.kernel
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            fan_in = int(np.prod(kernel.shape[:2])) * (1 if depthwise else int(kernel.shape[2]))
            kernel.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape).astype("float32"))


def build_deeplabv3plus_mobilenetv2(
    num_classes: int,
    input_shape: tuple[int, int, int],
    weights: str | None,
    width: float = 1.0,
    decoder_filters: int = 128,
    aspp_atrous: bool = True,
) -> keras.Model:
    """DeepLabV3+ with a MobileNetV2 encoder.

    Args:
        width: MobileNetV2's alpha (channel multiplier).
        decoder_filters: channels of the ASPP and the decoder.
        aspp_atrous: add a separable 3x3 ASPP branch at rate 6 (more context, a little slower).
    """
    image = image_input(input_shape)
    backbone = mobilenetv2_backbone(image, width, weights)
    high = backbone.get_layer(HIGH_LEVEL).output
    branches = [conv_bn_relu(high, decoder_filters, 1, name="aspp_1x1")]
    if aspp_atrous:
        atrous = separable_conv_bn_relu(
            high, decoder_filters, dilation_rate=ATROUS_RATE, name=f"aspp_rate{ATROUS_RATE}"
        )
        branches.append(atrous)
    branches.append(image_pooling(high, decoder_filters, name="aspp_pool"))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(x, decoder_filters, 1, name="aspp_project")
    x = deeplabv3plus_decoder(
        x, backbone.get_layer(LOW_LEVEL).output, filters=decoder_filters, separable=True
    )
    outputs = segmentation_head(x, num_classes, 4)
    return keras.Model(image, outputs, name="deeplabv3plus_mobilenetv2")
