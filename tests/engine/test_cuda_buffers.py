"""CUDA host/device buffers: the adaptor logic here, real GPU copies where a GPU exists."""

from __future__ import annotations

import enum
import sys
import types

import numpy as np
import pytest

from edgeseg.errors import EngineError
from edgeseg.runtime import cuda_buffers
from edgeseg.runtime.cuda_buffers import CudaError, CudaPythonApi, CudaStream, DeviceBuffer, GpuInfo, PinnedBuffer


def test_buffers_copy_through_device_memory_and_close_once(helpers):
    cuda = helpers.FakeCuda()
    stream, host, device, back = CudaStream(cuda), PinnedBuffer(cuda, 64), DeviceBuffer(cuda, 64), PinnedBuffer(cuda, 64)
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    host.view(np.float32, (3, 4))[:] = data
    device.copy_from_host_async(host, data.nbytes, stream)
    device.copy_to_host_async(back, data.nbytes, stream)
    stream.synchronize()
    np.testing.assert_array_equal(back.view(np.float32, (3, 4)), data)
    with pytest.raises(ValueError, match="does not fit in a pinned buffer of 64 bytes"):
        host.view(np.float32, (5, 4))
    with pytest.raises(ValueError, match="copy of 65 bytes exceeds a buffer"):
        device.copy_from_host_async(host, 65, stream)
    for resource in (back, device, host, stream):
        resource.close()
        resource.close()
    assert cuda.memory == {} and cuda.host == {}
    assert [e[0] for e in cuda.events].count("stream_destroy") == 1
    with pytest.raises(EngineError, match="closed"):
        host.view(np.uint8, (1,))


def test_find_gpu_reports_why_there_is_none(helpers):
    assert cuda_buffers.find_gpu(0, helpers.FakeCuda()) == GpuInfo("Orin", "8.7")
    with pytest.raises(CudaError, match=r"no NVIDIA GPU found \(CUDA reports 0 devices\)"):
        cuda_buffers.find_gpu(0, helpers.FakeCuda(gpu=None))
    with pytest.raises(CudaError, match=r"GPU 3 does not exist: CUDA reports 1 device\(s\), 0\.\.0"):
        cuda_buffers.find_gpu(3, helpers.FakeCuda())


def test_missing_cuda_bindings_say_what_to_install(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EngineError, match=r"neither cuda-python nor pycuda is installed: pip install cuda-python"):
        cuda_buffers.load_cuda_api()


def fake_cudart(count_error: bool = False) -> types.SimpleNamespace:
    """The shape of cuda-python's runtime module: (cudaError_t, value...) tuples."""
    errors = enum.IntEnum("cudaError_t", {"cudaSuccess": 0, "cudaErrorNoDevice": 100})
    props = types.SimpleNamespace(name=b"Orin\x00\x00\x00", major=8, minor=7)
    return types.SimpleNamespace(
        cudaError_t=errors,
        cudaGetErrorString=lambda err: (errors.cudaSuccess, b"no CUDA-capable device is detected"),
        cudaGetDeviceCount=lambda: (errors.cudaErrorNoDevice, 0) if count_error else (errors.cudaSuccess, 1),
        cudaGetDeviceProperties=lambda index: (errors.cudaSuccess, props),
        cudaSetDevice=lambda index: (errors.cudaSuccess,),
    )


def test_cuda_python_adaptor_decodes_results_and_errors():
    api = CudaPythonApi(fake_cudart())
    assert api.device_count() == 1
    assert api.device_info(0) == GpuInfo("Orin", "8.7")
    assert api.set_device(0) is None
    broken = CudaPythonApi(fake_cudart(count_error=True))
    with pytest.raises(CudaError, match=r"no usable NVIDIA GPU: CUDA cudaGetDeviceCount failed: cudaErrorNoDevice: "
                                        r"no CUDA-capable device is detected"):
        cuda_buffers.find_gpu(0, broken)


@pytest.mark.tensorrt(gpu_only=True)
def test_real_gpu_round_trip():
    api = cuda_buffers.load_cuda_api()
    gpu = cuda_buffers.find_gpu(0, api)
    assert gpu.name and "." in gpu.compute_capability
    api.set_device(0)
    stream, host, device, back = CudaStream(api), PinnedBuffer(api, 1 << 16), DeviceBuffer(api, 1 << 16), PinnedBuffer(api, 1 << 16)
    try:
        data = np.random.default_rng(0).normal(size=(128, 128)).astype(np.float32)
        host.view(np.float32, data.shape)[:] = data
        device.copy_from_host_async(host, data.nbytes, stream)
        device.copy_to_host_async(back, data.nbytes, stream)
        stream.synchronize()
        np.testing.assert_array_equal(back.view(np.float32, data.shape), data)
    finally:
        for resource in (back, device, host, stream):
            resource.close()
            resource.close()
