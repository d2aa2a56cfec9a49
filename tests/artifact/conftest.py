"""Fixtures for the artifact tests: the PyTorch-like ONNX builder of tests/fixtures_onnx.py."""

from __future__ import annotations

import pytest

from tests import fixtures_onnx


@pytest.fixture
def foreign_onnx():
    """`foreign_onnx(path, heads=..., dynamic=..., zero_branch=...)` -> the written ONNX path."""
    return fixtures_onnx.foreign_onnx
