"""TensorRT backend: runs `.engine` / `.plan` files built by `edgeseg build-engine`.

Opening an engine first reads its manifest (`model.engine.json`) and compares it with the
installed TensorRT and the GPU: an engine from another TensorRT version or GPU architecture is
refused with the command that rebuilds it, before TensorRT sees the file. The spec comes from
the manifest unless one is passed in.

Inference uses one CUDA stream, page-locked host buffers and device buffers sized for the
largest shape of the engine's profile: input copied host-to-device asynchronously,
`execute_async_v3`, outputs copied back, one stream synchronisation. A dynamic batch is set
per call with `set_input_shape`. `close()` releases everything in reverse order of creation.

`tensorrt` and the CUDA bindings (cuda-python, else pycuda) are imported only when an engine
is opened.

Options:
    device: CUDA device index (default 0).
    verify: check the engine's sha256 and its spec's against the manifest before loading
        (default True; `edgeseg.artifact.manifest.verify_engine`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifact.formats import TENSORRT_INSTALL_HINT
from edgeseg.artifact.manifest import EngineManifest, check_manifest, read_manifest, verify_engine
from edgeseg.artifact.spec import ModelSpec
from edgeseg.errors import EngineError
from edgeseg.runtime import cuda_buffers
from edgeseg.runtime.backends import (
    BackendBase,
    check_spec_matches_model,
    chosen_output,
    normalize_shape,
    resolve_spec,
)
from edgeseg.runtime.cuda_buffers import CudaStream, DeviceBuffer, PinnedBuffer

logger = logging.getLogger(__name__)


@dataclass
class _Tensor:
    """One engine I/O tensor and its buffers (sized for the profile's largest shape)."""

    name: str
    dtype: np.dtype
    host: PinnedBuffer
    device: DeviceBuffer


class TensorRTBackend(BackendBase):
    """An open TensorRT engine with its execution context, stream and buffers.

    Attributes:
        manifest: how the engine was built.
        output_name: the output `infer` returns: the spec's head (`output_name`), else the
            engine's first output (engines are built from a graph pruned to that head).
        batch_range: (smallest, largest) batch the engine's profile accepts.
    """

    name = "tensorrt"

    def __init__(self, path: Path, spec: ModelSpec, manifest: EngineManifest, trt: Any, engine: Any,
                 resources: contextlib.ExitStack, cuda: Any) -> None:
        self._resources = resources
        self.manifest = manifest
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise EngineError(f"{path} has inputs {inputs} and outputs {outputs}; edgeseg engines take one image input")
        input_name = inputs[0]
        dims = tuple(int(d) for d in engine.get_tensor_shape(input_name))
        super().__init__(path, spec, input_name, normalize_shape(dims))
        if any(d < 0 for d in dims):
            low, _, high = engine.get_tensor_profile_shape(input_name, 0)
            self._min_shape, self._max_shape = tuple(int(d) for d in low), tuple(int(d) for d in high)
        else:
            self._min_shape = self._max_shape = dims
        self.batch_range = (self._min_shape[0], self._max_shape[0])
        self.output_name = chosen_output(spec, outputs, path)

        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
        resources.callback(self._drop_context)
        self._set_shape(self._max_shape)
        max_shapes = {input_name: self._max_shape}
        max_shapes.update({name: tuple(int(d) for d in self._context.get_tensor_shape(name)) for name in outputs})
        self._stream = CudaStream(cuda)
        resources.callback(self._stream.close)
        self._tensors: dict[str, _Tensor] = {}
        for tensor_name in [input_name, *outputs]:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(tensor_name)))
            nbytes = int(np.prod(max_shapes[tensor_name], dtype=np.int64)) * dtype.itemsize
            host = PinnedBuffer(cuda, nbytes)
            resources.callback(host.close)
            buffer = DeviceBuffer(cuda, nbytes)
            resources.callback(buffer.close)
            self._tensors[tensor_name] = _Tensor(tensor_name, dtype, host, buffer)
            if not self._context.set_tensor_address(tensor_name, buffer.pointer):
                raise EngineError(f"TensorRT refused the device buffer of {tensor_name!r} in {path}")
        if self._tensors[input_name].dtype != np.float32:
            raise EngineError(
                f"{path} takes {self._tensors[input_name].dtype} input; edgeseg feeds float32 images: "
                f"rebuild it from a model with a float32 input: {manifest.build_command}"
            )
        output_dims = tuple(int(d) for d in engine.get_tensor_shape(self.output_name))
        check_spec_matches_model(spec, path, input_name, self.input_shape, normalize_shape(output_dims))

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(self.input_name, shape):
            raise EngineError(f"TensorRT rejected input shape {list(shape)} for {self.path}")
        self._shape = shape

    def _check_profile(self, shape: tuple[int, ...]) -> None:
        if all(low <= d <= high for d, low, high in zip(shape, self._min_shape, self._max_shape)):
            return
        low, high = self.batch_range
        raise EngineError(
            f"{self.path} was built for input shapes {list(self._min_shape)} to {list(self._max_shape)} "
            f"(batch {low}..{high}), got {list(shape)}; rebuild it with e.g. --batch 1,{shape[0]},{shape[0]}: "
            f"{self.manifest.build_command}"
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        shape = tuple(batch.shape)
        self._check_profile(shape)
        if shape != self._shape:
            self._set_shape(shape)
        source = self._tensors[self.input_name]
        np.copyto(source.host.view(np.float32, shape), batch)
        source.device.copy_from_host_async(source.host, batch.nbytes, self._stream)
        if not self._context.execute_async_v3(self._stream.handle):
            raise EngineError(f"TensorRT failed to run {self.path} (see the TensorRT log)")
        result = self._tensors[self.output_name]
        out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self.output_name))
        nbytes = int(np.prod(out_shape, dtype=np.int64)) * result.dtype.itemsize
        result.device.copy_to_host_async(result.host, nbytes, self._stream)
        self._stream.synchronize()
        return result.host.view(result.dtype, out_shape).astype(np.float32, copy=True)

    def _drop_context(self) -> None:
        self._context = None

    def _release(self) -> None:
        self._resources.close()  # buffers, stream, context, engine and runtime: reverse order
        self._tensors = {}


