"""A Keras model edgeseg did not write, through `edgeseg export`: keras-hub's DeepLabV3 (+ decoder).

    .venv/bin/python benchmarks/keras_hub_export.py [--size 128] [--keep DIR]

keras-hub is not an edgeseg dependency (it pulls kagglehub, sentencepiece, tokenizers and
tensorflow-text); install it beside edgeseg first, e.g.
`pip install --no-deps keras-hub regex rich kagglehub kagglesdk sentencepiece tokenizers pyyaml`.
Without it this script says so and exits 0.

The model is `keras_hub.models.DeepLabV3ImageSegmenter` on a `ResNetBackbone` (ResNet-18 layout,
random weights: nothing is downloaded), with the DeepLabV3+ low-level skip (`low_level_feature_key`),
saved the two ways a keras-hub user saves it: `model.save("x.keras")` and `model.export(DIR)` (a
TensorFlow SavedModel). Each goes through the edgeseg command line with the spec from flags:

    edgeseg export deeplabv3plus.keras -o hub_keras.onnx --classes sky,road,obstacle --traversable road
    edgeseg export deeplabv3plus_savedmodel -o hub_savedmodel.onnx --classes ... --activation probabilities
    edgeseg inspect hub_keras.onnx

`export` checks ONNX Runtime against Keras before it writes (max |diff|, argmax agreement); this
script keeps those numbers. Prints a table and writes benchmarks/results/keras_hub_export.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _table import print_table, run_edgeseg, write_json  # noqa: E402

CLASSES = "sky,road,obstacle"


def build_model(size: int):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", use_pre_activation=False,
        image_shape=(size, size, 3),
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, low_level_feature_key="P2", spatial_pyramid_pooling_key="P5",
        dilation_rates=[6, 12, 18], upsampling_size=8, image_shape=(size, size, 3),
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3, activation="softmax")


def export_row(name: str, result: dict) -> dict:
    verified = re.search(r"max \|diff\| ([0-9.e+-]+).*?agreement ([0-9.]+)%", result["stdout"])
    return {"saved as": name, "rc": result["rc"], "seconds": result["seconds"],
            "max |diff|": float(verified.group(1)) if verified else None,
            "argmax agreement %": float(verified.group(2)) if verified else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="square input size (default 128)")
    parser.add_argument("--keep", type=Path, help="keep the models in this folder")
    args = parser.parse_args()
    try:
        import keras_hub  # noqa: F401
    except ImportError as err:
        print(f"skipped: keras-hub is not installed ({err}); see this script's docstring")
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="edgeseg-keras-hub-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(args.size)
    model.save(work / "deeplabv3plus.keras")
    model.export(str(work / "deeplabv3plus_savedmodel"), format="tf_saved_model", verbose=False)

    keras_file = run_edgeseg(["export", "deeplabv3plus.keras", "-o", "hub_keras.onnx", "--classes", CLASSES,
                              "--traversable", "road"], work)
    saved_model = run_edgeseg(["export", "deeplabv3plus_savedmodel", "-o", "hub_savedmodel.onnx", "--classes",
                               CLASSES, "--activation", "probabilities", "--traversable", "road"], work)
    inspected = run_edgeseg(["inspect", "hub_keras.onnx"], work)
    rows = [export_row(".keras (model.save)", keras_file), export_row("SavedModel (model.export)", saved_model)]
    print_table(rows, ["saved as", "rc", "seconds", "max |diff|", "argmax agreement %"])
    write_json("keras_hub_export", {"size": args.size, "rows": rows, "inspect": inspected["stdout"],
                                    "keras_hub": keras_hub.__version__})
    return 0 if all(row["rc"] == 0 for row in rows) and inspected["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
