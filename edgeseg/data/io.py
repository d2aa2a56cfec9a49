"""Reading images and masks from disk, with errors that name the file and say what to do.

Only numpy, OpenCV and Pillow: this is used on the robot (calibration, verification) as well as
for training. Images come back RGB uint8 HxWx3, masks uint8 HxW class indices.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from edgeseg.errors import DataError
from edgeseg.fileio import atomic_path

# How a mask file stores class indices.
MASK_INDEX = "index"  # single-channel 8-bit PNG holding class indices (CamVid)
MASK_PALETTE = "palette"  # palettised PNG, read as indices with Pillow mode 'P' (Pascal VOC)
MASK_BINARY = "binary"  # grayscale or colour, foreground where value > 127
MASK_FORMATS = (MASK_INDEX, MASK_PALETTE, MASK_BINARY)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE_COLOUR_TYPE = 3


def read_file_bytes(path: str | Path, what: str = "image") -> np.ndarray:
    """Read a whole image file as bytes, refusing missing, empty and visibly truncated files.

    OpenCV older than 5 decodes a truncated JPEG into a half-grey picture without an error, so
    JPEG and PNG files are checked for their end marker first (a cheap look at the last bytes).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for non-ASCII paths, unlike imread
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist; check the dataset folder") from None
    except IsADirectoryError:
        raise DataError(f"{what} path {path} is a folder, not a file; remove it from the dataset") from None
    except OSError as err:
        raise DataError(f"cannot read {what} file {path}: {err.strerror}; check its permissions") from None
    if data.size == 0:
        raise DataError(f"{what} file {path} is empty (0 bytes); re-copy it or remove it from the dataset")
    if is_truncated(data[:16].tobytes(), data[-4096:].tobytes()) and not _pillow_decodes(io.BytesIO(data.tobytes())):
        raise DataError(
            f"{what} file {path} is truncated (the file ends before the image does); "
            "re-copy or re-download it, or remove it from the dataset"
        )
    return data


def is_truncated(head: bytes, tail: bytes) -> bool:
    """True if a JPEG or PNG file (given its first and last bytes) lacks its end marker.

    A quick test: a complete file with data appended after the image (e.g. a phone's motion
    photo) also fails it, so callers confirm with a full decode. Other formats are not checked
    here; their decoders fail on truncation by themselves.
    """
    if head.startswith(b"\xff\xd8"):  # JPEG: the end-of-image marker FFD9, maybe with padding after it
        return b"\xff\xd9" not in tail
    if head.startswith(_PNG_SIGNATURE):
        return b"IEND" not in tail[-16:]
    return False


def file_is_truncated(path: str | Path) -> bool:
    """Whether a JPEG or PNG file on disk ends early; reads only its ends unless in doubt."""
    with open(path, "rb") as handle:
        head = handle.read(16)
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    return is_truncated(head, tail) and not _pillow_decodes(path)


def _pillow_decodes(source) -> bool:
    """True if Pillow decodes the whole image (it refuses truncated JPEG and PNG data)."""
    try:
        with Image.open(source) as image:
            image.load()
    except (OSError, ValueError, SyntaxError):
        return False
    return True


