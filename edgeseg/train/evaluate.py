"""`edgeseg evaluate`: task metrics of a trained model on a dataset split, with pictures.

Predictions go through the runtime's own preprocessing (`edgeseg.runtime.preprocess`) and are
compared at the mask's full resolution, exactly as a deployed engine is judged by `verify`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from edgeseg.errors import ModelError
from edgeseg.data.base import sample_id
from edgeseg.evalmetrics import confusion_matrix, finite_or_none, format_table, per_image_iou, scores_from_confusion
from edgeseg.fileio import atomic_write_text
from edgeseg.runtime.preprocess import class_map_from_output, preprocess, resize_class_map
from edgeseg.spec import SPEC_FILENAME, ModelSpec


@dataclass
class EvalReport:
    model: str
    data: str
    subset: str
    images: int
    scores: object  # SegmentationScores
    table: str
    per_image: list[tuple[str, float]] = field(default_factory=list)  # (sample id, mean IoU)
    pictures: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data": self.data,
            "subset": self.subset,
            "images": self.images,
            "scores": self.scores.to_dict(),
            "per_image_mean_iou": [{"sample": s, "mean_iou": finite_or_none(v)} for s, v in self.per_image],
            "pictures": self.pictures,
        }


def load_model_and_spec(path: str | Path):
    """Load a Keras model and its ModelSpec from a run folder or a `.keras` file beside spec.json."""
    from edgeseg.runtime.keras_backend import MODEL_FILENAME, load_keras_model

    path = Path(path)
    model_path = path / MODEL_FILENAME if path.is_dir() else path
    if not model_path.exists():
        raise ModelError(f"no model at {model_path}; pass a run folder from `edgeseg train` or a .keras file")
    spec = ModelSpec.load(model_path.parent / SPEC_FILENAME)
    return load_keras_model(model_path), spec


def predict_class_maps(model, images: Sequence[np.ndarray], spec: ModelSpec, batch: int = 8) -> list[np.ndarray]:
    """Class maps at each image's own resolution, via the shared preprocessing."""
    maps = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        output = np.asarray(model.predict_on_batch(preprocess(chunk, spec)))
        for image, class_map in zip(chunk, class_map_from_output(output, spec)):
            maps.append(resize_class_map(class_map, *image.shape[:2]))
    return maps


def sample_predictions(model, dataset, spec: ModelSpec, path: Path, count: int = 4) -> Path:
    """image | truth | prediction for the first few samples of a dataset, through the runtime path."""
    from edgeseg.train import plots

    samples = [dataset.load(i) for i in range(min(count, len(dataset)))]
    images = [image for image, _ in samples]
    truths = [mask for _, mask in samples]
    return plots.prediction_grid(images, truths, predict_class_maps(model, images, spec), spec, path)


def evaluate(
    model_path: str | Path,
    data: str,
    subset: str = "test",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    batch: int = 8,
    pictures: int = 3,
    progress: bool = True,
) -> EvalReport:
    """Evaluate a model on `subset` of `data`; write pictures to `out_dir` and JSON to `json_path`.

    Folder datasets are split with the same fixed seed training uses, so `test` is truly held out.
    """
    from edgeseg.data.sources import open_dataset_for_model, validate_dataset
    from edgeseg.train import plots

    model, spec = load_model_and_spec(model_path)
    dataset = open_dataset_for_model(data, spec, subset, split, hint="evaluate on data with the same classes")
    validate_dataset(dataset)

    cm = np.zeros((spec.num_classes, spec.num_classes), dtype=np.int64)
    per_image: list[tuple[int, float]] = []
    indices = range(len(dataset))
    bar = tqdm(total=len(dataset), desc=f"evaluate {subset}", unit="img", disable=not progress)
    for start in range(0, len(dataset), batch):
        chunk = [dataset.load(i) for i in indices[start : start + batch]]
        predictions = predict_class_maps(model, [image for image, _ in chunk], spec, batch=batch)
        for offset, ((_, mask), pred) in enumerate(zip(chunk, predictions)):
            cm += confusion_matrix(mask, pred, spec.num_classes, spec.ignore_index)
            iou = per_image_iou(mask, pred, spec.num_classes, spec.ignore_index)
            per_image.append((start + offset, float(iou[0])))
        bar.update(len(chunk))
    bar.close()

    scores = scores_from_confusion(cm, spec.class_names)
    report = EvalReport(
        model=str(model_path),
        data=data,
        subset=subset,
        images=len(dataset),
        scores=scores,
        table=format_table(scores, spec.class_names),
        per_image=[(sample_id(dataset, i), v) for i, v in per_image],
    )
    if out_dir is not None:
        out = Path(out_dir)
        plots.confusion_matrix_picture(cm, spec.class_names, out / "confusion.png")
        report.pictures["confusion"] = str(out / "confusion.png")
        ranked = sorted(per_image, key=lambda item: (np.nan_to_num(item[1], nan=1.0), item[0]))
        for name, chosen in (("worst", ranked[:pictures]), ("best", ranked[::-1][:pictures])):
            samples = [dataset.load(i) for i, _ in chosen]
            images = [image for image, _ in samples]
            plots.prediction_grid(
                images,
                [mask for _, mask in samples],
                predict_class_maps(model, images, spec),
                spec,
                out / f"{name}.png",
                titles=[f"{sample_id(dataset, i)}  IoU {v:.3f}" for i, v in chosen],
            )
            report.pictures[name] = str(out / f"{name}.png")
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
