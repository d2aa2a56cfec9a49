"""One factory from a `--data SPEC` string to a dataset, plus splits and validation.

Accepted specs (the `?` options are optional):

    voc:DIR                  Pascal VOC: VOCdevkit, VOCdevkit/VOC2012 or its parent
    masks:DIR                binary masks: DIR/images + DIR/masks (or DIR/image + DIR/label, ISBI 2012)
                             ?classes=background,foreground&traversable=foreground
    camvid:DIR               CamVid (SegNet layout): DIR/train + DIR/trainannot, val/ and test/ if present
    index:IMAGES,MASKS       8-bit class-index masks paired with images by file name
                             ?classes=sky,road,car&ignore=255&traversable=road
    synthetic://             the built-in synthetic world, rendered on the fly  ?seed=1&n=2000

Folders without their own split (masks, index, CamVid with only train/) are split into
train/val/test by `split` with a seeded permutation of the file pairs sorted by name: the same
files and the same seed always give the same split, on every machine.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from edgeseg.data.base import MASK_BINARY, FileDataset, SegDataset
from edgeseg.data.folders import (
    CAMVID_TRAVERSABLE,
    MASK_FOLDER_LAYOUTS,
    camvid_dataset,
    camvid_subsets,
    index_mask_dataset,
    listed,
    mask_folder_dataset,
)
from edgeseg.data.io import file_is_truncated, read_gray_mask, read_mask
from edgeseg.data.voc import voc_dataset
from edgeseg.errors import DataError, EdgesegError
from edgeseg.size import Size, parse_size

if TYPE_CHECKING:
    from edgeseg.spec import ModelSpec

SUBSETS = ("train", "val", "test", "all")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
ACCEPTED_FORMS = (
    "voc:DIR (Pascal VOC: VOCdevkit, VOCdevkit/VOC2012 or its parent)",
    "masks:DIR (binary: DIR/images + DIR/masks or DIR/image + DIR/label; ?classes=bg,fg)",
    "camvid:DIR (DIR/train + DIR/trainannot; val/, test/ if present)",
    "index:IMAGES,MASKS (class-index masks paired by file name; ?classes=a,b,c&ignore=255)",
    "synthetic:// (built-in world; ?seed=1&n=2000)",
)
# The `?key=value` options each kind accepts.
OPTIONS = {
    "voc": (),
    "masks": ("classes", "traversable"),
    "camvid": ("traversable",),
    "index": ("classes", "ignore", "traversable"),
    "synthetic": ("seed", "n"),
}
SYNTHETIC_N = 2000
SYNTHETIC_SEED_OFFSETS = {"train": 0, "all": 0, "val": 1000, "test": 2000}  # held-out worlds


def _forms() -> str:
    return "accepted forms: " + "; ".join(ACCEPTED_FORMS)


@dataclass(frozen=True)
class DataSpec:
    """A parsed `--data` string: kind, path arguments and `?key=value` options."""

    kind: str
    paths: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)


def parse_data_spec(spec: str) -> DataSpec:
    """Split a `--data` string into kind, paths and options; bad strings list the accepted forms."""
    spec = str(spec).strip()
    body, _, query = spec.partition("?")
    kind, colon, rest = body.partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic" and (not colon or rest.lstrip("/") == ""):
        paths: tuple[str, ...] = ()
    elif not colon or kind not in OPTIONS:
        raise DataError(f"cannot read data spec {spec!r}{_guess_hint(spec)}; {_forms()}")
    elif kind == "synthetic":
        raise DataError(f"synthetic:// takes no path, got {spec!r}; {_forms()}")
    elif kind == "index":
        paths = tuple(p.strip() for p in rest.split(","))
        if len(paths) != 2 or not all(paths):
            raise DataError(f"index: needs two folders, index:IMAGES,MASKS, got {spec!r}")
    else:
        paths = (rest.strip(),)
        if not paths[0]:
            raise DataError(f"{kind}: needs a folder, e.g. {kind}:data/mydataset, got {spec!r}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise DataError(f"cannot read the options {query!r} of {spec!r}; write them as ?key=value&key=value") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in OPTIONS[kind]:
            accepted = ", ".join(OPTIONS[kind]) or "none"
            raise DataError(f"unknown option {key!r} in {spec!r}; {kind} accepts: {accepted}")
        if key in options:
            raise DataError(f"option {key!r} is given twice in {spec!r}")
        options[key] = value
    return DataSpec(kind, tuple(str(Path(p).expanduser()) for p in paths), options)


def _guess_hint(spec: str) -> str:
    """' (it looks like ...: use kind:DIR)' when a bare folder has a recognisable layout."""
    path = Path(spec).expanduser()
    if not path.is_dir():
        return ""
    if (path / "ImageSets").is_dir() or (path / "VOC2012").is_dir() or (path / "VOCdevkit").is_dir():
        kind = "voc"
    elif (path / "trainannot").is_dir():
        kind = "camvid"
    elif any((path / a).is_dir() and (path / b).is_dir() for a, b in MASK_FOLDER_LAYOUTS):
        kind = "masks"
    else:
        return " (a folder needs a kind prefix)"
    return f" (a folder needs a kind prefix; this one looks like {kind}:{spec})"


def parse_split(text: str | Sequence[float]) -> tuple[float, float, float]:
    """Train/val/test fractions from "0.8,0.1,0.1" (or "80,10,10", or a 3-sequence); they sum to 1."""
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.replace("/", ",").split(",")]
        except ValueError:
            raise DataError(f"cannot read split {text!r}; write train,val,test fractions like 0.8,0.1,0.1") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise DataError(f"a split has 3 fractions (train,val,test), got {len(values)} in {text!r}; e.g. 0.8,0.1,0.1")
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise DataError(f"split fractions must be non-negative numbers, got {text!r}")
    total = sum(values)
    if abs(total - 100.0) < 1e-6:  # given in percent
        values, total = [v / 100.0 for v in values], 1.0
    if abs(total - 1.0) > 1e-6:
        raise DataError(f"split fractions must sum to 1 (or 100), got {text!r} (sum {total:g})")
    if values[0] <= 0:
        raise DataError(f"the train fraction of a split must be above 0, got {text!r}")
    return (values[0], values[1], values[2])


def split_indices(count: int, split: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Sorted sample indices of train/val/test: a seeded permutation cut by the split fractions.

    The same count, split and seed always give the same indices. A non-zero val or test fraction
    gets at least one sample when there are 3 or more.
    """
    fractions = parse_split(split)
    sizes = [int(round(count * f)) for f in fractions[1:]]
    for i, fraction in enumerate(fractions[1:]):
        if fraction > 0 and sizes[i] == 0 and count >= 3:
            sizes[i] = 1
    n_val, n_test = sizes
    n_train = count - n_val - n_test
    if n_train <= 0:
        raise DataError(f"{count} samples are too few to split {fractions}; add data or use a smaller val/test split")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(count)
    cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: np.sort(part) for name, part in cuts.items()}


