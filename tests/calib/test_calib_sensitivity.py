from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgeseg.calib import sensitivity
from edgeseg.calib.quantize import MiouBudgetError, TENSORRT_OP_TYPES, calibrate
from edgeseg.calib.readers import FrameBatchReader, ImageFolder
from edgeseg.data.base import ClassInfo, FileDataset


# ---------------------------------------------------------------------------------------------
# The search loop, with fake quantize / evaluate / rank functions


class FakeModels:
    """mIoU depends on which 'bad' nodes are still quantized; records every call."""

    def __init__(self, penalties: dict[str, float], ranking: list[str]):
        self.penalties = penalties
        self.ranking = ranking
        self.quantized: list[tuple[str, ...]] = []
        self.rank_calls = 0

    def quantize(self, excluded):
        self.quantized.append(tuple(excluded))
        return tuple(excluded)

    def evaluate(self, model):
        return 0.80 - sum(p for node, p in self.penalties.items() if node not in model)

    def rank(self):
        self.rank_calls += 1
        return self.ranking


def test_within_budget_first_time_never_ranks():
    fake = FakeModels({"a": 0.001}, ["a", "b"])
    result = sensitivity.search_exclusions(fake.quantize, fake.evaluate, 0.80, fake.rank, max_drop_pp=0.5)
    assert result.within_budget and result.excluded == () and fake.rank_calls == 0
    assert result.drop_pp == pytest.approx(0.1)
    assert fake.quantized == [()]


def test_moves_ranked_nodes_to_float_step_by_step():
    fake = FakeModels({"c": 0.02, "e": 0.01, "x": 0.001}, ["a", "b", "c", "d", "e", "f"])
    result = sensitivity.search_exclusions(fake.quantize, fake.evaluate, 0.80, fake.rank, max_drop_pp=0.5, step=2)
    assert fake.quantized == [(), ("a", "b"), ("a", "b", "c", "d"), ("a", "b", "c", "d", "e", "f")]
    assert result.within_budget and result.excluded == ("a", "b", "c", "d", "e", "f")
    assert result.model == result.excluded and fake.rank_calls == 1
    assert [round(s.drop_pp, 6) for s in result.steps] == [3.1, 3.1, 1.1, 0.1]


def test_gives_up_after_max_rounds_or_when_nothing_is_left():
    fake = FakeModels({"z": 0.05}, ["a", "b", "c"])
    result = sensitivity.search_exclusions(fake.quantize, fake.evaluate, 0.80, fake.rank, max_drop_pp=0.5,
                                           step=1, max_rounds=3)
    assert not result.within_budget and len(result.steps) == 3 and result.excluded == ("a", "b")
    fake = FakeModels({"z": 0.05}, ["a"])
    result = sensitivity.search_exclusions(fake.quantize, fake.evaluate, 0.80, fake.rank, max_drop_pp=0.5,
                                           step=4, max_rounds=10)
    assert not result.within_budget and fake.quantized == [(), ("a",)]


def test_search_rejects_nonsense_settings():
    fake = FakeModels({}, [])
    with pytest.raises(ValueError):
        sensitivity.search_exclusions(fake.quantize, fake.evaluate, 0.8, fake.rank, 0.5, step=0)


# ---------------------------------------------------------------------------------------------
# Real runs


@pytest.fixture
def eval_dataset(tmp_path, scenes, write_pictures) -> FileDataset:
    images, masks = scenes(12, seed=20)
    image_paths = write_pictures(tmp_path / "eval" / "images", images)
    mask_paths = []
    for index, mask in enumerate(masks):
        path = tmp_path / "eval" / "masks" / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), mask)
        mask_paths.append(path)
    return FileDataset("blocks", ClassInfo(("red", "green", "blue")), image_paths, mask_paths)


@pytest.fixture
def dim_images(tmp_path, write_pictures) -> Path:
    """Calibration frames far darker than the real scenes: ranges that clip the real data."""
    folder = tmp_path / "dim"
    write_pictures(folder, np.random.default_rng(0).integers(0, 40, (8, 32, 32, 3), dtype=np.uint8))
    return folder


