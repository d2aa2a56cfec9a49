"""Keras -> ONNX with proof that the ONNX model computes what the Keras model computes.

tf2onnx converts with `continue_on_error`, so an op it cannot convert (grouped Conv2D in 1.17)
leaves a TensorFlow node in a graph that still serialises. So every export is checked before
anything is written: no op outside the ONNX standard, `onnx.checker`, then ONNX Runtime against
the Keras model on real frames, preprocessed by the runtime's own `preprocess`. A failed export
leaves no file behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.artifact.onnxmeta import ort_session
from edgeseg.errors import EdgesegError, EngineError, ModelError
from edgeseg.export.loading import LoadedModel, SpecOverrides, load_model, one_line, resolve_spec
from edgeseg.fileio import atomic_path
from edgeseg.spec import ModelSpec

DEFAULT_OPSET = 17  # the highest opset TensorRT 8.5 (JetPack 5) reads
MIN_OPSET = 13  # the first opset with the Resize modes Keras upsampling needs
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DYNAMIC_BATCH = "dynamic"
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
DEFAULT_MIN_AGREEMENT = 0.999
SYNTHETIC_FRAMES = 8


@dataclass(frozen=True)
class OutputComparison:
    """How far the ONNX outputs are from the Keras outputs on the same frames."""

    max_abs_diff: float
    argmax_agreement: float  # fraction of pixels whose class is the same
    within_tolerance: bool  # every element within atol + rtol * |keras| (np.allclose)

    def passed(self, min_agreement: float) -> bool:
        return self.within_tolerance and self.argmax_agreement >= min_agreement


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` wrote and how closely the ONNX model matched Keras."""

    output_path: Path
    spec: ModelSpec
    spec_source: str
    model: str  # what was loaded, in words
    opset: int
    input_shape: tuple[int | str, ...]  # the ONNX input shape; "batch" where dynamic
    max_abs_diff: float
    argmax_agreement: float
    atol: float
    rtol: float
    min_agreement: float
    frames: int
    frames_source: str
    seconds: float

    def summary(self) -> str:
        spec = self.spec
        return "\n".join(
            [
                f"loaded    {self.model}",
                f"spec      {self.spec_source}: {spec.task}, {spec.num_classes} classes "
                f"{','.join(spec.class_names)}, {spec.input_height}x{spec.input_width} {spec.layout}, "
                f"output {spec.output}",
                f"onnx      opset {self.opset}, input {INPUT_NAME} {list(self.input_shape)}, output {OUTPUT_NAME}",
                f"verified  {self.frames} {self.frames_source} frames: max |diff| {self.max_abs_diff:.3g} "
                f"(atol {self.atol:g} + rtol {self.rtol:g} x |keras|), argmax agreement "
                f"{self.argmax_agreement:.4%} (need >= {self.min_agreement:.2%})",
                f"wrote     {self.output_path} in {self.seconds:.1f} s",
            ]
        )


def export_onnx(
    model_source: str | Path | LoadedModel | Any,
    output_path: str | Path,
    spec: ModelSpec | str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    nchw: bool = False,
    batch: int | str | None = 1,
    verify_frames: Sequence[np.ndarray] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    overrides: SpecOverrides | None = None,
) -> ExportReport:
    """Convert a Keras model to ONNX, prove it equal on real frames, then write it atomically.

    Args:
        model_source: a run folder, .keras/.h5 file, SavedModel folder, `keras.Model` or
            `LoadedModel`.
        output_path: the .onnx file to write.
        spec: the ModelSpec (or a spec JSON file); None uses the spec.json beside the model, or
            builds one from `overrides` and the model.
        opset: ONNX opset; 17 is the highest TensorRT 8.5 (JetPack 5) reads.
        nchw: make the ONNX input NCHW (tf2onnx `inputs_as_nchw`); the spec's layout follows.
        batch: a fixed batch size, or "dynamic" (None) for a dynamic batch dimension.
        verify_frames: RGB uint8 frames to compare on; None uses deterministic synthetic scenes.
        atol, rtol: element-wise tolerance on the outputs, as in `np.allclose`.
        min_agreement: the least fraction of pixels whose class must agree.
        overrides: spec fields that complete or override the spec.

    Raises:
        EdgesegError: bad input, an unconvertible op, or ONNX outputs that differ from Keras.
    """
    start = time.perf_counter()
    batch_size = _check_options(opset, batch, atol, rtol, min_agreement)
    output_path = Path(output_path)
    _check_writable(output_path)
    model = model_source if isinstance(model_source, LoadedModel) else load_model(model_source)
    spec, spec_source = resolve_spec(model, spec, overrides)
    static_batch = model.input_shape[0]
    if static_batch is not None and batch_size != static_batch:
        raise ModelError(
            f"{model.name} has a fixed batch size {static_batch}; export with --batch {static_batch}"
        )
    export_spec = spec.replace(layout="NCHW" if nchw else "NHWC")

    proto = convert_to_onnx(model, export_spec, opset=opset, batch=batch_size)
    _check_converted(proto, model)
    _describe(proto, export_spec, model)

    if verify_frames is None:
        frames, frames_source = synthetic_frames(spec.input_height, spec.input_width), "synthetic"
    else:
        frames, frames_source = list(verify_frames), "given"
        if not frames:
            raise EdgesegError("no frames to verify on; pass at least one image")
    comparison = verify_onnx(proto, model, export_spec, frames, batch_size, atol, rtol)
    if not comparison.passed(min_agreement):
        raise EngineError(
            f"the ONNX model differs from {model.name} on {len(frames)} {frames_source} frames: "
            f"max |diff| {comparison.max_abs_diff:.3g} (allowed atol {atol:g} + rtol {rtol:g} x |keras|: "
            f"{'ok' if comparison.within_tolerance else 'exceeded'}), argmax agreement "
            f"{comparison.argmax_agreement:.3%} (need >= {min_agreement:.2%}); nothing written. "
            "The conversion is wrong: look for layers tf2onnx converts badly, or raise --atol/--rtol "
            "if the difference is harmless"
        )

    import onnx

    with atomic_path(output_path) as tmp:
        onnx.save(proto, str(tmp))
    input_dims = proto.graph.input[0].type.tensor_type.shape.dim
    return ExportReport(
        output_path=output_path,
        spec=export_spec,
        spec_source=spec_source,
        model=model.describe(),
        opset=opset,
        input_shape=tuple(d.dim_param or d.dim_value for d in input_dims),
        max_abs_diff=comparison.max_abs_diff,
        argmax_agreement=comparison.argmax_agreement,
        atol=atol,
        rtol=rtol,
        min_agreement=min_agreement,
        frames=len(frames),
        frames_source=frames_source,
        seconds=time.perf_counter() - start,
    )


