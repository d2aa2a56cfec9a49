"""Datasets that are folders of images and masks paired by file name.

Three layouts: binary mask folders (`images/` + `masks/`, or ISBI 2012's `image/` + `label/`),
class-index mask folders (any two folders, e.g. CamVid's), and the CamVid layout itself
(`train/` + `trainannot/`, `val/` + `valannot/`, `test/` + `testannot/`). Images and masks pair
by file name without extension, so `images/0001.jpg` goes with `masks/0001.png`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from edgeseg.data.base import MASK_BINARY, MASK_INDEX, MASK_PALETTE, ClassInfo, FileDataset
from edgeseg.errors import DataError
from edgeseg.spec import default_palette

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# (images folder, masks folder) names a binary mask dataset may use, in order of preference.
MASK_FOLDER_LAYOUTS = (("images", "masks"), ("image", "label"))
BINARY_CLASSES = ("background", "foreground")

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
CAMVID_IGNORE_INDEX = 11  # "Unlabelled"
# SegNet's CamVid colour table (camvid11.png in the SegNet tutorial), one colour per class.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
CAMVID_TRAVERSABLE = ("Road", "Pavement")
CAMVID_SUBSETS = {"train": ("train", "trainannot"), "val": ("val", "valannot"), "test": ("test", "testannot")}

_MAX_LISTED = 8


def listed(names: Sequence[str], limit: int = _MAX_LISTED) -> str:
    """'a, b, c (and 5 more)': a short list for an error message."""
    shown = ", ".join(str(name) for name in names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def list_images(folder: str | Path, what: str = "image") -> dict[str, Path]:
    """Image files in a folder by file stem (hidden files skipped), sorted by stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist; check the dataset path")
    files: dict[str, Path] = {}
    duplicates = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in files:
            duplicates.append(f"{files[path.stem].name}/{path.name}")
        files[path.stem] = path
    if duplicates:
        raise DataError(
            f"{what} folder {folder} has several files with the same name but different extensions: "
            f"{listed(duplicates)}; files pair by name, so keep one of each"
        )
    return dict(sorted(files.items()))


def pair_by_stem(images_dir: str | Path, masks_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """Pair image and mask files by file stem; every image needs a mask and every mask an image."""
    images = list_images(images_dir, "image")
    masks = list_images(masks_dir, "mask")
    if not images:
        raise DataError(
            f"no images in {images_dir} (looked for {', '.join(IMAGE_EXTENSIONS)}); check the dataset path"
        )
    no_mask = [images[stem].name for stem in images if stem not in masks]
    no_image = [masks[stem].name for stem in masks if stem not in images]
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} of {len(images)} images in {images_dir} have no mask: {listed(no_mask)}")
        if no_image:
            parts.append(f"{len(no_image)} masks in {masks_dir} have no image: {listed(no_image)}")
        raise DataError(
            "; ".join(parts) + ". Images and masks pair by file name without extension "
            "(images/0001.jpg goes with masks/0001.png): add the missing files or remove the extra ones"
        )
    stems = list(images)
    return [images[s] for s in stems], [masks[s] for s in stems]


