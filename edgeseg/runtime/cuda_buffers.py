"""Host and device memory on an NVIDIA GPU, for the TensorRT backend (usable without TensorRT).

Three small owners of CUDA resources, each freed by `close()` (idempotent):

* `CudaStream`: one CUDA stream; copies and inference are queued on it, `synchronize()` waits.
* `PinnedBuffer`: page-locked host memory (`cudaMallocHost`) seen as a numpy array, so
  host-to-device copies can run asynchronously.
* `DeviceBuffer`: GPU memory (`cudaMalloc`) with async copies from and to a `PinnedBuffer`.

They talk to CUDA through a `CudaApi`, found by `load_cuda_api()`:

1. cuda-python's runtime bindings: `from cuda.bindings import runtime` (cuda-python 12.6+ and
   13.x, where the old path is gone), else the legacy `from cuda import cudart` (older 12.x);
2. pycuda (older JetPacks ship it), through the device's primary context, the one the CUDA
   runtime and TensorRT use.

Nothing CUDA is imported until `load_cuda_api()` runs, and no context is created at import
time (no `pycuda.autoinit`).
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

import numpy as np

from edgeseg.artifact.manifest import GpuInfo  # noqa: F401  (re-exported: the GPU type lives with the manifest)
from edgeseg.errors import EngineError

CUDA_INSTALL_HINT = (
    "pip install cuda-python (match your CUDA major version, e.g. 'cuda-python>=12,<13' for CUDA 12); "
    "pycuda works too"
)


class CudaError(EngineError):
    """A CUDA call failed (no GPU, no driver, out of memory, ...)."""


class CudaApi(Protocol):
    """The few CUDA runtime calls edgeseg needs; host memory is handed out as numpy arrays."""

    name: str

    def device_count(self) -> int: ...

    def device_info(self, index: int) -> GpuInfo: ...

    def set_device(self, index: int) -> None: ...

    def malloc_host(self, nbytes: int) -> np.ndarray: ...

    def free_host(self, array: np.ndarray) -> None: ...

    def malloc(self, nbytes: int) -> int: ...

    def free(self, pointer: int) -> None: ...

    def stream_create(self) -> Any: ...

    def stream_handle(self, stream: Any) -> int: ...

    def stream_synchronize(self, stream: Any) -> None: ...

    def stream_destroy(self, stream: Any) -> None: ...

    def copy_to_device_async(self, pointer: int, host: np.ndarray, nbytes: int, stream: Any) -> None: ...

    def copy_to_host_async(self, host: np.ndarray, pointer: int, nbytes: int, stream: Any) -> None: ...


# --- cuda-python ------------------------------------------------------------------------------


class CudaPythonApi:
    """`CudaApi` over cuda-python's runtime module (`cuda.bindings.runtime` or `cuda.cudart`).

    Every call returns a tuple whose first item is a `cudaError_t`; `_check` turns a failure
    into a CudaError naming the call.
    """

    name = "cuda-python"

    def __init__(self, cudart: Any) -> None:
        self._rt = cudart

    def _check(self, result: Any, call: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            _, text = self._rt.cudaGetErrorString(err)
            text = text.decode() if isinstance(text, bytes) else str(text)
            raise CudaError(f"CUDA {call} failed: {getattr(err, 'name', err)}: {text}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def device_count(self) -> int:
        return int(self._check(self._rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))

    def device_info(self, index: int) -> GpuInfo:
        props = self._check(self._rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = props.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return GpuInfo(str(name).strip(), f"{props.major}.{props.minor}", index)

    def set_device(self, index: int) -> None:
        self._check(self._rt.cudaSetDevice(index), "cudaSetDevice")

    def malloc_host(self, nbytes: int) -> np.ndarray:
        pointer = int(self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer))

    def free_host(self, array: np.ndarray) -> None:
        self._check(self._rt.cudaFreeHost(array.ctypes.data), "cudaFreeHost")

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self._rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, pointer: int) -> None:
        self._check(self._rt.cudaFree(pointer), "cudaFree")

    def stream_create(self) -> Any:
        return self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        self._check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def copy_to_device_async(self, pointer: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(pointer, host.ctypes.data, nbytes, kind, stream), "cudaMemcpyAsync")

    def copy_to_host_async(self, host: np.ndarray, pointer: int, nbytes: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(host.ctypes.data, pointer, nbytes, kind, stream), "cudaMemcpyAsync")


# --- pycuda -----------------------------------------------------------------------------------


class PyCudaApi:
    """`CudaApi` over pycuda's driver module, in the device's primary context.

    The primary context is the one the CUDA runtime (and so TensorRT) uses, so memory
    allocated here is valid for TensorRT. `set_device` pushes it; `close` pops it.
    """

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self._cuda = driver
        self._context: Any = None
        self._allocations: dict[int, Any] = {}
        try:
            driver.init()
        except driver.Error as err:
            raise CudaError(f"pycuda cannot initialise CUDA: {err}") from None

    def device_count(self) -> int:
        return int(self._cuda.Device.count())

    def device_info(self, index: int) -> GpuInfo:
        device = self._cuda.Device(index)
        major, minor = device.compute_capability()
        return GpuInfo(str(device.name()).strip(), f"{major}.{minor}", index)

    def set_device(self, index: int) -> None:
        if self._context is None:
            self._context = self._cuda.Device(index).retain_primary_context()
            self._context.push()

    def close(self) -> None:
        if self._context is not None:
            self._context.pop()
            self._context = None

    def malloc_host(self, nbytes: int) -> np.ndarray:
        return self._cuda.pagelocked_empty(nbytes, np.uint8)

    def free_host(self, array: np.ndarray) -> None:
        base = array.base
        if base is not None and hasattr(base, "free"):
            base.free()

    def malloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def stream_create(self) -> Any:
        return self._cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        """pycuda destroys a stream when its object is collected; nothing to call."""

    def copy_to_device_async(self, pointer: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self._cuda.memcpy_htod_async(pointer, host[:nbytes], stream)

    def copy_to_host_async(self, host: np.ndarray, pointer: int, nbytes: int, stream: Any) -> None:
        self._cuda.memcpy_dtoh_async(host[:nbytes], pointer, stream)


def load_cuda_api() -> CudaApi:
    """The installed CUDA bindings: cuda-python (new, then legacy import path), else pycuda.

    Raises:
        EngineError: none of them is installed (says what to install).
    """
    try:
        from cuda.bindings import runtime as cudart  # cuda-python 12.6+ and 13.x
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 12.x before cuda.bindings
        except ImportError:
            cudart = None
    if cudart is not None:
        return CudaPythonApi(cudart)
    try:
        import pycuda.driver as driver
    except ImportError:
        raise EngineError(f"neither cuda-python nor pycuda is installed: {CUDA_INSTALL_HINT}") from None
    return PyCudaApi(driver)


def find_gpu(device: int = 0, api: CudaApi | None = None) -> GpuInfo:
    """The GPU at CUDA index `device`.

    Raises:
        EngineError: no CUDA bindings, no driver, no GPU, or no device with that index.
    """
    api = api if api is not None else load_cuda_api()
    try:
        count = api.device_count()
    except CudaError as err:
        raise CudaError(f"no usable NVIDIA GPU: {err}") from None
    if count == 0:
        raise CudaError("no NVIDIA GPU found (CUDA reports 0 devices)")
    if not 0 <= device < count:
        raise CudaError(f"GPU {device} does not exist: CUDA reports {count} device(s), 0..{count - 1}")
    return api.device_info(device)


# --- resource owners --------------------------------------------------------------------------


class CudaStream:
    """One CUDA stream. `handle` is the integer TensorRT's `execute_async_v3` takes."""

    def __init__(self, api: CudaApi) -> None:
        self._api = api
        self._stream = api.stream_create()
        self.handle = api.stream_handle(self._stream)

    @property
    def raw(self) -> Any:
        """The bindings' own stream object, for copies."""
        return self._stream

    def synchronize(self) -> None:
        self._api.stream_synchronize(self._stream)

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._api.stream_destroy(stream)


