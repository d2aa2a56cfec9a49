import json

import pytest

from edgeseg.errors import SpecError
from edgeseg.spec import ModelSpec, default_palette


def make_spec(**changes):
    fields = dict(class_names=("floor", "obstacle", "wall", "background"), input_height=64, input_width=96,
                  traversable=("floor",), model="compact_unet")
    fields.update(changes)
    return ModelSpec(**fields)


def test_json_round_trip_keeps_every_field(tmp_path):
    spec = make_spec(mean=(1, 2, 3), std=(4, 5, 6), scale=0.5, channel_order="bgr", layout="NCHW")
    assert ModelSpec.from_json(spec.to_json()) == spec
    path = spec.save(tmp_path / "spec.json")
    assert ModelSpec.load(path) == spec
    assert ModelSpec.load(tmp_path) == spec  # a run folder
    assert json.loads(path.read_text())["palette"][0] == list(spec.palette[0])


def test_derived_properties():
    spec = make_spec()
    assert spec.num_classes == 4 and spec.output_channels == 4
    assert spec.input_size == (64, 96)
    assert spec.traversable_ids == (0,)
    binary = make_spec(class_names=("background", "cell"), task="binary", output="sigmoid", traversable=())
    assert binary.output_channels == 1


def test_default_palette_is_distinct():
    palette = default_palette(21)
    assert len(set(palette)) == 21
    assert palette[1] == (128, 0, 0)  # the Pascal VOC colour of class 1


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(task="semantic"), "task"),
        (dict(layout="HWC"), "layout"),
        (dict(class_names=("only",), traversable=()), "at least 2"),
        (dict(traversable=("road",)), "road"),
        (dict(ignore_index=1), "collides"),
        (dict(std=(1, 0, 1)), "non-zero"),
        (dict(palette=((0, 0, 0),)), "palette"),
        (dict(task="binary", class_names=("a", "b"), traversable=(), output="probabilities"), "one output"),
    ],
)
def test_invalid_specs_name_the_problem(changes, message):
    with pytest.raises(SpecError, match=message):
        make_spec(**changes)


def test_unknown_and_missing_fields(tmp_path):
    with pytest.raises(SpecError, match="unknown spec field 'colour'"):
        ModelSpec.from_dict({**make_spec().to_dict(), "colour": 1})
    with pytest.raises(SpecError, match="input_height"):
        ModelSpec.from_dict({"class_names": ["a", "b"], "input_width": 3})
    with pytest.raises(SpecError, match="not valid JSON"):
        ModelSpec.from_json("{")
    with pytest.raises(SpecError, match="no spec file"):
        ModelSpec.load(tmp_path / "missing.json")


def test_spec_json_accepts_the_flag_names_and_old_field_names():
    flags = ModelSpec.from_dict({"classes": ["road", "lane"], "size": "360x640", "layout": "nchw",
                                 "channels": "bgr", "scale": 1 / 255, "output": "da", "activation": "logits",
                                 "traversable": ["road"]})
    assert flags.class_names == ("road", "lane") and flags.input_size == (360, 640)
    assert flags.layout == "NCHW" and flags.channel_order == "bgr"
    assert flags.output_name == "da" and flags.output == "logits"
    old = make_spec(output="probabilities").to_dict()
    assert ModelSpec.from_dict(old).output == "probabilities"  # `output` in older files: the kind
    assert ModelSpec.from_dict({**old, "output_name": "seg"}).output_name == "seg"
    assert ModelSpec.from_dict({"classes": ["a", "b"], "size": [8, 16]}).input_size == (8, 16)


@pytest.mark.parametrize("data, message", [
    ({"clases": ["a", "b"], "size": 8}, "unknown spec field 'clases'; did you mean 'classes'"),
    ({"classes": ["a", "b"], "sise": 8}, "did you mean 'size'"),
    ({"classes": ["a", "b"], "size": "8 by 8"}, "size '8 by 8' is not HxW"),
    ({"classes": ["a", "b"], "size": 8, "input_height": 8}, "input_height is given twice"),
    ({"size": 8}, r"missing class_names \(--classes\)"),
])
def test_spec_json_mistakes_name_the_fix(data, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_dict(data)
