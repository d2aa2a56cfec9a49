"""Find the model to export, load it, and settle its ModelSpec.

A model edgeseg trained carries its spec (`spec.json` beside `model.keras`). A model from
elsewhere (a `.h5` file, a SavedModel, a bare `.keras`) does not: its spec comes from a spec file
or from command-line fields, completed by what the model itself tells (its input size, its
output channels, its final activation), and checked against the model before any conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeseg.errors import DataError, ModelError, SpecError, one_line
from edgeseg.runtime.keras_backend import H5_SUFFIXES, MODEL_FILENAME, load_keras_model
from edgeseg.spec import SPEC_FILENAME, ModelSpec

SAVED_MODEL_FILENAME = "saved_model.pb"
KERAS_SUFFIXES = (".keras",)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

Shape = tuple[int | None, ...]


@dataclass
class LoadedModel:
    """A model ready to be converted, and to be run as the reference the ONNX model must equal.

    Attributes:
        name: how messages name the model (its path, or the Keras model's name).
        kind: "keras", "h5", "savedmodel" or "in-memory".
        call: maps an NHWC float32 image tensor to the output tensor (TensorFlow in and out).
        input_shape, output_shape: NHWC shapes, None where dynamic.
        final_activation: "softmax", "sigmoid", or "" (linear or unknown).
        keras_model: the `keras.Model`; None for a SavedModel.
        spec_path: a `spec.json` found beside the model, if any.
    """

    name: str
    kind: str
    call: Callable[[Any], Any]
    input_shape: Shape
    output_shape: Shape
    final_activation: str = ""
    keras_model: Any = None
    spec_path: Path | None = None

    @property
    def input_size(self) -> tuple[int | None, int | None]:
        return self.input_shape[1], self.input_shape[2]

    @property
    def output_channels(self) -> int | None:
        return self.output_shape[-1]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a preprocessed NHWC float32 batch (inference mode)."""
        import tensorflow as tf

        return np.asarray(self.call(tf.constant(batch)))

    def describe(self) -> str:
        height, width = self.input_size
        size = f"{height or '?'}x{width or '?'}"
        return f"{self.kind} model {self.name} (input {size}x3, {self.output_channels or '?'} output channels)"


def load_model(source: str | Path | Any) -> LoadedModel:
    """Load a run folder, a `.keras`/`.h5` file, a SavedModel folder, or wrap a `keras.Model`.

    Raises:
        ModelError: the path is missing, is not a model, or the file is corrupt.
    """
    if not isinstance(source, (str, Path)):
        return _wrap_keras_model(source, name=getattr(source, "name", "model"), kind="in-memory")
    path = Path(source)
    if not path.exists():
        raise ModelError(
            f"model {path} does not exist; pass an edgeseg run folder, a .keras or .h5 file, "
            "or a SavedModel folder"
        )
    if path.is_dir():
        if (path / MODEL_FILENAME).is_file():
            return _load_keras_file(path / MODEL_FILENAME, spec_dir=path)
        if (path / SAVED_MODEL_FILENAME).is_file():
            return _load_saved_model(path)
        raise ModelError(
            f"{path} holds neither {MODEL_FILENAME} (an edgeseg run folder) nor "
            f"{SAVED_MODEL_FILENAME} (a TensorFlow SavedModel); pass the model file itself"
        )
    if path.suffix.lower() in KERAS_SUFFIXES + H5_SUFFIXES:
        return _load_keras_file(path, spec_dir=path.parent)
    if path.suffix.lower() == ".onnx":
        raise ModelError(
            f"{path} is already ONNX: `edgeseg export` converts Keras models. To give an ONNX model (e.g. a "
            "PyTorch export) its spec, run `edgeseg spec MODEL.onnx --classes A,B,... -o OUT.onnx`"
        )
    raise ModelError(
        f"{path} is not a Keras model: expected a .keras or .h5 file, an edgeseg run folder "
        "or a SavedModel folder"
    )


def _spec_beside(folder: Path) -> Path | None:
    candidate = folder / SPEC_FILENAME
    return candidate if candidate.is_file() else None


def _load_keras_file(path: Path, spec_dir: Path) -> LoadedModel:
    model = load_keras_model(path)
    is_h5 = path.suffix.lower() in H5_SUFFIXES
    loaded = _wrap_keras_model(model, name=str(path), kind="h5" if is_h5 else "keras")
    loaded.spec_path = _spec_beside(spec_dir)
    return loaded


def _wrap_keras_model(model: Any, name: str, kind: str) -> LoadedModel:
    import keras

    if not isinstance(model, keras.Model):
        raise ModelError(f"{name} is a {type(model).__name__}, not a keras.Model")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ModelError(f"Keras model {name} has no defined input; build it with keras.Input(shape) first")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"{name} has {len(inputs)} inputs and {len(outputs)} outputs; edgeseg exports "
            "segmentation models with one image input and one output"
        )
    loaded = LoadedModel(
        name=name,
        kind=kind,
        call=lambda images: model(images, training=False),
        input_shape=tuple(inputs[0].shape),
        output_shape=tuple(outputs[0].shape),
        final_activation=_final_activation(model),
        keras_model=model,
    )
    _check_shapes(loaded)
    return loaded


