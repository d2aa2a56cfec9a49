"""Keras backend: the float reference that exported and quantized models are compared against.

Opens `model.keras` / `.h5` files or a training run folder (RUN_DIR/model.keras with
RUN_DIR/spec.json). Keras (and so TensorFlow) is imported only when a model is opened; nothing
on the robot's ONNX path imports this module.

`load_keras_model` is edgeseg's one Keras file loader: export, evaluation and training load
through it too. It lives here, at the runtime's floor, because the runtime may not import
export or train, while they may import the runtime.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EngineError, ModelError, one_line
from edgeseg.runtime.backends import BackendBase, check_spec_matches_model, normalize_shape, resolve_spec
from edgeseg.spec import SPEC_FILENAME, ModelSpec

MODEL_FILENAME = "model.keras"  # what `edgeseg train` writes into a run folder
H5_SUFFIXES = (".h5", ".hdf5")


class KerasBackend(BackendBase):
    """A loaded Keras model run in inference mode (`training=False`)."""

    name = "keras"

    def __init__(self, path: Path, model: Any, spec: ModelSpec) -> None:
        model_input = model.inputs[0]
        super().__init__(path, spec, _tensor_name(model_input), normalize_shape(model_input.shape))
        self._model = model
        self._call = _compiled_call(model)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import keras

        output = self._call(batch)
        if isinstance(output, (list, tuple)):
            output = output[0]
        return np.asarray(keras.ops.convert_to_numpy(output))

    def _release(self) -> None:
        self._model = self._call = None


def _compiled_call(model: Any) -> Any:
    """The model's inference call as one graph: eager calls run op by op and are several times slower.

    One trace per input shape; `reduce_retracing` keeps a varying batch size from retracing each time.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda batch: model(batch, training=False)
    import tensorflow as tf

    return tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)


def open_keras(path: str | Path, spec: ModelSpec | None = None) -> KerasBackend:
    """Load a Keras model file or run folder; the spec is `spec.json` beside the model.

    Raises:
        EngineError: the file is missing.
        ModelError: Keras cannot load it (see `load_keras_model`).
        SpecError: no spec beside the model and none given, or it does not match the model.
    """
    path = Path(path)
    model_path = path / MODEL_FILENAME if path.is_dir() else path
    if not model_path.is_file():
        raise EngineError(f"no Keras model at {model_path}; pass a .keras file or a training run folder")
    spec_path = model_path.parent / SPEC_FILENAME
    found = ModelSpec.load(spec_path) if spec is None and spec_path.is_file() else None
    spec = resolve_spec(spec, found, model_path, f"there is no {spec_path} (`edgeseg train` writes it there)")

    model = load_keras_model(model_path)
    if len(model.inputs) != 1:
        raise EngineError(
            f"{model_path} has {len(model.inputs)} inputs; edgeseg runs models with one image input"
        )
    check_spec_matches_model(
        spec,
        model_path,
        _tensor_name(model.inputs[0]),
        normalize_shape(model.inputs[0].shape),
        normalize_shape(model.outputs[0].shape),
    )
    return KerasBackend(model_path, model, spec)


def load_keras_model(path: str | Path) -> Any:
    """A `.keras` or `.h5` file as a `keras.Model` for inference (`compile=False`).

    edgeseg models use standard layers only: there are no custom objects to register.

    Raises:
        ModelError: the file is missing, corrupt or truncated, or not a Keras model.
    """
    import h5py
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no Keras model at {path}; pass a .keras or .h5 file or an edgeseg run folder")
    is_h5 = path.suffix.lower() in H5_SUFFIXES
    # Keras calls a corrupt .keras file "not found"; say what is really wrong.
    if is_h5 and not h5py.is_hdf5(path):
        raise ModelError(f"{path} is not a valid HDF5 file (corrupt or truncated?); re-save the model")
    if not is_h5 and not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path} is not a valid .keras file (a .keras file is a zip archive; corrupt or "
            "truncated?); re-save the model with model.save()"
        )
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError, TypeError, KeyError, zipfile.BadZipFile) as err:
        raise ModelError(f"cannot load Keras model {path}: {one_line(err)}") from None


def _tensor_name(tensor: Any) -> str:
    """A Keras tensor's name without a ':0' suffix ('image', as in the exported ONNX)."""
    return str(getattr(tensor, "name", "input")).split(":")[0]

