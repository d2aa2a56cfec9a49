"""One Size(height, width) and one parser: height first, except where a caller asks for width first."""

from __future__ import annotations

import argparse

import pytest

from edgeseg.cli import common
from edgeseg.errors import EdgesegError
from edgeseg.size import Size, parse_size
from edgeseg.stream.sources import open_source


@pytest.mark.parametrize("text, expected", [("256x320", (256, 320)), ("64", (64, 64)), (" 32 , 48 ", (32, 48)),
                                            ("10X20", (10, 20))])
def test_text_is_height_first(text, expected):
    size = parse_size(text)
    assert size == Size(*expected) and (size.height, size.width) == expected
    height, width = size  # unpacks like the (height, width) tuples it replaces
    assert (height, width) == expected and str(size) == f"{expected[0]}x{expected[1]}"


def test_camera_text_is_width_first_only_when_asked():
    assert parse_size("320x240", width_first=True) == Size(height=240, width=320)
    assert parse_size((320, 240), width_first=True) == Size(height=240, width=320)
    assert parse_size(Size(240, 320), width_first=True) == Size(240, 320)  # a Size is never reordered
    assert parse_size([240, 320]) == Size(240, 320)


@pytest.mark.parametrize("bad", ["0x10", "abc", "1x2x3", "-5x5", "", "3.5x2"])
def test_bad_sizes_name_the_order_they_expected(bad):
    with pytest.raises(EdgesegError, match=r"is not HEIGHTxWIDTH \(height first\)"):
        parse_size(bad)
    with pytest.raises(EdgesegError, match=r"is not WIDTHxHEIGHT \(width first, as cameras are given\)"):
        parse_size(bad, width_first=True)


def test_the_cli_flag_reads_height_first_and_says_so():
    assert common.size("480x640") == Size(height=480, width=640)
    with pytest.raises(argparse.ArgumentTypeError, match="HEIGHTxWIDTH"):
        common.size("640x")


def test_a_synthetic_stream_size_is_width_first_like_a_camera():
    with open_source("synthetic://?size=48x32&realtime=false&frames=1") as source:
        read = source.read(timeout=5.0)
    assert read.frame.shape == (32, 48, 3)
