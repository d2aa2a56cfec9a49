"""The whole edgeseg chain on a Keras model edgeseg did not build: a plain U-Net saved as `.h5`.

    .venv/bin/python benchmarks/third_party_h5.py [--size 128] [--steps 300] [--keep DIR]

Proves the third-party path. The model comes from plain Keras only (Conv2D/BatchNormalization/
MaxPooling2D/UpSampling2D/Concatenate, softmax over the synthetic world's 4 classes), with its
OWN preprocessing (ImageNet mean/std on x/255 by default, or `--preprocess tf`: x/127.5 - 1),
trained briefly on synthetic-world frames (edgeseg.data only renders the frames), saved by Keras
itself with `model.save("unet.h5")` (legacy HDF5). Then the edgeseg command line drives the rest as a
user would, each step a subprocess of `.venv/bin/edgeseg`:

    edgeseg export unet.h5 -o unet.onnx --size HxW --scale S --mean R,G,B --std R,G,B \
        --classes floor,obstacle,wall,background --activation probabilities --traversable floor
    edgeseg calibrate unet.onnx --target cpu --data synthetic://?seed=0&n=2000 -n 100
    edgeseg build-engine unet.int8.onnx --int8 -o unet.int8.cpu.onnx
    edgeseg verify unet.h5 unet.int8.cpu.onnx ...        # the .h5 alone as the reference
    edgeseg verify unet.onnx unet.int8.cpu.onnx ...      # the float ONNX as the reference
    edgeseg verify unet.h5 unet.int8.cpu.onnx ...        # again, with spec.json beside the .h5

Verify runs on held-out synthetic worlds (the val subset: seed + 1000). Prints a table and writes
benchmarks/results/third_party_h5.json. Works in a temporary folder unless `--keep DIR`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from _table import print_table, run_edgeseg, write_json  # noqa: E402

from edgeseg.cli.common import size as parse_size  # noqa: E402

CLASSES = ("floor", "obstacle", "wall", "background")
# The model's own preprocessing, as (scale, mean, std) of x * scale - mean, / std.
PREPROCESSING = {
    "imagenet": (1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "tf": (1 / 127.5, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
}


def unet(size: tuple[int, int], filters: int = 16, depth: int = 3):
    """A textbook U-Net from stock Keras layers only: nothing of edgeseg.models."""
    import keras

    def block(x, n):
        for _ in range(2):
            x = keras.layers.Conv2D(n, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        return x

    inputs = keras.Input((*size, 3), name="input_image")
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, filters * 2**level)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = block(x, filters * 2**depth)
    for level in reversed(range(depth)):
        x = keras.layers.UpSampling2D(2)(x)
        x = keras.layers.Concatenate()([x, skips[level]])
        x = block(x, filters * 2**level)
    outputs = keras.layers.Conv2D(len(CLASSES), 1, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="third_party_unet")


def own_preprocess(images: np.ndarray, name: str) -> np.ndarray:
    """The third party's preprocessing, written without edgeseg."""
    scale, mean, std = PREPROCESSING[name]
    return ((images.astype(np.float32) * scale - np.float32(mean)) / np.float32(std)).astype(np.float32)


