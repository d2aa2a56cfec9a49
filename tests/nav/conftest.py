"""Shared fixtures of the navigation tests."""

from __future__ import annotations

import pytest

from edgeseg.nav.sim import synthetic_spec
from edgeseg.spec import ModelSpec


@pytest.fixture(scope="session")
def tiny_synthetic_onnx(export_tiny_model, tiny_net):
    """A 32x32 two-layer Keras model over the synthetic classes, exported by edgeseg.export, spec embedded."""
    base = synthetic_spec()
    spec = ModelSpec(class_names=base.class_names, input_height=32, input_width=32, palette=base.palette,
                     traversable=("floor",), model="tiny")
    return export_tiny_model(tiny_net(len(base.class_names)), spec, "sim_model").onnx_path
