"""Train the foreign fixtures on CamVid, so the INT8 benchmark measures trained networks.

A network with random weights is chaotic: INT8's rounding flips classes wherever logits are
close, and they are close everywhere. What users bring is trained, so the benchmark trains each
fixture's Keras twin (`tests/calib/foreign_graphs.keras_twin`, the same architecture as its ONNX
graph) and pours the weights into the PyTorch-style ONNX graph.

Data: CamVid's 367 training frames come from three drives (0001TP at dusk, 0006R0, 0016E5 by
day). The last fifth of each drive (73 frames, later stretches of road) is held out for
agreement and accuracy; the rest (294 frames) trains and calibrates. Holding out a whole drive
instead measures a domain shift: trained on daylight only, the networks fail at dusk (mean IoU
~22%) and calibration ranges miss the dusk activations. Classes: road, pavement, car, other
(CamVid's 11 classes folded; Unlabelled ignored). Frames are resized to the model's input size
exactly as the runtime does, then cut into random crops (same scale as at inference, a quarter
of the work) and flipped; Adam, cross-entropy. Weights are cached under
.cache/int8_foreign/ by kind, size, steps and seed: a rerun does not retrain.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from edgeseg.runtime.preprocess import preprocess, resize_frame

HELD_OUT_FRACTION = 0.2  # the tail of each drive
SPLIT = "tail20"  # in the cache name: weights trained on another split are not reused
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "int8_foreign"
IGNORE = 255
# CamVid 11-class index (and 11 = Unlabelled) -> road 0, pavement 1, car 2, other 3.
CAMVID_TO_FIXTURE = np.array([3, 3, 3, 0, 1, 3, 3, 3, 2, 3, 3, IGNORE] + [IGNORE] * 244, np.uint8)


def camvid_pairs(root: Path, held_out: bool) -> list[tuple[Path, Path]]:
    """(frame, annotation) pairs of the held-out tail of every drive, or of the rest."""
    drives: dict[str, list[Path]] = {}
    for frame in sorted((root / "train").glob("*.png")):
        drives.setdefault(frame.name.split("_")[0], []).append(frame)
    chosen = []
    for frames in drives.values():
        cut = len(frames) - round(len(frames) * HELD_OUT_FRACTION)
        chosen += frames[cut:] if held_out else frames[:cut]
    return [(f, root / "trainannot" / f.name) for f in chosen]


def load_pairs(pairs: list[tuple[Path, Path]], spec) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames resized as the runtime resizes them, and fixture-class masks resized nearest."""
    import cv2

    height, width = spec.input_size
    images, masks = [], []
    for frame, annotation in pairs:
        images.append(resize_frame(cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB), spec))
        mask = cv2.resize(cv2.imread(str(annotation), cv2.IMREAD_GRAYSCALE), (width, height),
                          interpolation=cv2.INTER_NEAREST)
        masks.append(CAMVID_TO_FIXTURE[mask])
    return np.stack(images), np.stack(masks)


def _batches(images: np.ndarray, masks: np.ndarray, spec, crop: tuple[int, int], batch: int, rng):
    """Random crops and horizontal flips, normalised as the spec says, in NHWC."""
    ch, cw = crop
    crop_spec = dataclasses.replace(spec, input_height=ch, input_width=cw)  # the crops are not resized
    while True:
        picks = rng.integers(0, len(images), batch)
        xs, ys = [], []
        for i in picks:
            top, left = rng.integers(0, images.shape[1] - ch + 1), rng.integers(0, images.shape[2] - cw + 1)
            x, y = images[i, top:top + ch, left:left + cw], masks[i, top:top + ch, left:left + cw]
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(y)
        yield preprocess(xs, crop_spec).transpose(0, 2, 3, 1), np.stack(ys)


def train_twin(foreign, kind: str, images: np.ndarray, masks: np.ndarray, spec, steps: int, batch: int = 8,
               crop: tuple[int, int] = (192, 320), seed: int = 0, log=print) -> list[dict]:
    """Train `kind`'s Keras twin for `steps` steps; returns its weights in ONNX layout."""
    import keras

    keras.utils.set_random_seed(seed)
    model, twin = foreign.keras_twin(kind, *crop)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE))
    batches = _batches(images, masks, spec, crop, batch, np.random.default_rng(seed))
    started, losses = time.perf_counter(), []
    for step in range(1, steps + 1):
        x, y = next(batches)
        losses.append(float(model.train_on_batch(x, y)))
        if step % max(1, steps // 10) == 0 or step == steps:
            log(f"  {kind}: step {step}/{steps}, loss {np.mean(losses[-20:]):.3f}, "
                f"{time.perf_counter() - started:.0f} s")
    return twin.params()


def _save(params: list[dict], path: Path) -> None:
    arrays = {f"{i}.{key}": value for i, layer in enumerate(params) for key, value in layer.items()
              if key != "kind" and value is not None}
    arrays["kinds"] = np.array([layer["kind"] for layer in params])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


def _load(path: Path) -> list[dict]:
    with np.load(path) as data:
        params = [{"kind": str(kind)} for kind in data["kinds"]]
        for key in data.files:
            if key != "kinds":
                index, field = key.split(".", 1)
                params[int(index)][field] = data[key]
    return params


def trained_params(foreign, kind: str, spec, images: np.ndarray, masks: np.ndarray, steps: int, seed: int = 0,
                   log=print) -> list[dict]:
    """The cached weights of `kind` trained for `steps` steps, training them first if absent."""
    height, width = spec.input_size
    path = CACHE / f"{kind}-{height}x{width}-{SPLIT}-{steps}steps-seed{seed}.npz"
    if path.is_file():
        log(f"  {kind}: trained weights from {path}")
        return _load(path)
    params = train_twin(foreign, kind, images, masks, spec, steps, seed=seed, log=log)
    _save(params, path)
    return params
