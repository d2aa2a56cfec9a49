"""ONNX Runtime backend: runs `.onnx` models (float or INT8 Q/DQ) on CUDA or the CPU.

The spec comes from the model's `edgeseg.spec` metadata (read through ONNX Runtime itself, so
the `onnx` package is not needed on the robot) unless one is passed in. `onnxruntime` is
imported only when a model is opened.

Options:
    threads: intra-op threads (default: ONNX Runtime's choice, one per core).
    spinning: whether idle intra-op threads spin-wait for the next op (ONNX Runtime's
        default). Spinning saves the wake-up per op on an idle CPU; when other processes
        share the cores (camera, navigation, other engineers' jobs) a spinning pool loses its
        turn and waits a whole scheduler slice: on this loaded 2-core machine the INT8
        MobileNetV2-DeepLabV3+ took a median 25 ms spinning and 12 ms without (FP32: 44 and 30).
    optimization: graph optimisation level, "disable" | "basic" | "extended" | "all" (default).
    verify: check a built engine (`model.cpu.onnx` with its manifest beside it) against the
        sha256 its manifest records before loading it (default True; see
        `edgeseg.artifact.manifest.verify_engine`). A model with no manifest is not checked.
    providers: "auto" (CUDA when this ONNX Runtime build has it, else CPU) or a list of
        execution providers, full names or the short "tensorrt", "cuda", "cpu". The TensorRT
        execution provider is opt-in: it rebuilds its engine at every start unless given a
        cache; the dedicated TensorRT backend is the fast path for `.engine` files.
        `backend.providers` says what ONNX Runtime actually uses, which can differ from the
        request when a GPU provider fails to start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.artifact.onnxmeta import invalid_onnx_error, ort_session, spec_from_metadata
from edgeseg.artifact.spec import ONNX_METADATA_KEY, ModelSpec
from edgeseg.errors import EngineError
from edgeseg.runtime.backends import (
    BackendBase,
    check_spec_matches_model,
    chosen_output,
    normalize_shape,
    resolve_spec,
)
from edgeseg.artifact.manifest import verify_engine

logger = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxRuntimeBackend(BackendBase):
    """An open ONNX Runtime session over one model.

    Attributes:
        providers: the execution providers the session really uses, best first.
        output_name: the output `infer` returns: the spec's `output_name` (the head that
            drives), else the model's first output.
    """

    name = "onnxruntime"

    def __init__(self, path: Path, session: Any, spec: ModelSpec) -> None:
        model_input = session.get_inputs()[0]
        super().__init__(path, spec, model_input.name, normalize_shape(model_input.shape))
        self._session = session
        self.output_name = chosen_output(spec, [output.name for output in session.get_outputs()], path)
        self.providers = tuple(session.get_providers())

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the first one in use)."""
        return self.providers[0]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self.output_name], {self.input_name: batch})[0]

    def _release(self) -> None:
        self._session = None


def open_onnxruntime(
    path: str | Path,
    spec: ModelSpec | None = None,
    *,
    threads: int | None = None,
    optimization: str = "all",
    providers: str | Sequence[str] = "auto",
    spinning: bool = True,
    verify: bool = True,
) -> OnnxRuntimeBackend:
    """Open `path` in ONNX Runtime; see the module docstring for the options.

    Raises:
        EngineError: the file is missing, corrupt, not loadable, or an option is invalid.
        SpecError: no spec is embedded or given, or it does not match the model.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"no ONNX model at {path}; check the path")
    if verify:
        verify_engine(path)
    level = _optimization_level(optimization)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise EngineError(f"threads must be a positive integer, got {threads!r}")
    if not isinstance(spinning, bool):
        raise EngineError(f"spinning must be True or False, got {spinning!r}")
    requested = _resolve_providers(providers, ort.get_available_providers())
    try:
        session = ort_session(path, providers=requested, threads=threads, optimization=level, quiet=False,
                              config={"session.intra_op.allow_spinning": "1" if spinning else "0"})
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidArgument) as err:
        raise invalid_onnx_error(path, err) from None
    except (ort_errors.InvalidGraph, ort_errors.NotImplemented, ort_errors.Fail) as err:
        raise EngineError(
            f"ONNX Runtime {ort.__version__} cannot load {path}: {err}; re-export it with "
            "`edgeseg export` (opset 17) or upgrade onnxruntime"
        ) from None
    _check_single_float_input(session, path)
    found = None
    if spec is None:
        found = spec_from_metadata(session.get_modelmeta().custom_metadata_map, path)
    missing = ""
    if spec is None and found is None:  # say exactly which fields the model cannot tell
        from edgeseg.artifact.describe import describe

        missing = (f"it has no {ONNX_METADATA_KEY} metadata and needs " + "; ".join(describe(path).missing)
                   + f"; pass those flags, or write the spec into it once with `edgeseg spec {path.name} "
                   "--classes A,B,... -o OUT.onnx` (or `edgeseg export` for a Keras model)")
    spec = resolve_spec(spec, found, path, missing)
    model_input = session.get_inputs()[0]
    outputs = {output.name: output for output in session.get_outputs()}
    head = outputs[chosen_output(spec, list(outputs), path)]
    check_spec_matches_model(
        spec,
        path,
        model_input.name,
        normalize_shape(model_input.shape),
        normalize_shape(head.shape),
    )
    backend = OnnxRuntimeBackend(path, session, spec)
    if backend.provider != requested[0]:
        logger.warning(
            "%s: asked ONNX Runtime for %s but it runs on %s", path, requested[0], backend.provider
        )
    return backend


def _optimization_level(name: str) -> str:
    if name not in OPTIMIZATION_LEVELS:
        raise EngineError(
            f"unknown optimization level {name!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}"
        )
    return OPTIMIZATION_LEVELS[name]


def _resolve_providers(providers: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Execution provider names to ask for, best first; auto takes CUDA when this build has it."""
    if providers == "auto":
        return [name for name in AUTO_PROVIDERS if name in available]
    if isinstance(providers, str):
        providers = [providers]
    resolved = [PROVIDER_ALIASES.get(name.lower(), name) for name in providers]
    missing = [name for name in resolved if name not in available]
    if missing or not resolved:
        raise EngineError(
            f"execution provider(s) {missing or list(providers)} are not in this onnxruntime build; "
            f"available: {', '.join(available)} (install onnxruntime-gpu for CUDA/TensorRT)"
        )
    return resolved


def _check_single_float_input(session: Any, path: Path) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = [model_input.name for model_input in inputs]
        raise EngineError(
            f"{path} has {len(inputs)} inputs {names}; edgeseg runs models with one image input"
        )
    if inputs[0].type != "tensor(float)":
        raise EngineError(
            f"{path} takes {inputs[0].type} input {inputs[0].name!r}; edgeseg feeds float32 "
            "images: export with a float32 input (quantized models keep a float input)"
        )