def _check_options(
    opset: int, batch: int | str | None, atol: float, rtol: float, min_agreement: float
) -> int | None:
    """Validate the export options; returns the batch size (None = dynamic)."""
    from tf2onnx import constants

    max_opset = max(constants.OPSET_TO_IR_VERSION)
    if not MIN_OPSET <= opset <= max_opset:
        raise EdgesegError(
            f"opset {opset} is not supported: use {MIN_OPSET}..{max_opset} (tf2onnx's range); "
            f"{DEFAULT_OPSET} suits TensorRT on JetPack 5 and later"
        )
    if atol < 0 or rtol < 0 or not 0.0 <= min_agreement <= 1.0:
        raise EdgesegError(
            f"tolerances must be non-negative and agreement a fraction in [0, 1], got atol={atol}, "
            f"rtol={rtol}, agreement={min_agreement}"
        )
    if batch is None or batch == DYNAMIC_BATCH:
        return None
    if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
        return batch
    raise EdgesegError(f"batch {batch!r} is neither a positive integer nor {DYNAMIC_BATCH!r}")


def _check_writable(path: Path) -> None:
    """Fail before the slow conversion if `path` can never be written."""
    if path.is_dir():
        raise EdgesegError(f"output {path} is a folder; pass a file name such as {path / 'model.onnx'}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise EdgesegError(f"cannot write {path}: {parent} is a file, not a folder; choose another output path")


def convert_to_onnx(model: LoadedModel, spec: ModelSpec, opset: int, batch: int | None) -> Any:
    """Run tf2onnx with an explicit input signature; returns the `onnx.ModelProto`.

    Never passes `target=["tensorrt"]`: it breaks nearest-neighbour resizes.
    """
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((batch, spec.input_height, spec.input_width, 3), tf.float32, name=INPUT_NAME)]
    nchw_inputs = [INPUT_NAME] if spec.layout == "NCHW" else None
    keras_model = model.keras_model
    if keras_model is not None:
        # tf2onnx 1.17 names outputs after `output_names`; without it Keras 3 models KeyError.
        missing = object()
        old_names = getattr(keras_model, "output_names", missing)
        keras_model.output_names = [OUTPUT_NAME]
        try:
            proto, _ = tf2onnx.convert.from_keras(
                keras_model, input_signature=signature, opset=opset, inputs_as_nchw=nchw_inputs
            )
        finally:
            if old_names is missing:
                del keras_model.output_names
            else:
                keras_model.output_names = old_names
    else:
        function = tf.function(lambda image: {OUTPUT_NAME: model.call(image)}, input_signature=signature)
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=signature, opset=opset, inputs_as_nchw=nchw_inputs
        )
    if batch is None:
        for value in (*proto.graph.input, *proto.graph.output):
            first = value.type.tensor_type.shape.dim[0]
            if not first.HasField("dim_value"):
                first.dim_param = "batch"
    return proto


def unconverted_nodes(graph: Any) -> list[Any]:
    """Nodes that are not standard ONNX ops (what tf2onnx leaves of ops it could not convert)."""
    import onnx

    found = []
    for node in graph.node:
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain != "" or not onnx.defs.has(node.op_type, domain):
            found.append(node)
        for attribute in node.attribute:  # If/Loop bodies
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                found.extend(unconverted_nodes(subgraph))
    return found


