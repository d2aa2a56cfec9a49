"""The tf.data input pipeline for training and evaluation.

decode -> resize to the model size -> cache (uint8) -> [training: shuffle -> random scale crop
-> flip -> colour jitter] -> batch -> prefetch.

Files are decoded with TensorFlow ops, in parallel and outside the GIL; only palettised masks
(no TF op returns palette indices), TIFF files and rendered datasets (synthetic) go through
`tf.numpy_function`. Decoding and resizing happen once: the cache holds the resized uint8 pairs,
so later epochs only crop, flip and jitter. Images are resized bilinearly without antialiasing,
exactly like the runtime's preprocessing (`cv2.INTER_LINEAR`), so the model sees the same pixels
in training and on the robot; masks are resized nearest-neighbour so no class is invented.
Random ops are stateless and seeded per element, so a seed gives the same batches on every run
while every epoch still gets fresh augmentation.

TensorFlow is imported inside the functions: `import edgeseg.data` stays light.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeseg.data.base import MASK_BINARY, MASK_INDEX, MASK_PALETTE, SegDataset
from edgeseg.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

# Formats tf.io.decode_image reads; anything else (TIFF) is decoded with OpenCV.
TF_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DEFAULT_SHUFFLE_BUFFER = 1024


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. `AugmentConfig.off()` disables all of it.

    Attributes:
        flip: mirror image and mask left-right with probability 0.5.
        scale: range of the random crop's side, as a fraction of the image side (the crop keeps
            the aspect ratio and is resized back to the model size); (1, 1) disables cropping.
        brightness: largest brightness shift, as a fraction of the full range (0 disables).
        contrast: contrast factor drawn from [1 - contrast, 1 + contrast] (0 disables).
        saturation: saturation factor drawn from [1 - saturation, 1 + saturation] (0 disables).
        hue: largest hue shift, as a fraction of the colour circle, at most 0.5 (0 disables).
    """

    flip: bool = True
    scale: tuple[float, float] = (0.5, 1.0)
    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0.0 < low <= high <= 1.0:
            raise DataError(f"augment scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise DataError(f"augment {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise DataError(f"augment hue must be in [0, 0.5], got {self.hue}")

    @classmethod
    def off(cls) -> "AugmentConfig":
        """No augmentation at all (training still shuffles)."""
        return cls(flip=False, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)

    @property
    def crops(self) -> bool:
        return self.scale != (1.0, 1.0)

    @property
    def jitters(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))

    @property
    def enabled(self) -> bool:
        return self.flip or self.crops or self.jitters


def make_tf_dataset(
    ds: SegDataset,
    size: tuple[int, int],
    batch: int,
    training: bool,
    seed: int = 0,
    augment: AugmentConfig | bool | None = None,
    cache: bool | str = True,
    shuffle_buffer: int | None = None,
    validate: bool = True,
) -> "tf.data.Dataset":
    """Batches of (images float32 [B,H,W,3] in 0..255, masks uint8 [B,H,W]) for Keras.

    Args:
        ds: any dataset; file datasets are decoded with TF ops.
        size: (height, width) of the model input.
        batch: batch size. Training drops the last partial batch; evaluation keeps it.
        training: shuffle and augment (with `augment`, default `AugmentConfig()`).
        seed: seeds shuffling and augmentation; the same seed gives the same batches.
        augment: the augmentation (None or True: `AugmentConfig()`, False: none); ignored when
            not training.
        cache: True caches the resized pairs in memory (N*H*W*4 bytes), a path caches them in
            files (unique per dataset and size; delete them when the data changes), False
            re-decodes every epoch. An in-memory cache fills on the first full pass.
        shuffle_buffer: elements in the shuffle buffer (default: the whole dataset, at most 1024).
        validate: run `validate_dataset` first, so bad files fail here with a message naming
            them instead of deep inside TensorFlow.
    """
    import tensorflow as tf

    from edgeseg.data.sources import validate_dataset
    from edgeseg.size import parse_size

    height, width = parse_size(size)
    count = len(ds)
    if count == 0:
        raise DataError(f"dataset {ds.name} is empty; check the path and the subset/split")
    if batch < 1:
        raise DataError(f"batch size must be at least 1, got {batch}")
    if training and count < batch:
        raise DataError(
            f"dataset {ds.name} has {count} training samples, fewer than the batch size {batch}; "
            "lower the batch size or add data"
        )
    if validate:
        validate_dataset(ds)
    autotune = tf.data.AUTOTUNE

    pairs = _decoded_pairs(ds)

    def to_size(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.image.resize(image, (height, width), method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        mask = tf.image.resize(mask[..., None], (height, width), method="nearest")[..., 0]
        return tf.ensure_shape(image, (height, width, 3)), tf.ensure_shape(mask, (height, width))

    data = pairs.map(to_size, num_parallel_calls=autotune)
    if cache:
        if isinstance(cache, (str, Path)):
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            data = data.cache(str(cache))
        else:
            data = data.cache()

    if training:
        buffer = shuffle_buffer or min(count, DEFAULT_SHUFFLE_BUFFER)
        data = data.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        if augment is None or augment is True:
            augment = AugmentConfig()
        elif augment is False:
            augment = AugmentConfig.off()
        if augment.enabled:
            randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            augment_pair = _augmenter(augment, (height, width), seed)
            data = tf.data.Dataset.zip((data, randoms)).map(augment_pair, num_parallel_calls=autotune)
    data = data.batch(batch, drop_remainder=training, num_parallel_calls=autotune)
    data = data.map(lambda image, mask: (tf.cast(image, tf.float32), mask), num_parallel_calls=autotune)
    return data.prefetch(autotune)


def _decoded_pairs(ds: SegDataset) -> "tf.data.Dataset":
    """(image uint8 [h,w,3], mask uint8 [h,w]) at the files' own size."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    if hasattr(ds, "image_paths") and hasattr(ds, "mask_paths"):
        image_paths = [str(p) for p in ds.image_paths]
        mask_paths = [str(p) for p in ds.mask_paths]
        decode_image = _image_decoder(image_paths)
        decode_mask = _mask_decoder(mask_paths, getattr(ds, "mask_format", MASK_INDEX))
        paths = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
        return paths.map(lambda i, m: (decode_image(i), decode_mask(m)), num_parallel_calls=autotune)

    # A rendered dataset has no TF equivalent. load() may keep caches (the synthetic world keeps
    # built worlds), so calls are serialised: rendering holds the GIL anyway, and the cache makes
    # this cost only the first epoch.
    lock = threading.Lock()

    def load(index):
        with lock:
            return ds.load(int(index))

    def load_pair(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = tf.numpy_function(load, [index], [tf.uint8, tf.uint8], stateful=False)
        return tf.ensure_shape(image, (None, None, 3)), tf.ensure_shape(mask, (None, None))

    return tf.data.Dataset.range(len(ds)).map(load_pair, num_parallel_calls=autotune)


def _all_suffixes_in(paths: list[str], suffixes: tuple[str, ...]) -> bool:
    return all(Path(p).suffix.lower() in suffixes for p in paths)


def _image_decoder(paths: list[str]):
    import tensorflow as tf

    if _all_suffixes_in(paths, TF_IMAGE_SUFFIXES):

        def decode(path: tf.Tensor) -> tf.Tensor:
            return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

        return decode

    from edgeseg.data.io import read_rgb

    def decode_with_opencv(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(lambda p: read_rgb(p.decode()), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, (None, None, 3))

    return decode_with_opencv


def _mask_decoder(paths: list[str], mask_format: str):
    """TF decoding for PNG index and binary masks; Pillow/OpenCV (numpy_function) otherwise."""
    import tensorflow as tf

    pngs = _all_suffixes_in(paths, (".png",))
    if mask_format == MASK_INDEX and pngs:

        def decode_index(path: tf.Tensor) -> tf.Tensor:
            return tf.io.decode_png(tf.io.read_file(path), channels=1)[..., 0]

        return decode_index
    if mask_format == MASK_BINARY and pngs:

        from edgeseg.data.io import GRAY_WEIGHTS

        def decode_binary(path: tf.Tensor) -> tf.Tensor:
            # The same integer gray as read_mask (edgeseg.data.io.gray_from_rgb), so both agree.
            rgb = tf.cast(tf.io.decode_png(tf.io.read_file(path), channels=3), tf.int32)
            weights = tf.constant(GRAY_WEIGHTS, tf.int32)
            gray = tf.bitwise.right_shift(tf.reduce_sum(rgb * weights, axis=-1) + 8192, 14)
            return tf.cast(gray > 127, tf.uint8)

        return decode_binary
    if mask_format not in (MASK_INDEX, MASK_BINARY, MASK_PALETTE):
        raise DataError(f"unknown mask format {mask_format!r}")

    from edgeseg.data.io import read_mask

    def decode_with_numpy(path: tf.Tensor) -> tf.Tensor:
        mask = tf.numpy_function(lambda p: read_mask(p.decode(), mask_format), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(mask, (None, None))

    return decode_with_numpy


def _augmenter(config: AugmentConfig, size: tuple[int, int], seed: int):
    """A map function (pair, random int64) -> augmented (image float32 0..255, mask uint8)."""
    import tensorflow as tf

    height, width = size

    def augment(pair: tuple[tf.Tensor, tf.Tensor], random: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = pair
        seeds = tf.random.experimental.stateless_split(tf.stack([random, tf.constant(seed, tf.int64)]), num=7)
        image = tf.cast(image, tf.float32)
        if config.crops:
            image, mask = _random_scale_crop(image, mask, config.scale, (height, width), seeds[0], seeds[1])
        if config.flip:
            flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
            image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
            mask = tf.cond(flip, lambda: tf.reverse(mask, axis=[1]), lambda: mask)
        if config.jitters:
            image = _colour_jitter(image / 255.0, config, seeds[3:]) * 255.0
        return tf.ensure_shape(image, (height, width, 3)), tf.ensure_shape(mask, (height, width))

    return augment


def _random_scale_crop(image, mask, scale, size, seed_scale, seed_offset):
    """Crop a random square-scaled window (same for image and mask), resize it back to `size`."""
    import tensorflow as tf

    height, width = size
    fraction = tf.random.stateless_uniform([], seed_scale, minval=scale[0], maxval=scale[1])
    crop_h = tf.maximum(1, tf.cast(tf.round(fraction * height), tf.int32))
    crop_w = tf.maximum(1, tf.cast(tf.round(fraction * width), tf.int32))
    offsets = tf.random.stateless_uniform([2], seed_offset)  # in [0, 1)
    top = tf.cast(offsets[0] * tf.cast(height - crop_h + 1, tf.float32), tf.int32)
    left = tf.cast(offsets[1] * tf.cast(width - crop_w + 1, tf.float32), tf.int32)
    image = image[top : top + crop_h, left : left + crop_w]
    mask = mask[top : top + crop_h, left : left + crop_w]
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
    return image, mask


def _colour_jitter(image, config: AugmentConfig, seeds):
    """Brightness, contrast, saturation and hue on a [0, 1] float image (never on the mask)."""
    import tensorflow as tf

    if config.brightness:
        image = tf.image.stateless_random_brightness(image, config.brightness, seeds[0])
    if config.contrast:
        image = tf.image.stateless_random_contrast(image, 1 - config.contrast, 1 + config.contrast, seeds[1])
    image = tf.clip_by_value(image, 0.0, 1.0)  # saturation and hue expect [0, 1]
    if config.saturation:
        image = tf.image.stateless_random_saturation(image, 1 - config.saturation, 1 + config.saturation, seeds[2])
    if config.hue:
        image = tf.image.stateless_random_hue(image, config.hue, seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0)
