"""edgeseg's CUDA buffers against the real cuda-python runtime bindings (CUDA 12 and 13).

cuda-python's bindings import without a GPU or driver; every call then returns a real CUDA
error. So here, with no GPU, this checks that `load_cuda_api` picks cuda-python, that every
`cudart` name `CudaPythonApi` uses exists in both major versions, and that a machine without a
usable GPU gets a clear CudaError naming the CUDA error (not a crash in our own unpacking). On
a machine with a GPU the same test runs the buffers for real: pinned and device memory, copies
both ways on one stream, and memory returned after 1,000 open/close cycles.

The bindings are downloaded (and cached) by tools/trt_stubs.py; without network this skips.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_tool_spec = importlib.util.spec_from_file_location("edgeseg_trt_stubs", ROOT / "tools" / "trt_stubs.py")
trt_stubs = sys.modules.setdefault("edgeseg_trt_stubs", importlib.util.module_from_spec(_tool_spec))
_tool_spec.loader.exec_module(trt_stubs)

CHILD = r'''
import ast, json
import numpy as np
from cuda.bindings import runtime
from edgeseg.runtime import cuda_buffers as cb

def chains(node):
    """'self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice' -> ['cudaMemcpyKind', 'cudaMemcpyHostToDevice']"""
    names = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    return names

tree = ast.parse(open(cb.__file__).read())
used = set()
for node in ast.walk(tree):
    names = chains(node)
    if len(names) > 1 and names[0] == "_rt":  # self._rt.NAME[.MEMBER]
        used.add(".".join(names[1:]))
missing = []
for name in sorted(n for n in used if n):
    target = runtime
    for part in name.split("."):
        if not hasattr(target, part):
            missing.append(name)
            break
        target = getattr(target, part)

api = cb.load_cuda_api()
result = {"api": type(api).__name__, "used": sorted(used), "missing": missing}
try:
    gpu = cb.find_gpu(0, api)
except cb.CudaError as err:
    result["error"] = str(err)
else:
    result["gpu"] = gpu.describe()
    api.set_device(0)
    def free_bytes():
        return api._check(runtime.cudaMemGetInfo(), "cudaMemGetInfo")[0]
    stream = cb.CudaStream(api)
    data = np.arange(1 << 16, dtype=np.float32)
    before = free_bytes()
    for _ in range(1000):
        host, back = cb.PinnedBuffer(api, data.nbytes), cb.PinnedBuffer(api, data.nbytes)
        device = cb.DeviceBuffer(api, data.nbytes)
        host.view(np.float32, data.shape)[:] = data
        device.copy_from_host_async(host, data.nbytes, stream)
        device.copy_to_host_async(back, data.nbytes, stream)
        stream.synchronize()
        assert np.array_equal(back.view(np.float32, data.shape), data)
        for buffer in (device, host, back):
            buffer.close()
    stream.close()
    result["leaked_bytes"] = before - free_bytes()
print(json.dumps(result))
'''


@pytest.mark.parametrize("cuda", list(trt_stubs.CUDA_WHEELS))
def test_cuda_buffers_against_real_cuda_python(cuda):
    try:
        site = trt_stubs.prepare_cuda(cuda)
    except trt_stubs.StubsUnavailable as err:
        pytest.skip(f"cuda-python for CUDA {cuda} unavailable: {err} (see tools/trt_stubs.py)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["api"] == "CudaPythonApi", "load_cuda_api must pick cuda.bindings.runtime"
    assert {"cudaMalloc", "cudaMemcpyAsync", "cudaMemcpyKind.cudaMemcpyHostToDevice",
            "cudaError_t.cudaSuccess", "cudaGetDeviceProperties"} <= set(result["used"])
    assert result["missing"] == [], f"cuda-python for CUDA {cuda} lacks {result['missing']}"
    if "error" in result:  # no GPU or no driver here: a clear error naming CUDA's own
        assert result["error"].startswith("no usable NVIDIA GPU: CUDA cudaGetDeviceCount failed: cudaError")
    else:
        assert result["leaked_bytes"] < 4 << 20, f"{result['leaked_bytes']} bytes of GPU memory not returned"