def _final_activation(model: Any) -> str:
    """'softmax' or 'sigmoid' if the model's last layer applies it, else ''."""
    import keras

    layer = model.layers[-1] if model.layers else None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return name if name in ("softmax", "sigmoid") else ""


def _load_saved_model(path: Path) -> LoadedModel:
    import tensorflow as tf

    try:
        saved = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise ModelError(f"cannot load SavedModel {path}: {one_line(err)}") from None
    signatures = dict(saved.signatures)
    if "serving_default" in signatures:
        signature_name = "serving_default"
    elif len(signatures) == 1:
        signature_name = next(iter(signatures))
    else:
        raise ModelError(
            f"SavedModel {path} has no serving_default signature (it has {sorted(signatures) or 'none'}); "
            "re-export it with model.export() or tf.saved_model.save(model, path)"
        )
    signature = signatures[signature_name]
    _, input_specs = signature.structured_input_signature
    output_specs = signature.structured_outputs
    if len(input_specs) != 1 or not isinstance(output_specs, dict) or len(output_specs) != 1:
        outputs = sorted(output_specs) if isinstance(output_specs, dict) else output_specs
        raise ModelError(
            f"SavedModel {path} serves inputs {sorted(input_specs)} and outputs {outputs}; "
            "edgeseg exports segmentation models with one image input and one output"
        )
    (input_key, input_spec), = input_specs.items()
    (output_key, output_spec), = output_specs.items()
    if input_spec.dtype != tf.float32:
        raise ModelError(f"SavedModel {path} takes {input_spec.dtype.name} images; edgeseg exports float32 inputs")

    def call(images: Any) -> Any:
        # Looked up through `saved` each time: the signature needs the variables `saved` owns.
        return saved.signatures[signature_name](**{input_key: images})[output_key]

    loaded = LoadedModel(
        name=str(path),
        kind="savedmodel",
        call=call,
        input_shape=tuple(input_spec.shape.as_list()),
        output_shape=tuple(output_spec.shape.as_list()),
        spec_path=_spec_beside(path),
    )
    _check_shapes(loaded)
    return loaded


def _check_shapes(model: LoadedModel) -> None:
    if len(model.input_shape) != 4 or model.input_shape[-1] != 3:
        raise ModelError(
            f"{model.name} takes input of shape {model.input_shape}; edgeseg exports models that take "
            "NHWC images with 3 channels"
        )
    if len(model.output_shape) != 4:
        raise ModelError(
            f"{model.name} outputs shape {model.output_shape}; a segmentation model outputs "
            "(batch, height, width, channels)"
        )


@dataclass(frozen=True)
class SpecOverrides:
    """Spec fields given on the command line; None means "not given".

    They complete a model that has no spec, and override a found spec field by field.
    """

    class_names: tuple[str, ...] | None = None
    size: tuple[int, int] | None = None
    scale: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: str | None = None
    output: str | None = None
    ignore_index: int | None = None
    traversable: tuple[str, ...] | None = None

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def changes(self) -> dict[str, Any]:
        """The given fields as ModelSpec field changes."""
        changes = {name: getattr(self, name) for name in self.given()}
        if "size" in changes:
            changes["input_height"], changes["input_width"] = changes.pop("size")
        return changes


