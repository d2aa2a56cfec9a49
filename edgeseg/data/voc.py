"""Pascal VOC segmentation in its own VOCdevkit layout.

Images are `JPEGImages/<id>.jpg`, masks `SegmentationClass/<id>.png` (palettised: the pixel
values are palette indices = class indices, 255 = void/boundary), and the official lists are
`ImageSets/Segmentation/{train,val}.txt`. VOC has no public test labels, so, as is common, the
val list is split in two: a fixed shuffle (numpy seed 0) puts the first half in "val" and the
second half in "test", identical on every machine and run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data.base import MASK_PALETTE, ClassInfo, FileDataset
from edgeseg.data.folders import listed
from edgeseg.errors import DataError
from edgeseg.spec import default_palette

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_PALETTE = default_palette(len(VOC_CLASSES))  # VOC's own bit-interleaved colour map
VOC_IGNORE_INDEX = 255
VOC_SUBSETS = ("train", "val", "test", "all")
VOC_VAL_SPLIT_SEED = 0  # fixed so that val/test are the same for every run and every user


def find_voc_root(root: str | Path) -> Path:
    """The VOC20xx folder (holding ImageSets/) from it, from VOCdevkit/ or from VOCdevkit's parent."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"VOC folder {root} does not exist; check the path")
    if (root / "ImageSets" / "Segmentation").is_dir():
        return root
    for parent in (root, root / "VOCdevkit"):
        candidates = sorted(p for p in parent.glob("VOC*") if (p / "ImageSets" / "Segmentation").is_dir())
        if candidates:
            preferred = [p for p in candidates if p.name == "VOC2012"]
            return (preferred or candidates)[-1]
    raise DataError(
        f"{root} is not a Pascal VOC folder: expected ImageSets/Segmentation/ in it, in {root}/VOC2012/ "
        f"or in {root}/VOCdevkit/VOC2012/"
    )


def _read_ids(voc_root: Path, list_name: str) -> list[str]:
    path = voc_root / "ImageSets" / "Segmentation" / f"{list_name}.txt"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"VOC list {path} does not exist; the VOCdevkit copy is incomplete") from None
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataError(f"VOC list {path} is empty; it should name one image id per line")
    return ids


def voc_subset_ids(voc_root: Path, subset: str) -> list[str]:
    """The image ids of a subset: train.txt, or one half of the shuffled val.txt."""
    if subset == "train":
        return _read_ids(voc_root, "train")
    val = _read_ids(voc_root, "val")
    if subset == "all":
        train = _read_ids(voc_root, "train")
        in_train = set(train)
        return train + [i for i in val if i not in in_train]
    if subset not in ("val", "test"):
        raise DataError(f"unknown VOC subset {subset!r}; use {', '.join(VOC_SUBSETS)}")
    order = np.random.Generator(np.random.PCG64(VOC_VAL_SPLIT_SEED)).permutation(len(val))
    shuffled = [val[i] for i in order]
    half = (len(shuffled) + 1) // 2
    return shuffled[:half] if subset == "val" else shuffled[half:]


def voc_dataset(root: str | Path, subset: str = "train") -> FileDataset:
    """Pascal VOC segmentation (21 classes, 255 ignored) for one subset: train, val, test or all."""
    voc_root = find_voc_root(root)
    ids = voc_subset_ids(voc_root, subset)
    if not ids:
        raise DataError(
            f"the VOC {subset} subset in {voc_root} is empty; val.txt needs at least 2 ids for val and test"
        )
    image_paths = [voc_root / "JPEGImages" / f"{i}.jpg" for i in ids]
    mask_paths = [voc_root / "SegmentationClass" / f"{i}.png" for i in ids]
    no_image = [p.name for p in image_paths if not p.is_file()]
    no_mask = [p.name for p in mask_paths if not p.is_file()]
    if no_image or no_mask:
        parts = []
        if no_image:
            parts.append(f"{len(no_image)} images missing from {voc_root / 'JPEGImages'}: {listed(no_image)}")
        if no_mask:
            parts.append(f"{len(no_mask)} masks missing from {voc_root / 'SegmentationClass'}: {listed(no_mask)}")
        raise DataError(
            f"the VOC {subset} list names ids without files: " + "; ".join(parts)
            + ". Complete the VOCdevkit copy or remove those ids from ImageSets/Segmentation"
        )
    classes = ClassInfo(names=VOC_CLASSES, palette=VOC_PALETTE, ignore_index=VOC_IGNORE_INDEX, task="multiclass")
    return FileDataset(f"voc:{voc_root}", classes, image_paths, mask_paths, MASK_PALETTE, extra={"subset": subset})
