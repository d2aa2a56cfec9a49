"""Fakes of the `tensorrt` module and of the CUDA bindings, for tests of edgeseg's own control flow.

They record which TensorRT API calls edgeseg makes for each TensorRT version, and emulate just
enough behaviour (the ONNX parser reads real ONNX files with `onnx`; the engine "runs" a fixed
function on the bytes edgeseg copied to fake device memory) to check the plumbing. The real
thing is exercised by the `@pytest.mark.tensorrt` tests on a Jetson.

The fake engine computes, for an NHWC input x of C_in channels and an output of C_out
channels: out[..., k] = x[..., k % C_in] * (k + 1)  (see `fake_engine_output`).
"""

from __future__ import annotations

import enum
import importlib.machinery
import json
import types
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.runtime.cuda_buffers import GpuInfo


def fake_engine_output(x: np.ndarray, out_channels: int) -> np.ndarray:
    return np.stack([x[..., k % x.shape[-1]] * (k + 1) for k in range(out_channels)], axis=-1).astype(np.float32)


class FakeCuda:
    """A CudaApi whose 'device memory' is numpy arrays; records every call in `events`."""

    name = "fake-cuda"

    def __init__(self, gpu: GpuInfo | None = GpuInfo("Orin", "8.7")) -> None:
        self.gpu = gpu
        self.memory: dict[int, np.ndarray] = {}
        self.host: dict[int, np.ndarray] = {}
        self.events: list[tuple] = []
        self._next = 0x1000

    def device_count(self) -> int:
        return 0 if self.gpu is None else 1

    def device_info(self, index: int) -> GpuInfo:
        return self.gpu

    def set_device(self, index: int) -> None:
        self.events.append(("set_device", index))

    def malloc_host(self, nbytes: int) -> np.ndarray:
        array = np.zeros(nbytes, np.uint8)
        self.host[id(array)] = array
        self.events.append(("malloc_host", nbytes))
        return array

    def free_host(self, array: np.ndarray) -> None:
        self.host.pop(id(array))
        self.events.append(("free_host", array.nbytes))

    def malloc(self, nbytes: int) -> int:
        pointer, self._next = self._next, self._next + nbytes + 256
        self.memory[pointer] = np.zeros(nbytes, np.uint8)
        self.events.append(("malloc", pointer))
        return pointer

    def free(self, pointer: int) -> None:
        del self.memory[pointer]
        self.events.append(("free", pointer))

    def stream_create(self) -> str:
        self.events.append(("stream_create",))
        return "stream"

    def stream_handle(self, stream: Any) -> int:
        return 77

    def stream_synchronize(self, stream: Any) -> None:
        self.events.append(("synchronize",))

    def stream_destroy(self, stream: Any) -> None:
        self.events.append(("stream_destroy",))

    def copy_to_device_async(self, pointer: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self.memory[pointer][:nbytes] = host[:nbytes]
        self.events.append(("htod", pointer, nbytes))

    def copy_to_host_async(self, host: np.ndarray, pointer: int, nbytes: int, stream: Any) -> None:
        host[:nbytes] = self.memory[pointer][:nbytes]
        self.events.append(("dtoh", pointer, nbytes))


# --- the fake tensorrt module -----------------------------------------------------------------


def make_fake_tensorrt(version: str = "10.3.0.30", dla_cores: int = 0, build_fails: bool = False,
                       cuda: FakeCuda | None = None) -> types.ModuleType:
    """A module that looks like `tensorrt` of `version`; `trt.calls` lists the calls made."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version
    trt.calls = []
    trt.cuda = cuda

    def record(*call: Any) -> None:
        trt.calls.append(call)

    # Enum members and values as in the real bindings of each version (checked by test_trt_conformance.py).
    if major < 10:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0})
    elif major < 11:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    else:  # 11 removed EXPLICIT_BATCH and the precision flags
        trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0})
    precision_flags = {"FP16": 0, "INT8": 1} if major < 11 else {}
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {**precision_flags, "GPU_FALLBACK": 3, "TF32": 7 if major < 10 else 6})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
    qdq = (33, 34) if major < 10 else (32, 33)
    trt.LayerType = enum.IntEnum("LayerType", {"CONVOLUTION": 0, "ACTIVATION": 2, "QUANTIZE": qdq[0], "DEQUANTIZE": qdq[1]})
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    trt.DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1})
    trt.nptype = lambda dtype: {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}[dtype]

    class ILogger:
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})

        def __init__(self) -> None:
            record("ILogger.__init__")

    class Logger(ILogger):
        WARNING = ILogger.Severity.WARNING

        def __init__(self, severity: Any = None) -> None:
            ILogger.__init__(self)

    trt.ILogger, trt.Logger = ILogger, Logger

    if major < 11:
        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                record("IInt8EntropyCalibrator2.__init__")

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    # The classes below are named as in TensorRT; their own state is private (`_x`), so that
    # everything public is checked against the real API by test_trt_conformance.py.
    class ITensor:
        def __init__(self, name: str, shape: list[int]) -> None:
            self.name, self.shape = name, shape

    class ILayer:
        def __init__(self, layer_type: Any) -> None:
            self.type = layer_type

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self._flags = flags
            self._inputs: list[ITensor] = []
            self._outputs: list[ITensor] = []
            self._layers: list[ILayer] = []
            self._source = ""

        num_inputs = property(lambda self: len(self._inputs))
        num_layers = property(lambda self: len(self._layers))

        def get_input(self, index: int) -> ITensor:
            return self._inputs[index]

        def get_layer(self, index: int) -> ILayer:
            return self._layers[index]

    class ParserError:
        def __init__(self, desc: str, node: int, name: str, op: str) -> None:
            self._desc, self._node, self._name, self._op = desc, node, name, op

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

    if major >= 10:
        class ParserError(ParserError):  # node_name / node_operator exist from TensorRT 10
            def node_name(self) -> str:
                return self._name

            def node_operator(self) -> str:
                return self._op

    class OnnxParser:
        _UNSUPPORTED = ("FancyOp", "QLinearConv")

        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            self._network, self._errors = network, []

        def parse_from_file(self, path: str) -> bool:
            """Q/DQ and Conv nodes become those layers; every other node an ACTIVATION layer (edgeseg asks only for Q/DQ)."""
            import onnx

            record("parse_from_file", Path(path).name)
            model = onnx.load(path)
            network = self._network
            network._source = path
            initializers = {init.name for init in model.graph.initializer}

            def dims(value: Any) -> list[int]:
                return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]

            network._inputs = [ITensor(v.name, dims(v)) for v in model.graph.input if v.name not in initializers]
            network._outputs = [ITensor(v.name, dims(v)) for v in model.graph.output]
            kinds = {"QuantizeLinear": trt.LayerType.QUANTIZE, "DequantizeLinear": trt.LayerType.DEQUANTIZE,
                     "Conv": trt.LayerType.CONVOLUTION}
            for index, node in enumerate(model.graph.node):
                if node.op_type in self._UNSUPPORTED:
                    self._errors.append(ParserError(f"No importer registered for op: {node.op_type}", index,
                                                    node.name, node.op_type))
                network._layers.append(ILayer(kinds.get(node.op_type, trt.LayerType.ACTIVATION)))
            return not self._errors

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
            record("profile.set_shape", name, tuple(low), tuple(opt), tuple(high))
            self._shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class ITimingCache:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def serialize(self) -> bytes:
            return self._data + b"+"

    class IBuilderConfig:
        def __init__(self) -> None:
            self._flags: list[str] = []
            self._profiles: list[IOptimizationProfile] = []
            self._timing_cache = None
            self._device_type = trt.DeviceType.GPU
            self._dla_core = -1
            self._calibrator = None

        def set_flag(self, flag: Any) -> None:
            record("set_flag", flag.name)
            self._flags.append(flag.name)

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            record("set_memory_pool_limit", pool.name, size)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            record("add_optimization_profile")
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, data: bytes) -> ITimingCache:
            record("create_timing_cache", bytes(data))
            return ITimingCache(bytes(data))

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            record("set_timing_cache", ignore_mismatch)
            self._timing_cache = cache
            return not cache._data.startswith(b"foreign")

        def get_timing_cache(self) -> ITimingCache:
            return self._timing_cache

        @property
        def default_device_type(self) -> Any:
            return self._device_type

        @default_device_type.setter
        def default_device_type(self, value: Any) -> None:
            record("default_device_type", value.name)
            self._device_type = value

        @property
        def DLA_core(self) -> int:  # noqa: N802 - TensorRT's name
            return self._dla_core

        @DLA_core.setter
        def DLA_core(self, value: int) -> None:  # noqa: N802
            record("DLA_core", value)
            self._dla_core = value

        if major < 11:
            @property
            def int8_calibrator(self) -> Any:
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator: Any) -> None:
                record("int8_calibrator", calibrator.read_calibration_cache(), calibrator.get_batch(["x"]))
                self._calibrator = calibrator

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger: Any) -> None:
            record("Builder")

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            record("create_network", flags)
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
            record("build_serialized_network", Path(network._source).name)
            if build_fails:
                return None
            net_in = network._inputs[0]
            profile = config._profiles[0]._shapes[net_in.name] if config._profiles else (tuple(net_in.shape),) * 3
            return json.dumps({
                "fake_engine": version, "flags": config._flags, "source": Path(network._source).name,
                "input": [net_in.name, net_in.shape], "profile": profile,
                "outputs": [[o.name, o.shape] for o in network._outputs],
            }).encode()

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self._engine = engine
            self._shapes = {engine._input_name: tuple(engine._profile[1])}
            self._addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            record("set_input_shape", name, tuple(shape))
            low, _, high = self._engine._profile
            if not all(a <= d <= b for d, a, b in zip(shape, low, high)):
                return False
            self._shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            if name == self._engine._input_name:
                return self._shapes[name]
            dims = list(self._engine._dims[name])
            batch = self._shapes[self._engine._input_name][0]
            return tuple(batch if d < 0 else d for d in dims)

        def set_tensor_address(self, name: str, pointer: int) -> bool:
            record("set_tensor_address", name, pointer)
            self._addresses[name] = pointer
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            record("execute_async_v3", stream_handle)
            memory = trt.cuda.memory
            shape = self._shapes[self._engine._input_name]
            count = int(np.prod(shape))
            x = memory[self._addresses[self._engine._input_name]][: count * 4].view(np.float32).reshape(shape)
            for name in self._engine._output_names:
                out_shape = self.get_tensor_shape(name)
                y = fake_engine_output(x, out_shape[-1])
                memory[self._addresses[name]][: y.nbytes] = y.reshape(-1).view(np.uint8)
            return True

    class ICudaEngine:
        def __init__(self, data: dict) -> None:
            self._input_name, input_dims = data["input"]
            self._dims = {self._input_name: input_dims, **{name: dims for name, dims in data["outputs"]}}
            self._output_names = [name for name, _ in data["outputs"]]
            self._profile = [tuple(shape) for shape in data["profile"]]

        num_io_tensors = property(lambda self: 1 + len(self._output_names))

        def get_tensor_name(self, index: int) -> str:
            return [self._input_name, *self._output_names][index]

        def get_tensor_mode(self, name: str) -> Any:
            return trt.TensorIOMode.INPUT if name == self._input_name else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> list[int]:
            return list(self._dims[name])

        def get_tensor_dtype(self, name: str) -> Any:
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple]:
            return list(self._profile)

        def create_execution_context(self) -> IExecutionContext:
            record("create_execution_context")
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            record("Runtime")

        def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
            try:
                parsed = json.loads(data)
            except ValueError:
                return None
            return ICudaEngine(parsed) if parsed.get("fake_engine") == version else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    classes = [trt.NetworkDefinitionCreationFlag, trt.BuilderFlag, trt.MemoryPoolType, trt.DeviceType, trt.LayerType,
               trt.TensorIOMode, trt.DataType, ILogger, Logger, ITensor, ILayer, INetworkDefinition, ParserError,
               OnnxParser, IOptimizationProfile, ITimingCache, IBuilderConfig, Builder, IExecutionContext, ICudaEngine,
               Runtime, *([trt.IInt8EntropyCalibrator2] if major < 11 else [])]
    # every class the fake hands out, by its real name, for test_trt_conformance.py
    trt._fake_classes = {"ILogger.Severity": ILogger.Severity, **{cls.__name__: cls for cls in classes}}
    return trt
