"""User-facing errors.

A user error (bad input, missing file, wrong flag) raises one of these; the CLI prints the
message on one line and exits 1. Anything else is a bug and keeps its traceback. Every message
says what was wrong and what to do about it.
"""


class EdgesegError(Exception):
    """Base class for every error caused by the user's input or environment."""


class DataError(EdgesegError):
    """A dataset, image or mask is missing, unreadable or inconsistent."""


class ModelError(EdgesegError):
    """A model name, size or file is wrong."""


class SpecError(EdgesegError):
    """A ModelSpec is missing, malformed or does not match the model."""


class EngineError(EdgesegError):
    """An ONNX model or engine cannot be built, loaded or run."""


def check_field_range(config: object, name: str, low: float, high: float) -> None:
    """Raise EdgesegError naming `Class.field=value` when a config field is outside [low, high]."""
    value = getattr(config, name)
    if not low <= value <= high:
        raise EdgesegError(f"{type(config).__name__}.{name}={value!r} is outside [{low}, {high}]")


def one_line(err: BaseException) -> str:
    """A library's error message on one line (Keras and TensorFlow spread theirs over several)."""
    return " ".join(str(err).split())
