"""`edgeseg stream` builds its navigator for the source's camera when the source knows it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg import cli
from edgeseg.data.world import Camera
from edgeseg.nav import NAV_MODES, NavConfig, Navigator


@pytest.fixture
def built(monkeypatch):
    """Records every navigator `edgeseg stream` builds."""
    navigators: list[Navigator] = []
    original = Navigator.from_spec.__func__

    def from_spec(cls, *args, **kwargs):
        navigator = original(cls, *args, **kwargs)
        navigators.append(navigator)
        return navigator

    monkeypatch.setattr(Navigator, "from_spec", classmethod(from_spec))
    return navigators


def test_stream_on_the_synthetic_world_drives_the_camera_adapted_mode(built, tiny_synthetic_onnx, capsys):
    code = cli.main(["stream", "--source", "synthetic://?size=48x32&realtime=0", "--model", str(tiny_synthetic_onnx),
                     "--mode", "safe", "--max-frames", "2", "--commands", "-", "--no-status"])
    assert code == 0, capsys.readouterr().err
    assert len(capsys.readouterr().out.splitlines()) == 3  # two frames' commands, then the final stop
    assert [n.config for n in built] == [NavConfig.for_camera("safe", Camera(width=48, height=32))]
    assert built[0].config.vanishing_line > 0.0


def test_stream_on_other_sources_drives_the_mode_table(built, tiny_synthetic_onnx, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(2):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((24, 32, 3), 60 * index, np.uint8))
    code = cli.main(["stream", "--source", str(folder), "--model", str(tiny_synthetic_onnx), "--mode", "adventurous",
                     "--commands", "-", "--no-status"])
    assert code == 0, capsys.readouterr().err
    assert len(capsys.readouterr().out.splitlines()) == 3  # two frames' commands, then the final stop
    assert [n.config for n in built] == [NAV_MODES["adventurous"]]
