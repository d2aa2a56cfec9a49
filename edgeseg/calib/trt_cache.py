"""The legacy TensorRT INT8 calibration cache, written from edgeseg's calibration ranges.

TensorRT 8.5-10.x can still build an INT8 engine from a *float* ONNX model plus a calibration
cache ("implicit quantization"; TensorRT 11 removed it, explicit Q/DQ models are the only INT8
path there). The builder reads the cache through `IInt8Calibrator.read_calibration_cache()`,
so an edgeseg calibration made once on a workstation can be reused on the Jetson without
running TensorRT's own calibrator there.

Format (plain text, one entry per line)::

    TRT-8601-EntropyCalibration2
    image: 3c010204
    block_1_expand_relu: 3d4d8b2e
    ...

* Line 1: `TRT-<version>-<algorithm>`. `<version>` is TensorRT's `getInferLibVersion()`:
  major*1000 + minor*100 + patch up to TensorRT 8 (8.6.1 -> `8601`, 8.5.2 -> `8502`) and
  major*10000 + minor*100 + patch from TensorRT 10 on (10.3.0 -> `100300`). The algorithm is
  `EntropyCalibration2` for `IInt8EntropyCalibrator2`, the calibrator TensorRT recommends
  for CNNs. TensorRT skips a cache it finds incompatible (NVIDIA/TensorRT issue #1378, a
  maintainer: "trt will skip the file if it is incompatible") and then calibrates itself, so
  write the cache for the robot's version, or re-target it with `rewrite_header`.
* Every further line: `<tensor name>: <hex>`, where `<hex>` is the IEEE-754 float32 bit
  pattern of the tensor's scale, written as an unpadded lower-case hexadecimal integer
  (`0` for a zero scale). The scale is symmetric: `max(|min|, |max|) / 127`, i.e. the
  tensor's dynamic range divided by 127.

Sources checked (public code, read through the search tool):
* ONNX Runtime's TensorRT execution provider, `ReadDynamicRange` (tensorrt_execution_provider.cc):
  reads the first line, requires it to contain `TRT-`, then for every line splits at `:`,
  parses the value with `strtoul(value, nullptr, 16)`, reinterprets the bits as a float and
  sets the dynamic range to `scale * 127`.
* NVIDIA TAO Toolkit (nvidia_tao_tf1 common/export/base_exporter.py,
  `_calibration_cache_from_dict`): writes `"TRT-{}-EntropyCalibration2"` with version
  `MAJOR*1000 + MINOR*100 + PATCH` (TensorRT 8), then `tensor + ": " + hex(bits)[2:]` where
  `bits = struct.unpack("i", struct.pack("f", dynamic_range / 127.0))`.
* A cache produced by TensorRT 8.4 itself (`TRT-8401-EntropyCalibration2`, lines such as
  `input: 3caa54fc` and `366: 0`) confirms the unpadded hex and the `0` for a zero scale;
  a cache from TensorRT 8.2.3 (NVIDIA/TensorRT issue #2036) starts `TRT-8203-EntropyCalibration2`
  followed by lines like `167: 3c009976`; projects using TensorRT 10.14.1 show the header
  `TRT-101401-EntropyCalibration2` (the 10.x encoding major*10000 + minor*100 + patch, as
  `getInferLibVersion()` is compared with `NV_TENSORRT_MAJOR * 10000 + ...` in TensorRT 10 code).
* A TensorRT 10.3 cache of a tf2onnx model (`TRT-100300-EntropyCalibration2`, lines like
  `input_1:0: 3c010a14`, every key matching a network tensor) shows that tensor names may
  themselves contain `:`; the value is what follows the *last* colon, which is how
  `parse_cache` splits. (ONNX Runtime's reader above splits at the first colon, so it
  mis-reads such names; TensorRT itself does not.)
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from edgeseg.errors import EngineError
from edgeseg.fileio import atomic_write_text

ALGORITHM = "EntropyCalibration2"
DEFAULT_TRT_VERSION = "8.6.1"  # JetPack 5.1; pass the robot's version (10.3.0 on JetPack 6)
INT8_MAX = 127.0

_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


@dataclass(frozen=True)
class TrtCalibrationCache:
    """A parsed calibration cache: header fields and the scale of every tensor."""

    version_code: int
    algorithm: str
    scales: dict[str, float]

    def dynamic_ranges(self) -> dict[str, float]:
        """Tensor -> symmetric dynamic range (scale * 127), what TensorRT sets per tensor."""
        return {name: scale * INT8_MAX for name, scale in self.scales.items()}


def version_code(version: str) -> int:
    """TensorRT's integer version: '8.6.1' -> 8601, '10.3.0' -> 100300.

    Raises:
        EngineError: `version` is not MAJOR.MINOR[.PATCH].
    """
    match = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*\s*", str(version))
    if not match:
        raise EngineError(f"TensorRT version {version!r} is not MAJOR.MINOR.PATCH, e.g. 8.6.1 or 10.3.0")
    major, minor, patch = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def scale_from_range(low: float, high: float) -> float:
    """The symmetric int8 scale TensorRT uses for a tensor whose values lie in [low, high]."""
    return max(abs(float(low)), abs(float(high))) / INT8_MAX


def scale_to_hex(scale: float) -> str:
    """A float32 scale as TensorRT writes it: the bit pattern in unpadded lower-case hex."""
    bits = struct.unpack(">I", struct.pack(">f", scale))[0]
    return format(bits, "x")


def hex_to_scale(text: str) -> float:
    """Inverse of `scale_to_hex`."""
    bits = int(text, 16)
    if not 0 <= bits <= 0xFFFFFFFF:
        raise ValueError(f"{text!r} is not a 32-bit value")
    return struct.unpack(">f", struct.pack(">I", bits))[0]


def format_cache(ranges: Mapping[str, tuple[float, float]], trt_version: str = DEFAULT_TRT_VERSION) -> str:
    """The cache text for tensor ranges {name: (min, max)}, tensors in sorted order."""
    lines = [f"TRT-{version_code(trt_version)}-{ALGORITHM}"]
    for name in sorted(ranges):
        low, high = ranges[name]
        if not (math.isfinite(low) and math.isfinite(high)):
            raise EngineError(f"tensor {name!r} has a non-finite calibration range ({low}, {high})")
        if "\n" in name or "\r" in name:
            raise EngineError(f"tensor name {name!r} contains a line break; the cache format cannot hold it")
        lines.append(f"{name}: {scale_to_hex(scale_from_range(low, high))}")
    return "\n".join(lines) + "\n"


def write_cache(
    path: str | Path, ranges: Mapping[str, tuple[float, float]], trt_version: str = DEFAULT_TRT_VERSION
) -> Path:
    """Write the calibration cache atomically."""
    return atomic_write_text(path, format_cache(ranges, trt_version))


def parse_cache(text: str, source: str | Path = "calibration cache") -> TrtCalibrationCache:
    """Parse cache text.

    Raises:
        EngineError: the header or a line is malformed (names `source` and the line).
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise EngineError(f"{source} is empty; it is not a TensorRT calibration cache")
    header = _HEADER.match(lines[0].strip())
    if not header:
        raise EngineError(
            f"{source} does not start with a TensorRT header like TRT-8601-{ALGORITHM} "
            f"(got {lines[0][:60]!r}); it is not a TensorRT calibration cache"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(":")
        try:
            if not sep or not name.strip():
                raise ValueError("no 'name: hex' pair")
            scales[name.strip()] = hex_to_scale(value.strip())
        except ValueError as err:
            raise EngineError(f"{source} line {number} ({line[:60]!r}) is not 'tensor: hexscale': {err}") from None
    return TrtCalibrationCache(int(header.group(1)), header.group(2), scales)


def read_cache(path: str | Path) -> TrtCalibrationCache:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EngineError(f"no calibration cache at {path}; run `edgeseg calibrate --target tensorrt`") from None
    return parse_cache(text, path)


def rewrite_header(text: str, trt_version: str) -> str:
    """The same cache re-targeted at another TensorRT version (the scales do not change)."""
    cache = parse_cache(text)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    return f"TRT-{version_code(trt_version)}-{cache.algorithm}\n{body}"
