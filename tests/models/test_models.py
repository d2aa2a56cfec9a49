"""The model zoo: every registered model builds, follows the input/output contract, saves and
reloads without custom objects, and the ResNet-50 surgery (dilated conv5, weight copy, RGB
conv1) is what it claims to be. Real Keras at 32-96 px; each heavy model is built once.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import edgeseg.models as models
from edgeseg.errors import ModelError
from edgeseg.models.layers import image_input
from edgeseg.models.mobile import mobilenetv2_backbone
from edgeseg.models.resnet_blocks import copy_conv5_weights, resnet50_backbone

NAMES = [
    "compact_unet",
    "deeplabv3_resnet50",
    "deeplabv3plus_mobilenetv2",
    "deeplabv3plus_resnet50",
    "resunet34",
    "unet",
]
MULTICLASS_SHAPE = (64, 96, 3)  # non-square on purpose; a multiple of every output stride
BINARY_SHAPE = (64, 64, 3)
SMALL_OPTIONS = {"unet": {"filters": 8}, "resunet34": {"decoder_filters": 32}}  # keep it quick


@pytest.fixture(scope="module")
def zoo():
    """Build each (name, num_classes, shape) once per module."""
    cache: dict[tuple, keras.Model] = {}

    def get(name: str, num_classes: int, shape: tuple[int, int, int]) -> keras.Model:
        key = (name, num_classes, shape)
        if key not in cache:
            keras.utils.set_random_seed(len(cache))
            cache[key] = models.build(name, num_classes, shape, **SMALL_OPTIONS.get(name, {}))
        return cache[key]

    return get


def _infer(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    """One inference call (cheaper than predict, which compiles a function first)."""
    return np.asarray(model(pixels, training=False))


def _pixels(shape: tuple[int, int, int], batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, *shape)).astype("float32")


def test_registry_lists_every_family_with_its_stride():
    assert models.available() == NAMES
    strides = {name: models.info(name).output_stride for name in NAMES}
    assert strides == {
        "compact_unet": 8,
        "deeplabv3_resnet50": 16,
        "deeplabv3plus_mobilenetv2": 16,
        "deeplabv3plus_resnet50": 16,
        "resunet34": 32,
        "unet": 16,
    }
    assert [n for n in NAMES if models.info(n).has_backbone] == [
        "deeplabv3_resnet50",
        "deeplabv3plus_mobilenetv2",
        "deeplabv3plus_resnet50",
    ]
    assert dict(models.info("deeplabv3plus_mobilenetv2").options)["width"] == 1.0
    assert dict(models.info("compact_unet").options) == {"filters": 16}


@pytest.mark.parametrize("name", NAMES)
def test_multiclass_model_follows_the_contract(zoo, name):
    model = zoo(name, 3, MULTICLASS_SHAPE)
    assert isinstance(model.get_layer("image"), keras.layers.InputLayer)
    assert model.layers[-1].name == "logits"
    assert model.name == name
    output = _infer(model, _pixels(MULTICLASS_SHAPE))
    assert output.shape == (2, 64, 96, 3)
    assert output.dtype == np.float32
    assert np.isfinite(output).all()
    assert model.layers[-1].get_config()["activation"] == "linear"


@pytest.mark.parametrize("name", NAMES)
def test_binary_model_has_one_sigmoid_channel(zoo, name):
    model = zoo(name, 1, BINARY_SHAPE)
    assert model.layers[-1].name == "logits"
    output = _infer(model, _pixels(BINARY_SHAPE))
    assert output.shape == (2, 64, 64, 1)
    assert np.isfinite(output).all()
    assert output.min() >= 0.0 and output.max() <= 1.0


@pytest.mark.parametrize(
    "name, low, high",
    [("compact_unet", 0.0, 1.0), ("resunet34", 0.0, 1.0), ("deeplabv3plus_mobilenetv2", -1.0, 1.0)],
)
def test_models_normalise_pixels_inside(zoo, name, low, high):
    layer = zoo(name, 3, MULTICLASS_SHAPE).get_layer("image_normalize")
    scaled = np.asarray(layer(np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")))
    np.testing.assert_allclose(scaled.ravel(), [low, (low + high) / 2, high], atol=1e-6)


def test_size_not_divisible_by_the_stride_names_the_stride_and_a_valid_size():
    with pytest.raises(ModelError) as err:
        models.build("deeplabv3plus_mobilenetv2", 3, (250, 250, 3))
    assert str(err.value).startswith(
        "size 250x250 is not divisible by the output stride 16 of deeplabv3plus_mobilenetv2; "
        "use e.g. 256x256"
    )
    with pytest.raises(ModelError, match=r"output stride 32 of resunet34; use e\.g\. 64x96"):
        models.check_input_size("resunet34", 70, 90)
    with pytest.raises(ModelError, match="smaller than the 32 pixels"):
        models.check_input_size("deeplabv3plus_resnet50", 16, 16)
    assert models.check_input_size("compact_unet", 24, 40) is None


def test_unknown_name_suggests_the_closest():
    expected = r"unknown model 'unet34'; did you mean 'resunet34'\? available: compact_unet, "
    with pytest.raises(ModelError, match=expected):
        models.build("unet34", 3, (64, 64, 3))
    with pytest.raises(ModelError, match="did you mean 'deeplabv3plus_mobilenetv2'"):
        models.info("deeplabv3plus_mobilenet")
    with pytest.raises(ModelError) as err:
        models.info("xyz")
    assert "did you mean" not in str(err.value) and "compact_unet" in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "unet", "weights": "imagenet"}, "unet has no pretrained backbone"),
        ({"name": "compact_unet", "weights": "coco"}, "weights must be None or 'imagenet'"),
        ({"name": "compact_unet", "num_classes": 0}, "num_classes must be an integer >= 1"),
        ({"name": "compact_unet", "input_shape": (32, 32, 1)}, r"must be \(height, width, 3\)"),
        ({"name": "compact_unet", "width": 0.5}, "compact_unet has no option width; .*: filters=16"),
        ({"name": "compact_unet", "filters": "16"}, "option filters='16' must be a positive int"),
        ({"name": "deeplabv3plus_mobilenetv2", "width": -1}, "must be a positive float"),
        (
            {"name": "deeplabv3plus_mobilenetv2", "weights": "imagenet", "width": 0.6},
            r"ImageNet weights exist only for width in \(0.35",
        ),
    ],
)
def test_bad_arguments_raise_model_error(kwargs, message):
    kwargs = {"num_classes": 3, "input_shape": (32, 32, 3), **kwargs}
    with pytest.raises(ModelError, match=message):
        models.build(**kwargs)


@pytest.mark.parametrize("name", ["compact_unet", "deeplabv3plus_mobilenetv2"])
def test_saved_model_reloads_without_custom_objects(zoo, tmp_path, name):
    model = zoo(name, 3, MULTICLASS_SHAPE)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    pixels = _pixels(MULTICLASS_SHAPE, seed=1)
    np.testing.assert_array_equal(
        _infer(reloaded, pixels), _infer(model, pixels)
    )
    assert reloaded.layers[-1].name == "logits"


def test_deeplabv3_conv5_is_dilated_at_stride_16(zoo):
    model = zoo("deeplabv3_resnet50", 3, MULTICLASS_SHAPE)
    for block in (1, 2, 3):
        conv = model.get_layer(f"conv5_block{block}_2_conv")
        assert conv.dilation_rate == (2, 2)
        assert conv.strides == (1, 1)
    assert model.get_layer("conv5_block1_1_conv").strides == (1, 1)
    assert model.get_layer("conv5_block1_0_conv").strides == (1, 1)  # projection shortcut
    assert tuple(model.get_layer("conv5_block3_out").output.shape[1:3]) == (4, 6)  # 64x96 / 16
    assert model.get_layer("conv5_block3_out").output.shape[-1] == 2048


def test_deeplabv3plus_low_level_features_are_at_stride_4(zoo):
    model = zoo("deeplabv3plus_resnet50", 3, MULTICLASS_SHAPE)
    assert tuple(model.get_layer("conv2_block3_out").output.shape[1:3]) == (16, 24)
    assert tuple(model.get_layer("decoder_concat").output.shape[1:3]) == (16, 24)


@pytest.fixture(scope="module")
def random_resnet50():
    """A randomly initialised keras ResNet-50 backbone: stands in for the ImageNet one."""
    keras.utils.set_random_seed(123)
    return resnet50_backbone(image_input((64, 64, 3)), weights=None)


def test_copy_conv5_weights_copies_every_conv5_layer(zoo, random_resnet50):
    model = zoo("deeplabv3_resnet50", 1, BINARY_SHAPE)
    target = model.get_layer("conv5_block2_2_conv")
    source = random_resnet50.get_layer("conv5_block2_2_conv")
    assert not np.array_equal(target.get_weights()[0], source.get_weights()[0])
    copied = copy_conv5_weights(random_resnet50, model)
    # block 1: projection + three convs, blocks 2 and 3: three convs; each conv has its BN
    assert len(copied) == 20 and "conv5_block1_0_bn" in copied
    np.testing.assert_array_equal(target.get_weights()[0], source.get_weights()[0])
    bn_got = model.get_layer("conv5_block3_3_bn").get_weights()
    bn_want = random_resnet50.get_layer("conv5_block3_3_bn").get_weights()
    assert len(bn_got) == 4  # gamma, beta, moving mean, moving variance
    for got, want in zip(bn_got, bn_want):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ModelError, match="no conv5_"):
        copy_conv5_weights(random_resnet50, zoo("compact_unet", 1, BINARY_SHAPE))


@pytest.fixture
def offline_imagenet(monkeypatch, tmp_path):
    """Serve stand-in 'ImageNet' weight files instead of downloading (no network here).

    Returns a function that saves a backbone's weights as the file every download returns;
    the rest of the weights="imagenet" path in Keras and edgeseg runs for real.
    """
    import keras.src.utils.file_utils as file_utils

    requested = []

    def serve(backbone: keras.Model) -> list[str]:
        path = tmp_path / "backbone.weights.h5"
        backbone.save_weights(path)
        def get_file(fname, *args, **kwargs):
            requested.append(fname)
            return str(path)

        monkeypatch.setattr(file_utils, "get_file", get_file)
        return requested

    return serve


def test_deeplabv3_imagenet_path_copies_conv5_and_takes_rgb(offline_imagenet, random_resnet50):
    requested = offline_imagenet(random_resnet50)
    model = models.build("deeplabv3_resnet50", 3, (64, 64, 3), weights="imagenet")
    assert requested == ["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    for name in ("conv4_block6_2_conv", "conv5_block1_0_conv", "conv5_block3_2_conv"):
        np.testing.assert_array_equal(
            model.get_layer(name).get_weights()[0], random_resnet50.get_layer(name).get_weights()[0]
        )
    # conv1 on RGB pixels equals the keras ResNet-50's conv1 on caffe-preprocessed (BGR - mean) pixels
    pixels = _pixels((64, 64, 3), batch=1, seed=2)
    caffe = keras.applications.resnet.preprocess_input(pixels.copy())
    expected = random_resnet50.get_layer("conv1_conv")(random_resnet50.get_layer("conv1_pad")(caffe))
    conv1 = keras.Model(model.input, model.get_layer("conv1_conv").output)
    np.testing.assert_allclose(np.asarray(conv1(pixels)), np.asarray(expected), rtol=1e-4, atol=1e-2)


def test_mobilenetv2_imagenet_path_loads_weights_for_any_size(offline_imagenet):
    keras.utils.set_random_seed(7)
    pretrained = mobilenetv2_backbone(image_input((64, 64, 3)), 0.5, None)
    requested = offline_imagenet(pretrained)
    # 64x96 is neither square nor one of Keras's ImageNet sizes: Keras loads the 224 weights
    model = models.build("deeplabv3plus_mobilenetv2", 2, (64, 96, 3), weights="imagenet", width=0.5)
    assert requested == ["mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5"]
    for name in ("Conv1", "block_3_expand", "block_13_expand"):
        np.testing.assert_array_equal(
            model.get_layer(name).get_weights()[0], pretrained.get_layer(name).get_weights()[0]
        )
    output = _infer(model, _pixels((64, 96, 3)))
    assert output.shape == (2, 64, 96, 2)


def test_compact_unet_trains_one_step():
    keras.utils.set_random_seed(0)
    model = models.build("compact_unet", 3, (32, 32, 3), filters=8)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = model.get_layer("classifier").get_weights()[0].copy()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 3, (4, 32, 32)).astype("int32")
    history = model.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(model.get_layer("classifier").get_weights()[0], before)


@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenetv2", "compact_unet"])
def test_batchnorm_statistics_settle_quickly(name):
    """Keras' momentum 0.99 / 0.999 left short trainings predicting garbage in inference mode."""
    model = models.build(name, 3, (64, 64, 3))
    momenta = {layer.momentum for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
