"""Backend registry, the ONNX Runtime and Keras backends, and the spec in ONNX metadata."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeseg import onnxmeta
from edgeseg.errors import EngineError, ModelError, SpecError
from edgeseg.onnxmeta import read_spec_from_onnx_file, write_spec_metadata
from edgeseg.runtime import backends
from edgeseg.runtime.backends import (
    Backend,
    BackendBase,
    BackendEntry,
    open_backend,
    register_backend,
    select_backend,
)
from edgeseg.spec import ONNX_METADATA_KEY

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- registry ---------------------------------------------------------------------------------


def test_registry_picks_backend_by_file_type(tiny_models, tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"")
    assert select_backend(tiny_models.onnx_path).name == "onnxruntime"
    assert select_backend(tiny_models.run_dir / "model.keras").name == "keras"
    assert select_backend(tmp_path / "weights.h5").name == "keras"
    assert select_backend(tiny_models.run_dir).name == "keras"  # a run folder
    assert {"onnxruntime", "keras"} <= set(backends.available_backends())


def test_unknown_suffix_lists_supported_ones(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\0")
    with pytest.raises(EngineError, match=r"no backend opens .*model\.tflite.*\.h5, \.keras, \.onnx"):
        open_backend(model)
    with pytest.raises(EngineError, match="supported model files"):
        select_backend(tmp_path)  # a folder without model.keras


def test_missing_file_unknown_backend_and_wrong_backend(tiny_models, tmp_path):
    with pytest.raises(EngineError, match="no model at .*absent.onnx"):
        open_backend(tmp_path / "absent.onnx")
    with pytest.raises(EngineError, match="unknown backend 'tflite'; choose auto or one of onnxruntime, keras"):
        open_backend(tiny_models.onnx_path, backend="tflite")
    with pytest.raises(EngineError, match="backend 'keras' opens .keras, .h5 files"):
        open_backend(tiny_models.onnx_path, backend="keras")


def test_unknown_option_names_the_known_ones(tiny_models):
    with pytest.raises(EngineError, match="no option.* batch_size; its options: threads, optimization, providers"):
        open_backend(tiny_models.onnx_path, batch_size=4)


class _EchoBackend(BackendBase):
    name = "echo"

    def _run(self, batch):
        return batch * 2

    def _release(self):
        pass


def test_registered_backend_is_used_by_suffix_and_unavailable_one_says_what_to_install(
    tiny_models, tmp_path, monkeypatch
):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    opened = []

    def load(path, spec=None, gain=1):
        opened.append((path, gain))
        return _EchoBackend(path, spec or tiny_models.spec, "x", (None, 32, 32, 3))

    register_backend(BackendEntry("echo", (".echo",), lambda: True, load, options=("gain",)))
    model = tmp_path / "m.echo"
    model.write_bytes(b"")
    with open_backend(model, gain=3) as backend:
        assert backend.name == "echo"
        out = backend.infer(np.ones((1, 32, 32, 3), np.float32))
    assert opened == [(model, 3)] and float(out.max()) == 2.0
    with pytest.raises(EngineError, match="already registered"):
        register_backend(BackendEntry("echo", (".echo",), lambda: True, load))

    register_backend(
        BackendEntry("ghost", (".ghost",), lambda: False, load, install_hint="pip install ghost-runtime")
    )
    (tmp_path / "m.ghost").write_bytes(b"")
    with pytest.raises(EngineError, match="no installed backend can open .*pip install ghost-runtime"):
        open_backend(tmp_path / "m.ghost")
    assert "ghost" not in backends.available_backends()


# --- ONNX Runtime backend ---------------------------------------------------------------------


def test_onnxruntime_backend_reports_model_and_provider(tiny_models):
    with open_backend(tiny_models.onnx_path, threads=1, optimization="basic") as backend:
        assert isinstance(backend, Backend) and backend.name == "onnxruntime"
        assert backend.input_spec == tiny_models.spec
        assert backend.input_name == "image"
        assert backend.input_shape == (None, 32, 32, 3)
        assert backend.provider in backend.providers
        if "CUDAExecutionProvider" not in backend.providers:
            assert backend.provider == "CPUExecutionProvider"
        out = backend.infer(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.float32


@pytest.mark.parametrize("spinning, entry", [(True, "1"), (False, "0")])
def test_onnxruntime_spinning_option_reaches_the_session(tiny_models, spinning, entry):
    from edgeseg.runtime.onnxruntime_backend import open_onnxruntime

    with open_onnxruntime(tiny_models.onnx_path, threads=2, spinning=spinning) as backend:
        options = backend._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
        float_out = backend.infer(np.full((1, 32, 32, 3), 128.0, np.float32))
    with open_backend(tiny_models.onnx_path, threads=2) as default:  # ONNX Runtime's default: spinning
        assert default._session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning") == "1"
        np.testing.assert_allclose(default.infer(np.full((1, 32, 32, 3), 128.0, np.float32)), float_out, rtol=1e-5)
    with pytest.raises(EngineError, match="spinning must be True or False"):
        open_onnxruntime(tiny_models.onnx_path, spinning="no")


def test_onnxruntime_bad_options(tiny_models):
    with pytest.raises(EngineError, match="unknown optimization level 'max'"):
        open_backend(tiny_models.onnx_path, optimization="max")
    with pytest.raises(EngineError, match="threads must be a positive integer"):
        open_backend(tiny_models.onnx_path, threads=0)
    with pytest.raises(EngineError, match=r"execution provider.*'NoSuchExecutionProvider'.*available: "):
        open_backend(tiny_models.onnx_path, providers=["NoSuchExecutionProvider"])


@pytest.mark.parametrize(
    "batch, problem",
    [
        (np.zeros((1, 16, 16, 3), np.float32), "shape"),
        (np.zeros((1, 3, 32, 32), np.float32), "layout"),
        (np.zeros((1, 32, 32, 3), np.float64), "dtype"),
        (np.zeros((32, 32, 3), np.float32), "no batch axis"),
    ],
)
def test_wrong_batch_raises_engine_error_naming_expected_input(tiny_models, batch, problem):
    with open_backend(tiny_models.onnx_path) as backend:
        with pytest.raises(EngineError, match=r"expects input 'image' as float32 of shape \[N, 32, 32, 3\]"):
            backend.infer(batch)


def test_closed_backend_refuses_to_run(tiny_models):
    backend = open_backend(tiny_models.onnx_path)
    backend.close()
    with pytest.raises(EngineError, match="closed"):
        backend.infer(np.zeros((1, 32, 32, 3), np.float32))


def test_corrupt_onnx_raises_engine_error(tiny_models, tmp_path, monkeypatch):
    data = tiny_models.onnx_path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    expected = r"truncated\.onnx is not a valid ONNX model \(truncated or corrupt\?\): .*edgeseg export"
    with pytest.raises(EngineError, match=expected):
        open_backend(truncated)
    with pytest.raises(EngineError, match=expected):
        read_spec_from_onnx_file(truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(EngineError, match="not a valid ONNX model"):
        open_backend(empty)

    # the onnx-package path, used where ONNX Runtime is not installed
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        onnxmeta.importlib.util, "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a),
    )
    with pytest.raises(EngineError, match=expected):
        read_spec_from_onnx_file(truncated)
    with pytest.raises(EngineError, match="not a valid ONNX model"):
        read_spec_from_onnx_file(empty)
    assert read_spec_from_onnx_file(tiny_models.onnx_path) == tiny_models.spec


def test_missing_spec_says_how_to_provide_one(tiny_models):
    expected = (
        rf"no model spec for .*nospec.onnx: it has no {ONNX_METADATA_KEY} metadata and needs classes \(--classes A,B,...: 3 names"
        r".*`edgeseg export`.*--spec FILE"
    )
    with pytest.raises(SpecError, match=expected):
        open_backend(tiny_models.onnx_without_spec)
    with open_backend(tiny_models.onnx_without_spec, spec=tiny_models.spec) as backend:
        assert backend.input_spec == tiny_models.spec
    assert read_spec_from_onnx_file(tiny_models.onnx_without_spec) is None


def test_spec_that_does_not_match_the_model_raises_spec_error(tiny_models):
    bigger = tiny_models.spec.replace(input_height=64, input_width=48)
    with pytest.raises(SpecError, match=r"says input 64x48x3 \(NHWC\), but the model's input 'image' has shape "
                       r"\[None, 32, 32, 3\]"):
        open_backend(tiny_models.onnx_path, spec=bigger)
    nchw = tiny_models.spec.replace(layout="NCHW")
    with pytest.raises(SpecError, match=r"32x32x3 \(NCHW\)"):
        open_backend(tiny_models.onnx_path, spec=nchw)
    five = tiny_models.spec.replace(class_names=tuple("abcde"), palette=(), traversable=())
    with pytest.raises(SpecError, match=r"has 5 classes .* output has shape \[None, 32, 32, 3\]"):
        open_backend(tiny_models.onnx_path, spec=five)


def test_write_spec_metadata_replaces_and_round_trips(tiny_models, tmp_path):
    import onnx

    proto = onnx.load(str(tiny_models.onnx_path))
    other = tiny_models.spec.replace(class_names=("x", "y", "z"), traversable=())
    write_spec_metadata(proto, other)
    assert [p.key for p in proto.metadata_props].count(ONNX_METADATA_KEY) == 1
    path = tmp_path / "other.onnx"
    onnx.save(proto, str(path))
    assert read_spec_from_onnx_file(path) == other

    proto.metadata_props[-1].value = '{"class_names": ["only"]'
    onnx.save(proto, str(path))
    with pytest.raises(SpecError, match=r"other\.onnx: the embedded edgeseg\.spec metadata is not a valid spec"):
        read_spec_from_onnx_file(path)


# --- Keras backend ----------------------------------------------------------------------------


def test_keras_backend_reads_spec_json_from_run_folder(tiny_models, tmp_path):
    with open_backend(tiny_models.run_dir) as backend:
        assert backend.name == "keras"
        assert backend.input_spec == tiny_models.spec
        assert backend.input_name == "image"
        assert backend.input_shape == (None, 32, 32, 3)
        assert backend.infer(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32, 32, 3)
        with pytest.raises(EngineError, match="expects input 'image'"):
            backend.infer(np.zeros((1, 8, 8, 3), np.float32))

    lonely = tmp_path / "lonely.keras"
    lonely.write_bytes((tiny_models.run_dir / "model.keras").read_bytes())
    expected = r"no model spec for .*lonely\.keras: there is no .*spec\.json .*edgeseg train.*--spec FILE"
    with pytest.raises(SpecError, match=expected):
        open_backend(lonely)
    broken = tmp_path / "broken" / "model.keras"
    broken.parent.mkdir()
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"broken.model\.keras is not a valid \.keras file"):
        open_backend(broken, spec=tiny_models.spec)


# --- what the robot imports -------------------------------------------------------------------


def _run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


def test_onnx_path_imports_no_heavy_modules(tiny_models):
    """The robot has numpy, OpenCV and ONNX Runtime only: block the rest and run a model."""
    script = textwrap.dedent(
        f"""
        import sys
        HEAVY = ("tensorflow", "keras", "onnx", "tensorrt", "tf2onnx")

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in HEAVY:
                    raise ImportError(f"{{name}} is not installed on the robot")
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        import edgeseg.runtime
        from edgeseg.onnxmeta import read_spec_from_onnx_file
        from edgeseg.runtime import Segmenter

        assert read_spec_from_onnx_file({str(tiny_models.onnx_path)!r}).num_classes == 3
        with Segmenter.open({str(tiny_models.onnx_path)!r}) as segmenter:
            result = segmenter.seg(np.zeros((40, 50, 3), np.uint8), probabilities=True)
        assert result.class_map.shape == (40, 50)
        print(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
        """
    )
    done = _run_python(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_importing_runtime_imports_no_runtime_at_all():
    script = (
        "import sys, edgeseg.runtime, edgeseg.onnxmeta; "
        "heavy = ('tensorflow', 'keras', 'onnx', 'tensorrt', 'onnxruntime'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = _run_python(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
