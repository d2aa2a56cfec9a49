"""The dataset contract every source of training data follows.

A dataset is an indexable collection of (image, mask) pairs plus the class description a
ModelSpec needs. Images are RGB uint8 HxWx3, masks uint8 HxW class indices with
`ignore_index` for unlabelled pixels (binary datasets: 0/1). File-backed datasets also expose
their paths so the tf.data pipeline can decode them with TensorFlow ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

# The mask formats live with the readers that interpret them; re-exported here for datasets.
from edgeseg.data.io import MASK_BINARY, MASK_INDEX, MASK_PALETTE, read_mask, read_rgb

__all__ = [
    "MASK_BINARY", "MASK_INDEX", "MASK_PALETTE", "ClassInfo", "FileDataset", "SegDataset", "sample_id", "spread_indices",
]


@dataclass(frozen=True)
class ClassInfo:
    """What the classes of a dataset are called and look like."""

    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = 255
    task: str = "multiclass"  # or "binary"
    traversable: tuple[str, ...] = ()


@runtime_checkable
class SegDataset(Protocol):
    """What training, evaluation and calibration read."""

    name: str
    classes: ClassInfo

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (image RGB uint8 HxWx3, mask uint8 HxW) for one sample."""
        ...


@dataclass
class FileDataset:
    """Image and mask files paired by position."""

    name: str
    classes: ClassInfo
    image_paths: list[Path]
    mask_paths: list[Path]
    mask_format: str = MASK_INDEX
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_paths)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_rgb(self.image_paths[index])
        mask = read_mask(self.mask_paths[index], self.mask_format)
        return image, mask


def sample_id(dataset: SegDataset, index: int) -> str:
    """How reports name sample `index`: its image file name, or `#index` for generated data."""
    paths = getattr(dataset, "image_paths", None)
    return Path(paths[index]).name if paths else f"#{index}"


def spread_indices(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over range(total) (all of them if total <= count).

    Evenly spread rather than the first `count`: neighbouring frames of a video or a sorted
    folder look alike, and a few from everywhere represent the whole better.
    """
    if total <= count:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})
