"""The per-op account and the choice of what stays in float: control flow with fakes, then real runs."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeseg.calib.op_profile import (
    OpAccount,
    by_float_op,
    choose_float_ops,
    float_op_type,
    profile_ops,
    read_account,
)
from edgeseg.calib.quantize import QUANT_METADATA_KEY, calibrate, softmax_and_readers
from edgeseg.calib.readers import ImageFolder
from edgeseg.export.keras_to_onnx import synthetic_frames


def test_int8_kernels_are_accounted_as_the_float_op_they_run():
    assert [float_op_type(op) for op in ("QLinearConv", "QLinearSoftmax", "QuantizeLinear", "FusedConv", "PRelu")] == [
        "Conv", "Softmax", "Quantize/Dequantize", "Conv", "PRelu"]
    assert by_float_op({"QLinearConv": 2.0, "Conv": 1.0, "DequantizeLinear": 0.5}) == {
        "Conv": 3.0, "Quantize/Dequantize": 0.5}


class FakeGraph:
    """A prepared graph as choose_float_ops sees it: nodes with a name and an op type."""

    def __init__(self, nodes):
        self.graph = type("G", (), {"node": [type("N", (), {"name": n, "op_type": t})() for n, t in nodes]})()


def test_choose_float_ops_keeps_in_float_only_what_measures_faster():
    graph = FakeGraph([("c1", "Conv"), ("p1", "PRelu"), ("p2", "PRelu"), ("s", "Softmax"), ("r", "Reshape"),
                       ("h", "Resize")])
    built: list[tuple[str, ...]] = []

    def quantize(extra, name):
        built.append(tuple(extra))
        return Path(name)

    # INT8 costs: a PRelu trial makes the model faster, a Softmax trial does not
    latency = {"int8.onnx": 10.0, "float-PRelu.onnx": 8.0, "float-Softmax.onnx": 8.2, "fp32.onnx": 20.0}

    def timer(paths, sample):
        return {key: latency[path.name] for key, path in paths.items()}

    def profile(path, sample):
        return {"QLinearConv": 5.0, "PRelu": 3.0, "QLinearSoftmax": 1.0, "Reshape": 0.5, "Resize": 0.4}

    timings = []

    def counting_timer(paths, sample):
        timings.append(sorted(path.name for path in paths.values()))
        return timer(paths, sample)

    choice = choose_float_ops(Path("fp32.onnx"), Path("int8.onnx"), quantize, graph, np.zeros(1), {"h": "head"},
                              counting_timer, profile)
    assert timings.count(["float-PRelu.onnx", "int8.onnx"]) == 2  # a kept choice is timed twice
    assert built == [("p1", "p2"), ("p1", "p2", "s")]  # slowest first; never Conv, shape ops or fixed nodes
    assert set(choice.float_nodes) == {"p1", "p2"} and choice.model == Path("float-PRelu.onnx")
    assert [(op, kept) for op, _, _, kept in choice.account.trials] == [("PRelu", True), ("Softmax", False)]
    assert choice.account.float_nodes == {"PRelu": (2, "faster in float"), "Resize": (1, "head")}
    assert choice.account.speedup == pytest.approx(20.0 / 8.0)


def test_an_int8_model_that_is_not_faster_says_so_and_suggests_fp32():
    account = OpAccount({"Conv": 5.0}, {"Conv": 3.0, "Quantize/Dequantize": 3.0}, 10.0, 10.2,
                        {"PRelu": (3, "faster in float")}, [("PRelu", 11.0, 10.2, True)])
    assert not account.pays
    text = "\n".join(account.lines())
    assert "INT8 is NOT faster than FP32" in text and "without --int8" in text
    assert "PRelu node(s) in float: faster in float" in text and "tried PRelu in float" in text
    assert OpAccount.from_dict(json.loads(json.dumps(account.to_dict()))) == account
    assert "1.96x faster" in OpAccount({}, {}, 10.0, 5.1).verdict()


def test_profile_ops_times_each_op_type_in_onnx_runtime(tmp_path: Path, foreign):
    path = foreign.save_foreign_model("attention", 32, 64, tmp_path / "m.onnx")
    spec = foreign.foreign_spec(32, 64)
    from edgeseg.runtime.preprocess import preprocess

    times = profile_ops(path, preprocess(synthetic_frames(32, 64, 1), spec), runs=3)
    assert {"Conv", "Softmax", "MatMul"} <= set(by_float_op(times)) and all(v >= 0 for v in times.values())


def test_calibrating_a_pytorch_like_model_prepares_it_and_stores_the_account(tmp_path: Path, foreign, write_pictures):
    model = foreign.save_foreign_model("attention", 32, 64, tmp_path / "model.onnx")
    frames = tmp_path / "frames"
    write_pictures(frames, np.stack(synthetic_frames(32, 64, 8, seed=3)))
    report = calibrate(model, ImageFolder(frames), num_frames=8, progress=False, warn=lambda message: None)
    assert report.preparation.folded_batchnorms == 8 and report.preparation.relu6_to_clip == 7
    assert report.preparation.agreement == 1.0
    quantized = onnx.load(str(report.output))
    readers = softmax_and_readers(onnx.load(str(model)))  # the Softmax, the Transpose of its weights, the MatMul
    assert len(readers) == 3 and set(readers) <= set(report.excluded_nodes)
    account = read_account(report.output)
    assert account is not None and account == report.account and account.float_latency_ms > 0
    assert "Conv" in account.int8_ms and "FP32" in "\n".join(report.summary().splitlines())
    record = json.loads({p.key: p.value for p in quantized.metadata_props}[QUANT_METADATA_KEY])
    assert record["prepare"]["folded_batchnorms"] == 8
    # build-engine prints it for the INT8 CPU engine, which keeps it; bench repeats the verdict
    from edgeseg.bench import _int8_verdicts, inspect_model
    from edgeseg.engine.build import BuildOptions, build_engine

    lines: list[str] = []
    built = build_engine(BuildOptions(onnx_path=report.output, backend="onnxruntime"), log=lines.append)
    assert account.verdict() in lines and any(line.startswith("  Conv") for line in lines)
    assert read_account(built.output) == account
    assert _int8_verdicts([built.output], [inspect_model(built.output)]) == [
        f"{built.output}: when calibrated, {account.verdict()}"]
