"""U-Nets trained from scratch: classic, compact (for quick runs) and on a ResNet-34 encoder.

All three share one decoder block (transposed-conv x2, concatenate the skip, two 3x3
conv+BN+ReLU) and scale the input to [0, 1].
"""

from __future__ import annotations

import keras

from edgeseg.models.layers import conv_bn_relu, image_input, scale_to_unit, segmentation_head
from edgeseg.models.resnet_blocks import resnet34_encoder


def double_conv(x: keras.KerasTensor, filters: int, *, name: str) -> keras.KerasTensor:
    """Two 3x3 conv+BN+ReLU: one U-Net level."""
    x = conv_bn_relu(x, filters, 3, name=f"{name}_1")
    return conv_bn_relu(x, filters, 3, name=f"{name}_2")


def decoder_block(
    x: keras.KerasTensor, skip: keras.KerasTensor | None, filters: int, *, name: str
) -> keras.KerasTensor:
    """Upsample x2 with a transposed conv, concatenate the encoder's skip, refine with two convs."""
    x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(x)
    if skip is not None:
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    return double_conv(x, filters, name=name)


def _unet(
    name: str, num_classes: int, input_shape: tuple[int, int, int], filters: int, depth: int
) -> keras.Model:
    """A U-Net with `depth` poolings (output stride 2**depth), `filters` doubling per level."""
    image = image_input(input_shape)
    x = scale_to_unit(image)
    skips = []
    for level in range(depth):
        x = double_conv(x, filters * 2**level, name=f"encoder{level + 1}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"encoder{level + 1}_pool")(x)
    x = double_conv(x, filters * 2**depth, name="bottleneck")
    for level in reversed(range(depth)):
        x = decoder_block(x, skips[level], filters * 2**level, name=f"decoder{level + 1}")
    outputs = segmentation_head(x, num_classes, 1)
    return keras.Model(image, outputs, name=name)


def build_unet(
    num_classes: int, input_shape: tuple[int, int, int], weights: str | None, filters: int = 64
) -> keras.Model:
    """Classic U-Net: 4 levels (output stride 16), `filters` channels at full resolution."""
    return _unet("unet", num_classes, input_shape, filters, depth=4)


def build_compact_unet(
    num_classes: int, input_shape: tuple[int, int, int], weights: str | None, filters: int = 16
) -> keras.Model:
    """3-level U-Net (output stride 8) with few channels: trains in seconds on a CPU."""
    return _unet("compact_unet", num_classes, input_shape, filters, depth=3)


def build_resunet34(
    num_classes: int, input_shape: tuple[int, int, int], weights: str | None, decoder_filters: int = 256
) -> keras.Model:
    """U-Net decoder on a ResNet-34 encoder (output stride 32).

    The decoder halves its channels at each of the five x2 steps, starting from
    `decoder_filters` at stride 16; the last step (to full resolution) has no skip.
    """
    image = image_input(input_shape)
    features = resnet34_encoder(scale_to_unit(image))
    x = features[-1]
    skips = features[-2::-1] + [None]  # strides 16, 8, 4, 2, then full resolution
    for index, skip in enumerate(skips):
        filters = max(decoder_filters // 2**index, 1)
        x = decoder_block(x, skip, filters, name=f"decoder{len(skips) - index}")
    outputs = segmentation_head(x, num_classes, 1)
    return keras.Model(image, outputs, name="resunet34")
