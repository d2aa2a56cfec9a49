"""The artifact contract: describe(), the format table, spec resolution, `edgeseg inspect` and `edgeseg spec`."""

from __future__ import annotations

import json

import pytest

from edgeseg.artifact import describe, format_for_path, format_table, read_onnx
from edgeseg.artifact.spec import ModelSpec
from edgeseg.cli import main
from edgeseg.errors import EngineError, SpecError


def test_format_table_has_one_row_per_kind_and_longest_suffix_wins(tmp_path):
    kinds = [row.kind for row in format_table()]
    assert len(kinds) == len(set(kinds))
    assert format_for_path(tmp_path / "m.cpu.onnx").kind == "cpu-engine"
    assert format_for_path(tmp_path / "m.onnx").kind == "onnx"
    assert format_for_path(tmp_path / "m.plan").runner == "tensorrt"
    assert format_for_path(tmp_path / "m.h5").kind == "keras"
    with pytest.raises(EngineError, match=r"no model file edgeseg knows: supported endings are .*\.engine"):
        format_for_path(tmp_path / "m.tflite")
    from edgeseg.runtime.backends import backend_entries

    hints = {row.runner: row.install_hint for row in format_table()}
    assert all(entry.install_hint == hints[entry.name] for entry in backend_entries())  # one table, not two


def test_describe_a_foreign_onnx_says_exactly_what_is_missing(tmp_path, foreign_onnx):
    path = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), dynamic=True)
    found = describe(path)
    assert found.kind == "onnx" and found.precision == "fp32" and found.spec is None and found.opset == 17
    assert [t.name for t in found.outputs] == ["da", "ll"]
    assert found.missing[0].startswith("classes (--classes A,B,...: 2 names, one per channel of head 'da')")
    assert found.missing[1].startswith("size (--size HxW: the model's height and width are dynamic")
    assert any("2 heads" in note for note in found.notes)
    assert any("dynamic axes [0, 2, 3]" in note for note in found.notes)

    fixed = foreign_onnx(tmp_path / "fixed.onnx", size=(24, 32), sigmoid_head=True)
    spec = describe(fixed, overrides={"class_names": ("bg", "road")}).spec
    assert (spec.layout, spec.input_size, spec.task, spec.output) == ("NCHW", (24, 32), "binary", "sigmoid")
    nhwc = foreign_onnx(tmp_path / "nhwc.onnx", layout="NHWC")
    assert describe(nhwc, overrides={"class_names": ("a", "b")}).spec.layout == "NHWC"
    with pytest.raises(SpecError, match=r"has no output 'lanes'; its outputs are 'da', 'll'"):
        describe(path, overrides={"output_name": "lanes", "class_names": ("a", "b")})


def test_flags_override_an_embedded_spec_only_where_given(tmp_path, foreign_onnx):
    path = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), size=(24, 32), dynamic_batch=False)
    out = tmp_path / "road.spec.onnx"
    assert main(["spec", str(path), "--classes", "background,road", "--scale", "1/255", "--output", "ll",
                 "--traversable", "road", "-o", str(out)]) == 0
    spec = read_onnx(out).metadata["edgeseg.spec"]
    embedded = ModelSpec.from_json(spec)
    assert embedded.output_name == "ll" and embedded.scale == pytest.approx(1 / 255)
    changed = describe(out, overrides={"channel_order": "bgr"}).spec
    assert changed.channel_order == "bgr" and changed.output_name == "ll" and changed.traversable == ("road",)
    assert [f for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # atomic: no temp files left


def test_inspect_prints_and_writes_json(tmp_path, foreign_onnx, capsys):
    path = foreign_onnx(tmp_path / "road.onnx", heads=("da", "ll"), dynamic=True)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "spec        none; missing: classes" in out and "output      ll float[batchx2xheightxwidth]" in out
    assert main(["inspect", str(path), "--json", "--classes", "a,b", "--size", "24x32", "--output", "ll"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"]["output_name"] == "ll" and data["spec"]["input_height"] == 24 and data["missing"] == []


def test_spec_command_refuses_what_it_cannot_complete(tmp_path, foreign_onnx, capsys):
    path = foreign_onnx(tmp_path / "road.onnx", dynamic=True)
    out = tmp_path / "out.onnx"
    assert main(["spec", str(path), "--classes", "a,b", "-o", str(out)]) == 1
    assert "missing size (--size HxW" in capsys.readouterr().err and not out.exists()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"clases": ["a", "b"]}))
    assert main(["spec", str(path), "--spec", str(spec_file), "-o", str(out)]) == 1
    assert "did you mean 'classes'" in capsys.readouterr().err
    spec_file.write_text(json.dumps({"classes": ["a", "b"], "size": "24x32"}))
    assert main(["spec", str(path), "--spec", str(spec_file), "-o", str(out)]) == 0
    assert ModelSpec.from_json(read_onnx(out).metadata["edgeseg.spec"]).input_size == (24, 32)


def test_export_of_an_onnx_model_points_to_edgeseg_spec(tmp_path, foreign_onnx, capsys):
    path = foreign_onnx(tmp_path / "road.onnx")
    assert main(["export", str(path), "-o", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "is already ONNX" in err and "edgeseg spec MODEL.onnx" in err