def import_tensorrt() -> Any:
    """`import tensorrt`, or an EngineError saying how to install it (JetPack and desktop)."""
    try:
        import tensorrt
    except ImportError as err:
        raise EngineError(f"TensorRT is not installed ({err}); {TENSORRT_INSTALL_HINT}") from None
    return tensorrt


def open_tensorrt(path: str | Path, spec: ModelSpec | None = None, *, device: int = 0,
                  verify: bool = True) -> TensorRTBackend:
    """Open an engine built by `edgeseg build-engine`.

    Raises:
        EngineError: TensorRT or the CUDA bindings are missing, the manifest is missing or does
            not match this TensorRT / GPU (the message has the rebuild command), or the engine
            does not load.
        SpecError: the spec does not match the engine.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"no engine at {path}; build one with `edgeseg build-engine model.onnx`")
    manifest = read_manifest(path)
    if verify:
        verify_engine(path)
    trt = import_tensorrt()
    cuda = cuda_buffers.load_cuda_api()
    gpu = cuda_buffers.find_gpu(device, cuda)
    for warning in check_manifest(manifest, path, str(trt.__version__), gpu):
        logger.warning(warning)
    spec = resolve_spec(spec, manifest.spec, path, "its manifest has none; rebuild it with `edgeseg build-engine`")

    resources = contextlib.ExitStack()
    try:
        cuda.set_device(device)
        if hasattr(cuda, "close"):
            resources.callback(cuda.close)
        trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(trt_logger)
        holder = {"runtime": runtime}
        resources.callback(holder.clear)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineError(
                f"TensorRT {trt.__version__} could not load {path} (damaged, or built by another TensorRT "
                f"build); rebuild it on this device: {manifest.build_command}"
            )
        holder["engine"] = engine
        return TensorRTBackend(path, spec, manifest, trt, engine, resources, cuda)
    except BaseException:
        resources.close()
        raise
