"""Backends run a model's raw forward pass; ONE registry picks which backend opens a file.

A backend (`Backend`) is a context manager over a loaded model: `input_spec` (the ModelSpec),
`input_name`, `input_shape`, `infer(batch) -> output batch`, `close()`. It checks every batch
against the model's input metadata, so a wrong shape or dtype fails with a message, not a crash
deep inside a runtime.

The registry is a table of `BackendEntry` rows: a name, the file types it opens, a cheap
availability check (does not import the runtime), the loader, and the options it accepts.
`open_backend(path)` walks the table in order and uses the first entry that matches the file and
is installed; nothing else in the code base branches on file types.

Adding a backend: write `open_<name>(path, spec=None, **options) -> Backend` (subclass
`BackendBase`, import the runtime inside the function, resolve the spec with `resolve_spec` and
check it with `check_spec_matches_model`), then add one `BackendEntry` row to `_BUILTIN_ENTRIES`
below, or call `register_backend` from outside. The TensorRT row is the worked example.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from edgeseg.artifact.formats import runner_install_hint, runner_suffixes
from edgeseg.artifact.spec import ModelSpec
from edgeseg.errors import EngineError, SpecError

Shape = tuple[int | None, ...]
Loader = Callable[..., "Backend"]


@runtime_checkable
class Backend(Protocol):
    """A loaded model that runs raw forward passes."""

    name: str
    input_spec: ModelSpec
    input_name: str
    input_shape: Shape

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 input batch (already preprocessed); return the model's raw output batch."""

    def close(self) -> None:
        """Release the model; `infer` fails afterwards."""

    def __enter__(self) -> "Backend": ...

    def __exit__(self, *exc_info: object) -> None: ...


class BackendBase:
    """Shared behaviour of backends: input checks, context manager, closed state.

    Subclasses set `name`, `path`, `input_spec`, `input_name`, `input_shape` and implement
    `_run(batch)` and `_release()`.
    """

    name = "base"

    def __init__(self, path: Path, spec: ModelSpec, input_name: str, input_shape: Shape) -> None:
        self.path = Path(path)
        self.input_spec = spec
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        self._closed = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._closed:
            raise EngineError(f"the {self.name} backend for {self.path} is closed; open it again")
        self.check_batch(batch)
        return self._run(batch)

    def check_batch(self, batch: np.ndarray) -> None:
        """Raise EngineError unless `batch` is a float32 array the model's input accepts."""
        expected = "[" + ", ".join("N" if d is None else str(d) for d in self.input_shape) + "]"
        hint = "build it with edgeseg.runtime.preprocess.preprocess(frames, spec)"
        if not isinstance(batch, np.ndarray):
            raise EngineError(
                f"{self.path} expects a numpy float32 batch of shape {expected} for input "
                f"{self.input_name!r}, got {type(batch).__name__}; {hint}"
            )
        if batch.dtype != np.float32 or not shape_matches(batch.shape, self.input_shape):
            raise EngineError(
                f"{self.path} expects input {self.input_name!r} as float32 of shape {expected}, "
                f"got {batch.dtype} of shape {list(batch.shape)}; {hint}"
            )

    def close(self) -> None:
        if not self._closed:
            self._release()
            self._closed = True

    def __enter__(self) -> "BackendBase":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} input {self.input_name!r} {list(self.input_shape)}>"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


def shape_matches(shape: Sequence[int], model_shape: Shape) -> bool:
    """True if a concrete shape fits a model shape whose unknown dims are None."""
    return len(shape) == len(model_shape) and all(
        want is None or want == got for got, want in zip(shape, model_shape)
    )


