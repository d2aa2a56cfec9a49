"""Histogram calibration that never crashes on a constant, all-zero or tiny tensor.

ONNX Runtime's histogram calibrators (entropy, percentile) bin every tensor over
[-t, t] with t = max(|min|, |max|). Real models have tensors that break this:

* all values equal (a constant branch, a masked feature, a ReLU that never fires): the
  histogram has one filled bin, and the percentile or entropy "range" is meaningless;
* t so small (denormal float32, e.g. 1e-40) that 2048 bins are not representable: numpy
  raises `ValueError: Too many bins for data range. Cannot create 2048 finite-sized bins`
  (seen on a real PyTorch-exported road model with the percentile method);
* a range that grows by many orders of magnitude between chunks: ONNX Runtime widens the
  histogram by whole bins of the old width, millions of them;
* non-finite values (inf), which numpy cannot bin at all.

`SafeHistogramCollector` keeps such tensors out of the histograms and gives them their
min/max range instead (what MinMax calibration would); every other tensor gets the method's
range as before. `degenerate` names them, so the report can say how many were handled so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Below this threshold t the bins of [-t, t] are not representable in float32.
_TINY = float(np.finfo(np.float32).tiny) * 4096
# Most bins a merge may grow a histogram to before the tensor is treated as degenerate.
_MAX_BINS = 1 << 16


def safe_collector(calibrator: Any) -> Any:
    """Install a SafeHistogramCollector in an ONNX Runtime histogram calibrator; returns it.

    A calibrator without histograms (MinMax) is left alone and None is returned.
    """
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    if not isinstance(calibrator, HistogramCalibrater):
        return None
    calibrator.collector = SafeHistogramCollector(
        method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
        scenario=calibrator.scenario,
    )
    return calibrator.collector


def _collector_base() -> type:
    from onnxruntime.quantization.calibrate import HistogramCollector

    return HistogramCollector


class SafeHistogramCollector(_collector_base()):  # type: ignore[misc]
    """ONNX Runtime's HistogramCollector, with degenerate tensors ranged by min/max instead.

    Attributes:
        degenerate: tensor name -> (min, max) of the tensors kept out of the histograms.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.degenerate: dict[str, tuple[float, float]] = {}

    def collect(self, name_to_arr: dict[str, Any]) -> None:
        binnable = {}
        for name, arrays in name_to_arr.items():
            data = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays]) if isinstance(
                arrays, list) else np.asarray(arrays, dtype=np.float32).ravel()
            finite = data[np.isfinite(data)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            if name in self.degenerate or self._is_degenerate(name, data, finite, low, high):
                self._keep_min_max(name, low, high)
            else:
                binnable[name] = [data]
        if binnable:
            super().collect(binnable)

    def _is_degenerate(self, name: str, data: np.ndarray, finite: np.ndarray, low: float, high: float) -> bool:
        if finite.size != data.size or low == high:
            return True
        threshold = max(abs(low), abs(high))
        if threshold < _TINY:
            return True
        old = self.histogram_dict.get(name)
        if old is None or self.symmetric:
            return False
        old_threshold = float(old[4])
        if old_threshold <= 0 or threshold <= old_threshold:
            return False
        stride = 2 * old_threshold / len(old[0])
        return (threshold - old_threshold) / stride > _MAX_BINS

    def _keep_min_max(self, name: str, low: float, high: float) -> None:
        old = self.histogram_dict.pop(name, None)
        if old is not None:  # earlier chunks were binned: keep their extremes
            low, high = min(low, float(old[2])), max(high, float(old[3]))
        if name in self.degenerate:
            low, high = min(low, self.degenerate[name][0]), max(high, self.degenerate[name][1])
        self.degenerate[name] = (low, high)

    def compute_collection_result(self) -> dict[str, Any]:
        from onnxruntime.quantization.calibrate import TensorData

        result = super().compute_collection_result() if self.histogram_dict else {}
        for name, (low, high) in self.degenerate.items():
            result[name] = TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
        return result
