"""Fixtures for every test folder: tiny real Keras models, exported through edgeseg's own export.

Test folders that need an ONNX model from Keras build their small network with `tiny_conv_net`
(or their own layers) and hand it to `export_tiny_model`, which saves it as `edgeseg train`
does (run folder: model.keras + spec.json) and converts it with `edgeseg.export.export_onnx`,
the product's route: the run folder's spec is embedded and the ONNX output is checked against
Keras before the file is written. So every ONNX test model is also a small test of the export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from edgeseg.artifact.onnxmeta import claim_denormals_as_zero
from edgeseg.spec import ModelSpec

# An edgeseg process computes denormals as zero on its main thread from its first ONNX Runtime
# session on (`ort_session`); the tests run that way from the start, so that what a test
# computes does not depend on which test opened the first session. Tests that need denormal
# values write them by their bits (`tests.fixtures_onnx.denormal_float32`), which no arithmetic flushes.
claim_denormals_as_zero()


@dataclass(frozen=True)
class ExportedModel:
    """A tiny Keras model as `edgeseg train` leaves it and as `edgeseg export` converts it."""

    run_dir: Path  # model.keras + spec.json
    onnx_path: Path  # dynamic batch, input "image", spec embedded
    spec: ModelSpec

    def with_spec(self, spec: ModelSpec | None, path: Path) -> Path:
        """The same network saved to `path` with another spec embedded, or with none (spec=None)."""
        import onnx

        from edgeseg.onnxmeta import write_spec_metadata

        proto = onnx.load(str(self.onnx_path))
        if spec is None:
            del proto.metadata_props[:]
        else:
            proto = write_spec_metadata(proto, spec)
        onnx.save(proto, str(path))
        return path


def tiny_conv_net(classes: int, size: int = 32, activation: str | None = None, seed: int = 0) -> Any:
    """Rescaling -> Conv 3x3 (8, relu) -> Conv 1x1 (`classes`, `activation`): an untrained real net.

    Input "image" (size x size x 3, uint8 values as float); output logits (or `activation`'s output).
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, keras.layers.Conv2D(classes, 1, activation=activation, name="logits")(x))


@pytest.fixture(scope="session")
def export_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any, ModelSpec, str], ExportedModel]:
    """export(keras_model, spec, name) -> ExportedModel, in a fresh session folder named `name`."""
    from edgeseg.export import export_onnx

    def export(model: Any, spec: ModelSpec, name: str) -> ExportedModel:
        root = tmp_path_factory.mktemp(name)
        run_dir = root / "run"
        run_dir.mkdir()
        model.save(run_dir / "model.keras")
        spec.save(run_dir / "spec.json")
        report = export_onnx(run_dir, root / "model.onnx", batch="dynamic")
        return ExportedModel(run_dir, report.output_path, spec)

    return export


@pytest.fixture(scope="session")
def tiny_net() -> Callable[..., Any]:
    """tiny_conv_net(classes, size=32, activation=None, seed=0) -> keras.Model."""
    return tiny_conv_net
