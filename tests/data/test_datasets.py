"""Dataset layouts, the --data spec parser, reproducible splits and validation errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edgeseg.data import FileDataset, open_dataset, parse_size, parse_split, validate_dataset
from edgeseg.data.base import MASK_BINARY, MASK_INDEX, MASK_PALETTE
from edgeseg.data.folders import CAMVID_CLASSES, CAMVID_PALETTE, index_mask_dataset, mask_folder_dataset
from edgeseg.data.sources import parse_data_spec, split_indices
from edgeseg.data.voc import VOC_CLASSES, voc_dataset
from edgeseg.errors import DataError, EdgesegError
from edgeseg.spec import ModelSpec, default_palette

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
H, W = 8, 12


def _image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_image(path: Path, seed: int, height: int = H, width: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), _image(seed, height, width))


def _write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask)


def _write_palette_mask(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([c for colour in default_palette(256) for c in colour])
    image.save(path)


def make_binary_folder(root: Path, count: int = 5, images: str = "images", masks: str = "masks") -> Path:
    for i in range(count):
        _write_image(root / images / f"{i:03d}.jpg", i)
        mask = np.zeros((H, W), np.uint8)
        mask[:, : i + 1] = 255
        _write_mask(root / masks / f"{i:03d}.png", mask)
    return root


def make_index_folder(root: Path, count: int = 10, values=(0, 1, 2, 255)) -> tuple[Path, Path]:
    for i in range(count):
        _write_image(root / "img" / f"s{i:02d}.png", i)
        mask = np.random.default_rng(i).choice(np.array(values, np.uint8), (H, W))
        _write_mask(root / "ann" / f"s{i:02d}.png", mask)
    return root / "img", root / "ann"


def make_camvid(root: Path, subsets: dict[str, int]) -> Path:
    for subset, count in subsets.items():
        for i in range(count):
            _write_image(root / subset / f"{subset}_{i:03d}.png", i)
            mask = np.random.default_rng(i).integers(0, 12, (H, W), dtype=np.uint8)  # 11 = Unlabelled
            _write_mask(root / f"{subset}annot" / f"{subset}_{i:03d}.png", mask)
    return root


def make_voc(parent: Path, train=("t0", "t1", "t2"), val=("v0", "v1", "v2", "v3", "v4")) -> Path:
    voc = parent / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    for n, image_id in enumerate(train + val):
        _write_image(voc / "JPEGImages" / f"{image_id}.jpg", n)
        indices = np.zeros((H, W), np.uint8)
        indices[2:5, 3:7] = 15
        indices[0, :] = 255
        _write_palette_mask(voc / "SegmentationClass" / f"{image_id}.png", indices)
    return voc


# ------------------------------------------------------------------------------------------
# Layouts


def test_mask_folder_pairs_by_stem_and_is_binary(tmp_path):
    root = make_binary_folder(tmp_path / "ds")
    ds = mask_folder_dataset(root)
    assert isinstance(ds, FileDataset) and len(ds) == 5
    assert [p.stem for p in ds.image_paths] == [p.stem for p in ds.mask_paths] == [f"{i:03d}" for i in range(5)]
    assert ds.classes.names == ("background", "foreground") and ds.classes.task == "binary"
    assert ds.mask_format == MASK_BINARY
    image, mask = ds.load(2)
    assert image.shape == (H, W, 3) and mask.dtype == np.uint8
    assert mask[:, :3].all() and not mask[:, 3:].any()  # 255 -> 1, 0 -> 0


def test_mask_folder_accepts_isbi_image_label_names_and_class_names(tmp_path):
    root = make_binary_folder(tmp_path / "isbi" / "train", images="image", masks="label")
    ds = open_dataset(f"masks:{root}?classes=membrane,cell", "all")
    assert len(ds) == 5 and ds.classes.names == ("membrane", "cell")


def test_mask_folder_errors(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        mask_folder_dataset(tmp_path / "nowhere")
    (tmp_path / "odd" / "pictures").mkdir(parents=True)
    with pytest.raises(DataError, match=r"not a mask folder dataset: expected .*images/ .*masks/.*found pictures"):
        mask_folder_dataset(tmp_path / "odd")
    root = make_binary_folder(tmp_path / "ds")
    (root / "masks" / "001.png").unlink()
    _write_mask(root / "masks" / "zzz_extra.png", np.zeros((H, W), np.uint8))
    expected = r"1 of 5 images .* have no mask: 001\.jpg.*1 masks .* have no image: zzz_extra\.png"
    with pytest.raises(DataError, match=expected):
        mask_folder_dataset(root)


def test_duplicate_stems_are_refused(tmp_path):
    root = make_binary_folder(tmp_path / "ds", count=2)
    _write_image(root / "images" / "000.png", 9)
    with pytest.raises(DataError, match=r"same name but different extensions: 000\.jpg/000\.png"):
        mask_folder_dataset(root)


def test_index_dataset_classes_given_inferred_and_palette_detected(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=4, values=(0, 1, 4, 255))
    ds = index_mask_dataset(images, masks, class_names=("a", "b", "c", "d", "e"))
    assert ds.mask_format == MASK_INDEX and ds.classes.names == ("a", "b", "c", "d", "e")
    assert len(ds.classes.palette) == 5 and ds.classes.ignore_index == 255
    inferred = index_mask_dataset(images, masks)
    assert inferred.classes.names == tuple(f"class_{i}" for i in range(5))  # largest index 4, 255 ignored
    with pytest.raises(DataError, match=r"ignore index 1 is also class 1 \('b'\)"):
        index_mask_dataset(images, masks, class_names=("a", "b", "c"), ignore_index=1)
    for i in range(2):
        _write_image(tmp_path / "p" / "img" / f"{i}.jpg", i)
        _write_palette_mask(tmp_path / "p" / "ann" / f"{i}.png", np.full((H, W), 3, np.uint8))
    palettised = index_mask_dataset(tmp_path / "p" / "img", tmp_path / "p" / "ann", ("a", "b", "c", "d"))
    assert palettised.mask_format == MASK_PALETTE
    assert (palettised.load(1)[1] == 3).all()


def test_index_spec_query_options(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=6)
    ds = open_dataset(f"index:{images},{masks}?classes=sky,road,car&ignore=255&traversable=road", "all")
    assert ds.classes.names == ("sky", "road", "car") and ds.classes.traversable == ("road",)
    assert len(ds) == 6
    with pytest.raises(DataError, match=r"unknown option 'colour'.*index accepts: classes, ignore, traversable"):
        open_dataset(f"index:{images},{masks}?colour=red")
    with pytest.raises(DataError, match=r"option ignore=300 is out of range"):
        open_dataset(f"index:{images},{masks}?classes=a,b,c&ignore=300")
    with pytest.raises(DataError, match=r"traversable classes \['river'\]"):
        open_dataset(f"index:{images},{masks}?classes=a,b,c&traversable=river")


def test_camvid_with_only_train_is_split(tmp_path):
    root = make_camvid(tmp_path / "camvid", {"train": 20})
    subsets = {s: open_dataset(f"camvid:{root}", s, split=(0.6, 0.2, 0.2), seed=3) for s in ("train", "val", "test")}
    assert [len(subsets[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    ds = subsets["train"]
    assert ds.classes.names == CAMVID_CLASSES and ds.classes.ignore_index == 11
    assert ds.classes.palette == CAMVID_PALETTE and ds.classes.traversable == ("Road", "Pavement")
    # the classes make a valid ModelSpec (ignore 11 does not collide with the 11 classes 0..10)
    ModelSpec(class_names=ds.classes.names, input_height=32, input_width=32, palette=ds.classes.palette,
              ignore_index=ds.classes.ignore_index)  # fmt: skip
    validate_dataset(ds)  # values 0..11 are all valid


def test_camvid_uses_its_own_val_and_test_folders(tmp_path):
    root = make_camvid(tmp_path / "camvid", {"train": 4, "val": 2, "test": 3})
    assert [len(open_dataset(f"camvid:{root}", s)) for s in ("train", "val", "test", "all")] == [4, 2, 3, 9]
    assert all(p.parent.name == "val" for p in open_dataset(f"camvid:{root}", "val").image_paths)
    only_val = make_camvid(tmp_path / "camvid2", {"train": 4, "val": 2})
    with pytest.raises(DataError, match=r"no test/ \+ testannot/ for the test subset \(it has train, val\)"):
        open_dataset(f"camvid:{only_val}", "test")


def test_voc_layout_roots_and_subsets(tmp_path):
    voc = make_voc(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        assert [p.stem for p in voc_dataset(root, "train").image_paths] == ["t0", "t1", "t2"]
    val = [p.stem for p in voc_dataset(tmp_path, "val").image_paths]
    test = [p.stem for p in voc_dataset(tmp_path, "test").image_paths]
    ids = ["v0", "v1", "v2", "v3", "v4"]
    shuffled = [ids[i] for i in np.random.Generator(np.random.PCG64(0)).permutation(5)]
    assert val == shuffled[:3] and test == shuffled[3:]
    assert len(voc_dataset(tmp_path, "all")) == 8
    ds = open_dataset(f"voc:{tmp_path}", "train")
    assert ds.classes.names == VOC_CLASSES and ds.mask_format == MASK_PALETTE
    image, mask = ds.load(0)
    assert set(np.unique(mask)) == {0, 15, 255}
    assert validate_dataset(ds).class_pixels[15] == 3 * 12


def test_voc_errors(tmp_path):
    with pytest.raises(DataError, match=r"not a Pascal VOC folder"):
        voc_dataset(tmp_path)
    voc = make_voc(tmp_path)
    (voc / "JPEGImages" / "t1.jpg").unlink()
    with pytest.raises(DataError, match=r"1 images missing from .*JPEGImages: t1\.jpg"):
        voc_dataset(tmp_path, "train")
    _write_image(voc / "JPEGImages" / "t1.jpg", 1)
    cv2.imwrite(str(voc / "SegmentationClass" / "t2.png"), np.zeros((H, W, 3), np.uint8))  # colour, not 'P'
    with pytest.raises(DataError, match=r"t2\.png is not a palettised PNG"):
        validate_dataset(voc_dataset(tmp_path, "train"))


# ------------------------------------------------------------------------------------------
# Spec strings, splits, sizes


@pytest.mark.parametrize(
    "spec", ["", "nonsense", "coco:/data", "voc:", "index:onlyone", "synthetic://x", "masks:/d?classes"]
)
def test_bad_specs_list_the_accepted_forms(spec):
    with pytest.raises(DataError) as err:
        open_dataset(spec)
    message = str(err.value)
    assert "accepted forms" in message or "needs" in message or "option" in message


def test_bad_spec_message_lists_every_form():
    with pytest.raises(DataError) as err:
        parse_data_spec("coco:/data")
    for form in ("voc:DIR", "masks:DIR", "camvid:DIR", "index:IMAGES,MASKS", "synthetic://"):
        assert form in str(err.value)


def test_bare_folder_gets_a_hint(tmp_path):
    root = make_binary_folder(tmp_path / "ds", count=1)
    with pytest.raises(DataError, match=rf"looks like masks:{root}"):
        open_dataset(str(root))


def test_parse_data_spec_forms():
    assert parse_data_spec("synthetic://").kind == "synthetic"
    parsed = parse_data_spec("synthetic://?seed=1&n=2000")
    assert parsed.options == {"seed": "1", "n": "2000"} and parsed.paths == ()
    parsed = parse_data_spec("index:a/img,a/ann?classes=x,y")
    assert parsed.paths == ("a/img", "a/ann") and parsed.options == {"classes": "x,y"}
    with pytest.raises(DataError, match="given twice"):
        parse_data_spec("synthetic://?n=1&n=2")


def test_split_is_reproducible_disjoint_and_complete(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=23)
    spec = f"index:{images},{masks}?classes=a,b,c"

    def stems(subset, seed):
        return [p.stem for p in open_dataset(spec, subset, split=(0.7, 0.15, 0.15), seed=seed).image_paths]

    parts = {s: stems(s, 5) for s in ("train", "val", "test")}
    assert parts == {s: stems(s, 5) for s in ("train", "val", "test")}  # same seed, same files
    assert stems("train", 6) != parts["train"]  # another seed, another split
    everything = parts["train"] + parts["val"] + parts["test"]
    assert len(everything) == len(set(everything)) == 23
    assert sorted(everything) == stems("all", 5)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [17, 3, 3]


def test_split_indices_small_counts():
    parts = split_indices(5, (0.8, 0.1, 0.1), 0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [3, 1, 1]  # val/test get at least one
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(5))
    with pytest.raises(DataError, match="too few to split"):
        split_indices(2, (0.2, 0.4, 0.4), 0)


def test_split_with_empty_subset_is_an_error(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=4)
    with pytest.raises(DataError, match=r"the val subset of .* is empty"):
        open_dataset(f"index:{images},{masks}?classes=a,b,c", "val", split=(1.0, 0.0, 0.0))
    with pytest.raises(DataError, match=r"unknown subset 'dev'"):
        open_dataset(f"index:{images},{masks}?classes=a,b,c", "dev")


def test_parse_split_and_size():
    assert parse_split("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_split("70,20,10") == pytest.approx((0.7, 0.2, 0.1))
    for bad in ("0.8,0.1", "0.8,0.3,0.1", "1.2,-0.1,-0.1", "a,b,c", "0,0.5,0.5"):
        with pytest.raises(DataError, match="split"):
            parse_split(bad)
    assert parse_size("256x320") == (256, 320)
    assert parse_size("64") == (64, 64)
    for bad in ("0x10", "abc", "1x2x3", "-5x5"):
        with pytest.raises(EdgesegError, match=r"is not HEIGHTxWIDTH \(height first\)"):
            parse_size(bad)


# ------------------------------------------------------------------------------------------
# Validation


def test_validate_reports_class_pixels(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=3, values=(0, 2, 255))
    ds = index_mask_dataset(images, masks, ("a", "b", "c"))
    report = validate_dataset(ds)
    assert report.samples == report.checked == 3
    assert report.class_pixels[1] == 0 and sum(report.class_pixels) + report.ignore_pixels == 3 * H * W


def test_validate_names_size_mismatch(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=3)
    _write_mask(masks / "s01.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DataError, match=rf"s01\.png is {H + 1}x{W} \(HxW\) but its image s01\.png is {H}x{W}"):
        validate_dataset(index_mask_dataset(images, masks, ("a", "b", "c")))


def test_validate_names_bad_mask_values(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=3)
    bad = np.zeros((H, W), np.uint8)
    bad[0, 0], bad[0, 1] = 7, 9
    _write_mask(masks / "s02.png", bad)
    expected = r"s02\.png has values 7, 9 that are neither a class \(0\.\.2, 3 classes\) nor the ignore index 255"
    with pytest.raises(DataError, match=expected):
        validate_dataset(index_mask_dataset(images, masks, ("a", "b", "c")))


def test_validate_names_truncated_and_missing_images(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=3)
    ds = index_mask_dataset(images, masks, ("a", "b", "c"))
    data = (images / "s00.png").read_bytes()
    (images / "s00.png").write_bytes(data[: len(data) // 2])
    (images / "s01.png").unlink()
    with pytest.raises(DataError) as err:
        validate_dataset(ds)
    assert "2 problems" in str(err.value)
    assert "s00.png is truncated" in str(err.value) and "s01.png does not exist" in str(err.value)


def test_validate_flags_binary_masks_saved_as_0_1(tmp_path):
    root = make_binary_folder(tmp_path / "ds", count=2)
    _write_mask(root / "masks" / "001.png", (np.arange(W)[None].repeat(H, 0) > 5).astype(np.uint8))
    with pytest.raises(DataError, match=r"001\.png holds values 0/1"):
        validate_dataset(mask_folder_dataset(root))


def test_validate_empty_and_limit(tmp_path):
    images, masks = make_index_folder(tmp_path / "ds", count=5)
    ds = index_mask_dataset(images, masks, ("a", "b", "c"))
    assert validate_dataset(ds, limit=2).checked == 2
    assert validate_dataset(ds, check_masks=False).class_pixels == ()
    empty = FileDataset("empty", ds.classes, [], [])
    with pytest.raises(DataError, match="dataset empty is empty"):
        validate_dataset(empty)


# ------------------------------------------------------------------------------------------
# Synthetic


def test_synthetic_subsets_are_held_out_worlds():
    train = open_dataset("synthetic://?seed=1&n=100", "train", size=(32, 48))
    val = open_dataset("synthetic://?seed=1&n=100", "val", size=(32, 48))
    test = open_dataset("synthetic://?n=100", "test", seed=1, size=(32, 48))
    assert len(train) == 100 and len(val) == len(test) == 64
    image, mask = train.load(0)
    assert image.shape == (32, 48, 3) and mask.shape == (32, 48)
    assert not np.array_equal(image, val.load(0)[0]) and not np.array_equal(val.load(0)[0], test.load(0)[0])
    validate_dataset(val, limit=4)


# ------------------------------------------------------------------------------------------
# The real sample data in /work/shared/data (skipped where it is absent)


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real sample data {path} is absent (only on the development machine)")
    return path


def test_real_camvid_layout():
    root = _shared("camvid")
    ds = open_dataset(f"camvid:{root}", "all")
    assert len(ds) == 367
    train, val = open_dataset(f"camvid:{root}", "train"), open_dataset(f"camvid:{root}", "val")
    assert not set(train.image_paths) & set(val.image_paths)
    report = validate_dataset(ds, limit=3)
    assert report.checked == 3 and report.class_pixels[CAMVID_CLASSES.index("Road")] > 0
    palette_image = np.array(Image.open(root / "camvid11.png").convert("RGB"))[0]
    assert tuple(map(tuple, palette_image[:11].tolist())) == CAMVID_PALETTE


def test_real_voc_mini():
    root = _shared("voc2012-mini")
    ds = open_dataset(f"voc:{root}", "train")
    assert len(ds) == 5
    image, mask = ds.load(0)
    assert image.shape[:2] == mask.shape and mask.max() == 255 and 0 < mask[mask != 255].max() <= 20
    val, test = open_dataset(f"voc:{root}", "val"), open_dataset(f"voc:{root}", "test")
    assert len(val) + len(test) == 14 and not set(val.image_paths) & set(test.image_paths)
    validate_dataset(val, limit=2)


def test_real_isbi_membrane():
    root = _shared("isbi2012-membrane")
    ds = open_dataset(f"masks:{root / 'train'}?classes=membrane,cell", "all")
    assert len(ds) == 30 and ds.classes.names == ("membrane", "cell")
    image, mask = ds.load(0)
    assert image.shape == (512, 512, 3) and set(np.unique(mask)) == {0, 1}
