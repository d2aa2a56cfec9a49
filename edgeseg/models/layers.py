"""Building blocks shared by the model families.

Standard Keras layers only (no Lambda, no custom ops, no grouped Conv2D), so every model saves
and reloads without custom objects, converts with tf2onnx, and quantizes to INT8 cleanly.
Convolutions feeding a BatchNormalization have no bias: export folds BN into the conv.
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from edgeseg.errors import ModelError

# ImageNet channel means in RGB order, as keras.applications.resnet.preprocess_input
# subtracts them (it subtracts them in BGR order after reversing the channels).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)


def image_input(input_shape: tuple[int, int, int]) -> keras.KerasTensor:
    """The model input every edgeseg model has: float32 RGB pixels in [0, 255], named "image"."""
    return keras.Input(shape=input_shape, dtype="float32", name="image")


def scale_to_unit(image: keras.KerasTensor) -> keras.KerasTensor:
    """[0, 255] -> [0, 1], for models trained from scratch."""
    return keras.layers.Rescaling(1.0 / 255.0, name="image_normalize")(image)


def scale_to_symmetric(image: keras.KerasTensor) -> keras.KerasTensor:
    """[0, 255] -> [-1, 1], what keras.applications.mobilenet_v2 expects."""
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="image_normalize")(image)


def subtract_imagenet_mean(image: keras.KerasTensor) -> keras.KerasTensor:
    """RGB minus the ImageNet mean: caffe-style preprocessing without the channel reversal.

    The reversal to BGR is folded into the first convolution's kernel instead (see
    `resnet_blocks.reverse_first_conv_channels`), which leaves no extra op in the graph.
    """
    offset = [-m for m in IMAGENET_MEAN_RGB]
    return keras.layers.Rescaling(1.0, offset=offset, name="image_normalize")(image)


def conv_bn_relu(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int = 3,
    *,
    name: str,
    strides: int = 1,
    dilation_rate: int = 1,
) -> keras.KerasTensor:
    """Conv (no bias) + BatchNorm + ReLU, the unit most of the heads and decoders use."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def separable_conv_bn_relu(
    x: keras.KerasTensor, filters: int, *, name: str, dilation_rate: int = 1
) -> keras.KerasTensor:
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU.

    Written as two layers rather than SeparableConv2D so each conv gets its own BN (as in the
    DeepLab mobile configs) and quantizes with its own ranges.
    """
    x = keras.layers.DepthwiseConv2D(
        3, padding="same", dilation_rate=dilation_rate, use_bias=False, name=f"{name}_depthwise"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_depthwise_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return conv_bn_relu(x, filters, 1, name=f"{name}_pointwise")


def upsample(x: keras.KerasTensor, factor: int | tuple[int, int], *, name: str) -> keras.KerasTensor:
    """Bilinear upsampling by an integer factor (exports as one ONNX Resize)."""
    return keras.layers.UpSampling2D(size=factor, interpolation="bilinear", name=name)(x)


def image_pooling(x: keras.KerasTensor, filters: int, *, name: str) -> keras.KerasTensor:
    """ASPP's image-level branch: global mean, 1x1 conv + BN + ReLU, spread back over the map."""
    height, width = x.shape[1], x.shape[2]
    y = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_mean")(x)
    y = conv_bn_relu(y, filters, 1, name=name)
    return upsample(y, (height, width), name=f"{name}_upsample")


def deeplabv3plus_decoder(
    x: keras.KerasTensor,
    low_level: keras.KerasTensor,
    *,
    filters: int,
    low_level_filters: int = 48,
    separable: bool = False,
) -> keras.KerasTensor:
    """DeepLabV3+ decoder: upsample the ASPP output to the stride-4 features, concatenate, refine.

    The low-level features are projected to few channels first so the encoder's context, not
    the edges, dominates the concatenation (the paper's 48).
    """
    factor = low_level.shape[1] // x.shape[1]
    x = upsample(x, factor, name="decoder_upsample")
    low = conv_bn_relu(low_level, low_level_filters, 1, name="decoder_low_level")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low])
    for index in (1, 2):
        if separable:
            x = separable_conv_bn_relu(x, filters, name=f"decoder_refine{index}")
        else:
            x = conv_bn_relu(x, filters, 3, name=f"decoder_refine{index}")
    return x


def segmentation_head(
    x: keras.KerasTensor, num_classes: int, upsample_factor: int
) -> keras.KerasTensor:
    """Class conv, bilinear upsampling to the input size, and the final layer named "logits".

    Upsampling the class scores rather than the features keeps the full-resolution work to a
    few channels. The last layer is an Activation in float32 (linear for multiclass, sigmoid
    for binary) so the output name and dtype are the same for every model, also under mixed
    precision.
    """
    channels = 1 if num_classes == 1 else num_classes
    x = keras.layers.Conv2D(channels, 1, name="classifier")(x)
    if upsample_factor > 1:
        x = upsample(x, upsample_factor, name="classifier_upsample")
    activation = "sigmoid" if num_classes == 1 else "linear"
    return keras.layers.Activation(activation, dtype="float32", name="logits")(x)



def keras_application(constructor: Callable[..., keras.Model], **kwargs: Any) -> keras.Model:
    """Call a keras.applications constructor, turning a failed weight download into a ModelError.

    keras.utils.get_file raises a bare Exception ("URL fetch failure ...") when it cannot
    download, so that message is the only thing to recognise it by.
    """
    try:
        return constructor(**kwargs)
    except Exception as err:
        if kwargs.get("weights") and "URL fetch failure" in str(err):
            raise ModelError(
                f"could not download the ImageNet weights for {constructor.__name__} ({err}); "
                "connect to the network once (Keras caches them in ~/.keras/models) or use weights=None"
            ) from err
        raise
