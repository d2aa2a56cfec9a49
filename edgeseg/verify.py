"""Parity of a deployed model (INT8 ONNX, TensorRT engine) with its float model, in task metrics.

    from edgeseg.verify import verify, check_gates
    report = verify("runs/road", "model.int8.onnx", "synthetic://", max_frames=200)   # with masks
    report = verify("road.onnx", "road.int8.onnx", video="drive.mp4", spec=spec)       # without
    print(report.table())
    failures = check_gates(report, max_miou_drop=0.5, min_agreement=0.99, max_steering_diff=0.1)

Both models run through their own `Segmenter` on the same frames, so each sees the shared
preprocessing its spec describes, exactly as on the robot. The report compares them where it
matters for a robot: mean IoU against the ground truth (and its drop in percentage points),
per-class IoU deltas, pixel agreement between the two class maps, and command parity: the
navigator driven by each model's class maps, in every mode, and how far its commands differ.
Element-wise output differences are not the question. The frames where the two disagree most
are kept and drawn.

A robot's own footage has no masks. With `images=` or `video=` the float model's class maps are
the truth: the engine's per-class IoU is measured against them, and its "mean IoU drop" is
100 - that mean IoU in percentage points (the same measure `calibrate --max-miou-drop` holds
INT8 to on unlabelled frames). The frames are read in order, as the robot saw them, because the
navigator is stateful (smoothing, the clearance of the last few frames): one navigator per
model and mode runs over the whole sequence.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edgeseg.errors import DataError, EdgesegError, SpecError
from edgeseg.evalmetrics import SegmentationScores, finite_or_none, scores_from_confusion
from edgeseg.fileio import atomic_path, atomic_write_text
from edgeseg.scoring import compare
from edgeseg.spec import ModelSpec

WORST_LISTED = 10  # frames listed in the report, worst agreement first
PICTURE_HEIGHT = 192  # small frames are enlarged (nearest) to at least this height for viewing
DISAGREEMENT_RED = (255, 0, 0)
LABELS, FLOAT = "labels", "float"  # ParityReport.reference: what the class maps are scored against


@dataclass(frozen=True)
class FrameParity:
    """How one frame compares.

    Attributes:
        index: the frame's index in the dataset subset, or its position in the footage.
        sample: a readable id (file name, or "#index").
        agreement: fraction of the frame's pixels where both models predict the same class.
        float_iou, engine_iou: each model's mean IoU on this frame against its mask (NaN if
            undefined or when there are no masks).
    """

    index: int
    sample: str
    agreement: float
    float_iou: float
    engine_iou: float

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "sample": self.sample,
            "agreement": self.agreement,
            "float_mean_iou": finite_or_none(self.float_iou),
            "engine_mean_iou": finite_or_none(self.engine_iou),
        }


@dataclass(frozen=True)
class CommandParity:
    """How the navigator's commands differ when it sees through the engine instead of float.

    One navigator per model runs over the frames in order, in one mode.

    Attributes:
        mode: the navigation mode (a key of edgeseg.nav.NAV_MODES).
        frames: commands compared.
        both_drive: frames where neither command stops.
        steering_diff_mean, steering_diff_max: mean and largest |steering difference| over the
            `both_drive` frames (steering is in [-1, 1]; NaN when there are none). A stopped car
            does not move whatever its steering, and a stop on one side only is `stop_mismatch`.
        stop_mismatch: fraction of frames where one model's command stops and the other drives.
        throttle_diff_mean, throttle_diff_max: mean and largest |throttle difference| (throttle
            is in [0, 1], 0 when stopped).
        float_stops, engine_stops: fraction of frames where each model's command stops.
    """

    mode: str
    frames: int
    both_drive: int
    steering_diff_mean: float
    steering_diff_max: float
    stop_mismatch: float
    throttle_diff_mean: float
    throttle_diff_max: float
    float_stops: float
    engine_stops: float

    def to_dict(self) -> dict:
        return {name: (value if isinstance(value, (str, int)) else finite_or_none(value))
                for name, value in self.__dict__.items()}


class CommandComparer:
    """Steps one navigator per model and mode over the class-map sequence; sums the differences."""

    def __init__(self, spec: ModelSpec, modes: Sequence[str] | None = None) -> None:
        from edgeseg.nav import NAV_MODES, Navigator

        self.modes = tuple(modes) if modes is not None else tuple(NAV_MODES)
        self._pairs = [(Navigator.from_spec(spec, mode), Navigator.from_spec(spec, mode)) for mode in self.modes]
        self._diffs: list[list[tuple[float, float, bool, bool]]] = [[] for _ in self.modes]

    def step(self, float_map: np.ndarray, engine_map: np.ndarray) -> None:
        for (float_nav, engine_nav), diffs in zip(self._pairs, self._diffs):
            f, e = float_nav.step(float_map), engine_nav.step(engine_map)
            diffs.append((abs(f.steering - e.steering), abs(f.throttle - e.throttle), f.stop, e.stop))

    def results(self) -> list[CommandParity]:
        results = []
        for mode, diffs in zip(self.modes, self._diffs):
            if not diffs:
                continue
            steering, throttle, float_stop, engine_stop = (np.asarray(column) for column in zip(*diffs))
            driving = steering[~float_stop & ~engine_stop]
            results.append(CommandParity(
                mode=mode,
                frames=len(diffs),
                both_drive=int(driving.size),
                steering_diff_mean=float(driving.mean()) if driving.size else math.nan,
                steering_diff_max=float(driving.max()) if driving.size else math.nan,
                stop_mismatch=float(np.mean(float_stop != engine_stop)),
                throttle_diff_mean=float(throttle.mean()),
                throttle_diff_max=float(throttle.max()),
                float_stops=float(float_stop.mean()),
                engine_stops=float(engine_stop.mean()),
            ))
        return results


@dataclass
class FrameScores:
    """What `score_frames` accumulates over the frames: one scoring for both verify modes.

    Attributes:
        float_truth, engine_truth: confusion matrices of each model against the masks (all
            zero without masks).
        engine_float: the engine's confusion matrix against the float model's class maps.
        equal, pixels: pixels where the two agree, pixels compared.
        frames: one FrameParity per frame, in order.
        kept: (FrameParity, image, float map, engine map) of the least-agreeing frames, worst first.
        commands: command parity per navigation mode (empty when not asked for).
        seconds: "float" and "engine": time in each Segmenter.
    """

    float_truth: np.ndarray
    engine_truth: np.ndarray
    engine_float: np.ndarray
    equal: int = 0
    pixels: int = 0
    frames: list[FrameParity] = field(default_factory=list)
    kept: list[tuple] = field(default_factory=list)
    commands: list[CommandParity] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"float": 0.0, "engine": 0.0})


def score_frames(
    float_seg,
    engine_seg,
    frames: Iterable[tuple[int, str, np.ndarray, np.ndarray | None]],
    batch: int = 8,
    pictures: int = 4,
    commands: CommandComparer | None = None,
    progress: bool = False,
    total: int | None = None,
) -> FrameScores:
    """Run both Segmenters over the frames (`edgeseg.scoring.compare`) and score the engine against float (and masks).

    Args:
        float_seg, engine_seg: Segmenters (anything with `spec` and `seg_batch`).
        frames: (index, sample id, RGB frame, mask or None) in order.
        batch: frames per forward pass.
        pictures: how many of the least-agreeing frames to keep for drawing.
        commands: steps the navigators on each pair of class maps, in frame order.
        total: the number of frames, for the progress bar.
    """
    kept: list[tuple] = []  # min-heap on -disagreement rank: the `pictures` least-agreeing frames
    frame_list: list[FrameParity] = []
    counts = [0, 0]  # pixels where the two agree, pixels compared

    def on_frame(key, image, f_map, e_map, float_iou, engine_iou) -> None:
        index, sample = key
        if commands is not None:
            commands.step(f_map, e_map)
        same = int(np.count_nonzero(f_map == e_map))
        counts[0] += same
        counts[1] += f_map.size
        parity = FrameParity(index, sample, same / f_map.size, float_iou, engine_iou)
        frame_list.append(parity)
        if pictures:
            # heap key: the most-agreeing of the kept frames sits on top, ready to be replaced
            item = (-parity.agreement, -index, parity, image, f_map, e_map)
            if len(kept) < pictures:
                heapq.heappush(kept, item)
            elif item[:2] > kept[0][:2]:
                heapq.heapreplace(kept, item)

    def samples() -> Iterator[tuple]:
        for index, sample, image, mask in frames:
            if mask is not None and mask.shape != image.shape[:2]:
                raise DataError(
                    f"frame {sample}: mask {mask.shape} and image {image.shape[:2]} sizes differ; fix the dataset"
                )
            yield image, mask, (index, sample)

    compared = compare(float_seg, engine_seg, samples(), batch, on_frame, "verify" if progress else None, total)
    scores = FrameScores(
        compared.first.confusion, compared.second.confusion, compared.second_vs_first.confusion,
        equal=counts[0], pixels=counts[1], frames=frame_list,
        seconds={"float": compared.seconds[0], "engine": compared.seconds[1]},
    )
    scores.kept = [item[2:] for item in sorted(kept, key=lambda item: item[:2], reverse=True)]
    if commands is not None:
        scores.commands = commands.results()
    return scores


@dataclass
class ParityReport:
    """The comparison of the engine with the float model on a set of frames.

    Attributes:
        float_model, engine_model: the two paths, as given.
        float_backend, engine_backend: the backends that ran them.
        data, subset: the frames' source ("images DIR" or "video FILE" without masks; subset "").
        frames: frames compared.
        pixels: pixels compared (all of them; ignore pixels count for agreement, not IoU).
        reference: LABELS (scored against masks) or FLOAT (no masks: the float model's class
            maps are the truth).
        float_scores, engine_scores: each model's scores against the masks; None without masks.
        engine_vs_float: the engine's scores with the float model's class maps as the truth.
        miou_drop_pp: with masks, float mean IoU minus engine mean IoU; without, 100 minus the
            engine's mean IoU against float; in percentage points (positive = worse).
        per_class_delta: engine IoU minus float IoU per class, in percentage points (None if
            the class is in neither truth nor predictions; all None without masks).
        agreement: fraction of all pixels where both models predict the same class.
        commands: command parity per navigation mode; empty when the spec names no traversable class.
        worst: the frames with the lowest agreement, worst first.
        pictures: the disagreement pictures written, worst first.
        timings: seconds: "float" and "engine" (their Segmenters), "total" (wall time).
    """

    float_model: str
    engine_model: str
    float_backend: str
    engine_backend: str
    data: str
    subset: str
    frames: int
    pixels: int
    float_scores: SegmentationScores | None
    engine_scores: SegmentationScores | None
    miou_drop_pp: float
    per_class_delta: dict[str, float | None]
    agreement: float
    engine_vs_float: SegmentationScores | None = None
    reference: str = LABELS
    commands: list[CommandParity] = field(default_factory=list)
    worst: list[FrameParity] = field(default_factory=list)
    pictures: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        def mean_iou(scores: SegmentationScores | None) -> float | None:
            return None if scores is None else finite_or_none(scores.mean_iou)

        return {
            "float_model": self.float_model,
            "engine_model": self.engine_model,
            "float_backend": self.float_backend,
            "engine_backend": self.engine_backend,
            "data": self.data,
            "subset": self.subset,
            "reference": self.reference,
            "frames": self.frames,
            "pixels": self.pixels,
            "float_mean_iou": mean_iou(self.float_scores),
            "engine_mean_iou": mean_iou(self.engine_scores),
            "miou_drop_pp": finite_or_none(self.miou_drop_pp),
            "agreement": self.agreement,
            "per_class_iou_delta_pp": self.per_class_delta,
            "float_scores": None if self.float_scores is None else self.float_scores.to_dict(),
            "engine_scores": None if self.engine_scores is None else self.engine_scores.to_dict(),
            "engine_vs_float": None if self.engine_vs_float is None else self.engine_vs_float.to_dict(),
            "commands": [command.to_dict() for command in self.commands],
            "worst_frames": [frame.to_dict() for frame in self.worst],
            "pictures": self.pictures,
            "timings_s": self.timings,
        }

    def table(self) -> str:
        """Plain text: per-class IoU (against masks, or of the engine against float), commands, summary."""
        source = f"{self.data} [{self.subset}]" if self.subset else self.data
        lines = [
            f"float : {self.float_model} ({self.float_backend})",
            f"engine: {self.engine_model} ({self.engine_backend})",
            f"data  : {source}, {self.frames} frames"
            + ("" if self.reference == LABELS else " without masks: the float model's class maps are the truth"),
            "",
        ]
        if self.float_scores is not None and self.engine_scores is not None:
            lines += self._labelled_rows()
        elif self.engine_vs_float is not None:
            lines += self._against_float_rows()
        lines += ["", f"pixel agreement {self.agreement:.4f} ({self.pixels} pixels)"]
        if self.reference == LABELS:
            lines[-1] = f"mean IoU drop {_pp(self.miou_drop_pp)} pp   " + lines[-1]
        lines += self._command_rows()
        lines.append(
            f"time: float {self.timings.get('float', 0.0):.2f} s, engine {self.timings.get('engine', 0.0):.2f} s"
        )
        if self.worst:
            listed = ", ".join(f"{f.sample} {f.agreement:.4f}" for f in self.worst[:5])
            lines.append(f"least agreement: {listed}")
        return "\n".join(lines)

    def _labelled_rows(self) -> list[str]:
        names = list(self.float_scores.class_names)
        width = max([len("class")] + [len(n) for n in names])
        rows = [f"{'class':<{width}}  {'float IoU':>9}  {'engine IoU':>10}  {'delta pp':>8}"]
        for name, f_iou, e_iou in zip(names, self.float_scores.per_class_iou, self.engine_scores.per_class_iou):
            rows.append(f"{name:<{width}}  {_pct(f_iou):>9}  {_pct(e_iou):>10}  {_pp(self.per_class_delta[name]):>8}")
        rows.append(
            f"{'mean':<{width}}  {_pct(self.float_scores.mean_iou):>9}  "
            f"{_pct(self.engine_scores.mean_iou):>10}  {_pp(0.0 - self.miou_drop_pp):>8}"
        )
        return rows

    def _against_float_rows(self) -> list[str]:
        scores = self.engine_vs_float
        names = list(scores.class_names)
        width = max([len("class")] + [len(n) for n in names])
        support = scores.confusion.sum(axis=1)
        rows = [f"{'class':<{width}}  {'IoU vs float':>12}  {'float pixels':>12}"]
        for name, iou, count in zip(names, scores.per_class_iou, support):
            rows.append(f"{name:<{width}}  {_pct(iou):>12}  {int(count):>12}")
        rows.append(f"{'mean':<{width}}  {_pct(scores.mean_iou):>12}  ({_pp(-self.miou_drop_pp)} pp from 100)")
        return rows

    def _command_rows(self) -> list[str]:
        if not self.commands:
            return ["commands: not compared (the spec names no traversable class)"]
        rows = ["", "commands (navigator on each model's class maps, frames in order; steering where both drive)",
                f"{'mode':<12}  {'both drive':>10}  {'steer mean':>10}  {'steer max':>9}  {'stop mismatch':>13}  "
                f"{'throttle mean':>13}  {'throttle max':>12}  {'stops f / e':>11}"]
        for c in self.commands:
            rows.append(
                f"{c.mode:<12}  {c.both_drive:>10}  {_num(c.steering_diff_mean):>10}  {_num(c.steering_diff_max):>9}  "
                f"{c.stop_mismatch:>13.2%}  {c.throttle_diff_mean:>13.4f}  {c.throttle_diff_max:>12.4f}  "
                f"{f'{c.float_stops:.0%} / {c.engine_stops:.0%}':>11}"
            )
        return rows


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.2f}"


def _num(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}"


def _pp(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def check_specs_match(float_spec: ModelSpec, engine_spec: ModelSpec, float_path: str, engine_path: str) -> None:
    """Raise SpecError unless both models have the same classes and input size.

    Comparing models of different classes or sizes would give numbers that mean nothing.
    """
    if float_spec.class_names != engine_spec.class_names:
        raise SpecError(
            f"the models have different classes: {float_path} has {list(float_spec.class_names)}, "
            f"{engine_path} has {list(engine_spec.class_names)}; verify an engine built from this float model"
        )
    if float_spec.input_size != engine_spec.input_size:
        raise SpecError(
            f"the models have different input sizes: {float_path} takes "
            f"{float_spec.input_height}x{float_spec.input_width}, {engine_path} takes "
            f"{engine_spec.input_height}x{engine_spec.input_width}; verify an engine built from this float model"
        )


def check_gate_values(
    max_miou_drop: float | None = None,
    min_agreement: float | None = None,
    max_steering_diff: float | None = None,
    max_stop_mismatch: float | None = None,
) -> None:
    """Reject gate thresholds that cannot be meant (checked before any model runs)."""
    if max_miou_drop is not None and not (math.isfinite(max_miou_drop) and max_miou_drop >= 0):
        raise EdgesegError(
            f"--max-miou-drop is in percentage points of mean IoU and must be >= 0, got {max_miou_drop}"
        )
    if min_agreement is not None and not (0.0 <= min_agreement <= 1.0):
        raise EdgesegError(
            f"--min-agreement is a fraction of pixels between 0 and 1 (e.g. 0.99), got {min_agreement}"
        )
    if max_steering_diff is not None and not (0.0 <= max_steering_diff <= 2.0):
        raise EdgesegError(
            f"--max-steering-diff is a steering difference between 0 and 2 (steering spans -1..1; e.g. 0.1), "
            f"got {max_steering_diff}"
        )
    if max_stop_mismatch is not None and not (0.0 <= max_stop_mismatch <= 1.0):
        raise EdgesegError(
            f"--max-stop-mismatch is a fraction of frames between 0 and 1 (e.g. 0.02), got {max_stop_mismatch}"
        )


def check_gates(
    report: ParityReport,
    max_miou_drop: float | None = None,
    min_agreement: float | None = None,
    max_steering_diff: float | None = None,
    max_stop_mismatch: float | None = None,
) -> list[str]:
    """Failure messages of the gates the report does not pass; empty when all pass.

    Args:
        max_miou_drop: the largest acceptable mean-IoU drop, in percentage points (0.5 means
            72.0% -> 71.5% passes; without masks, the engine's mean IoU against float >= 99.5%).
        min_agreement: the least acceptable pixel agreement, a fraction (0.99).
        max_steering_diff: the largest acceptable |steering difference| on any frame where both
            models drive, in any mode.
        max_stop_mismatch: the largest acceptable fraction of frames, in any mode, where one
            model's command stops and the other's drives.
    """
    check_gate_values(max_miou_drop, min_agreement, max_steering_diff, max_stop_mismatch)
    failures = []
    if max_miou_drop is not None:
        drop = report.miou_drop_pp
        if not math.isfinite(drop):
            failures.append(
                "max-miou-drop: the mean IoU is undefined (no labelled pixels in the frames), "
                "so the drop cannot be checked; verify on data with masks"
            )
        elif drop > max_miou_drop:
            if report.reference == LABELS:
                what = (f"mean IoU dropped {drop:.2f} pp "
                        f"({_pct(report.float_scores.mean_iou)}% -> {_pct(report.engine_scores.mean_iou)}%)")
            else:
                what = f"the engine's mean IoU against float is {100 - drop:.2f}%, {drop:.2f} pp below 100"
            failures.append(f"max-miou-drop: {what}, over the {max_miou_drop:g} pp limit by {drop - max_miou_drop:.2f} pp")
    if min_agreement is not None and report.agreement < min_agreement:
        failures.append(
            f"min-agreement: pixel agreement {report.agreement:.4f} is below {min_agreement:g} "
            f"by {min_agreement - report.agreement:.4f}"
        )
    for gate, limit, value_of, unit in (
        ("max-steering-diff", max_steering_diff, lambda c: c.steering_diff_max,
         "largest |steering difference| where both drive"),
        ("max-stop-mismatch", max_stop_mismatch, lambda c: c.stop_mismatch, "share of frames where one stops"),
    ):
        if limit is None:
            continue
        if not report.commands:
            failures.append(f"{gate}: no commands were compared (the spec names no traversable class); "
                            "name the classes the robot drives on in the spec (traversable)")
            continue
        over = [f"{c.mode} {value_of(c):.4f}" for c in report.commands
                if math.isfinite(value_of(c)) and value_of(c) > limit + 1e-12]
        if over:
            failures.append(f"{gate}: {unit} is over {limit:g} in {', '.join(over)}")
    return failures


def verify(
    float_path: str | Path,
    engine_path: str | Path,
    data: str | None = None,
    subset: str = "val",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    max_frames: int | None = None,
    batch: int = 8,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    pictures: int = 4,
    progress: bool = True,
    spec: ModelSpec | None = None,
    *,
    images: str | Path | None = None,
    video: str | Path | None = None,
) -> ParityReport:
    """Run the float model and the engine on the same frames and compare them in task metrics.

    Exactly one of `data` (masks: scored against them), `images` or `video` (no masks: the float
    model's class maps are the truth) says where the frames come from.

    Args:
        float_path: the reference: a run folder, `.keras` file or float `.onnx`.
        engine_path: the deployed model: an INT8/FP16 `.onnx` or a TensorRT `.engine`.
        data: a `--data` string whose classes are the models' classes.
        subset, split: which frames of `data` (folders are split with training's fixed seed).
        max_frames: with `data`, at most this many frames spread over the subset; with images
            or video, the first this many frames (the navigator needs them consecutive).
        batch: frames per forward pass.
        out_dir: where the disagreement pictures go; None puts them beside `json_path`, or
            writes none when there is no `json_path` either.
        json_path: write the report as JSON here.
        pictures: how many of the most-disagreeing frames to draw.
        spec: the spec of a float model that carries none (a third-party .h5, SavedModel or
            ONNX); the engine made from it by `calibrate` carries it.
        images: a folder of frames, read in name order (numbers compared as numbers).
        video: a video file, read frame by frame.

    Raises:
        SpecError: the two models differ in classes or input size.
        DataError: the data's classes differ from the models', or there are no frames.
    """
    from edgeseg.runtime import Segmenter

    if batch < 1 or pictures < 0 or (max_frames is not None and max_frames < 1):
        raise EdgesegError(
            f"batch and max_frames must be >= 1 and pictures >= 0, got batch={batch}, "
            f"max_frames={max_frames}, pictures={pictures}"
        )
    given = [name for name, value in (("data", data), ("images", images), ("video", video)) if value is not None]
    if len(given) != 1:
        raise EdgesegError(
            "verify needs exactly one source of frames: --data SPEC (with masks), --images DIR or --video FILE "
            f"(without masks); got {', '.join(given) or 'none'}"
        )
    start = time.perf_counter()
    with Segmenter.open(float_path, spec=spec) as float_seg, Segmenter.open(engine_path) as engine_seg:
        spec = float_seg.spec
        check_specs_match(spec, engine_seg.spec, str(float_path), str(engine_path))
        commands = CommandComparer(spec) if spec.traversable else None
        if data is not None:
            (frames, total), source = _dataset_frames(data, spec, subset, split, max_frames), data
        else:
            frames, total, source = _footage_frames(images, video, max_frames)
        with contextlib.closing(frames):
            scores = score_frames(float_seg, engine_seg, frames, batch, pictures, commands, progress, total)
        float_backend, engine_backend = float_seg.backend_name, engine_seg.backend_name
    if not scores.frames:
        raise DataError(f"{source} gave no frame to compare; pass frames the models can read")

    labelled = data is not None
    engine_vs_float = scores_from_confusion(scores.engine_float, spec.class_names)
    if labelled:
        float_scores = scores_from_confusion(scores.float_truth, spec.class_names)
        engine_scores = scores_from_confusion(scores.engine_truth, spec.class_names)
        drop = 100.0 * (float_scores.mean_iou - engine_scores.mean_iou)
        per_class_delta = {
            name: finite_or_none(100.0 * (e - f))
            for name, f, e in zip(spec.class_names, float_scores.per_class_iou, engine_scores.per_class_iou)
        }
    else:
        float_scores = engine_scores = None
        drop = 100.0 * (1.0 - engine_vs_float.mean_iou)
        per_class_delta = {name: None for name in spec.class_names}
    frame_list = sorted(scores.frames, key=lambda frame: (frame.agreement, frame.index))
    report = ParityReport(
        float_model=str(float_path),
        engine_model=str(engine_path),
        float_backend=float_backend,
        engine_backend=engine_backend,
        data=source,
        subset=subset if labelled else "",
        frames=len(frame_list),
        pixels=scores.pixels,
        float_scores=float_scores,
        engine_scores=engine_scores,
        miou_drop_pp=drop,
        per_class_delta=per_class_delta,
        agreement=scores.equal / scores.pixels if scores.pixels else math.nan,
        engine_vs_float=engine_vs_float,
        reference=LABELS if labelled else FLOAT,
        commands=scores.commands,
        worst=frame_list[:WORST_LISTED],
        timings={**scores.seconds, "total": time.perf_counter() - start},
    )
    if out_dir is None and json_path is not None:
        out_dir = Path(json_path).parent
    if out_dir is not None and scores.kept:
        prefix = Path(json_path).stem + "-" if json_path is not None else ""
        report.pictures = _write_pictures(scores.kept, Path(out_dir), prefix, spec)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _dataset_frames(data: str, spec: ModelSpec, subset: str, split, max_frames: int | None) -> tuple[Iterator, int]:
    """(index, sample id, image, mask) of `max_frames` frames spread over a dataset subset, and their count."""
    from edgeseg.data.base import sample_id, spread_indices
    from edgeseg.data.sources import open_dataset_for_model

    dataset = open_dataset_for_model(data, spec, subset, split, whose="the models'",
                                     hint="verify on data with the models' classes")
    indices = spread_indices(len(dataset), len(dataset) if max_frames is None else max_frames)
    return ((index, sample_id(dataset, index), *dataset.load(index)) for index in indices), len(indices)


def _footage_frames(images, video, max_frames: int | None) -> tuple[Iterator[tuple], int | None, str]:
    """Frames of an image folder or a video file, in order, through the frame sources (edgeseg.sources).

    Returns (frames, how many there will be if known, a description); closing the frames
    generator closes the source.
    """
    from edgeseg.sources import ImageFolderSource, VideoFileSource

    if video is not None:
        source, where = VideoFileSource(video), f"video {video}"
        total = source.frame_count or None
    else:
        if not Path(images).is_dir():
            raise DataError(f"--images {images} is not a folder; pass a folder of .jpg/.png images")
        source, where = ImageFolderSource(images), f"images {images}"
        total = len(source.files)
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames

    def frames() -> Iterator[tuple[int, str, np.ndarray, None]]:
        with source:
            for index, frame in enumerate(source.frames()):
                if max_frames is not None and index >= max_frames:
                    return
                name = Path(source.last_path).name if video is None else f"#{index}"
                yield index, name, frame, None

    return frames(), total, where


def disagreement_picture(
    image: np.ndarray, float_map: np.ndarray, engine_map: np.ndarray, palette: Sequence[Sequence[int]]
) -> np.ndarray:
    """image | float prediction | engine prediction | disagreement in red over the image (RGB)."""
    import cv2

    from edgeseg.runtime.overlay import colorize

    differ = float_map != engine_map
    marked = image.copy()
    marked[differ] = DISAGREEMENT_RED
    panels = [image, colorize(float_map, palette), colorize(engine_map, palette), marked]
    picture = np.hstack(panels)
    if picture.shape[0] < PICTURE_HEIGHT:
        factor = -(-PICTURE_HEIGHT // picture.shape[0])
        picture = cv2.resize(
            picture, (picture.shape[1] * factor, picture.shape[0] * factor), interpolation=cv2.INTER_NEAREST
        )
    header = np.full((22, picture.shape[1], 3), 255, np.uint8)
    panel_width = picture.shape[1] // len(panels)
    for slot, title in enumerate(("image", "float", "engine", "disagreement")):
        cv2.putText(header, title, (slot * panel_width + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.vstack([header, picture])


def _write_pictures(kept: list[tuple], out_dir: Path, prefix: str, spec: ModelSpec) -> list[str]:
    """One PNG per kept frame, worst first; returns their paths."""
    import cv2

    paths = []
    for rank, (parity, image, f_map, e_map) in enumerate(kept, start=1):
        picture = disagreement_picture(image, f_map, e_map, spec.palette)
        path = out_dir / f"{prefix}disagreement-{rank:02d}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
                raise EdgesegError(f"cannot write {path}; choose a writable --out folder")
        paths.append(str(path))
    return paths
