"""Fixtures for the engine tests: tiny ONNX models built with onnx.helper, fakes, and GPU skips.

Tests marked `@pytest.mark.tensorrt` need TensorRT and an NVIDIA GPU; they are skipped here
with the reason, and excluded from the default run by pyproject's `-m 'not slow and not
tensorrt'`. On a Jetson (or a desktop with TensorRT, cuda-python and a GPU):

    python -m pytest -m tensorrt tests/engine

`@pytest.mark.tensorrt(gpu_only=True)` marks tests that need a GPU and the CUDA bindings but
not TensorRT (the CUDA buffer tests).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edgeseg.spec import ModelSpec

_fakes_spec = importlib.util.spec_from_file_location("edgeseg_engine_test_fakes", Path(__file__).with_name("fakes.py"))
fakes = importlib.util.module_from_spec(_fakes_spec)
_fakes_spec.loader.exec_module(fakes)

JETSON_COMMAND = "python -m pytest -m tensorrt tests/engine"
_unavailable: dict[str, str | None] = {}


def _gpu_problem() -> str | None:
    from edgeseg.errors import EngineError
    from edgeseg.runtime.cuda_buffers import find_gpu

    try:
        find_gpu(0)
    except EngineError as err:
        return f"needs an NVIDIA GPU ({err}); run `{JETSON_COMMAND}` on a Jetson"
    return None


def _tensorrt_problem() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as err:
        return f"needs TensorRT ({err}); run `{JETSON_COMMAND}` on a Jetson"
    return _gpu_problem()


@pytest.fixture(autouse=True)
def _skip_without_tensorrt_or_gpu(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("tensorrt")
    if marker is None:
        return
    kind = "gpu" if marker.kwargs.get("gpu_only") else "tensorrt"
    if kind not in _unavailable:
        _unavailable[kind] = _gpu_problem() if kind == "gpu" else _tensorrt_problem()
    if _unavailable[kind]:
        pytest.skip(_unavailable[kind])


# --- tiny models ------------------------------------------------------------------------------

SPEC = ModelSpec(class_names=("red", "green", "blue"), input_height=16, input_width=16,
                 traversable=("green",), model="tiny-conv-resize")


def colour_net_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights under which class k = the dominant colour channel k (big, clear margins)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(scale=0.002, size=(8, 3, 3, 3)).astype(np.float32)
    for k in range(3):
        w1[k, k] += 1.0 / 9.0
    w2 = np.zeros((3, 8, 1, 1), np.float32)
    for k in range(3):
        w2[k, k, 0, 0] = 1.0
    w2[:, 3:, 0, 0] = rng.normal(scale=0.01, size=(3, 5))
    b2 = np.zeros(3, np.float32)
    return w1, w2, b2


def make_tiny_onnx(path: Path, *, batch: int | None = None, size: int | None = 16, opset: int = 17,
                   extra_op: str | None = None, spec: ModelSpec | None = SPEC) -> Path:
    """NHWC image [N,16,16,3] -> Transpose -> Conv s2 -> Relu -> Conv 1x1 -> Resize x2 -> Transpose.

    Args:
        batch: a fixed batch, or None for a dynamic one ("N").
        size: fixed height and width, or None for dynamic ("H", "W").
        extra_op: a custom-domain op inserted before the output (e.g. "FancyOp", a plugin TensorRT lacks).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.onnxmeta import write_spec_metadata

    w1, w2, b2 = colour_net_weights()
    n = batch if batch is not None else "N"
    h, w = (size, size) if size is not None else ("H", "W")
    oh, ow = (size, size) if size is not None else ("OH", "OW")
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="head"),
        helper.make_node("Resize", ["c2", "", "scales"], ["up"], mode="nearest", name="upsample"),
        helper.make_node("Transpose", ["up"], ["logits_pre" if extra_op else "logits"], perm=[0, 2, 3, 1],
                         name="to_nhwc"),
    ]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["logits_pre"], ["logits"], name="fancy", domain="custom.ops"))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, h, w, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, oh, ow, 3])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("custom.ops", 1)])
    model.ir_version = 8
    if spec is not None:
        write_spec_metadata(model, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def colour_frames(count: int, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    """RGB uint8 frames of saturated colour blocks (4x4 pixels each)."""
    rng = np.random.default_rng(seed)
    palette = np.array([[220, 30, 20], [25, 210, 40], [30, 20, 230], [230, 110, 20]], np.uint8)
    frames = []
    for _ in range(count):
        blocks = palette[rng.integers(0, len(palette), size=(size // 4, size // 4))]
        frames.append(np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1))
    return frames


def quantize_with_ort(source: Path, output: Path, quant_format: str) -> Path:
    """A Q/DQ or QOperator model of `source` made directly with ONNX Runtime (no edgeseg.calib)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    frames = colour_frames(4)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": f[None].astype(np.float32)} for f in frames])

        def get_next(self) -> Any:
            return next(self.items, None)

    fmt = QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator
    quantize_static(str(source), str(output), Reader(), quant_format=fmt)
    return output


@dataclass(frozen=True)
class TinyModels:
    folder: Path
    dynamic: Path  # dynamic batch, 16x16
    fixed: Path  # batch 2
    dynamic_hw: Path  # dynamic batch, height and width
    qdq: Path  # Q/DQ INT8 of `dynamic`, made by ONNX Runtime
    qoperator: Path  # QOperator INT8 of `dynamic`
    unsupported: Path  # has a FancyOp node TensorRT cannot parse
    opset18: Path
    no_spec: Path
    calib_dir: Path  # 6 PNG frames


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    import logging

    import cv2

    root = tmp_path_factory.mktemp("engine_models")
    dynamic = make_tiny_onnx(root / "tiny.onnx")
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static warns about pre-processing
    calib_dir = root / "calib"
    calib_dir.mkdir()
    for index, frame in enumerate(colour_frames(6, size=24, seed=3)):
        cv2.imwrite(str(calib_dir / f"frame{index}.png"), frame[..., ::-1])
    return TinyModels(
        folder=root,
        dynamic=dynamic,
        fixed=make_tiny_onnx(root / "fixed.onnx", batch=2),
        dynamic_hw=make_tiny_onnx(root / "dynamic_hw.onnx", size=None),
        qdq=quantize_with_ort(dynamic, root / "tiny.qdq.onnx", "qdq"),
        qoperator=quantize_with_ort(dynamic, root / "tiny.qop.onnx", "qoperator"),
        unsupported=make_tiny_onnx(root / "fancy.onnx", extra_op="FancyOp"),
        opset18=make_tiny_onnx(root / "opset18.onnx", opset=18),
        no_spec=make_tiny_onnx(root / "nospec.onnx", spec=None),
        calib_dir=calib_dir,
    )


@pytest.fixture
def work(tmp_path: Path, tiny: TinyModels) -> Path:
    """A fresh folder with copies of the tiny models (builds write beside their input)."""
    import shutil

    for path in tiny.folder.glob("*.onnx"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


# --- fakes ------------------------------------------------------------------------------------


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A FakeCuda installed as the CUDA bindings edgeseg loads (GPU: Orin, compute 8.7)."""
    from edgeseg.runtime import cuda_buffers

    cuda = fakes.FakeCuda()
    monkeypatch.setattr(cuda_buffers, "load_cuda_api", lambda: cuda)
    return cuda


@pytest.fixture
def install_fake_tensorrt(monkeypatch: pytest.MonkeyPatch, fake_cuda: Any) -> Callable[..., Any]:
    """Install a fake `tensorrt` of a given version in sys.modules (undone after the test)."""

    def install(version: str = "10.3.0.30", **options: Any) -> Any:
        trt = fakes.make_fake_tensorrt(version, cuda=fake_cuda, **options)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


@pytest.fixture
def helpers() -> Any:
    """The model and frame makers of this conftest, and the fakes, for tests that need them directly."""
    import types

    return types.SimpleNamespace(
        spec=SPEC, make_tiny_onnx=make_tiny_onnx, colour_frames=colour_frames,
        fake_engine_output=fakes.fake_engine_output, FakeCuda=fakes.FakeCuda,
        make_fake_tensorrt=fakes.make_fake_tensorrt,
    )
