"""A tiny trained segmentation model and colour-block pictures, built once per session.

The scenes are 32x32 pictures of 8x8 blocks; a block's class is its dominant colour channel
(0 red, 1 green, 2 blue). The Keras model (strided conv, conv, residual add, average pool,
1x1 class conv, bilinear upsampling) trains for a few epochs so its logits mean something,
then `edgeseg.export` exports it (input "image", dynamic batch, opset 17) with the spec embedded,
through the shared `export_tiny_model` fixture of tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.spec import ModelSpec

SIZE = 32



def load_by_path(name: str, path: Path):
    """A module from a file outside any package (tests/ and benchmarks/ are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# graphs built like PyTorch exports (also used by benchmarks/int8_foreign.py, hence loaded by path)
foreign_graphs = load_by_path("edgeseg_calib_foreign_graphs", Path(__file__).with_name("foreign_graphs.py"))
SPEC = ModelSpec(class_names=("red", "green", "blue"), input_height=SIZE, input_width=SIZE, model="tiny")


def block_scenes(count: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 pictures [count, size, size, 3] and their masks [count, size, size]."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 3), np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    for i in range(count):
        for y in range(0, size, 8):
            for x in range(0, size, 8):
                cls = rng.integers(0, 3)
                colour = rng.integers(0, 90, 3)
                colour[cls] = rng.integers(150, 256)
                images[i, y : y + 8, x : x + 8] = colour
                masks[i, y : y + 8, x : x + 8] = cls
    return images, masks


def write_images(folder: Path, images: np.ndarray, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{index:03d}{suffix}"
        assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths



@dataclass(frozen=True)
class TinyModel:
    onnx_path: Path  # spec embedded
    nospec_path: Path
    spec: ModelSpec


@pytest.fixture(scope="session")
def tiny_model(export_tiny_model) -> TinyModel:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    skip = x
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Add()([x, skip])
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    x = keras.layers.Conv2D(3, 1, name="classes")(x)
    logits = keras.layers.UpSampling2D(2, interpolation="bilinear", name="logits")(x)
    model = keras.Model(inputs, logits)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, masks = block_scenes(64, seed=0)
    model.fit(images.astype("float32"), masks, batch_size=16, epochs=6, verbose=0)

    exported = export_tiny_model(model, SPEC, "calib_model")
    nospec = exported.with_spec(None, exported.onnx_path.with_name("nospec.onnx"))
    return TinyModel(exported.onnx_path, nospec, SPEC)


@pytest.fixture(scope="session")
def calib_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 colour-block pictures (PNG, lossless) to calibrate on."""
    folder = tmp_path_factory.mktemp("calib_images")
    write_images(folder, block_scenes(24, seed=1)[0])
    return folder


@pytest.fixture
def model_copy(tiny_model: TinyModel, tmp_path: Path) -> Path:
    """The spec'd model copied into this test's folder, so outputs land beside it."""
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny_model.onnx_path.read_bytes())
    return path


@pytest.fixture
def scenes():
    """block_scenes(count, seed) -> (images, masks)."""
    return block_scenes


@pytest.fixture
def write_pictures():
    """write_images(folder, images, suffix=".png") -> paths."""
    return write_images


@pytest.fixture(scope="session")
def foreign_training():
    """benchmarks/foreign_training.py, which trains the foreign fixtures for the INT8 benchmark."""
    return load_by_path("foreign_training", Path(__file__).parents[2] / "benchmarks" / "foreign_training.py")


@pytest.fixture
def foreign():
    """The foreign_graphs module: foreign_model(kind, h, w), save_foreign_model, foreign_spec, _Graph."""
    return foreign_graphs