def test_evaluate_miou_of_the_float_model(tiny_model, eval_dataset):
    samples = sensitivity.load_eval_samples(eval_dataset, tiny_model.spec, count=12)
    miou = sensitivity.evaluate_miou(tiny_model.onnx_path, samples, tiny_model.spec)
    assert 0.7 < miou <= 1.0  # the tiny model was trained on such scenes


def test_budget_search_keeps_sensitive_layers_float(model_copy, dim_images, eval_dataset):
    report = calibrate(model_copy, ImageFolder(dim_images), target="cpu", num_frames=8, fmt="qdq",
                       max_miou_drop=1.0, data=eval_dataset, progress=False, warn=lambda m: None)
    first = report.search_steps[0]
    assert first.drop_pp > 10  # dim calibration ruins the plain INT8 model ...
    assert report.within_budget and report.miou_drop <= 1.0  # ... and the search repairs it
    assert len(report.search_steps) > 1 and report.sensitive_nodes
    assert set(report.sensitive_nodes) <= set(report.excluded_nodes)
    model = onnx.load(str(report.output))
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.name in report.sensitive_nodes and node.op_type in ("Conv", "Add"):
            assert not any(name in dq_outputs for name in node.input), node.name
    assert "accuracy  mIoU float" in report.summary()


def test_budget_without_masks_holds_int8_to_the_float_model(model_copy, dim_images, eval_dataset):
    """The robot's own frames, no masks: the float model's class maps are the truth."""
    frames = ImageFolder(Path(eval_dataset.image_paths[0]).parent)  # the pictures alone
    report = calibrate(model_copy, ImageFolder(dim_images), target="cpu", num_frames=8, fmt="qdq",
                       max_miou_drop=1.0, eval_source=frames, eval_frames=12, progress=False, warn=lambda m: None)
    assert report.float_miou == 1.0  # float against itself
    assert report.search_steps[0].drop_pp > 10  # dim calibration strays far from float ...
    assert report.within_budget and report.miou_drop <= 1.0 and report.sensitive_nodes  # ... until repaired
    assert "float model's class maps on 12 frames of image folder" in report.summary()
    # the INT8 model written really is within 1 pp of float on those frames
    samples = sensitivity.load_reference_samples(model_copy, frames, report_spec(report), 12)
    assert sensitivity.evaluate_miou(report.output, samples, report_spec(report)) >= 0.99


def report_spec(report):
    from edgeseg.onnxmeta import read_spec_from_onnx_file

    return read_spec_from_onnx_file(report.output)


def test_unreachable_budget_writes_nothing(model_copy, dim_images, eval_dataset):
    with pytest.raises(MiouBudgetError, match="nothing written") as caught:
        calibrate(model_copy, ImageFolder(dim_images), target="cpu", num_frames=8, fmt="qdq", max_miou_drop=1.0,
                  data=eval_dataset, max_rounds=2, progress=False, warn=lambda m: None)
    assert len(caught.value.report.search_steps) == 2 and caught.value.report.within_budget is False
    assert [p.name for p in model_copy.parent.iterdir() if p.is_file()] == ["model.onnx"]
    assert not [p for p in model_copy.parent.iterdir() if p.name.startswith(".")]


def test_rank_nodes_scores_only_quantized_layout_nodes(model_copy, calib_images, eval_dataset, tiny_model):
    report = calibrate(model_copy, ImageFolder(calib_images), target="tensorrt", num_frames=8,
                       progress=False, warn=lambda m: None)
    from edgeseg.calib.quantize import _prepare

    prepared, _ = _prepare(model_copy, model_copy.parent)
    images = [s.image for s in sensitivity.load_eval_samples(eval_dataset, tiny_model.spec, count=4)]
    reader = FrameBatchReader(images, tiny_model.spec, "image")
    scores = sensitivity.rank_nodes(prepared, report.output, reader, set(TENSORRT_OP_TYPES),
                                    set(report.excluded_nodes))
    assert scores
    graph = onnx.load(str(prepared)).graph
    op_types = {n.name: n.op_type for n in graph.node}
    assert {op_types[s.node] for s in scores} <= set(TENSORRT_OP_TYPES)
    assert not {s.node for s in scores} & set(report.excluded_nodes)
    losses = [s.loss_db for s in scores]
    assert losses == sorted(losses, reverse=True)
    assert all(s.output_sqnr_db <= sensitivity.EXACT_SQNR_DB for s in scores)