def normalize_shape(dims: Sequence[Any]) -> Shape:
    """Model dims as ints, with every symbolic or unknown dim (None, 'batch', -1) as None."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in dims)


# --- the spec every backend needs -------------------------------------------------------------


def resolve_spec(explicit: ModelSpec | None, found: ModelSpec | None, path: Path, missing: str) -> ModelSpec:
    """The spec to run `path` with: an explicit one wins over the one found with the model.

    Args:
        missing: why this file type has no spec and how to give it one, for the error message.
    """
    if explicit is not None:
        return explicit
    if found is not None:
        return found
    raise SpecError(f"no model spec for {path}: {missing}; or pass one with --spec FILE (spec= in Python)")


def chosen_output(spec: ModelSpec, outputs: Sequence[str], path: Path) -> str:
    """The output that drives: the spec's `output_name`, else the first one.

    Raises:
        SpecError: the spec names an output the model does not have (lists the ones it has).
    """
    if not spec.output_name:
        return outputs[0]
    if spec.output_name not in outputs:
        raise SpecError(
            f"the spec for {path} names output {spec.output_name!r}, but the model's outputs are "
            f"{', '.join(repr(name) for name in outputs)}; pass one of them with --output NAME"
        )
    return spec.output_name


def check_spec_matches_model(
    spec: ModelSpec, path: Path, input_name: str, input_shape: Shape, output_shape: Shape | None = None
) -> None:
    """Raise SpecError if the spec's input size, channels or class count contradict the model."""
    height, width = spec.input_size
    if spec.layout == "NCHW":
        wanted: Shape = (None, 3, height, width)
    else:
        wanted = (None, height, width, 3)
    described = f"{height}x{width}x3 ({spec.layout})"
    if len(input_shape) != 4 or not all(
        model is None or want is None or model == want for model, want in zip(input_shape, wanted)
    ):
        raise SpecError(
            f"the spec for {path} says input {described}, but the model's input {input_name!r} "
            f"has shape {list(input_shape)}; pass the spec that belongs to this model (--spec FILE)"
        )
    if output_shape is None or len(output_shape) != 4:
        return
    channels = spec.output_channels
    if output_shape[-1] not in (None, channels) and output_shape[1] not in (None, channels):
        raise SpecError(
            f"the spec for {path} has {spec.num_classes} classes ({spec.task}, {channels} output "
            f"channel(s)), but the model's output has shape {list(output_shape)}; "
            "pass the spec that belongs to this model (--spec FILE)"
        )


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendEntry:
    """One row of the backend table.

    Attributes:
        name: what users pass as `backend=` / `--backend`.
        suffixes: file suffixes this backend opens (lower case, with the dot).
        is_available: cheap check that the runtime is installed; must not import it.
        loader: `loader(path, spec=None, **options) -> Backend`.
        options: the keyword options the loader accepts (checked before loading).
        install_hint: what to install when `is_available()` is False.
        matches_path: extra predicate for inputs a suffix cannot describe (e.g. a run folder).
        description: one line for listings.
    """

    name: str
    suffixes: tuple[str, ...]
    is_available: Callable[[], bool]
    loader: Loader
    options: tuple[str, ...] = ()
    install_hint: str = ""
    matches_path: Callable[[Path], bool] | None = None
    description: str = ""

    def matches(self, path: Path) -> bool:
        if path.suffix.lower() in self.suffixes:
            return True
        return self.matches_path is not None and self.matches_path(path)


def module_available(module: str) -> Callable[[], bool]:
    """An availability check that looks for `module` without importing it."""

    def check() -> bool:
        return importlib.util.find_spec(module) is not None

    return check


def lazy_loader(module: str, function: str) -> Loader:
    """A loader that imports `module` only when a model is opened."""

    def load(path: Path, spec: ModelSpec | None = None, **options: Any) -> Backend:
        return getattr(importlib.import_module(module), function)(path, spec=spec, **options)

    return load


def _is_keras_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model.keras").is_file()