def subset_of(dataset: FileDataset, subset: str, split: Sequence[float], seed: int) -> FileDataset:
    """One subset of a file dataset that has no split of its own."""
    if subset == "all":
        return replace(dataset, extra={**dataset.extra, "subset": "all"})
    indices = split_indices(len(dataset), split, seed)[subset]
    if indices.size == 0:
        raise DataError(
            f"the {subset} subset of {dataset.name} is empty: split {tuple(split)} of {len(dataset)} samples "
            f"gives it none; give {subset} a fraction above 0"
        )
    return replace(
        dataset,
        image_paths=[dataset.image_paths[i] for i in indices],
        mask_paths=[dataset.mask_paths[i] for i in indices],
        extra={**dataset.extra, "subset": subset, "split": tuple(split), "split_seed": seed},
    )


def open_dataset(
    spec: str,
    subset: str = "train",
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    size: Size | tuple[int, int] | None = None,
) -> SegDataset:
    """Open the dataset a `--data` string names, one subset of it.

    Args:
        spec: see the module docstring (voc:DIR, masks:DIR, camvid:DIR, index:IMAGES,MASKS,
            synthetic://).
        subset: "train", "val", "test" or "all".
        split: train/val/test fractions for folders without a split of their own.
        seed: seeds that split and the synthetic world (val and test worlds use seed+1000 and
            seed+2000, so they are held out). Keep it fixed to compare runs.
        size: (height, width) the synthetic world renders at; file datasets keep their size (the
            pipeline resizes).

    Opening lists and pairs the files but reads no pixels; `validate_dataset` checks those.
    """
    if subset not in SUBSETS:
        raise DataError(f"unknown subset {subset!r}; use one of {', '.join(SUBSETS)}")
    split = parse_split(split)
    parsed = parse_data_spec(spec)
    options = parsed.options
    traversable = _names(options["traversable"], "traversable") if "traversable" in options else None
    if parsed.kind == "synthetic":
        return _open_synthetic(options, subset, seed, size)
    if parsed.kind == "voc":
        return voc_dataset(parsed.paths[0], subset)
    if parsed.kind == "camvid":
        root = parsed.paths[0]
        kwargs = {"traversable": traversable if traversable is not None else CAMVID_TRAVERSABLE}
        if set(camvid_subsets(root)) & {"val", "test"}:  # CamVid's own split
            return camvid_dataset(root, subset, **kwargs)
        return subset_of(camvid_dataset(root, "train", **kwargs), subset, split, seed)
    if parsed.kind == "masks":
        names = _names(options["classes"], "classes") if "classes" in options else ("background", "foreground")
        full = mask_folder_dataset(parsed.paths[0], names, traversable or ())
        return subset_of(full, subset, split, seed)
    # index:IMAGES,MASKS
    images_dir, masks_dir = parsed.paths
    names = _names(options["classes"], "classes") if "classes" in options else None
    ignore = _int_option(options, "ignore", 255, 0, 255)
    full = index_mask_dataset(
        images_dir, masks_dir, names, ignore, traversable=traversable or (), name=f"index:{images_dir},{masks_dir}"
    )
    return subset_of(full, subset, split, seed)


