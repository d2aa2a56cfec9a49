"""The README's embedding example runs as written: Segmenter + Navigator in a robot loop.

The test copies the python block under "### Embedding in robot software" out of README.md and runs
it in a fresh interpreter, in a folder holding `demo/model.int8.cpu.onnx`: a small real ONNX
segmentation model (a 1x1 convolution that labels each pixel with the synthetic world class whose
mean colour is nearest, fitted on the world the example drives through), with the spec embedded
and floor traversable. The example's stand-in `drive()` prints one line per call; the test reads
them back. If the README example stops running, or stops producing one sane command per frame,
this test fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from edgeseg.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
SECTION = "### Embedding in robot software"
MODEL_PATH = Path("demo/model.int8.cpu.onnx")  # where the example reads its model, relative to cwd
INPUT_SIZE = 64
DRIVE_LINE = re.compile(r"^drive steering=([-+]?\d+\.\d+) throttle=([-+]?\d+\.\d+)$")


def readme_example() -> str:
    """The first ```python block after the section heading, before the next heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.find(SECTION + "\n")
    if start < 0:
        pytest.fail(f"README.md has no {SECTION!r} section; the embedding example must live there")
    section = text[start + len(SECTION):]
    next_heading = re.search(r"^#{1,3} ", section, flags=re.MULTILINE)
    if next_heading:
        section = section[: next_heading.start()]
    block = re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    if block is None:
        pytest.fail(f"README.md section {SECTION!r} has no ```python code block")
    return block.group(1)


def setting(code: str, name: str) -> str:
    """The string or number a top-level `NAME = value` line of the example assigns."""
    match = re.search(rf"^{name}\s*=\s*(\"[^\"]*\"|'[^']*'|\d+)", code, flags=re.MULTILINE)
    if match is None:
        pytest.fail(f"the README example has no top-level `{name} = ...` line; the test needs it")
    return match.group(1).strip("\"'")


def class_colours(uri: str, frames: int = 40) -> np.ndarray:
    """Mean RGB (0..1) of each synthetic class over the first frames of the example's drive."""
    from edgeseg.stream import open_source

    sums = np.zeros((len(SYNTHETIC_CLASSES), 3))
    counts = np.zeros(len(SYNTHETIC_CLASSES))
    with open_source(uri, size="80x60", frames=frames, realtime=False) as source:
        for frame in source.frames():
            mask = source.last_mask
            for index in range(len(SYNTHETIC_CLASSES)):
                chosen = mask == index
                sums[index] += frame[chosen].sum(axis=0) / 255.0
                counts[index] += chosen.sum()
    return sums / np.maximum(counts, 1)[:, None]


def write_nearest_colour_model(path: Path, colours: np.ndarray) -> ModelSpec:
    """NHWC float input in [0, 1] -> NCHW logits; argmax = nearest class colour.

    -|x - c|^2 = 2 x.c - |c|^2 - |x|^2, and the last term is the same for every class, so a 1x1
    convolution with weights 2c and bias -|c|^2 ranks the classes by colour distance.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.onnxmeta import write_spec_metadata

    classes = len(SYNTHETIC_CLASSES)
    weights = (2.0 * colours).astype(np.float32).reshape(classes, 3, 1, 1)
    bias = (-(colours**2).sum(axis=1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["image"], ["image_nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["image_nchw", "weights", "bias"], ["logits"]),
        ],
        "nearest_colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, INPUT_SIZE, INPUT_SIZE])],
        [numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    spec = ModelSpec(class_names=SYNTHETIC_CLASSES, palette=SYNTHETIC_PALETTE, input_height=INPUT_SIZE,
                     input_width=INPUT_SIZE, scale=1 / 255, traversable=("floor",), model="nearest-colour")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(write_spec_metadata(model, spec), str(path))
    return spec


def test_readme_embedding_example_drives(tmp_path: Path) -> None:
    code = readme_example()
    assert setting(code, "MODEL") == MODEL_PATH.as_posix(), "the README example should run the demo's CPU engine"
    camera = setting(code, "CAMERA")
    if not camera.startswith("synthetic://"):
        pytest.fail(f"the README example reads {camera!r}; it must read synthetic:// so it runs anywhere")
    max_frames = int(setting(code, "MAX_FRAMES"))
    assert 1 <= max_frames <= 1000, f"MAX_FRAMES = {max_frames}: keep the example's loop short"

    write_nearest_colour_model(tmp_path / MODEL_PATH, class_colours(camera))
    script = tmp_path / "readme_example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, f"the README example failed:\n{done.stderr[-3000:]}"

    lines = done.stdout.splitlines()
    commands = [(float(m.group(1)), float(m.group(2))) for m in map(DRIVE_LINE.match, lines) if m]
    assert commands, f"the README example never called drive(); its output:\n{done.stdout[-2000:]}"
    assert not [line for line in lines if line.startswith("camera stopped")], "the synthetic drive ended early"
    # One command per frame, then the final stop from the `finally` block.
    assert len(commands) == max_frames + 1, f"{len(commands)} drive() calls for {max_frames} frames"
    assert commands[-1] == (0.0, 0.0), f"the example must leave the car stopped, last drive{commands[-1]}"
    steering = np.array([s for s, _ in commands[:-1]])
    throttle = np.array([t for _, t in commands[:-1]])
    assert -1.0 <= steering.min() and steering.max() <= 1.0, f"steering {steering.min()}..{steering.max()}"
    assert 0.0 <= throttle.min() and throttle.max() <= 1.0, f"throttle {throttle.min()}..{throttle.max()}"
    # The model sees the floor, so the car drives most of the time and steers around things.
    driving = float(np.mean(throttle > 0.0))
    assert driving >= 0.5, f"the car drove on only {driving:.0%} of the frames"
    assert np.ptp(steering) > 0.1, "the steering never changed over the drive"
    assert seconds < 60, f"the README example took {seconds:.0f} s for {max_frames} frames"