def _png_is_palettised(data: np.ndarray) -> bool:
    """True for a PNG whose IHDR colour type is 'palette' (byte 25 of the file)."""
    return data[:8].tobytes() == _PNG_SIGNATURE and data.size > 25 and int(data[25]) == _PNG_PALETTE_COLOUR_TYPE


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3 (grayscale is expanded, alpha dropped)."""
    data = read_file_bytes(path, "image")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # always 8-bit BGR, 3 channels
    if image is None:
        raise DataError(
            f"cannot decode image {path}: not an image OpenCV can read, or the file is damaged; "
            "convert it to PNG or JPEG, or remove it from the dataset"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image atomically; the format follows the file extension."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(
            f"write_rgb needs an RGB uint8 HxWx3 image, got shape {getattr(image, 'shape', None)} "
            f"dtype {getattr(image, 'dtype', type(image).__name__)}"
        )
    path = Path(path)
    if not cv2.haveImageWriter(str(path)):
        raise DataError(f"cannot write image {path}: OpenCV has no writer for {path.suffix!r}; use .png or .jpg")
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise DataError(f"cannot write image {path}; check the disk space and permissions")
    return path


def read_mask(path: str | Path, mask_format: str = MASK_INDEX) -> np.ndarray:
    """Read a mask file as uint8 HxW class indices.

    Args:
        path: the mask file.
        mask_format: MASK_INDEX (8-bit single-channel class indices, as CamVid), MASK_PALETTE
            (palettised PNG read as palette indices with Pillow, as Pascal VOC) or MASK_BINARY
            (any 8-bit image; 1 where the gray value is above 127, else 0).
    """
    if mask_format == MASK_INDEX:
        return _read_index_mask(path)
    if mask_format == MASK_PALETTE:
        return _read_palette_mask(path)
    if mask_format == MASK_BINARY:
        return binarize(read_gray_mask(path))
    raise DataError(f"unknown mask format {mask_format!r}; use one of {', '.join(MASK_FORMATS)}")


def binarize(gray: np.ndarray) -> np.ndarray:
    """The binary-mask rule: foreground (1) where the gray value is above 127, else 0."""
    return (gray > 127).astype(np.uint8)


# Integer BT.601 luma weights (sum 2**14). The TF pipeline computes gray with the same formula,
# so both read a colour binary mask identically (OpenCV's and libpng's own conversions differ).
GRAY_WEIGHTS = (4899, 9617, 1868)  # R, G, B


def gray_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 gray of an RGB uint8 image: (4899 R + 9617 G + 1868 B + 8192) >> 14."""
    wide = rgb.astype(np.int32)
    r, g, b = GRAY_WEIGHTS
    return ((wide[..., 0] * r + wide[..., 1] * g + wide[..., 2] * b + 8192) >> 14).astype(np.uint8)


def read_gray_mask(path: str | Path) -> np.ndarray:
    """Read a binary mask's raw gray values (before thresholding); colour is converted to gray."""
    data = read_file_bytes(path, "mask")
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if mask is not None and not (mask.ndim == 2 and mask.dtype == np.uint8):
        mask = cv2.imdecode(data, cv2.IMREAD_COLOR)  # 8-bit, 3 channels: colour, 16-bit, palette
        mask = None if mask is None else gray_from_rgb(mask[..., ::-1])
    if mask is None:
        raise DataError(f"cannot decode mask {path}; save binary masks as 8-bit PNG (0 background, 255 foreground)")
    return mask


def _read_index_mask(path: str | Path) -> np.ndarray:
    data = read_file_bytes(path, "mask")
    if _png_is_palettised(data):
        raise DataError(
            f"mask {path} is a palettised PNG; its pixels are palette indices, which the index format "
            "does not read. Open the dataset as voc:DIR, or save the masks as 8-bit grayscale class indices"
        )
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f"cannot decode mask {path}; save index masks as 8-bit single-channel PNG")
    if mask.dtype != np.uint8:
        raise DataError(
            f"mask {path} is {mask.dtype} ({mask.dtype.itemsize * 8}-bit); index masks must be 8-bit "
            "single-channel PNG holding class indices 0..N-1 (and the ignore index)"
        )
    if mask.ndim == 3:
        colour = mask[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise DataError(
                f"mask {path} is a colour image; index masks hold one class index per pixel in a single "
                "channel. Convert colour-coded masks to class indices first"
            )
        mask = np.ascontiguousarray(colour[..., 0])
    return mask


def _read_palette_mask(path: str | Path) -> np.ndarray:
    path = Path(path)
    read_file_bytes(path, "mask")  # the same missing/empty/truncated checks as every other file
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":
                return np.array(image, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read mask {path}: {err}; re-copy it or remove it from the dataset") from None
    raise DataError(
        f"mask {path} is not a palettised PNG (Pillow mode {mode!r}, expected 'P'): Pascal VOC masks in "
        "SegmentationClass store class indices as palette entries. Use the original VOC masks, or, if "
        "these are grayscale class indices (e.g. SegmentationClassAug), open them as index:IMAGES,MASKS"
    )