def find_mask_folders(root: str | Path) -> tuple[Path, Path]:
    """The (images, masks) folders of a binary mask dataset: images/+masks/ or image/+label/."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; check the path")
    for images_name, masks_name in MASK_FOLDER_LAYOUTS:
        if (root / images_name).is_dir() and (root / masks_name).is_dir():
            return root / images_name, root / masks_name
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) or ["no subfolders"]
    layouts = " or ".join(f"{root / a}/ + {root / b}/" for a, b in MASK_FOLDER_LAYOUTS)
    raise DataError(f"{root} is not a mask folder dataset: expected {layouts}; found {listed(found)}")


def mask_folder_dataset(
    root: str | Path,
    class_names: Sequence[str] = BINARY_CLASSES,
    traversable: Sequence[str] = (),
) -> FileDataset:
    """A binary segmentation dataset: `root/images/` + `root/masks/` (or `image/` + `label/`).

    Mask pixels above 127 are foreground (class 1), the rest background (class 0). For ISBI 2012
    (`train/image/N.png` + `train/label/N.png`, 255 = cell interior, 0 = membrane) pass
    `class_names=("membrane", "cell")`, or `masks:DIR?classes=membrane,cell` on the command line.
    """
    images_dir, masks_dir = find_mask_folders(root)
    class_names = tuple(class_names)
    if len(class_names) != 2:
        raise DataError(f"a binary mask dataset has 2 classes (background first), got {list(class_names)}")
    image_paths, mask_paths = pair_by_stem(images_dir, masks_dir)
    classes = ClassInfo(
        names=class_names,
        palette=((0, 0, 0), (255, 255, 255)),
        ignore_index=255,
        task="binary",
        traversable=_check_traversable(traversable, class_names),
    )
    return FileDataset(f"masks:{root}", classes, image_paths, mask_paths, MASK_BINARY)


def index_mask_dataset(
    images_dir: str | Path,
    masks_dir: str | Path,
    class_names: Sequence[str] | None = None,
    ignore_index: int = 255,
    palette: Sequence[Sequence[int]] | None = None,
    traversable: Sequence[str] = (),
    name: str | None = None,
) -> FileDataset:
    """A multiclass dataset of 8-bit class-index masks paired with images by file name.

    Args:
        images_dir, masks_dir: the two folders.
        class_names: one name per class index. None reads every mask once and names the classes
            class_0..class_K, K being the largest index found other than `ignore_index`.
        ignore_index: the mask value of unlabelled pixels.
        palette: one RGB colour per class for overlays (default: the VOC colour scheme).
        traversable: class names a robot may drive on.
        name: the dataset's name (default `index:IMAGES,MASKS`).

    Palettised PNG masks (Pillow mode 'P') are read as palette indices, like Pascal VOC's.
    """
    image_paths, mask_paths = pair_by_stem(images_dir, masks_dir)
    mask_format = MASK_PALETTE if _is_palettised(mask_paths[0]) else MASK_INDEX
    if class_names is None:
        class_names = _infer_class_names(mask_paths, mask_format, ignore_index)
    class_names = tuple(str(n) for n in class_names)
    if len(class_names) < 2:
        raise DataError(f"an index mask dataset needs at least 2 class names, got {list(class_names)}")
    if 0 <= ignore_index < len(class_names):
        raise DataError(
            f"ignore index {ignore_index} is also class {ignore_index} ({class_names[ignore_index]!r}); "
            f"with {len(class_names)} classes use an ignore index of {len(class_names)} or more (usually 255)"
        )
    if palette is None:
        palette = default_palette(len(class_names))
    palette = tuple(tuple(int(c) for c in colour) for colour in palette)
    if len(palette) != len(class_names):
        raise DataError(f"palette has {len(palette)} colours for {len(class_names)} classes; give one per class")
    classes = ClassInfo(
        names=class_names,
        palette=palette,
        ignore_index=int(ignore_index),
        task="multiclass",
        traversable=_check_traversable(traversable, class_names),
    )
    name = name or f"index:{images_dir},{masks_dir}"
    return FileDataset(name, classes, image_paths, mask_paths, mask_format)


def camvid_subsets(root: str | Path) -> tuple[str, ...]:
    """Which of train/val/test a CamVid folder has (both the image and the annotation folder)."""
    root = Path(root)
    return tuple(s for s, (img, ann) in CAMVID_SUBSETS.items() if (root / img).is_dir() and (root / ann).is_dir())


def camvid_dataset(
    root: str | Path, subset: str = "train", traversable: Sequence[str] = CAMVID_TRAVERSABLE
) -> FileDataset:
    """CamVid in SegNet's 11-class layout: `train/` + `trainannot/` (and val, test where present).

    Args:
        root: the folder holding `train/` and `trainannot/`.
        subset: "train", "val" or "test" (that folder pair) or "all" (every pair present).
        traversable: class names a robot may drive on.

    Masks hold class indices 0..10; 11 is "Unlabelled" and ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CamVid folder {root} does not exist; check the path")
    present = camvid_subsets(root)
    if not present:
        raise DataError(f"{root} is not a CamVid folder: expected {root}/train/ + {root}/trainannot/")
    if subset == "all":
        chosen = present
    elif subset in CAMVID_SUBSETS:
        if subset not in present:
            img, ann = CAMVID_SUBSETS[subset]
            raise DataError(
                f"CamVid folder {root} has no {img}/ + {ann}/ for the {subset} subset (it has {', '.join(present)})"
            )
        chosen = (subset,)
    else:
        raise DataError(f"unknown CamVid subset {subset!r}; use train, val, test or all")
    image_paths: list[Path] = []
    mask_paths: list[Path] = []
    for name in chosen:
        img, ann = CAMVID_SUBSETS[name]
        images, masks = pair_by_stem(root / img, root / ann)
        image_paths += images
        mask_paths += masks
    classes = ClassInfo(
        names=CAMVID_CLASSES,
        palette=CAMVID_PALETTE,
        ignore_index=CAMVID_IGNORE_INDEX,
        task="multiclass",
        traversable=_check_traversable(traversable, CAMVID_CLASSES),
    )
    return FileDataset(f"camvid:{root}", classes, image_paths, mask_paths, MASK_INDEX, extra={"subset": subset})


def _check_traversable(traversable: Sequence[str], class_names: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in traversable if name not in class_names]
    if unknown:
        raise DataError(f"traversable classes {unknown} are not among the classes {list(class_names)}")
    return tuple(traversable)


def _is_palettised(path: Path) -> bool:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.mode == "P"
    except (OSError, ValueError):
        return False  # unreadable: reading the mask later reports it properly


def _infer_class_names(mask_paths: Sequence[Path], mask_format: str, ignore_index: int) -> tuple[str, ...]:
    """class_0..class_K from the largest class index found in the masks."""
    from edgeseg.data.io import read_mask

    def present(path: Path) -> np.ndarray:
        return np.bincount(read_mask(path, mask_format).ravel(), minlength=256) > 0

    with ThreadPoolExecutor(max_workers=4) as pool:
        seen = np.any(list(pool.map(present, mask_paths)), axis=0)
    if 0 <= ignore_index < 256:
        seen[ignore_index] = False
    values = np.flatnonzero(seen)
    count = max(2, int(values.max()) + 1 if values.size else 2)
    return tuple(f"class_{i}" for i in range(count))
