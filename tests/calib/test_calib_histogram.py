"""Histogram calibration of tensors ONNX Runtime's collector cannot bin (edgeseg.calib.histogram)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.calib.histogram import SafeHistogramCollector
from tests.fixtures_onnx import denormal_float32


def collector(method: str = "percentile") -> SafeHistogramCollector:
    bins = 2048 if method == "percentile" else 128
    return SafeHistogramCollector(method=method, symmetric=False, num_bins=bins, num_quantized_bins=128,
                                  percentile=99.999, scenario="same")


# ONNX Runtime's own collector on denormal activations, in a process with IEEE denormals (no
# edgeseg session: this test process computes them as zero, see tests/conftest.py)
CRASH = """
import numpy as np
from onnxruntime.quantization.calibrate import HistogramCollector

tensor = np.full((1, 4, 8, 8), 0x116C2, np.uint32).view(np.float32)  # 1e-40, by its bits
HistogramCollector("percentile", False, 2048, 128, 99.999, "same").collect({"denormal": [tensor]})
"""


def ieee_process(script: str) -> str:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return done.stderr


def test_the_tensors_that_crash_onnx_runtime_get_their_min_max_and_the_rest_their_method():
    rng = np.random.default_rng(0)
    tensors = {
        "normal": [rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)],
        "zero": [np.zeros((1, 4, 8, 8), np.float32)],
        "constant": [np.full((1, 4, 8, 8), 3.5, np.float32)],
        "denormal": [denormal_float32((1, 4, 8, 8))],
        "infinite": [np.array([[1.0, np.inf, -2.0]], np.float32)],
    }
    assert "Too many bins for data range" in ieee_process(CRASH)  # what edgeseg met

    safe = collector()
    safe.collect(tensors)
    assert sorted(safe.degenerate) == ["constant", "denormal", "infinite", "zero"]
    result = safe.compute_collection_result()
    assert set(result) == set(tensors)
    assert tuple(float(v) for v in result["constant"].range_value) == (3.5, 3.5)
    assert tuple(float(v) for v in result["infinite"].range_value) == (-2.0, 1.0)  # the finite extremes
    low, high = (float(v) for v in result["normal"][:2])
    assert -5 < low < 0 < high < 5  # the percentile range, from the histogram


def test_a_range_that_explodes_between_chunks_falls_back_with_both_chunks_extremes():
    safe = collector("entropy")
    safe.collect({"t": [np.linspace(-1e-3, 1e-3, 64, dtype=np.float32)]})
    assert "t" in safe.histogram_dict
    safe.collect({"t": [np.linspace(-1e4, 2e4, 64, dtype=np.float32)]})  # ORT would add ~1e9 bins
    assert safe.degenerate == {"t": (-1e4, 2e4)} and "t" not in safe.histogram_dict
    safe.collect({"t": [np.linspace(-5.0, 5.0, 64, dtype=np.float32)]})
    assert safe.degenerate["t"] == (-1e4, 2e4)
