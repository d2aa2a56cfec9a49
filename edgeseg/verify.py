"""Parity of a deployed model (INT8 ONNX, TensorRT engine) with its float model, in task metrics.

    from edgeseg.verify import verify, check_gates
    report = verify("runs/road", "model.int8.onnx", "synthetic://", max_frames=200)
    print(report.table())
    failures = check_gates(report, max_miou_drop=0.5, min_agreement=0.99)

Both models run through their own `Segmenter` on the same dataset frames, so each sees the shared
preprocessing its spec describes, exactly as on the robot. The report compares them where it
matters for a robot: mean IoU against the ground truth (and its drop in percentage points),
per-class IoU deltas, and pixel agreement between the two class maps; element-wise output
differences are not the question. The frames where the two disagree most are kept and drawn.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from edgeseg.errors import DataError, EdgesegError, SpecError
from edgeseg.evalmetrics import SegmentationScores, confusion_matrix, per_image_iou, scores_from_confusion
from edgeseg.fileio import atomic_path, atomic_write_text
from edgeseg.spec import ModelSpec

WORST_LISTED = 10  # frames listed in the report, worst agreement first
PICTURE_HEIGHT = 192  # small frames are enlarged (nearest) to at least this height for viewing
DISAGREEMENT_RED = (255, 0, 0)


@dataclass(frozen=True)
class FrameParity:
    """How one frame compares.

    Attributes:
        index: the frame's index in the dataset subset.
        sample: a readable id (file name, or "#index").
        agreement: fraction of the frame's pixels where both models predict the same class.
        float_iou, engine_iou: each model's mean IoU on this frame (NaN if undefined).
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
            "float_mean_iou": _finite(self.float_iou),
            "engine_mean_iou": _finite(self.engine_iou),
        }


