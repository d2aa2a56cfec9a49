"""`edgeseg evaluate`: task metrics of a trained model on a dataset split, with pictures.

The model runs as a Keras `Segmenter` (the runtime's own preprocessing) and is scored by
`edgeseg.scoring` at the mask's full resolution, exactly as `verify` and `bench` judge a
deployed engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeseg.errors import ModelError
from edgeseg.data.base import sample_id
from edgeseg.evalmetrics import finite_or_none, format_table
from edgeseg.fileio import atomic_write_text
from edgeseg.scoring import chunks, score
from edgeseg.spec import ModelSpec


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


def open_model(path: str | Path) -> Any:
    """A run folder or `.keras` file (with spec.json beside it) as a Keras Segmenter."""
    from edgeseg.runtime.keras_backend import MODEL_FILENAME
    from edgeseg.runtime.segmenter import Segmenter

    path = Path(path)
    model_path = path / MODEL_FILENAME if path.is_dir() else path
    if not model_path.exists():
        raise ModelError(f"no model at {model_path}; pass a run folder from `edgeseg train` or a .keras file")
    return Segmenter.open(model_path, backend="keras")


def predict_class_maps(segmenter: Any, images: Sequence[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    """Class maps at each image's own resolution, `batch` images per forward pass."""
    return [s.class_map for chunk in chunks(images, batch) for s in segmenter.seg_batch(chunk)]


def sample_predictions(model: Any, dataset, spec: ModelSpec, path: Path, count: int = 4) -> Path:
    """image | truth | prediction for the first few samples of a dataset, through the runtime path.

    Args:
        model: a loaded keras.Model (training's best), run as the Keras backend runs it.
    """
    from edgeseg.runtime.keras_backend import KerasBackend
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.train import plots

    samples = [dataset.load(i) for i in range(min(count, len(dataset)))]
    images = [image for image, _ in samples]
    truths = [mask for _, mask in samples]
    segmenter = Segmenter(KerasBackend(path, model, spec))
    return plots.prediction_grid(images, truths, predict_class_maps(segmenter, images), spec, path)


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

    segmenter = open_model(model_path)
    spec = segmenter.spec
    dataset = open_dataset_for_model(data, spec, subset, split, hint="evaluate on data with the same classes")
    validate_dataset(dataset)

    tally = score(segmenter, (dataset.load(i) for i in range(len(dataset))), batch,
                  progress=f"evaluate {subset}" if progress else None, total=len(dataset))
    cm = tally.confusion
    per_image = list(enumerate(tally.per_image))

    scores = tally.scores(spec.class_names)
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
                predict_class_maps(segmenter, images),
                spec,
                out / f"{name}.png",
                titles=[f"{sample_id(dataset, i)}  IoU {v:.3f}" for i, v in chosen],
            )
            report.pictures[name] = str(out / f"{name}.png")
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