def resolve_spec(
    model: LoadedModel,
    spec: ModelSpec | str | Path | None = None,
    overrides: SpecOverrides | None = None,
) -> tuple[ModelSpec, str]:
    """The spec to export with, and a few words on where it came from.

    The first of: `spec` (an object or a JSON file), the `spec.json` beside the model, or one
    built from `overrides` and the model. Given overrides always win over a found spec's fields.

    Raises:
        SpecError: no spec and too little to build one, or the spec does not fit the model.
    """
    overrides = overrides or SpecOverrides()
    changes = overrides.changes()
    if isinstance(spec, ModelSpec):
        base, source = spec, "the given spec"
    elif spec is not None:
        base, source = ModelSpec.load(spec), f"spec file {spec}"
    elif model.spec_path is not None:
        base, source = ModelSpec.load(model.spec_path), f"{model.spec_path} (beside the model)"
    else:
        source = "flags and the model (no spec file)"
        if model.kind == "savedmodel" and "output" not in changes and model.output_channels != 1:
            source += "; output assumed logits (a SavedModel hides its last activation: pass --output)"
        return _spec_from_model(model, changes), source
    if changes:
        names = changes.get("class_names")
        if names is not None and len(names) != len(base.class_names):
            changes["palette"] = ()  # the old palette has the wrong length: use the default one
        given = ", ".join(overrides.given())
        try:
            base = base.replace(**changes)
        except SpecError as err:
            raise SpecError(f"{source} overridden by {given}: {err}") from None
        source += f", overridden by {given}"
    check_spec_matches_model(base, model)
    return base, source


def _spec_from_model(model: LoadedModel, changes: dict[str, Any]) -> ModelSpec:
    """A spec for a model edgeseg did not train: class names from flags, the rest inferred."""
    height, width = model.input_size
    channels = model.output_channels
    if "class_names" not in changes:
        size = f"{height}x{width}" if height and width else "dynamic (pass --size HxW)"
        if channels == 1:
            need = "2 names (binary: one sigmoid channel), e.g. --classes background,foreground"
        elif channels:
            need = f"{channels} names, one per output channel"
        else:
            need = "one name per output channel"
        raise SpecError(
            f"no spec for {model.name}: pass --spec FILE or at least --classes NAME,NAME,... "
            f"({need}); the input size was read from the model ({size})"
        )
    if "input_height" not in changes:
        if not height or not width:
            raise SpecError(
                f"{model.name} has a dynamic input size {model.input_shape}; pass --size HxW "
                "(or --spec FILE) to choose the exported input size"
            )
        changes["input_height"], changes["input_width"] = height, width
    binary = channels == 1
    if "output" not in changes:
        if binary:
            changes["output"] = "sigmoid"
        else:
            changes["output"] = "probabilities" if model.final_activation == "softmax" else "logits"
    spec = ModelSpec(task="binary" if binary else "multiclass", **changes)
    check_spec_matches_model(spec, model)
    return spec


def check_spec_matches_model(spec: ModelSpec, model: LoadedModel) -> None:
    """Refuse a spec whose input size or class count contradicts the model's static shapes."""
    height, width = model.input_size
    if (height and height != spec.input_height) or (width and width != spec.input_width):
        raise SpecError(
            f"spec input size {spec.input_height}x{spec.input_width} does not match the input size "
            f"{height}x{width} of {model.name}; fix --size or the spec file"
        )
    channels = model.output_channels
    if channels and channels != spec.output_channels:
        raise SpecError(
            f"{model.name} has {channels} output channels but the spec ({spec.task}, "
            f"{spec.num_classes} classes {list(spec.class_names)}) expects {spec.output_channels}; "
            "fix --classes or the spec file"
        )


def read_verify_images(folder: str | Path, limit: int = 16) -> list[np.ndarray]:
    """Up to `limit` RGB frames from a folder of pictures, in name order, to verify on."""
    from edgeseg.data.io import read_rgb

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"verification image folder {folder} does not exist; pass a folder of .jpg/.png files")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; pass a folder of pictures")
    return [read_rgb(path) for path in paths[:limit]]