@dataclass
class ParityReport:
    """The comparison of the engine with the float model on one dataset subset.

    Attributes:
        float_model, engine_model: the two paths, as given.
        float_backend, engine_backend: the backends that ran them.
        data, subset: the frames' source.
        frames: frames compared.
        pixels: pixels compared (all of them; ignore pixels count for agreement, not IoU).
        float_scores, engine_scores: each model's scores against the ground truth.
        miou_drop_pp: float mean IoU minus engine mean IoU, in percentage points (positive = worse).
        per_class_delta: engine IoU minus float IoU per class, in percentage points (None if
            the class is in neither truth nor predictions).
        agreement: fraction of all pixels where both models predict the same class.
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
    float_scores: SegmentationScores
    engine_scores: SegmentationScores
    miou_drop_pp: float
    per_class_delta: dict[str, float | None]
    agreement: float
    worst: list[FrameParity] = field(default_factory=list)
    pictures: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "float_model": self.float_model,
            "engine_model": self.engine_model,
            "float_backend": self.float_backend,
            "engine_backend": self.engine_backend,
            "data": self.data,
            "subset": self.subset,
            "frames": self.frames,
            "pixels": self.pixels,
            "float_mean_iou": _finite(self.float_scores.mean_iou),
            "engine_mean_iou": _finite(self.engine_scores.mean_iou),
            "miou_drop_pp": _finite(self.miou_drop_pp),
            "agreement": self.agreement,
            "per_class_iou_delta_pp": self.per_class_delta,
            "float_scores": self.float_scores.to_dict(),
            "engine_scores": self.engine_scores.to_dict(),
            "worst_frames": [frame.to_dict() for frame in self.worst],
            "pictures": self.pictures,
            "timings_s": self.timings,
        }

    def table(self) -> str:
        """Plain text: per-class IoU of both models and the delta, then the summary lines."""
        names = list(self.float_scores.class_names)
        width = max([len("class")] + [len(n) for n in names])
        lines = [
            f"float : {self.float_model} ({self.float_backend})",
            f"engine: {self.engine_model} ({self.engine_backend})",
            f"data  : {self.data} [{self.subset}], {self.frames} frames",
            "",
            f"{'class':<{width}}  {'float IoU':>9}  {'engine IoU':>10}  {'delta pp':>8}",
        ]
        for name, f_iou, e_iou in zip(names, self.float_scores.per_class_iou, self.engine_scores.per_class_iou):
            lines.append(
                f"{name:<{width}}  {_pct(f_iou):>9}  {_pct(e_iou):>10}  {_pp(self.per_class_delta[name]):>8}"
            )
        lines.append(
            f"{'mean':<{width}}  {_pct(self.float_scores.mean_iou):>9}  "
            f"{_pct(self.engine_scores.mean_iou):>10}  {_pp(0.0 - self.miou_drop_pp):>8}"
        )
        lines += [
            "",
            f"mean IoU drop {_pp(self.miou_drop_pp)} pp   pixel agreement {self.agreement:.4f} "
            f"({self.pixels} pixels)",
            f"time: float {self.timings.get('float', 0.0):.2f} s, engine {self.timings.get('engine', 0.0):.2f} s",
        ]
        if self.worst:
            listed = ", ".join(f"{f.sample} {f.agreement:.4f}" for f in self.worst[:5])
            lines.append(f"least agreement: {listed}")
        return "\n".join(lines)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.2f}"


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


def check_gate_values(max_miou_drop: float | None = None, min_agreement: float | None = None) -> None:
    """Reject gate thresholds that cannot be meant (checked before any model runs)."""
    if max_miou_drop is not None and not (math.isfinite(max_miou_drop) and max_miou_drop >= 0):
        raise EdgesegError(
            f"--max-miou-drop is in percentage points of mean IoU and must be >= 0, got {max_miou_drop}"
        )
    if min_agreement is not None and not (0.0 <= min_agreement <= 1.0):
        raise EdgesegError(
            f"--min-agreement is a fraction of pixels between 0 and 1 (e.g. 0.99), got {min_agreement}"
        )


def check_gates(
    report: ParityReport, max_miou_drop: float | None = None, min_agreement: float | None = None
) -> list[str]:
    """Failure messages of the gates the report does not pass; empty when all pass.

    Args:
        max_miou_drop: the largest acceptable mean-IoU drop, in percentage points (0.5 means
            72.0% -> 71.5% passes).
        min_agreement: the least acceptable pixel agreement, a fraction (0.99).
    """
    check_gate_values(max_miou_drop, min_agreement)
    failures = []
    if max_miou_drop is not None:
        drop = report.miou_drop_pp
        if not math.isfinite(drop):
            failures.append(
                "max-miou-drop: the mean IoU is undefined (no labelled pixels in the frames), "
                "so the drop cannot be checked; verify on data with masks"
            )
        elif drop > max_miou_drop:
            failures.append(
                f"max-miou-drop: mean IoU dropped {drop:.2f} pp "
                f"({_pct(report.float_scores.mean_iou)}% -> {_pct(report.engine_scores.mean_iou)}%), "
                f"over the {max_miou_drop:g} pp limit by {drop - max_miou_drop:.2f} pp"
            )
    if min_agreement is not None and report.agreement < min_agreement:
        failures.append(
            f"min-agreement: pixel agreement {report.agreement:.4f} is below {min_agreement:g} "
            f"by {min_agreement - report.agreement:.4f}"
        )
    return failures


def verify(
    float_path: str | Path,
    engine_path: str | Path,
    data: str,
    subset: str = "val",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    max_frames: int | None = None,
    batch: int = 8,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    pictures: int = 4,
    progress: bool = True,
    spec: ModelSpec | None = None,
) -> ParityReport:
    """Run the float model and the engine on the same frames and compare them in task metrics.

    Args:
        float_path: the reference: a run folder, `.keras` file or float `.onnx`.
        engine_path: the deployed model: an INT8/FP16 `.onnx` or a TensorRT `.engine`.
        data: a `--data` string whose classes are the models' classes.
        subset, split: which frames (folders are split with training's fixed seed).
        max_frames: compare at most this many frames, spread over the subset.
        batch: frames per forward pass.
        out_dir: where the disagreement pictures go; None puts them beside `json_path`, or
            writes none when there is no `json_path` either.
        json_path: write the report as JSON here.
        pictures: how many of the most-disagreeing frames to draw.
        spec: the spec of a float model that carries none (a third-party .h5 or SavedModel).

    Raises:
        SpecError: the two models differ in classes or input size.
        DataError: the data's classes differ from the models', or the subset is empty.
    """
    from edgeseg.data.sources import open_dataset_for_model
    from edgeseg.runtime import Segmenter

    if batch < 1 or pictures < 0 or (max_frames is not None and max_frames < 1):
        raise EdgesegError(
            f"batch and max_frames must be >= 1 and pictures >= 0, got batch={batch}, "
            f"max_frames={max_frames}, pictures={pictures}"
        )
    start = time.perf_counter()
    with Segmenter.open(float_path, spec=spec) as float_seg, Segmenter.open(engine_path) as engine_seg:
        spec = float_seg.spec
        check_specs_match(spec, engine_seg.spec, str(float_path), str(engine_path))
        dataset = open_dataset_for_model(data, spec, subset, split, whose="the models'",
                                         hint="verify on data with the models' classes")
        indices = _spread(len(dataset), max_frames)
        result = _compare(float_seg, engine_seg, dataset, indices, batch, pictures, progress)
        float_backend, engine_backend = float_seg.backend_name, engine_seg.backend_name

    cm_float, cm_engine, equal, pixels, frames, kept, seconds = result
    float_scores = scores_from_confusion(cm_float, spec.class_names)
    engine_scores = scores_from_confusion(cm_engine, spec.class_names)
    per_class_delta = {
        name: _finite(100.0 * (e - f))
        for name, f, e in zip(spec.class_names, float_scores.per_class_iou, engine_scores.per_class_iou)
    }
    frames.sort(key=lambda frame: (frame.agreement, frame.index))
    report = ParityReport(
        float_model=str(float_path),
        engine_model=str(engine_path),
        float_backend=float_backend,
        engine_backend=engine_backend,
        data=data,
        subset=subset,
        frames=len(frames),
        pixels=pixels,
        float_scores=float_scores,
        engine_scores=engine_scores,
        miou_drop_pp=100.0 * (float_scores.mean_iou - engine_scores.mean_iou),
        per_class_delta=per_class_delta,
        agreement=equal / pixels if pixels else math.nan,
        worst=frames[:WORST_LISTED],
        timings={**seconds, "total": time.perf_counter() - start},
    )
    if out_dir is None and json_path is not None:
        out_dir = Path(json_path).parent
    if out_dir is not None and kept:
        prefix = Path(json_path).stem + "-" if json_path is not None else ""
        report.pictures = _write_pictures(kept, Path(out_dir), prefix, spec)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _spread(total: int, count: int | None) -> list[int]:
    """`count` indices spread evenly over range(total), all of them if count is None or larger."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count).round()})


def _sample_id(dataset, index: int) -> str:
    paths = getattr(dataset, "image_paths", None)
    return Path(paths[index]).name if paths else f"#{index}"


def _compare(float_seg, engine_seg, dataset, indices: Sequence[int], batch: int, pictures: int, progress: bool):
    """Run both models over the frames; accumulate confusions, agreement and the worst frames."""
    spec = float_seg.spec
    classes, ignore = spec.num_classes, spec.ignore_index
    cm_float = np.zeros((classes, classes), dtype=np.int64)
    cm_engine = np.zeros_like(cm_float)
    equal = pixels = 0
    frames: list[FrameParity] = []
    kept: list[tuple] = []  # min-heap on -disagreement rank: the `pictures` least-agreeing frames
    seconds = {"float": 0.0, "engine": 0.0}
    bar = tqdm(total=len(indices), desc="verify", unit="frame", disable=not progress)
    for begin in range(0, len(indices), batch):
        chunk = indices[begin : begin + batch]
        samples = [dataset.load(i) for i in chunk]
        images = [image for image, _ in samples]
        tick = time.perf_counter()
        float_maps = [s.class_map for s in float_seg.seg_batch(images)]
        tock = time.perf_counter()
        engine_maps = [s.class_map for s in engine_seg.seg_batch(images)]
        seconds["float"] += tock - tick
        seconds["engine"] += time.perf_counter() - tock
        for index, (image, mask), f_map, e_map in zip(chunk, samples, float_maps, engine_maps):
            if mask.shape != f_map.shape:
                raise DataError(
                    f"frame {_sample_id(dataset, index)}: mask {mask.shape} and image "
                    f"{f_map.shape} sizes differ; fix the dataset"
                )
            cm_float += confusion_matrix(mask, f_map, classes, ignore)
            cm_engine += confusion_matrix(mask, e_map, classes, ignore)
            same = int(np.count_nonzero(f_map == e_map))
            equal += same
            pixels += f_map.size
            parity = FrameParity(
                index=index,
                sample=_sample_id(dataset, index),
                agreement=same / f_map.size,
                float_iou=float(per_image_iou(mask, f_map, classes, ignore)[0]),
                engine_iou=float(per_image_iou(mask, e_map, classes, ignore)[0]),
            )
            frames.append(parity)
            if pictures:
                # heap key: the most-agreeing of the kept frames sits on top, ready to be replaced
                item = (-parity.agreement, -index, parity, image, f_map, e_map)
                if len(kept) < pictures:
                    heapq.heappush(kept, item)
                elif item[:2] > kept[0][:2]:
                    heapq.heapreplace(kept, item)
        bar.update(len(chunk))
    bar.close()
    kept = [item[2:] for item in sorted(kept, key=lambda item: item[:2], reverse=True)]
    return cm_float, cm_engine, equal, pixels, frames, kept, seconds


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