def train_h5(path: Path, size: tuple[int, int], steps: int, batch: int, frames: int, preprocess: str,
             seed: int) -> dict:
    """Train the U-Net on synthetic frames with plain `model.fit`, save it as legacy HDF5."""
    import keras

    from edgeseg.data.sources import open_dataset

    keras.utils.set_random_seed(seed)
    dataset = open_dataset(f"synthetic://?seed={seed}&n={frames}", subset="train", size=size)
    if tuple(dataset.classes.names) != CLASSES:
        raise SystemExit(f"synthetic classes changed: {dataset.classes.names}")
    start = time.perf_counter()
    pairs = [dataset.load(i) for i in range(len(dataset))]
    render_s = time.perf_counter() - start
    images = own_preprocess(np.stack([p[0] for p in pairs]), preprocess)
    masks = np.stack([p[1] for p in pairs])
    weights = (masks != 255).astype(np.float32)
    masks = np.where(masks == 255, 0, masks).astype(np.int32)

    model = unet(size)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    epochs = max(1, steps // 50)
    start = time.perf_counter()
    history = model.fit(images, masks, sample_weight=weights, batch_size=batch, epochs=epochs,
                        steps_per_epoch=max(1, steps // epochs), verbose=2, shuffle=True)
    train_s = time.perf_counter() - start
    model.save(path)  # Keras itself writes legacy HDF5 for a .h5 name
    return {"frames": len(pairs), "render_s": round(render_s, 1), "steps": epochs * max(1, steps // epochs),
            "batch": batch, "train_s": round(train_s, 1), "final_loss": round(float(history.history["loss"][-1]), 4),
            "params": int(model.count_params()), "h5_bytes": path.stat().st_size}


def own_preprocessing_parity(work: Path, size: tuple[int, int], preprocess: str, frames: int, seed: int) -> dict:
    """The .h5 run by Keras on the third party's own preprocessing against edgeseg's Segmenter on unet.onnx.

    Export compares Keras and ONNX on the same (edgeseg-preprocessed) input, so it cannot see a
    wrong --scale/--mean/--std; this can: only the flags tell edgeseg what the model expects.
    """
    import keras

    from edgeseg.data.sources import open_dataset
    from edgeseg.runtime import Segmenter

    model = keras.models.load_model(work / "unet.h5", compile=False)
    dataset = open_dataset(f"synthetic://?seed={seed}&n=2000", subset="val", size=size)
    images = np.stack([dataset.load(i)[0] for i in range(frames)])
    keras_probs = np.asarray(model(own_preprocess(images, preprocess), training=False))
    with Segmenter.open(work / "unet.onnx") as segmenter:
        results = segmenter.seg_batch(list(images), probabilities=True)
    onnx_probs = np.stack([r.probabilities for r in results])
    agreement = float(np.mean(np.stack([r.class_map for r in results]) == keras_probs.argmax(-1)))
    return {"command": "Segmenter(unet.onnx) vs Keras(unet.h5) on its own preprocessing", "rc": 0, "seconds": 0.0,
            "frames": frames, "max_abs_diff": float(np.abs(onnx_probs - keras_probs).max()),
            "class_agreement": agreement, "stdout": "", "stderr": ""}


def grab(pattern: str, text: str, cast=float):
    match = re.search(pattern, text)
    return cast(match.group(1)) if match else None


def verify_numbers(json_path: Path) -> dict:
    if not json_path.is_file():
        return {}
    report = json.loads(json_path.read_text())
    return {
        "frames": report["frames"],
        "float_backend": report["float_backend"],
        "engine_backend": report["engine_backend"],
        "float_miou": report["float_mean_iou"],
        "int8_miou": report["engine_mean_iou"],
        "miou_drop_pp": report["miou_drop_pp"],
        "agreement": report["agreement"],
        "per_class_iou_delta_pp": report["per_class_iou_delta_pp"],
    }


def run_chain(work: Path, args) -> dict:
    height, width = args.size
    scale, mean, std = PREPROCESSING[args.preprocess]
    data = f"synthetic://?seed={args.seed}&n=2000"
    results: dict = {"workdir": str(work), "size": f"{height}x{width}", "preprocess": args.preprocess,
                     "scale": scale, "mean": mean, "std": std}

    print(f"--- training a plain Keras U-Net ({args.steps} steps) ---", flush=True)
    results["train"] = train_h5(work / "unet.h5", args.size, args.steps, args.batch, args.frames,
                                args.preprocess, args.seed)
    steps = results["steps"] = {}

    def floats(values) -> str:
        return ",".join(repr(float(v)) for v in values)

    export = run_edgeseg(["export", "unet.h5", "-o", "unet.onnx", "--size", f"{height}x{width}",
                      "--scale", repr(scale), "--mean", floats(mean), "--std", floats(std),
                      "--classes", ",".join(CLASSES), "--activation", "probabilities", "--traversable", "floor"], work)
    export["max_abs_diff"] = grab(r"max \|diff\| (\S+)", export["stdout"])
    export["argmax_agreement_pct"] = grab(r"argmax agreement ([\d.]+)%", export["stdout"])
    if export["rc"] == 0:
        from edgeseg.onnxmeta import read_spec_from_onnx_file

        spec = read_spec_from_onnx_file(work / "unet.onnx")
        export["embedded_spec"] = {"scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std),
                                   "output": spec.output, "classes": list(spec.class_names),
                                   "traversable": list(spec.traversable)}
    steps["export"] = export
    if export["rc"]:
        return results
    steps["own preprocessing"] = own_preprocessing_parity(work, args.size, args.preprocess, 16, args.seed)

    calib = run_edgeseg(["calibrate", "unet.onnx", "--target", "cpu", "--data", data, "-n", str(args.calib_frames),
                     "--no-progress"], work)
    calib["layout"] = grab(r"target\s+cpu: (.+)", calib["stdout"], str)
    calib["format"] = grab(r"format\s+(\S+)", calib["stdout"], str)
    calib["latency_ms"] = grab(r"format\s+\S+ \(measured: (.+)\)", calib["stdout"], str)
    steps["calibrate"] = calib
    if calib["rc"]:
        return results

    build = run_edgeseg(["build-engine", "unet.int8.onnx", "--int8", "-o", "unet.int8.cpu.onnx"], work)
    steps["build-engine"] = build
    if build["rc"]:
        return results

    common = ["--data", data, "--subset", "val", "--max-frames", str(args.eval_frames), "--no-progress"]
    # 1) the .h5 alone as the reference: it carries no spec.
    h5_alone = run_edgeseg(["verify", "unet.h5", "unet.int8.cpu.onnx", *common, "--json", "verify_h5.json"], work)
    h5_alone.update(verify_numbers(work / "verify_h5.json"))
    steps["verify (h5, no spec)"] = h5_alone
    # 2) the float ONNX (spec embedded by export) as the reference.
    ref = run_edgeseg(["verify", "unet.onnx", "unet.int8.cpu.onnx", *common, "--json", "verify_onnx.json"], work)
    ref.update(verify_numbers(work / "verify_onnx.json"))
    steps["verify (float onnx)"] = ref
    # 3) the .h5 with the spec the export embedded written beside it, as `edgeseg train` would.
    if export["rc"] == 0:
        spec.save(work / "spec.json")
        h5_spec = run_edgeseg(["verify", "unet.h5", "unet.int8.cpu.onnx", *common, "--json", "verify_h5_spec.json"],
                          work)
        h5_spec.update(verify_numbers(work / "verify_h5_spec.json"))
        steps["verify (h5 + spec.json)"] = h5_spec
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="HxW input (default 128x128)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=480, help="synthetic training frames to render")
    parser.add_argument("--preprocess", choices=sorted(PREPROCESSING), default="imagenet",
                        help="the model's own preprocessing (default imagenet mean/std)")
    parser.add_argument("--calib-frames", type=int, default=100)
    parser.add_argument("--eval-frames", type=int, default=100, help="val frames verify compares on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run_chain(args.keep.resolve(), args)
    else:
        with tempfile.TemporaryDirectory(prefix="third_party_h5-") as tmp:
            results = run_chain(Path(tmp), args)

    rows = []
    for name, step in results.get("steps", {}).items():
        if name == "export":
            key = f"max|diff| {step.get('max_abs_diff')}, argmax agreement {step.get('argmax_agreement_pct')}%"
        elif name == "own preprocessing":
            key = (f"{step['frames']} val frames: max|diff| {step['max_abs_diff']:.3g}, "
                   f"class agreement {step['class_agreement']:.4%}")
        elif name == "calibrate":
            key = f"{step.get('layout')}; {step.get('format')} ({step.get('latency_ms')})"
        elif name.startswith("verify") and step.get("float_miou") is not None:
            key = (f"mIoU float {step['float_miou']:.4f} -> int8 {step['int8_miou']:.4f}, "
                   f"drop {step['miou_drop_pp']:.2f} pp, agreement {step['agreement']:.4%}")
        else:
            key = (step["stderr"] or step["stdout"]).splitlines()[-1][:110] if (step["stderr"] or step["stdout"]) else ""
        rows.append({"step": name, "rc": step["rc"], "s": step["seconds"], "result": key})
    train = results["train"]
    print(f"\nplain Keras U-Net {results['size']}, {train['params']} params, {train['steps']} steps in "
          f"{train['train_s']} s, final loss {train['final_loss']}, preprocessing {results['preprocess']}")
    print_table(rows, ["step", "rc", "s", "result"])
    write_json("third_party_h5", results)


if __name__ == "__main__":
    main()
