"""The library-level simulator run (`edgeseg.nav.simrun.run_sim(SimRunOptions)`), which `edgeseg sim` parses into."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.nav import sim as sim_module
from edgeseg.nav.sim import SimConfig, synthetic_spec
from edgeseg.nav.simrun import SimRunOptions, picture_paths, run_sim


def test_oracle_run_over_two_modes_writes_json_and_pictures(tmp_path):
    lines: list[str] = []
    result = run_sim(SimRunOptions(model="oracle", modes=("safe", "adventurous"),
                                   config=SimConfig(episodes=1, max_seconds=2.0, seed=4),
                                   json=tmp_path / "sim.json", picture=tmp_path / "sim.png", progress=False),
                     log=lines.append)
    assert [r.mode for r in result.reports] == ["safe", "adventurous"] and result.ok
    assert result.backend == "renderer masks" and "collisions" in result.table
    data = json.loads((tmp_path / "sim.json").read_text())
    assert data == json.loads(json.dumps(result.to_dict()))  # the file is the result
    assert data["modes"]["safe"]["episodes"][0]["world_seed"] == 4
    assert result.pictures == picture_paths(tmp_path / "sim.png", ("safe", "adventurous"))
    assert all(path.is_file() for path in result.pictures.values())
    assert lines[0].startswith("edgeseg sim: oracle (renderer masks), 1 episodes x 2 s per mode, worlds 4..4")


class BlindModel:
    """Stands in for perceiver_from_model: floor (0) below the horizon, background (3) above, blind to obstacles."""

    def __init__(self, path, backend="auto", **options):
        self.spec = synthetic_spec()
        self.backend_name = "blind"

    def __call__(self, rgb):
        class_map = np.full(rgb.shape[:2], 3, dtype=np.uint8)
        class_map[int(0.45 * rgb.shape[0]):] = 0
        return class_map

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


def test_max_collisions_marks_the_run_not_ok(monkeypatch):
    monkeypatch.setattr(sim_module, "perceiver_from_model", BlindModel)
    options = SimRunOptions(model="blind.onnx", modes=("adventurous",), max_collisions=0, progress=False,
                            config=SimConfig(episodes=1, max_seconds=30.0))
    result = run_sim(options, log=lambda line: None)
    assert result.backend == "blind" and result.reports[0].collisions >= 1
    assert not result.ok and result.over_limit == [f"adventurous {result.reports[0].collisions}"]


@pytest.mark.parametrize("modes", [(), ("safe", "fast"), ("safe", "safe")])
def test_options_refuse_bad_modes(modes):
    with pytest.raises(EdgesegError, match="safe, balanced, adventurous"):
        SimRunOptions(model="oracle", modes=modes)


@pytest.mark.parametrize("options", [
    SimRunOptions(model="oracle"),
    SimRunOptions(model="m.onnx", modes=("adventurous", "safe"), backend="onnxruntime", threads=2, json="s.json",
                  picture="p.png", max_collisions=0, progress=False,
                  config=SimConfig(episodes=3, max_seconds=2.5, seed=9, hz=5.0, max_speed_mps=0.5, navigator="table")),
])
def test_to_argv_parses_back_to_the_same_options(options):
    """What the demo prints as `edgeseg sim ...` runs exactly what it ran."""
    import argparse

    from edgeseg.cli import sim as sim_cli

    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    argv = options.to_argv()
    assert argv[0] == "sim"
    assert sim_cli.options_from_args(parser.parse_args(argv[1:])) == options
