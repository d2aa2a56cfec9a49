"""The one table of artifact kinds: what each model file is, what runs it and what makes it.

In the spirit of Ultralytics' `export_formats()`: a row per kind of artifact, so the commands,
`edgeseg inspect` and the docs read one table instead of each branching on file suffixes.
The runtime backend registry (`edgeseg.runtime.backends`) takes its suffixes and install hints
from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import EngineError

TENSORRT_INSTALL_HINT = (
    "pip install tensorrt on a desktop; on a Jetson JetPack ships it "
    "(sudo apt install python3-libnvinfer; virtualenvs need --system-site-packages)"
)
ONNX_INSTALL_HINT = "pip install 'edgeseg[onnx]' (or onnxruntime-gpu for CUDA)"
KERAS_INSTALL_HINT = "pip install 'edgeseg[train]'"


@dataclass(frozen=True)
class ArtifactFormat:
    """One kind of model file.

    Attributes:
        kind: the name `describe()` and `edgeseg inspect` report.
        suffixes: file name endings (lower case, longest first where they overlap).
        runner: the runtime backend that opens it (`edgeseg.runtime.backends` name).
        builder: the command that makes it.
        build_options: the flags of that command that shape it.
        install_hint: what to install to run it.
        manifest: whether a manifest (`FILE.json`) travels with it.
        description: one line for listings.
    """

    kind: str
    suffixes: tuple[str, ...]
    runner: str
    builder: str
    build_options: tuple[str, ...]
    install_hint: str
    manifest: bool
    description: str


FORMATS: tuple[ArtifactFormat, ...] = (
    ArtifactFormat(
        "keras", (".keras", ".h5"), "keras", "edgeseg train",
        ("--model", "--size", "--classes"), KERAS_INSTALL_HINT, False,
        "Keras model (or a training run folder with model.keras + spec.json): the float reference",
    ),
    ArtifactFormat(
        "cpu-engine", (".cpu.onnx",), "onnxruntime", "edgeseg build-engine --backend onnxruntime",
        ("--int8", "--calib", "--calib-method", "--output", "--size", "--batch"), ONNX_INSTALL_HINT, True,
        "ONNX Runtime CPU model, graph-optimised once, with its manifest (MODEL.cpu.onnx.json)",
    ),
    ArtifactFormat(
        "onnx", (".onnx",), "onnxruntime", "edgeseg export (Keras), or torch.onnx.export + edgeseg spec",
        ("--opset", "--nchw", "--batch", "--classes", "--size", "--output"), ONNX_INSTALL_HINT, False,
        "ONNX model, float or INT8 (Q/DQ or QOperator from edgeseg calibrate); spec in its metadata",
    ),
    ArtifactFormat(
        "tensorrt-engine", (".engine", ".plan"), "tensorrt", "edgeseg build-engine --backend tensorrt",
        ("--int8", "--fp16", "--calib", "--calib-cache", "--batch", "--size", "--output", "--workspace",
         "--timing-cache", "--dla"), "install TensorRT (JetPack on a Jetson, or pip install 'edgeseg[tensorrt]')", True,
        "TensorRT engine for one TensorRT version and GPU architecture, with its manifest (FILE.json)",
    ),
)


def format_table() -> tuple[ArtifactFormat, ...]:
    return FORMATS


def format_named(kind: str) -> ArtifactFormat:
    for row in FORMATS:
        if row.kind == kind:
            return row
    raise EngineError(f"unknown artifact kind {kind!r}; known kinds: {', '.join(r.kind for r in FORMATS)}")


def format_for_path(path: str | Path) -> ArtifactFormat:
    """The row whose suffix ends the file name (longest suffix wins: .cpu.onnx before .onnx).

    A folder with `model.keras` (a training run) or `saved_model.pb` (a TensorFlow SavedModel)
    is keras.

    Raises:
        EngineError: no row matches.
    """
    path = Path(path)
    if path.is_dir() and ((path / "model.keras").is_file() or (path / "saved_model.pb").is_file()):
        return format_named("keras")
    name = path.name.lower()
    matches = [(len(suffix), row) for row in FORMATS for suffix in row.suffixes if name.endswith(suffix)]
    if not matches:
        known = ", ".join(s for row in FORMATS for s in row.suffixes)
        raise EngineError(f"{path} is no model file edgeseg knows: supported endings are {known} (or a run folder)")
    return max(matches, key=lambda match: match[0])[1]


def runner_suffixes(runner: str) -> tuple[str, ...]:
    """Every suffix whose files the runtime backend `runner` opens."""
    return tuple(dict.fromkeys(s for row in FORMATS if row.runner == runner for s in row.suffixes))


def runner_install_hint(runner: str) -> str:
    return next(row.install_hint for row in FORMATS if row.runner == runner)


def markdown() -> str:
    """The table as markdown, for docs and `edgeseg inspect --formats`."""
    lines = ["| kind | suffix | runs with | made by | options | install |", "|---|---|---|---|---|---|"]
    for row in FORMATS:
        lines.append(
            f"| {row.kind} | {', '.join(row.suffixes)} | {row.runner} | {row.builder} | "
            f"{' '.join(row.build_options)} | {row.install_hint} |"
        )
    return "\n".join(lines)