_BUILTIN_ENTRIES = (
    BackendEntry(
        name="onnxruntime",
        suffixes=runner_suffixes("onnxruntime"),
        is_available=module_available("onnxruntime"),
        loader=lazy_loader("edgeseg.runtime.onnxruntime_backend", "open_onnxruntime"),
        options=("threads", "optimization", "providers", "verify"),
        install_hint=runner_install_hint("onnxruntime"),
        description="ONNX Runtime (CUDA when available, else CPU)",
    ),
    BackendEntry(
        name="keras",
        suffixes=runner_suffixes("keras"),
        is_available=module_available("keras"),
        loader=lazy_loader("edgeseg.runtime.keras_backend", "open_keras"),
        options=(),
        install_hint=runner_install_hint("keras"),
        matches_path=_is_keras_run_folder,
        description="Keras float reference (model.keras or a run folder)",
    ),
    BackendEntry(
        name="tensorrt",
        suffixes=runner_suffixes("tensorrt"),
        is_available=module_available("tensorrt"),
        loader=lazy_loader("edgeseg.runtime.tensorrt_backend", "open_tensorrt"),
        options=("device", "verify"),
        install_hint=runner_install_hint("tensorrt"),
        description="TensorRT engine from `edgeseg build-engine` (NVIDIA GPU / Jetson)",
    ),
)

_REGISTRY: dict[str, BackendEntry] = {entry.name: entry for entry in _BUILTIN_ENTRIES}


def register_backend(entry: BackendEntry, replace: bool = False) -> None:
    """Add a backend to the table (after the built-ins, so they keep priority for `auto`)."""
    if entry.name in _REGISTRY and not replace:
        raise EngineError(f"a backend named {entry.name!r} is already registered; pass replace=True")
    _REGISTRY[entry.name] = entry


def backend_entries() -> tuple[BackendEntry, ...]:
    """Every registered backend, in the order `auto` tries them."""
    return tuple(_REGISTRY.values())


def available_backends() -> list[str]:
    """Names of the registered backends whose runtime is installed."""
    return [entry.name for entry in _REGISTRY.values() if entry.is_available()]


def supported_suffixes() -> list[str]:
    return sorted({suffix for entry in _REGISTRY.values() for suffix in entry.suffixes})


def select_backend(path: str | Path, backend: str = "auto") -> BackendEntry:
    """The table row that would open `path`; raises EngineError saying why none can."""
    path = Path(path)
    if backend != "auto":
        entry = _REGISTRY.get(backend)
        if entry is None:
            raise EngineError(
                f"unknown backend {backend!r}; choose auto or one of {', '.join(_REGISTRY)}"
            )
        if not entry.matches(path):
            raise EngineError(
                f"backend {backend!r} opens {', '.join(entry.suffixes)} files, not {path}; "
                "use --backend auto"
            )
        if not entry.is_available():
            raise EngineError(f"backend {backend!r} is not installed: {entry.install_hint}")
        return entry
    candidates = [entry for entry in _REGISTRY.values() if entry.matches(path)]
    if not candidates:
        raise EngineError(
            f"no backend opens {path}: supported model files are {', '.join(supported_suffixes())} "
            "(or a training run folder with model.keras)"
        )
    for entry in candidates:
        if entry.is_available():
            return entry
    hints = "; ".join(f"{entry.name}: {entry.install_hint}" for entry in candidates)
    raise EngineError(f"no installed backend can open {path}; install one ({hints})")


def open_backend(
    path: str | Path, backend: str = "auto", spec: ModelSpec | None = None, **options: Any
) -> Backend:
    """Open a model file with the backend the registry picks (or the one named).

    Args:
        path: a model file (`.onnx`, `.keras`, ...) or a training run folder.
        backend: "auto" or a registered backend name (see `available_backends()`).
        spec: overrides the spec found with the model.
        **options: backend options, e.g. `threads=2` for onnxruntime.

    Raises:
        EngineError: no such file, no backend for it, unknown option, or the model fails to load.
        SpecError: no spec found, or it does not match the model.
    """
    path = Path(path)
    if not path.exists():
        raise EngineError(f"no model at {path}; check the path")
    entry = select_backend(path, backend)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        known = ", ".join(entry.options) or "none"
        raise EngineError(
            f"backend {entry.name!r} has no option(s) {', '.join(unknown)}; its options: {known}"
        )
    return entry.loader(path, spec=spec, **options)
