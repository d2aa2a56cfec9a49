"""`edgeseg export` in-process: exit codes, one-line errors, the summary, files written or not."""

from __future__ import annotations

import argparse

import keras
import numpy as np
import onnxruntime  # noqa: F401  (core dependencies of export: a broken install fails here, not as skips)
import pytest
import tf2onnx  # noqa: F401

from edgeseg import cli
from edgeseg.cli import common
from edgeseg.cli import export as export_cli
from edgeseg.onnxmeta import read_spec_from_onnx_file
from edgeseg.spec import ModelSpec

SIZE = 32


def small_model(num_classes: int = 3) -> "keras.Model":
    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(image)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    return keras.Model(image, keras.layers.Conv2D(num_classes, 1, name="logits")(x))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    small_model().save(folder / "model.keras")
    ModelSpec(class_names=("road", "grass", "sky"), input_height=SIZE, input_width=SIZE).save(folder / "spec.json")
    return folder


@pytest.fixture(scope="module")
def h5_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("h5") / "third_party.h5"
    small_model(num_classes=2).save(path)
    return path


def test_run_folder_with_verify_images_and_nchw(run_dir, tmp_path, capsys):
    import cv2

    images = tmp_path / "frames"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):  # frames of another size: preprocess resizes them, as the runtime does
        frame = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (80, 60), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(images / f"{index}.png"), frame)
    out = tmp_path / "model.onnx"

    code = cli.main(["export", str(run_dir), "-o", str(out), "--nchw", "--verify-images", str(images)])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "verified  3 given frames" in captured.out and "argmax agreement 100" in captured.out
    assert "spec.json (beside the model)" in captured.out and "atol 0.0001 + rtol 0.0001" in captured.out
    assert read_spec_from_onnx_file(out).layout == "NCHW"


def test_h5_without_spec_exits_1_with_one_line_naming_what_is_missing(h5_path, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code = cli.main(["export", str(h5_path), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("edgeseg export: error: no spec for ")
    assert "--classes" in err and "2 names" in err and "(32x32)" in err
    assert not out.exists()


def test_h5_with_spec_flags_and_dynamic_batch(h5_path, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    argv = ["export", str(h5_path), "-o", str(out), "--classes", "free,blocked", "--traversable", "free",
            "--batch", "dynamic", "--opset", "13"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    spec = read_spec_from_onnx_file(out)
    assert spec.class_names == ("free", "blocked") and spec.traversable == ("free",) and spec.output == "logits"
    assert "input image ['batch', 32, 32, 3]" in capsys.readouterr().out


def test_spec_file_flag(h5_path, tmp_path, capsys):
    spec_file = tmp_path / "other.json"
    ModelSpec(class_names=("x", "y"), input_height=SIZE, input_width=SIZE, scale=0.5).save(spec_file)
    out = tmp_path / "m.onnx"
    assert cli.main(["export", str(h5_path), "-o", str(out), "--spec", str(spec_file)]) == 0
    assert read_spec_from_onnx_file(out).scale == 0.5
    assert f"spec file {spec_file}" in capsys.readouterr().out


def test_third_party_h5_with_its_own_preprocessing_flags(tmp_path, capsys):
    # A Keras .h5 that expects ImageNet-normalised input and ends in a softmax, as Keras saves it.
    keras.utils.set_random_seed(1)
    image = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.UpSampling2D(2)(x)
    model = keras.Model(image, keras.layers.Conv2D(3, 1, activation="softmax")(x))
    path = tmp_path / "third_party.h5"
    model.save(path)
    out = tmp_path / "m.onnx"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    code = cli.main(["export", str(path), "-o", str(out), "--classes", "floor,wall,sky", "--traversable", "floor",
                     "--scale", str(1 / 255), "--mean", ",".join(map(str, mean)), "--std", ",".join(map(str, std)),
                     "--activation", "probabilities"])

    assert code == 0, capsys.readouterr().err
    spec = read_spec_from_onnx_file(out)
    assert spec.class_names == ("floor", "wall", "sky") and spec.traversable == ("floor",)
    assert spec.output == "probabilities" and spec.input_size == (SIZE, SIZE)
    assert spec.scale == pytest.approx(1 / 255) and spec.mean == mean and spec.std == std
    # The ONNX model fed by edgeseg's preprocessing (from the embedded spec) equals the Keras model
    # fed by the third party's own preprocessing, written here without edgeseg.
    import onnxruntime as ort

    from edgeseg.runtime.preprocess import preprocess

    frame = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    own = ((frame[None].astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: preprocess(frame, spec)})[0]
    np.testing.assert_allclose(onnx_out, model(own).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "make_argv, message",
    [
        (lambda d, t: [str(t / "nope.keras"), "-o", str(t / "x.onnx")], "does not exist"),
        (lambda d, t: [str(d), "-o", str(t / "blocker" / "x.onnx")], "is a file, not a folder"),
        (lambda d, t: [str(d), "-o", str(t / "x.onnx"), "--size", "64x48"], "does not match the input size 32x32"),
        (lambda d, t: [str(d), "-o", str(t / "x.onnx"), "--verify-images", str(t / "none")], "does not exist"),
    ],
    ids=["missing-model", "output-under-a-file", "size-mismatch", "missing-verify-images"],
)
def test_user_errors_exit_1_with_one_line(run_dir, tmp_path, capsys, make_argv, message):
    (tmp_path / "blocker").write_text("a file, not a folder")
    code = cli.main(["export", *make_argv(run_dir, tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("edgeseg export: error: ")
    assert message in err
    assert not (tmp_path / "x.onnx").exists()


def test_argument_types():
    assert common.names("a, b,c") == ("a", "b", "c")
    assert common.triple("1,2.5,3") == (1.0, 2.5, 3.0)
    assert export_cli.batch("dynamic") == "dynamic" and export_cli.batch("4") == 4
    for parse, text in [(common.names, "a,,b"), (common.triple, "1,2"), (export_cli.batch, "0")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_bad_flag_value_is_a_usage_error(run_dir, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", str(run_dir), "-o", str(tmp_path / "x.onnx"), "--batch", "zero"])
    assert info.value.code == 2
