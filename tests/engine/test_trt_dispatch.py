"""The pure parts of the TensorRT builder: versions, per-version dispatch, profiles, parser errors."""

from __future__ import annotations

import pytest

from edgeseg.engine import trt_build
from edgeseg.engine.trt_build import BatchRange, Precision, TrtVersion, profile_shapes
from edgeseg.errors import EngineError

# (version string as tensorrt.__version__ gives it, strongly typed, flags, implicit int8, opset limit)
VERSIONS = [
    ("8.5.2.2", False, True, True, 17),  # JetPack 5.1
    ("8.6.2.3", False, True, True, 17),  # JetPack 5.1.2+
    ("10.3.0.30", False, True, True, None),  # JetPack 6
    ("10.13.0.35", False, True, True, None),  # desktop 10.x
    ("11.1.0.8", True, False, False, None),  # desktop 11.x
]


def test_version_parsing_and_order():
    assert TrtVersion.parse("8.6.1.6") == TrtVersion(8, 6, 1, 6)
    assert TrtVersion.parse("10.3.0") == TrtVersion(10, 3, 0)
    assert TrtVersion.parse("11.4.0.106") == TrtVersion(11, 4, 0, 106)
    assert TrtVersion.parse("10.3") == TrtVersion(10, 3, 0)
    assert str(TrtVersion.parse("10.3.0")) == "10.3.0" and str(TrtVersion(8, 6, 1, 6)) == "8.6.1.6"
    assert TrtVersion.parse("8.5.3") < TrtVersion.parse("8.6.1") < TrtVersion.parse("10.3.0") < TrtVersion.parse("11.0")
    with pytest.raises(EngineError, match=r"cannot read the TensorRT version 'dev'"):
        TrtVersion.parse("dev")


def test_too_old_tensorrt_is_refused_with_what_to_use():
    trt_build.check_supported(TrtVersion(8, 5))
    with pytest.raises(EngineError, match=r"TensorRT 8\.4\.3 is too old.*8\.5 or newer.*JetPack 5\.1"):
        trt_build.check_supported(TrtVersion(8, 4, 3))


@pytest.mark.parametrize("text, strong, flags, implicit, opset", VERSIONS)
def test_dispatch_per_version(helpers, text, strong, flags, implicit, opset):
    version = TrtVersion.parse(text)
    assert trt_build.is_strongly_typed(version) is strong
    assert trt_build.supports_precision_flags(version) is flags
    assert trt_build.supports_implicit_int8(version) is implicit
    assert trt_build.max_onnx_opset(version) == opset
    trt = helpers.make_fake_tensorrt(text)
    expected = 1 << 0 if version.major < 10 else 0  # EXPLICIT_BATCH only before 10
    assert trt_build.network_flags(trt, version) == expected


@pytest.mark.parametrize("text, strong, flags, implicit, opset", VERSIONS)
def test_apply_precision_sets_builder_flags_only_on_weakly_typed_versions(helpers, text, strong, flags, implicit, opset):
    trt = helpers.make_fake_tensorrt(text)
    config = trt.Builder(None).create_builder_config()
    trt_build.apply_precision(trt, config, TrtVersion.parse(text), Precision(int8=True, fp16=True))
    assert [call[1] for call in trt.calls if call[0] == "set_flag"] == (["INT8", "FP16"] if flags else [])


def test_opset_check_only_where_the_parser_is_limited():
    trt_build.check_opset(TrtVersion(8, 6, 1), 17, "m.onnx")
    trt_build.check_opset(TrtVersion(10, 3, 0), 19, "m.onnx")
    with pytest.raises(EngineError, match=r"m\.onnx uses ONNX opset 18, but TensorRT 8\.6\.1 reads opsets up to 17; "
                                          r"re-export it with `edgeseg export --opset 17`"):
        trt_build.check_opset(TrtVersion(8, 6, 1), 18, "m.onnx")


def test_precision_labels():
    assert [Precision().label, Precision(fp16=True).label, Precision(int8=True).label,
            Precision(True, True).label] == ["fp32", "fp16", "int8", "int8+fp16"]


