"""ResNet pieces: the ResNet-50 backbone with RGB input, a dilated conv5 stage, a ResNet-34 encoder.

The dilated conv5 mirrors keras.applications.resnet's conv5 layer for layer (same names, same
kernel shapes, biases and BN epsilon), so ImageNet weights copy across one layer at a time.
"""

from __future__ import annotations

import keras

from edgeseg.errors import ModelError
from edgeseg.models.layers import keras_application, subtract_imagenet_mean

_BN_EPSILON = 1.001e-5  # what keras.applications.resnet uses


def reverse_first_conv_channels(backbone: keras.Model) -> None:
    """Make a caffe-style ResNet-50 take RGB: reverse its first kernel's input channels.

    keras.applications.resnet expects BGR minus the ImageNet mean. Feeding RGB minus the mean
    through a kernel whose input channels are reversed gives exactly the same conv1 output, so
    the network needs no channel-reversal op (one less thing for ONNX and INT8 to handle).
    """
    conv1 = backbone.get_layer("conv1_conv")
    kernel, bias = conv1.get_weights()
    conv1.set_weights([kernel[:, :, ::-1, :], bias])


def resnet50_backbone(image: keras.KerasTensor, weights: str | None) -> keras.Model:
    """keras.applications.ResNet50 on the model's [0, 255] RGB input, preprocessing inside.

    Its layers are reached by name (`conv4_block6_out`, `conv2_block3_out`) to build heads on.
    """
    x = subtract_imagenet_mean(image)
    backbone = keras_application(
        keras.applications.ResNet50, include_top=False, weights=weights, input_tensor=x
    )
    if weights == "imagenet":
        reverse_first_conv_channels(backbone)
    return backbone


def _bottleneck(
    x: keras.KerasTensor, filters: int, *, dilation_rate: int, projection: bool, name: str
) -> keras.KerasTensor:
    """keras.applications.resnet's residual_block_v1 with stride 1 and a dilated 3x3 conv."""
    if projection:
        shortcut = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(
            axis=3, epsilon=_BN_EPSILON, name=f"{name}_0_bn"
        )(shortcut)
    else:
        shortcut = x
    x = keras.layers.Conv2D(filters, 1, name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name=f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(
        filters, 3, padding="same", dilation_rate=dilation_rate, name=f"{name}_2_conv"
    )(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name=f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = keras.layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name=f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def dilated_conv5(x: keras.KerasTensor, dilation_rate: int = 2) -> keras.KerasTensor:
    """ResNet-50's conv5 stage at stride 1 with dilated 3x3 convs.

    DeepLabV3 at output stride 16: the features stay at 1/16 of the input while conv5 keeps
    the receptive field it was trained with. Layer names match keras.applications (conv5_*).
    """
    for block in (1, 2, 3):
        x = _bottleneck(
            x, 512, dilation_rate=dilation_rate, projection=block == 1, name=f"conv5_block{block}"
        )
    return x


def copy_conv5_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy every conv5_* layer's weights from a keras ResNet-50 into a model with `dilated_conv5`.

    Dilation and stride do not change kernel shapes, so the ImageNet conv5 weights fit as they
    are. Returns the names of the layers copied.
    """
    copied = []
    for layer in target.layers:
        if not layer.name.startswith("conv5_") or not layer.weights:
            continue
        try:
            source_layer = source.get_layer(layer.name)
        except ValueError:
            raise ModelError(
                f"{source.name} has no layer {layer.name}; pass a keras ResNet-50"
            ) from None
        values = source_layer.get_weights()
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ModelError(
                f"cannot copy {layer.name}: {source.name} has weight shapes "
                f"{[v.shape for v in values]}, the model needs {expected}"
            )
        layer.set_weights(values)
        copied.append(layer.name)
    if not copied:
        raise ModelError(f"{target.name} has no conv5_* layers to copy weights into")
    return copied


def _basic_block(x: keras.KerasTensor, filters: int, *, strides: int, name: str) -> keras.KerasTensor:
    """ResNet-18/34 basic block: two 3x3 convs, projection shortcut when the shape changes."""
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_shortcut_conv"
        )(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    else:
        shortcut = x
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_1_conv"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_1_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_2_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


RESNET34_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


def resnet34_encoder(x: keras.KerasTensor) -> list[keras.KerasTensor]:
    """ResNet-34 (basic blocks 3, 4, 6, 3) returning its features at strides 2, 4, 8, 16, 32.

    The stride-2 feature is the stem's output, so a U-Net decoder has a skip at every scale.
    """
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    features = [x]
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (filters, blocks) in enumerate(RESNET34_STAGES, start=1):
        for block in range(1, blocks + 1):
            strides = 2 if block == 1 and stage > 1 else 1
            x = _basic_block(x, filters, strides=strides, name=f"stage{stage}_block{block}")
        features.append(x)
    return features
