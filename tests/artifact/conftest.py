"""Fixtures for the artifact tests: the PyTorch-like ONNX builder of tests/fixtures_onnx.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("edgeseg_fixtures_onnx", Path(__file__).parents[1] / "fixtures_onnx.py")
fixtures_onnx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures_onnx)


@pytest.fixture
def foreign_onnx():
    """`foreign_onnx(path, heads=..., dynamic=..., zero_branch=...)` -> the written ONNX path."""
    return fixtures_onnx.foreign_onnx