class PinnedBuffer:
    """Page-locked host memory of `nbytes` bytes, as a flat uint8 numpy array (`array`)."""

    def __init__(self, api: CudaApi, nbytes: int) -> None:
        self._api = api
        self.nbytes = int(nbytes)
        self.array: np.ndarray | None = api.malloc_host(max(self.nbytes, 1))

    def view(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The first bytes of the buffer as an array of `dtype` and `shape` (no copy)."""
        if self.array is None:
            raise EngineError("this pinned buffer is closed")
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.nbytes:
            raise ValueError(f"{count} x {dtype} does not fit in a pinned buffer of {self.nbytes} bytes")
        return self.array[: count * dtype.itemsize].view(dtype).reshape(shape)

    def close(self) -> None:
        if self.array is not None:
            array, self.array = self.array, None
            self._api.free_host(array)


class DeviceBuffer:
    """GPU memory of `nbytes` bytes; `pointer` is its device address."""

    def __init__(self, api: CudaApi, nbytes: int) -> None:
        self._api = api
        self.nbytes = int(nbytes)
        self.pointer: int | None = api.malloc(max(self.nbytes, 1))

    def _checked(self, host: PinnedBuffer, nbytes: int) -> int:
        if self.pointer is None or host.array is None:
            raise EngineError("copy between closed CUDA buffers")
        if nbytes > min(self.nbytes, host.nbytes):
            raise ValueError(f"copy of {nbytes} bytes exceeds a buffer ({self.nbytes} / {host.nbytes} bytes)")
        return self.pointer

    def copy_from_host_async(self, host: PinnedBuffer, nbytes: int, stream: CudaStream) -> None:
        """Queue a copy of the first `nbytes` of `host` into this buffer on `stream`."""
        pointer = self._checked(host, nbytes)
        self._api.copy_to_device_async(pointer, host.array, nbytes, stream.raw)

    def copy_to_host_async(self, host: PinnedBuffer, nbytes: int, stream: CudaStream) -> None:
        """Queue a copy of the first `nbytes` of this buffer into `host` on `stream`."""
        pointer = self._checked(host, nbytes)
        self._api.copy_to_host_async(host.array, pointer, nbytes, stream.raw)

    def close(self) -> None:
        if self.pointer is not None:
            pointer, self.pointer = self.pointer, None
            self._api.free(pointer)