def _grouped_convolutions(model: LoadedModel) -> list[str]:
    layers = model.keras_model.layers if model.keras_model is not None else []
    return [f"{layer.name} (groups={layer.groups})" for layer in layers if getattr(layer, "groups", 1) > 1]


def _check_converted(proto: Any, model: LoadedModel) -> None:
    """Refuse a graph tf2onnx only half converted, then run the ONNX checker."""
    import onnx

    bad = unconverted_nodes(proto.graph)
    if bad:
        ops = ", ".join(f"{node.op_type} (node {node.name})" for node in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        grouped = _grouped_convolutions(model)
        hint = (
            f"; the model has grouped Conv2D layers {', '.join(grouped)}, which tf2onnx 1.17 cannot "
            "convert: rebuild them with groups=1 (or DepthwiseConv2D)"
            if grouped
            else "; replace the layers behind them with standard Keras layers"
        )
        raise EngineError(f"tf2onnx could not convert {ops}{more} of {model.name}{hint}; nothing written")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise EngineError(
            f"the ONNX model converted from {model.name} is invalid: {one_line(err)}; nothing written"
        ) from None


def _describe(proto: Any, spec: ModelSpec, model: LoadedModel) -> None:
    """Embed the spec and say who made the file (Netron and `onnx` show these)."""
    import tf2onnx

    from edgeseg import __version__
    from edgeseg.onnxmeta import write_spec_metadata

    write_spec_metadata(proto, spec)
    proto.producer_name = "edgeseg"
    proto.producer_version = __version__
    proto.doc_string = (
        f"{spec.task} segmentation ({', '.join(spec.class_names)}), exported by edgeseg {__version__} "
        f"from {Path(model.name).name} with tf2onnx {tf2onnx.__version__}"
    )


def synthetic_frames(
    height: int, width: int, count: int = SYNTHETIC_FRAMES, seed: int = 0
) -> list[np.ndarray]:
    """Deterministic scene-like RGB frames: smooth colour fields with a few hard-edged shapes.

    Pure noise drives a segmentation net far from anything it saw and makes its logits near-ties,
    where argmax agreement measures rounding rather than conversion.
    """
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(3):
            x0, x1 = sorted(rng.integers(0, width, size=2))
            y0, y1 = sorted(rng.integers(0, height, size=2))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            cv2.rectangle(frame, (int(x0), int(y0)), (int(x1), int(y1)), colour, thickness=-1)
        frames.append(frame)
    return frames


def run_onnx(session: Any, batch: np.ndarray) -> np.ndarray:
    """One ONNX Runtime run (a seam tests use to simulate a wrong conversion)."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


def verify_onnx(
    proto: Any,
    model: LoadedModel,
    spec: ModelSpec,
    frames: Sequence[np.ndarray],
    batch: int | None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> OutputComparison:
    """Run ONNX Runtime and the model on the same frames, batched as the ONNX input demands.

    Both inputs come from `preprocess`, the function the runtime uses: the Keras model gets the
    NHWC layout, the ONNX model the spec's layout.
    """
    from edgeseg.runtime.preprocess import preprocess

    session = ort_session(proto.SerializeToString(), quiet=False)
    keras_spec = spec.replace(layout="NHWC")
    size = len(frames) if batch is None else batch
    padded = -(-len(frames) // size) * size  # fill the last fixed-size batch by repeating frames
    frames = [frames[i % len(frames)] for i in range(padded)]
    references, candidates = [], []
    for start in range(0, len(frames), size):
        chunk = frames[start : start + size]
        references.append(model.predict(preprocess(chunk, keras_spec)))
        candidates.append(run_onnx(session, preprocess(chunk, spec)))
    return compare_outputs(np.concatenate(references), np.concatenate(candidates), keras_spec, atol, rtol)


def compare_outputs(
    reference: np.ndarray,
    candidate: np.ndarray,
    spec: ModelSpec,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> OutputComparison:
    """Element-wise and per-pixel-class agreement of two output batches of the same layout."""
    from edgeseg.runtime.preprocess import class_map_from_output

    if reference.shape != candidate.shape:
        raise EngineError(
            f"the ONNX model outputs shape {candidate.shape} but Keras outputs {reference.shape}; "
            "the conversion is wrong"
        )
    reference = reference.astype(np.float32)
    candidate = candidate.astype(np.float32)
    difference = np.abs(reference - candidate)
    agreement = class_map_from_output(reference, spec) == class_map_from_output(candidate, spec)
    return OutputComparison(
        max_abs_diff=float(difference.max()) if difference.size else 0.0,
        argmax_agreement=float(agreement.mean()) if agreement.size else 1.0,
        within_tolerance=bool(np.all(difference <= atol + rtol * np.abs(reference))),
    )
