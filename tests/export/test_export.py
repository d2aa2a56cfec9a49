"""Keras -> ONNX export: real TensorFlow, tf2onnx and ONNX Runtime on tiny 32x32 models."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tf2onnx  # noqa: F401  (a core dependency of export: a broken install fails here, not as skips)

from edgeseg.errors import EdgesegError, EngineError, ModelError, SpecError
from edgeseg.export import SpecOverrides, compare_outputs, export_onnx, keras_to_onnx, synthetic_frames
from edgeseg.onnxmeta import read_spec_from_onnx_file
from edgeseg.runtime.preprocess import preprocess
from edgeseg.spec import ModelSpec

SIZE = 32
CLASSES = ("road", "grass", "sky")


def tiny_segnet(num_classes: int = 3, activation: str | None = None) -> "keras.Model":
    """Conv + BatchNorm (with non-trivial statistics) + Conv2DTranspose + bilinear upsampling."""
    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    bn = keras.layers.BatchNormalization()
    x = keras.layers.ReLU()(bn(x))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    logits = keras.layers.Conv2D(num_classes, 1, activation=activation, name="logits")(x)
    model = keras.Model(image, logits)
    rng = np.random.default_rng(1)
    gamma, beta, mean, var = (w.shape for w in bn.get_weights())
    bn.set_weights([rng.uniform(0.5, 2, gamma), rng.normal(0, 0.5, beta), rng.normal(0, 0.3, mean),
                    rng.uniform(0.5, 2, var)])
    return model


def unet_ish() -> "keras.Model":
    """A plain third-party style model: Conv/MaxPool/UpSampling with a skip, softmax head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    c1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(c1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.UpSampling2D()(x)
    x = keras.layers.Concatenate()([x, c1])
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An edgeseg-style run folder: model.keras + spec.json."""
    folder = tmp_path_factory.mktemp("run")
    tiny_segnet().save(folder / "model.keras")
    ModelSpec(class_names=CLASSES, input_height=SIZE, input_width=SIZE, traversable=("road",)).save(
        folder / "spec.json"
    )
    return folder


@pytest.fixture(scope="module")
def keras_model(run_dir):
    return keras.models.load_model(run_dir / "model.keras", compile=False)


def ort_session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_run_folder_export_equals_keras_and_embeds_spec(run_dir, keras_model, tmp_path):
    out = tmp_path / "model.onnx"
    report = export_onnx(run_dir, out)

    assert report.max_abs_diff <= 1e-4 and report.argmax_agreement >= 0.999
    assert report.input_shape == (1, SIZE, SIZE, 3) and report.opset == 17
    assert "spec.json" in report.spec_source
    spec = read_spec_from_onnx_file(out)
    assert spec == ModelSpec.load(run_dir / "spec.json")
    model = onnx.load(str(out))
    assert model.producer_name == "edgeseg" and "road, grass, sky" in model.doc_string
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.opset_import[0].version == 17
    # An independent check on frames the export did not verify on.
    frames = synthetic_frames(SIZE, SIZE, count=3, seed=7)
    session = ort_session(out)
    for frame in frames:
        batch = preprocess(frame, spec)
        np.testing.assert_allclose(session.run(None, {"image": batch})[0], keras_model(batch).numpy(), atol=1e-4)


def test_nchw_export_has_nchw_input_and_matches(run_dir, keras_model, tmp_path):
    out = tmp_path / "nchw.onnx"
    report = export_onnx(run_dir, out, nchw=True)

    spec = read_spec_from_onnx_file(out)
    assert spec.layout == "NCHW" and report.spec.layout == "NCHW"
    session = ort_session(out)
    assert session.get_inputs()[0].shape == [1, 3, SIZE, SIZE]
    frame = synthetic_frames(SIZE, SIZE, count=1, seed=3)[0]
    onnx_out = session.run(None, {"image": preprocess(frame, spec)})[0]
    keras_out = keras_model(preprocess(frame, spec.replace(layout="NHWC"))).numpy()
    np.testing.assert_allclose(onnx_out, keras_out, atol=1e-4)


def test_dynamic_batch_runs_with_batch_2(run_dir, keras_model, tmp_path):
    out = tmp_path / "dynamic.onnx"
    report = export_onnx(run_dir, out, batch="dynamic")

    assert report.input_shape[0] == "batch"
    session = ort_session(out)
    assert session.get_inputs()[0].shape[0] == "batch"
    batch = preprocess(synthetic_frames(SIZE, SIZE, count=2, seed=5), report.spec)
    onnx_out = session.run(None, {"image": batch})[0]
    assert onnx_out.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_allclose(onnx_out, keras_model(batch).numpy(), atol=1e-4)


def test_third_party_h5_with_spec_from_flags(tmp_path):
    model = unet_ish()
    path = tmp_path / "m.h5"
    model.save(path)
    out = tmp_path / "m.onnx"
    report = export_onnx(path, out, overrides=SpecOverrides(class_names=("a", "b", "c"), mean=(1.0, 2.0, 3.0)))

    assert report.spec_source.startswith("flags and the model")
    spec = read_spec_from_onnx_file(out)
    assert spec.input_size == (SIZE, SIZE)  # read from the model
    assert spec.output == "probabilities"  # its last layer is a softmax
    assert spec.mean == (1.0, 2.0, 3.0) and spec.class_names == ("a", "b", "c")
    batch = preprocess(synthetic_frames(SIZE, SIZE, count=1, seed=2)[0], spec)
    np.testing.assert_allclose(ort_session(out).run(None, {"image": batch})[0], model(batch).numpy(), atol=1e-4)


def test_binary_task_inferred_from_one_sigmoid_channel(tmp_path):
    path = tmp_path / "binary.keras"
    tiny_segnet(num_classes=1, activation="sigmoid").save(path)
    report = export_onnx(path, tmp_path / "b.onnx", overrides=SpecOverrides(class_names=("free", "obstacle")))
    assert report.spec.task == "binary" and report.spec.output == "sigmoid"
    assert report.argmax_agreement >= 0.999


@pytest.mark.parametrize("writer", ["model.export", "tf.saved_model.save"])
def test_saved_model_folder(tmp_path, writer):
    import tensorflow as tf

    model = unet_ish()
    folder = tmp_path / "saved"
    if writer == "model.export":
        model.export(folder, verbose=False)
    else:
        tf.saved_model.save(model, str(folder))
    out = tmp_path / "saved.onnx"
    report = export_onnx(folder, out, overrides=SpecOverrides(class_names=CLASSES, output="probabilities"))

    assert report.model.startswith("savedmodel") and report.max_abs_diff <= 1e-4
    batch = preprocess(synthetic_frames(SIZE, SIZE, count=1, seed=4)[0], report.spec)
    np.testing.assert_allclose(ort_session(out).run(None, {"image": batch})[0], model(batch).numpy(), atol=1e-4)


def test_grouped_conv_is_converted_right_or_refused_without_a_file(tmp_path):
    image = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(image)
    x = keras.layers.Conv2D(4, 3, padding="same", groups=2, name="grouped")(x)
    model = keras.Model(image, keras.layers.Conv2D(3, 1)(x))
    out = tmp_path / "grouped.onnx"
    try:
        report = export_onnx(model, out, overrides=SpecOverrides(class_names=CLASSES))
    except EngineError as err:  # tf2onnx 1.17 leaves the grouped convolution unconverted
        assert "grouped (groups=2)" in str(err) and "nothing written" in str(err)
        assert not out.exists()
        assert list(tmp_path.iterdir()) == []
    else:  # a later tf2onnx that converts it must have passed verification
        assert report.max_abs_diff <= 1e-4 and out.exists()


def test_onnx_that_differs_from_keras_is_refused_and_nothing_written(run_dir, tmp_path, monkeypatch):
    real_run = keras_to_onnx.run_onnx
    monkeypatch.setattr(keras_to_onnx, "run_onnx", lambda session, batch: real_run(session, batch) + 0.01)
    out = tmp_path / "wrong.onnx"
    with pytest.raises(EngineError, match=r"differs from .* max \|diff\| 0\.01 .*exceeded.*nothing written"):
        export_onnx(run_dir, out)
    assert list(tmp_path.iterdir()) == []


def test_compare_outputs_measures_difference_and_class_agreement():
    spec = ModelSpec(class_names=("a", "b"), input_height=10, input_width=10)
    reference = np.zeros((1, 10, 10, 2), np.float32)
    reference[..., 0] = 1.0
    candidate = reference + 5e-5
    same = compare_outputs(reference, candidate, spec)
    assert same.within_tolerance and same.argmax_agreement == 1.0 and same.passed(0.999)
    candidate[0, 0, 0] = (0.0, 2.0)  # one pixel of 100 changes class
    flipped = compare_outputs(reference, candidate, spec)
    assert flipped.max_abs_diff == pytest.approx(2.0) and flipped.argmax_agreement == pytest.approx(0.99)
    assert not flipped.within_tolerance and not flipped.passed(0.9)
    # rtol scales with the logits: 1e-4 relative to 1000 allows 0.1
    large = np.full((1, 10, 10, 2), 1000.0, np.float32)
    assert compare_outputs(large, large + 0.09, spec, atol=0, rtol=1e-4).within_tolerance
    assert not compare_outputs(large, large + 0.11, spec, atol=0, rtol=1e-4).within_tolerance
    with pytest.raises(EngineError, match="shape"):
        compare_outputs(reference, reference[..., :1], spec)


def test_missing_spec_says_what_is_missing(tmp_path):
    path = tmp_path / "m.h5"
    unet_ish().save(path)
    with pytest.raises(SpecError) as info:
        export_onnx(path, tmp_path / "m.onnx")
    message = str(info.value)
    assert "no spec for" in message and "m.h5" in message
    assert "--spec FILE" in message and "--classes" in message
    assert "3 names" in message and "(32x32)" in message
    assert not (tmp_path / "m.onnx").exists()


def test_dynamic_input_size_needs_size(tmp_path):
    image = keras.Input((None, None, 3))
    model = keras.Model(image, keras.layers.Conv2D(2, 1)(image))
    with pytest.raises(SpecError, match="dynamic input size.*--size HxW"):
        export_onnx(model, tmp_path / "d.onnx", overrides=SpecOverrides(class_names=("a", "b")))


def test_spec_size_that_contradicts_the_model_is_refused(run_dir, tmp_path):
    with pytest.raises(SpecError, match="spec input size 64x64 does not match the input size 32x32"):
        export_onnx(run_dir, tmp_path / "x.onnx", overrides=SpecOverrides(size=(64, 64)))
    with pytest.raises(SpecError, match="3 output channels but the spec"):
        export_onnx(run_dir, tmp_path / "x.onnx", overrides=SpecOverrides(class_names=("road", "b")))
    with pytest.raises(SpecError, match=r"overridden by class_names: traversable classes \['road'\]"):
        export_onnx(run_dir, tmp_path / "x.onnx", overrides=SpecOverrides(class_names=("a", "b", "c")))


def test_flags_override_a_found_spec(run_dir):
    from edgeseg.export import load_model, resolve_spec

    spec, source = resolve_spec(load_model(run_dir), overrides=SpecOverrides(traversable=("grass",), scale=0.5))
    assert spec.traversable == ("grass",) and spec.scale == 0.5 and spec.class_names == CLASSES
    assert "overridden by scale, traversable" in source


@pytest.mark.parametrize(
    "name, content, error",
    [
        ("missing.keras", None, "does not exist"),
        ("corrupt.keras", b"PK\x03\x04 not really a zip", "not a valid .keras file"),
        ("corrupt.h5", b"garbage", "not a valid HDF5 file"),
        ("notes.txt", b"hello", "not a Keras model"),
    ],
)
def test_bad_model_files_are_clear_errors(tmp_path, name, content, error):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=error):
        export_onnx(path, tmp_path / "x.onnx")


def test_folder_without_a_model(tmp_path):
    with pytest.raises(ModelError, match="neither model.keras .* nor saved_model.pb"):
        export_onnx(tmp_path, tmp_path / "x.onnx")


def test_unwritable_output_fails_before_converting(run_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setattr(keras_to_onnx, "convert_to_onnx", lambda *a, **k: pytest.fail("converted anyway"))
    with pytest.raises(EdgesegError, match="a_file is a file, not a folder"):
        export_onnx(run_dir, blocker / "sub" / "model.onnx")


@pytest.mark.parametrize(
    "options, error",
    [({"opset": 99}, "opset 99 is not supported"), ({"batch": 0}, "batch 0"), ({"atol": -1.0}, "non-negative")],
)
def test_bad_options(run_dir, tmp_path, options, error):
    with pytest.raises(EdgesegError, match=error):
        export_onnx(run_dir, tmp_path / "x.onnx", **options)


def test_synthetic_frames_are_deterministic_and_smooth():
    first, again = synthetic_frames(24, 40, count=2), synthetic_frames(24, 40, count=2)
    assert first[0].shape == (24, 40, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # neighbouring pixels are mostly close (a scene), unlike noise
    step = np.abs(np.diff(first[0].astype(int), axis=1))
    assert np.median(step) < 20


def test_unconverted_and_invalid_graphs_are_refused():
    from onnx import TensorProto, helper

    from edgeseg.export.loading import LoadedModel

    def model_with(node, opset=17):
        graph = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    loaded = LoadedModel(name="m.keras", kind="keras", call=None, input_shape=(1, 2, 2, 3), output_shape=(1, 2, 2, 2))
    leftover = model_with(helper.make_node("StatefulPartitionedCall", ["x"], ["y"], name="conv/call"))
    assert [n.op_type for n in keras_to_onnx.unconverted_nodes(leftover.graph)] == ["StatefulPartitionedCall"]
    with pytest.raises(EngineError, match=r"could not convert StatefulPartitionedCall \(node conv/call\)"):
        keras_to_onnx._check_converted(leftover, loaded)
    custom = model_with(helper.make_node("Relu", ["x"], ["y"], domain="com.example"))
    assert len(keras_to_onnx.unconverted_nodes(custom.graph)) == 1
    invalid = model_with(helper.make_node("Relu", ["x"], ["y"], alpha=1.0))  # Relu has no attribute alpha
    with pytest.raises(EngineError, match="is invalid: .*nothing written") as info:
        keras_to_onnx._check_converted(invalid, loaded)
    assert "\n" not in str(info.value)


def test_a_zip_that_is_no_keras_model(tmp_path):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with pytest.raises(ModelError, match="cannot load Keras model .*m.keras: ") as info:
        export_onnx(path, tmp_path / "x.onnx")
    assert "\n" not in str(info.value)