def open_dataset_for_model(
    data: str, model_spec: "ModelSpec", subset: str, split: Sequence[float], hint: str, whose: str = "the model's"
) -> SegDataset:
    """One subset of `data` at the model's input size, checked to be non-empty and to have its classes.

    Args:
        hint: what to do instead when the classes differ (the caller's command knows best).
        whose: how the message names the model(s) whose classes the data must have.
    """
    dataset = open_dataset(data, subset=subset, split=split, size=model_spec.input_size)
    if len(dataset) == 0:
        raise DataError(f"the {subset} subset of {data} is empty; choose another --subset or --split")
    if tuple(dataset.classes.names) != tuple(model_spec.class_names):
        raise DataError(
            f"the classes of {data} {list(dataset.classes.names)} differ from {whose} "
            f"{list(model_spec.class_names)}; {hint}"
        )
    return dataset


def _names(text: str, key: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise DataError(f"option {key}= needs comma-separated class names, e.g. {key}=background,road")
    return names


def _int_option(options: dict[str, str], key: str, default: int, low: int, high: int | None = None) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        raise DataError(f"option {key}={options[key]!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise DataError(f"option {key}={value} is out of range ({bound})")
    return value


def _open_synthetic(options: dict[str, str], subset: str, seed: int, size: Size | tuple[int, int] | None) -> SegDataset:
    from edgeseg.data.synthetic import SyntheticDataset  # renders with OpenCV; only loaded when asked for

    base_seed = _int_option(options, "seed", seed, 0)
    n = _int_option(options, "n", SYNTHETIC_N, 1)
    if subset in ("val", "test"):
        n = max(64, n // 10)
    kwargs = {}
    if size is not None:
        kwargs["height"], kwargs["width"] = parse_size(size)
    return SyntheticDataset(seed=base_seed + SYNTHETIC_SEED_OFFSETS[subset], n=n, **kwargs)


# --------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class DatasetReport:
    """What validation looked at, and how often each class occurs (for class weights)."""

    name: str
    samples: int
    checked: int
    class_pixels: tuple[int, ...] = ()
    ignore_pixels: int = 0


def validate_dataset(ds: SegDataset, check_masks: bool = True, limit: int | None = None) -> DatasetReport:
    """Check a dataset before training on it; raise one DataError listing every problem found.

    Checks: the dataset is not empty; every image has a mask; files exist, are not truncated
    and decode; image and mask sizes match; mask values are classes or the ignore index.
    File datasets read image headers and whole masks in threads (a few seconds for thousands of
    files). Other datasets (synthetic) are checked on `limit` samples (default 16) through `load`.

    Args:
        ds: the dataset.
        check_masks: read the masks (sizes and values). False checks only that files exist.
        limit: check at most this many samples, spread evenly over the dataset.
    """
    count = len(ds)
    if count == 0:
        raise DataError(f"dataset {ds.name} is empty; check the path and the subset/split")
    file_based = hasattr(ds, "image_paths") and hasattr(ds, "mask_paths")
    if limit is None and not file_based:
        limit = 16
    if limit is None or limit >= count:
        picks = range(count)
    else:  # spread over the dataset, so "all" (train + val + test folders) is sampled throughout
        picks = np.unique(np.linspace(0, count - 1, max(1, limit)).round().astype(int))
    num_classes = len(ds.classes.names)
    if file_based:
        if len(ds.image_paths) != len(ds.mask_paths):
            raise DataError(
                f"dataset {ds.name} has {len(ds.image_paths)} images but {len(ds.mask_paths)} masks; "
                "every image needs exactly one mask"
            )
        check = _FileCheck(ds, check_masks)
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(check, picks))
    else:
        results = [_check_loaded(ds, i) for i in picks]
    problems = [p for problems, _ in results for p in problems]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise DataError(
            f"dataset {ds.name}: {len(problems)} problems in {len(picks)} checked samples: {shown}. "
            "Fix or remove these files"
        )
    histograms = [h for _, h in results if h is not None]
    if not histograms:
        return DatasetReport(ds.name, count, len(picks))
    total = np.sum(histograms, axis=0)
    ignore = ds.classes.ignore_index
    return DatasetReport(
        ds.name,
        count,
        len(picks),
        class_pixels=tuple(int(v) for v in total[:num_classes]),
        ignore_pixels=int(total[ignore]) if 0 <= ignore < 256 else 0,
    )


def _value_problem(values: np.ndarray, where: str, classes) -> str | None:
    """A message if some mask values are neither a class index nor the ignore index."""
    num_classes = len(classes.names)
    bad = [int(v) for v in values if v >= num_classes and v != classes.ignore_index]
    if not bad:
        return None
    return (
        f"mask {where} has values {listed(bad, 6)} that are neither a class (0..{num_classes - 1}, "
        f"{num_classes} classes) nor the ignore index {classes.ignore_index}"
    )


class _FileCheck:
    """Checks one sample of a file dataset; returns (problems, value histogram or None)."""

    def __init__(self, ds: FileDataset, check_masks: bool):
        self.ds = ds
        self.check_masks = check_masks
        self.binary = ds.mask_format == MASK_BINARY

    def __call__(self, index: int) -> tuple[list[str], np.ndarray | None]:
        image_path, mask_path = Path(self.ds.image_paths[index]), Path(self.ds.mask_paths[index])
        problems: list[str] = []
        image_size = self._image_size(image_path, problems)
        if not mask_path.is_file():
            problems.append(f"image {image_path.name} has no mask: {mask_path} does not exist")
            return problems, None
        if not self.check_masks:
            return problems, None
        try:
            if self.binary:
                gray = read_gray_mask(mask_path)
                if gray.max() == 1:
                    problems.append(
                        f"binary mask {mask_path} holds values 0/1, but foreground is a value above 127 "
                        "(0 background, 255 foreground), so all of it would read as background; save it as "
                        "0/255, or open the folder as index:IMAGES,MASKS"
                    )
                mask = (gray > 127).astype(np.uint8)
            else:
                mask = read_mask(mask_path, self.ds.mask_format)
        except EdgesegError as err:
            problems.append(str(err))
            return problems, None
        if image_size is not None and mask.shape[:2] != image_size:
            problems.append(
                f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {image_path.name} "
                f"is {image_size[0]}x{image_size[1]}"
            )
        histogram = np.bincount(mask.ravel(), minlength=256)
        bad = _value_problem(np.flatnonzero(histogram), str(mask_path), self.ds.classes)
        if bad:
            problems.append(bad)
        return problems, histogram

    @staticmethod
    def _image_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
        """(height, width) from the image header; a problem if it is missing, truncated or unreadable."""
        if not path.is_file():
            problems.append(f"image {path} does not exist")
            return None
        try:
            if path.stat().st_size == 0:
                problems.append(f"image {path} is empty (0 bytes)")
                return None
            if file_is_truncated(path):
                problems.append(f"image {path} is truncated (the file ends before the image does)")
                return None
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
        except OSError as err:
            problems.append(f"cannot read image {path}: {err}")
            return None
        return height, width


def _check_loaded(ds: SegDataset, index: int) -> tuple[list[str], np.ndarray | None]:
    """Check one sample of a dataset that renders or loads its samples in memory."""
    try:
        image, mask = ds.load(index)
    except EdgesegError as err:
        return [f"sample {index}: {err}"], None
    problems = []

    def described(array) -> str:
        return f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"

    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        problems.append(f"sample {index}: image is {described(image)}, not RGB uint8 HxWx3")
    if not (isinstance(mask, np.ndarray) and mask.dtype == np.uint8 and mask.ndim == 2):
        problems.append(f"sample {index}: mask is {described(mask)}, not uint8 HxW")
        return problems, None
    if not problems and image.shape[:2] != mask.shape:
        problems.append(
            f"sample {index}: image is {image.shape[0]}x{image.shape[1]} but mask is {mask.shape[0]}x{mask.shape[1]}"
        )
    histogram = np.bincount(mask.ravel(), minlength=256)
    bad = _value_problem(np.flatnonzero(histogram), f"of sample {index}", ds.classes)
    if bad:
        problems.append(bad)
    return problems, histogram
