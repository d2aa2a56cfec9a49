"""Keras backend: the float reference that exported and quantized models are compared against.

Opens `model.keras` / `.h5` files or a training run folder (RUN_DIR/model.keras with
RUN_DIR/spec.json). Keras (and so TensorFlow) is imported only when a model is opened; nothing
on the robot's ONNX path imports this module.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EngineError
from edgeseg.runtime.backends import BackendBase, check_spec_matches_model, normalize_shape, resolve_spec
from edgeseg.spec import SPEC_FILENAME, ModelSpec

MODEL_FILENAME = "model.keras"


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
        EngineError: the file is missing or Keras cannot load it.
        SpecError: no spec beside the model and none given, or it does not match the model.
    """
    path = Path(path)
    model_path = path / MODEL_FILENAME if path.is_dir() else path
    if not model_path.is_file():
        raise EngineError(f"no Keras model at {model_path}; pass a .keras file or a training run folder")
    spec_path = model_path.parent / SPEC_FILENAME
    found = ModelSpec.load(spec_path) if spec is None and spec_path.is_file() else None
    spec = resolve_spec(spec, found, model_path, f"there is no {spec_path} (`edgeseg train` writes it there)")

    import keras  # edgeseg models use standard layers only: no custom objects to register

    try:
        model = keras.saving.load_model(str(model_path), compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise EngineError(
            f"Keras cannot load {model_path}: {err}; re-save it with `edgeseg train`"
        ) from None
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


def _tensor_name(tensor: Any) -> str:
    """A Keras tensor's name without a ':0' suffix ('image', as in the exported ONNX)."""
    return str(getattr(tensor, "name", "input")).split(":")[0]

