"""The ModelSpec inside an ONNX file: ONNX `metadata_props`, key `edgeseg.spec`.

`export` writes the spec into the model with `write_spec_metadata` (the `onnx` package, export
time only). Reading needs only ONNX Runtime, so a robot without the `onnx` package can still find
the spec of the model it runs; `onnx` is used only where ONNX Runtime is absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

from edgeseg.errors import EngineError, SpecError
from edgeseg.spec import ONNX_METADATA_KEY, ModelSpec


def write_spec_metadata(model_proto: Any, spec: ModelSpec) -> Any:
    """Embed `spec` in an `onnx.ModelProto` (in place, replacing any earlier spec); returns it."""
    for index in reversed(range(len(model_proto.metadata_props))):
        if model_proto.metadata_props[index].key == ONNX_METADATA_KEY:
            del model_proto.metadata_props[index]
    entry = model_proto.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = spec.to_json()
    return model_proto


def spec_from_metadata(metadata: Mapping[str, str], source: str | Path) -> ModelSpec | None:
    """The spec in an ONNX metadata map, or None if the model carries none.

    Raises:
        SpecError: the entry exists but is not a valid spec (names `source`).
    """
    text = metadata.get(ONNX_METADATA_KEY)
    if text is None:
        return None
    try:
        return ModelSpec.from_json(text)
    except SpecError as err:
        raise SpecError(
            f"{source}: the embedded {ONNX_METADATA_KEY} metadata is not a valid spec ({err}); "
            "re-export the model with `edgeseg export` or pass --spec FILE"
        ) from None


def invalid_onnx_error(path: str | Path, reason: object) -> EngineError:
    """The one message for an ONNX file that cannot be parsed."""
    return EngineError(
        f"{path} is not a valid ONNX model (truncated or corrupt?): {reason}; "
        "re-export it with `edgeseg export`"
    )


def read_spec_from_onnx_file(path: str | Path) -> ModelSpec | None:
    """The spec embedded in the ONNX file at `path`, or None if it has none.

    Uses ONNX Runtime when installed (the robot's case), else the `onnx` package.

    Raises:
        EngineError: the file is missing, not a valid ONNX model, or neither library is installed.
        SpecError: the embedded spec is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"no ONNX model at {path}; check the path")
    if importlib.util.find_spec("onnxruntime") is not None:
        return spec_from_metadata(_metadata_via_onnxruntime(path), path)
    if importlib.util.find_spec("onnx") is not None:
        return spec_from_metadata(_metadata_via_onnx(path), path)
    raise EngineError(
        f"cannot read {path}: neither onnxruntime nor onnx is installed; "
        "pip install 'edgeseg[onnx]'"
    )


def _metadata_via_onnxruntime(path: Path) -> dict[str, str]:
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument, ort_errors.InvalidGraph) as err:
        raise invalid_onnx_error(path, err) from None
    return dict(session.get_modelmeta().custom_metadata_map)


def load_onnx_model(path: str | Path) -> Any:
    """The ModelProto (weights left external), or a clear error for a corrupt or graphless file."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except DecodeError as err:
        raise invalid_onnx_error(path, err) from None
    if not model.HasField("graph"):
        raise invalid_onnx_error(path, "no graph was found in the protobuf")
    return model


def _metadata_via_onnx(path: Path) -> dict[str, str]:
    model = load_onnx_model(path)
    return {entry.key: entry.value for entry in model.metadata_props}