# --- --batch / --shape -> profile -------------------------------------------------------------


def test_batch_range_parsing():
    assert BatchRange.parse("1,4,8") == BatchRange(1, 4, 8)
    assert BatchRange.parse("4") == BatchRange(4, 4, 4)
    assert BatchRange.parse(" 2, 2 ,3") == BatchRange(2, 2, 3)
    assert str(BatchRange(1, 4, 8)) == "1,4,8"
    with pytest.raises(EngineError, match=r"--batch 8,4,1: needs MIN <= OPT <= MAX"):
        BatchRange.parse("8,4,1")
    for bad in ("0", "1,2", "a,b,c", "-1,2,3", "1,2,3,4"):
        with pytest.raises(EngineError, match="is not N or MIN,OPT,MAX"):
            BatchRange.parse(bad)


def test_profile_for_dynamic_batch_nhwc():
    shapes, dynamic = profile_shapes("image", [-1, 16, 16, 3], "NHWC", (16, 16), BatchRange(1, 2, 4))
    assert dynamic
    assert (shapes.min, shapes.opt, shapes.max) == ((1, 16, 16, 3), (2, 16, 16, 3), (4, 16, 16, 3))
    default, _ = profile_shapes("image", [None, 16, 16, 3], "NHWC", (16, 16))
    assert default.min == default.max == (1, 16, 16, 3) and default.is_static


def test_profile_for_dynamic_size_uses_shape_or_spec_size_nchw():
    shapes, dynamic = profile_shapes("x", [-1, 3, -1, -1], "NCHW", (32, 48), BatchRange(1, 1, 2), size=(64, 96))
    assert dynamic and shapes.max == (2, 3, 64, 96) and shapes.min == (1, 3, 64, 96)
    from_spec, _ = profile_shapes("x", [1, 3, -1, -1], "NCHW", (32, 48))
    assert from_spec.opt == (1, 3, 32, 48)
    assert from_spec.describe() == "x 1x3x32x48"


def test_profile_for_a_static_model_needs_no_profile():
    shapes, dynamic = profile_shapes("image", [2, 16, 16, 3], "NHWC", (16, 16), BatchRange(2, 2, 2), size=(16, 16))
    assert not dynamic and shapes.opt == (2, 16, 16, 3)


def test_profile_errors_name_the_conflict():
    with pytest.raises(EngineError, match=r"m\.onnx has a fixed batch of 2, so --batch 1,4,8 cannot apply.*"
                                          r"edgeseg export --batch dynamic"):
        profile_shapes("image", [2, 16, 16, 3], "NHWC", (16, 16), BatchRange(1, 4, 8), path="m.onnx")
    with pytest.raises(EngineError, match=r"fixed input size 16x16, so --size 32x32 cannot apply"):
        profile_shapes("image", [-1, 16, 16, 3], "NHWC", (16, 16), size=(32, 32), path="m.onnx")
    with pytest.raises(EngineError, match=r"input 'image' has 3 dims.*4-D images"):
        profile_shapes("image", [-1, 16, 3], "NHWC", (16, 16), path="m.onnx")


# --- parser errors ----------------------------------------------------------------------------


class _Error8:  # TensorRT 8.x: node index only
    def __init__(self, node: int) -> None:
        self._node = node

    def desc(self) -> str:
        return "No importer registered for op: FancyOp"

    def node(self) -> int:
        return self._node


class _Error10(_Error8):  # TensorRT 10+: node name and operator too
    def node_name(self) -> str:
        return "fancy"

    def node_operator(self) -> str:
        return "FancyOp"


def test_parser_errors_name_the_node_on_every_version():
    names = ["to_nchw", "conv1", "fancy"]
    assert trt_build.describe_parser_error(_Error10(2), names) == "node fancy (FancyOp): No importer registered for op: FancyOp"
    assert trt_build.describe_parser_error(_Error8(2), names) == "node fancy: No importer registered for op: FancyOp"
    assert trt_build.describe_parser_error(_Error8(7), []) == "node #7: No importer registered for op: FancyOp"
    assert trt_build.describe_parser_error(_Error8(-1), names).startswith("the graph: ")
