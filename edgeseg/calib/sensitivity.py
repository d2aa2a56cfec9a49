"""Keeping an INT8 model within an accuracy budget: evaluate, find sensitive layers, retry.

`--max-miou-drop X` is in percentage points of mean IoU: with X = 0.5 a float model at 72.0%
mIoU may become 71.5% in INT8, no less. Without masks (a robot's own footage) the float model's
class maps are the truth (`load_reference_samples`): float scores 100%, and INT8 must keep a
mean IoU against float of at least 100 - X.

The loop (`search_exclusions`) is plain control flow over three functions (quantize with some
nodes excluded, evaluate a model, rank the nodes), so it is tested with fakes; the real
functions below score through `edgeseg.scoring` (a Segmenter over a plain CPU session) and
use ONNX Runtime's debugging helpers for the ranking.

Ranking: both models run a few calibration frames with every intermediate tensor exposed
(ONNX Runtime's `qdq_loss_debug` helpers), and each quantized node is scored by how much
signal-to-quantization-noise ratio (SQNR, dB) it loses between its inputs and its output, i.e.
the error the node itself adds, not the error it inherits. The nodes that lose most go back
to float first.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.errors import DataError
from edgeseg.runtime.preprocess import resize_frame
from edgeseg.spec import ModelSpec

RANK_FRAMES = 4  # frames the ranking runs; intermediate tensors of all layers are kept in memory
EXACT_SQNR_DB = 60.0  # an unquantized tensor counts as this (int8 noise is about 48 dB)
_DQ_SUFFIX = "_DequantizeLinear_Output"  # onnxruntime.quantization.quant_utils.DEQUANT_OUTPUT_SUFFIX
_FUSED_ACTIVATIONS = ("Relu", "Clip")  # removed by the QDQ quantizer after a quantized producer


# --------------------------------------------------------------------------------------------
# The search


@dataclass(frozen=True)
class SearchStep:
    """One quantize-and-evaluate round."""

    excluded: tuple[str, ...]
    int8_miou: float
    drop_pp: float


@dataclass
class SearchResult:
    model: Any  # what `quantize` returned for the last round
    excluded: tuple[str, ...]
    int8_miou: float
    drop_pp: float
    within_budget: bool
    steps: list[SearchStep] = field(default_factory=list)


def search_exclusions(
    quantize: Callable[[Sequence[str]], Any],
    evaluate: Callable[[Any], float],
    float_miou: float,
    rank: Callable[[], Sequence[str]],
    max_drop_pp: float,
    step: int = 2,
    max_rounds: int = 8,
) -> SearchResult:
    """Move the most sensitive nodes to float, `step` at a time, until the drop is in budget.

    Args:
        quantize: builds the INT8 model with these nodes excluded; () is the plain model.
        evaluate: mean IoU (0..1) of a model `quantize` returned.
        float_miou: mean IoU of the float model.
        rank: node names, most sensitive first (called once, only if the first try fails).
        max_drop_pp: the budget, in percentage points.
        step: nodes added to the float set per round.
        max_rounds: rounds in all, the first (nothing excluded) included.

    Returns:
        The last round's model and numbers; `within_budget` says whether it met the budget.
    """
    if step < 1 or max_rounds < 1:
        raise ValueError(f"step ({step}) and max_rounds ({max_rounds}) must be at least 1")
    excluded: tuple[str, ...] = ()
    ranked: list[str] | None = None
    steps: list[SearchStep] = []
    while True:
        model = quantize(excluded)
        miou = evaluate(model)
        drop = (float_miou - miou) * 100
        steps.append(SearchStep(excluded, miou, drop))
        within = drop <= max_drop_pp + 1e-9
        if within or len(steps) >= max_rounds:
            return SearchResult(model, excluded, miou, drop, within, steps)
        if ranked is None:
            ranked = [name for name in rank() if name not in excluded]
        remaining = [name for name in ranked if name not in excluded]
        if not remaining:
            return SearchResult(model, excluded, miou, drop, False, steps)
        excluded = excluded + tuple(remaining[:step])


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class EvalSample:
    image: np.ndarray  # RGB uint8 at the network input size
    mask: np.ndarray  # uint8 at the original resolution


def load_eval_samples(
    data: Any, spec: ModelSpec, subset: str = "val", count: int = 100, split: Sequence[float] = (0.8, 0.1, 0.1)
) -> list[EvalSample]:
    """Images (fitted to the network) and masks of a dataset subset, spread over it.

    Args:
        data: a `--data` string or an opened SegDataset.
        split: train/val/test fractions for folders without their own split (training's, so
            the evaluation frames are not training frames).
    """
    from edgeseg.calib.readers import spread_indices

    if isinstance(data, str):
        from edgeseg.data.sources import open_dataset

        dataset = open_dataset(data, subset=subset, split=split, size=spec.input_size)
    else:
        dataset = data
    if len(dataset) == 0:
        raise DataError(f"the {subset} subset of {data} has no images to measure the mIoU on; pass another --data")
    samples = []
    for index in spread_indices(len(dataset), count):
        image, mask = dataset.load(index)
        samples.append(EvalSample(resize_frame(image, spec), mask))
    return samples


def load_reference_samples(
    float_model: Path, source: Any, spec: ModelSpec, count: int = 100, batch_size: int = 1
) -> list[EvalSample]:
    """Frames without masks (a robot's footage), with the float model's class maps as their masks.

    The float model then scores 100% mean IoU, and an INT8 model's "drop" is how far its class
    maps stray from float's: the budget holds INT8 to float on the robot's own frames.

    Args:
        float_model: the float ONNX model.
        source: a calib.readers FrameSource (ImageFolder, VideoFile).
    """
    from edgeseg.scoring import chunks

    frame_set = source.read(count, spec)
    with _segmenter(float_model, spec) as segmenter:
        maps = [s.class_map for chunk in chunks(frame_set.frames, batch_size) for s in segmenter.seg_batch(chunk)]
    return [EvalSample(image, class_map) for image, class_map in zip(frame_set.frames, maps)]


def evaluate_miou(model_path: Path, samples: Sequence[EvalSample], spec: ModelSpec, batch_size: int = 1) -> float:
    """Mean IoU (0..1) of an ONNX model on `samples`, predictions resized to each mask."""
    from edgeseg.scoring import score

    with _segmenter(model_path, spec) as segmenter:
        tally = score(segmenter, ((s.image, s.mask) for s in samples), batch=batch_size, fit_to_mask=True)
    miou = tally.scores(spec.class_names).mean_iou
    if math.isnan(miou):
        raise DataError("the evaluation masks hold no labelled pixel; cannot measure the mIoU")
    return miou


def _segmenter(model_path: Path, spec: ModelSpec) -> Any:
    """A Segmenter over calibration's plain CPU session: quick to open for each candidate model.

    The model is one calibration itself just wrote, so `open_onnxruntime`'s integrity and
    metadata checks are skipped; `spec` is the float model's.
    """
    from edgeseg.artifact.onnxmeta import ort_session
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from edgeseg.runtime.segmenter import Segmenter

    return Segmenter(OnnxRuntimeBackend(Path(model_path), ort_session(model_path), spec))


# --------------------------------------------------------------------------------------------
# Ranking


@dataclass(frozen=True)
class NodeScore:
    """How much quantization error a node adds.

    Attributes:
        node: the node name.
        input_sqnr_db: the worst SQNR of its activation inputs (as the node consumes them).
        output_sqnr_db: the SQNR of its output (as its consumers see it).
    """

    node: str
    input_sqnr_db: float
    output_sqnr_db: float

    @property
    def loss_db(self) -> float:
        return self.input_sqnr_db - self.output_sqnr_db


def sqnr_db(reference: Sequence[np.ndarray], noisy: Sequence[np.ndarray]) -> float:
    """Signal-to-noise ratio of `noisy` against `reference` in dB, capped at EXACT_SQNR_DB."""
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    return min(EXACT_SQNR_DB, compute_signal_to_quantization_noice_ratio(list(reference), list(noisy)))


def rank_nodes(
    float_model: Path,
    qdq_model: Path,
    reader: Any,
    op_types: set[str] | None,
    skip: set[str],
) -> list[NodeScore]:
    """Score the quantized nodes of a QDQ model against the float model, worst first.

    Args:
        float_model: the float model the QDQ model was quantized from (same node names).
        qdq_model: the quantized model in QDQ form.
        reader: calibration batches (a FrameBatchReader over a few frames).
        op_types: op types the layout quantizes (None: any node of the QDQ model between Q/DQ).
        skip: nodes already kept in float.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    with tempfile.TemporaryDirectory(prefix="edgeseg-rank-") as work:
        activations = {}
        for key, path in (("float", float_model), ("qdq", qdq_model)):
            augmented = str(Path(work) / f"{key}.onnx")
            with contextlib.redirect_stdout(io.StringIO()):
                modify_model_output_intermediate_tensors(str(path), augmented)
            reader.rewind()
            activations[key] = collect_activations(augmented, reader)
    reader.rewind()
    reference, quantized = activations["float"], activations["qdq"]
    float_graph = onnx.load(str(float_model), load_external_data=False).graph
    qdq_nodes = {node.name: node for node in onnx.load(str(qdq_model), load_external_data=False).graph.node}
    consumers: dict[str, list[Any]] = {}
    for node in float_graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {init.name for init in float_graph.initializer}

    def as_consumed(tensor: str) -> list[np.ndarray] | None:
        return quantized.get(tensor + _DQ_SUFFIX, quantized.get(tensor))

    def effective_output(node: Any) -> str:
        """The node's output, or that of a ReLU/Clip the quantizer fused into it."""
        tensor = node.output[0]
        users = consumers.get(tensor, [])
        while len(users) == 1 and users[0].op_type in _FUSED_ACTIVATIONS and users[0].name not in qdq_nodes:
            tensor = users[0].output[0]
            users = consumers.get(tensor, [])
        return tensor

    scores = []
    for node in float_graph.node:
        if node.name in skip or node.name not in qdq_nodes or (op_types and node.op_type not in op_types):
            continue
        qdq_node = qdq_nodes[node.name]
        if not any(name.endswith(_DQ_SUFFIX) for name in qdq_node.input):
            continue  # not quantized in this layout
        output = effective_output(node)
        if output not in reference or as_consumed(output) is None:
            continue
        input_scores = [
            sqnr_db(reference[name], as_consumed(name))
            for name in node.input
            if name not in initializers and name in reference and as_consumed(name) is not None
        ]
        inputs_db = min(input_scores) if input_scores else EXACT_SQNR_DB
        scores.append(NodeScore(node.name, inputs_db, sqnr_db(reference[output], as_consumed(output))))
    return sorted(scores, key=lambda score: score.loss_db, reverse=True)
