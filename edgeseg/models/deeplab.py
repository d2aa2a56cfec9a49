"""DeepLabV3 and DeepLabV3+ on ResNet-50 (output stride 16).

DeepLabV3 keeps conv5 at stride 16 by dilating it (and copies the ImageNet conv5 weights into
the dilated stage); DeepLabV3+ puts ASPP on conv4 and recovers detail with a decoder that
reads the stride-4 features.
"""

from __future__ import annotations

import keras

from edgeseg.models.layers import (
    conv_bn_relu,
    deeplabv3plus_decoder,
    image_input,
    image_pooling,
    segmentation_head,
)
from edgeseg.models.resnet_blocks import copy_conv5_weights, dilated_conv5, resnet50_backbone

ASPP_RATES = (6, 12, 18)  # the paper's rates for output stride 16
ASPP_FILTERS = 256


def aspp(
    x: keras.KerasTensor, filters: int = ASPP_FILTERS, rates: tuple[int, ...] = ASPP_RATES
) -> keras.KerasTensor:
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3s and image pooling, then a 1x1 projection."""
    branches = [conv_bn_relu(x, filters, 1, name="aspp_1x1")]
    for rate in rates:
        branches.append(conv_bn_relu(x, filters, 3, dilation_rate=rate, name=f"aspp_rate{rate}"))
    branches.append(image_pooling(x, filters, name="aspp_pool"))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    return conv_bn_relu(x, filters, 1, name="aspp_project")


def build_deeplabv3_resnet50(
    num_classes: int, input_shape: tuple[int, int, int], weights: str | None
) -> keras.Model:
    """DeepLabV3: ResNet-50 to conv4, dilated conv5, ASPP, class conv, x16 bilinear upsampling."""
    image = image_input(input_shape)
    backbone = resnet50_backbone(image, weights)
    x = dilated_conv5(backbone.get_layer("conv4_block6_out").output)
    x = aspp(x)
    outputs = segmentation_head(x, num_classes, 16)
    model = keras.Model(image, outputs, name="deeplabv3_resnet50")
    if weights == "imagenet":
        copy_conv5_weights(backbone, model)
    return model


def build_deeplabv3plus_resnet50(
    num_classes: int, input_shape: tuple[int, int, int], weights: str | None
) -> keras.Model:
    """DeepLabV3+: ASPP on conv4 (stride 16), decoder with conv2's stride-4 features, x4 upsampling."""
    image = image_input(input_shape)
    backbone = resnet50_backbone(image, weights)
    x = aspp(backbone.get_layer("conv4_block6_out").output)
    # conv2_block3_out is ResNet-50's last stride-4 feature (conv2 has three blocks).
    x = deeplabv3plus_decoder(x, backbone.get_layer("conv2_block3_out").output, filters=256)
    outputs = segmentation_head(x, num_classes, 4)
    return keras.Model(image, outputs, name="deeplabv3plus_resnet50")
