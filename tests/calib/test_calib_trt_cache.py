import struct

import numpy as np
import pytest

from edgeseg.calib import trt_cache
from edgeseg.errors import EngineError


@pytest.mark.parametrize(
    "version, code",
    [("8.6.1", 8601), ("8.5.2", 8502), ("8.2.3", 8203), ("10.3.0", 100300), ("10.14.1", 101401), ("8.6", 8600)],
)
def test_version_code_matches_tensorrt_encoding(version, code):
    assert trt_cache.version_code(version) == code


def test_bad_version_is_a_user_error():
    with pytest.raises(EngineError, match="MAJOR.MINOR.PATCH"):
        trt_cache.version_code("latest")


def test_hex_is_the_float32_bit_pattern_unpadded():
    assert trt_cache.scale_to_hex(1.0) == "3f800000"
    assert trt_cache.scale_to_hex(0.0) == "0"  # TensorRT writes a zero scale as "0"
    # a line from a cache TensorRT 8.4 wrote itself: "input: 3caa54fc"
    scale = trt_cache.hex_to_scale("3caa54fc")
    assert scale == struct.unpack(">f", bytes.fromhex("3caa54fc"))[0]
    assert trt_cache.scale_to_hex(scale) == "3caa54fc"
    assert abs(scale * 127 - 2.64) < 0.01


def test_cache_round_trip_with_scales_from_ranges():
    ranges = {"image": (0.0, 255.0), "conv/out:0": (-3.5, 1.25), "relu": (0.0, 0.0), "neg": (-2.0, -1.0)}
    text = trt_cache.format_cache(ranges, "10.3.0")
    lines = text.splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert "relu: 0" in lines
    cache = trt_cache.parse_cache(text)
    assert (cache.version_code, cache.algorithm) == (100300, "EntropyCalibration2")
    assert set(cache.scales) == set(ranges)  # names with ':' survive (the value follows the last colon)
    for name, (low, high) in ranges.items():
        expected = np.float32(max(abs(low), abs(high)) / 127)
        assert cache.scales[name] == expected
    assert cache.dynamic_ranges()["conv/out:0"] == pytest.approx(3.5, rel=1e-6)


def test_write_and_read_file(tmp_path):
    path = trt_cache.write_cache(tmp_path / "model.calib.cache", {"x": (-1.0, 2.0)})
    cache = trt_cache.read_cache(path)
    assert cache.version_code == 8601 and cache.scales["x"] == np.float32(2.0 / 127)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("hello\nx: 3f800000\n", "TRT-8601"),
        ("TRT-8601-EntropyCalibration2\nx 3f800000\n", "line 2"),
        ("TRT-8601-EntropyCalibration2\nx: zz\n", "line 2"),
        ("TRT-8601-EntropyCalibration2\nx: 1ffffffff\n", "line 2"),
    ],
)
def test_malformed_cache_is_rejected_with_the_line(text, message):
    with pytest.raises(EngineError, match=message):
        trt_cache.parse_cache(text)


def test_missing_cache_file_says_how_to_make_one(tmp_path):
    with pytest.raises(EngineError, match="edgeseg calibrate"):
        trt_cache.read_cache(tmp_path / "none.cache")


def test_rewrite_header_retargets_without_touching_scales():
    text = trt_cache.format_cache({"a": (-1.0, 1.0), "b": (0.0, 4.0)}, "8.6.1")
    retargeted = trt_cache.rewrite_header(text, "10.3.0")
    assert retargeted.splitlines()[0] == "TRT-100300-EntropyCalibration2"
    assert retargeted.splitlines()[1:] == text.splitlines()[1:]
