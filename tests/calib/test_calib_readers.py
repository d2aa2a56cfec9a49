from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.calib.readers import (
    RECOMMENDED_FRAMES,
    DatasetImages,
    FrameBatchReader,
    FrameSet,
    ImageFolder,
    VideoFile,
    load_calibration_frames,
    spread_indices,
)
from edgeseg.data.base import ClassInfo, FileDataset
from edgeseg.data.io import read_rgb
from edgeseg.errors import DataError
from edgeseg.runtime.preprocess import preprocess
from edgeseg.spec import ModelSpec

SPEC = ModelSpec(class_names=("red", "green", "blue"), input_height=32, input_width=32)
NCHW_SPEC = SPEC.replace(layout="NCHW", scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), channel_order="bgr")


def test_spread_indices_cover_the_source_evenly():
    assert spread_indices(5, 10) == [0, 1, 2, 3, 4]
    assert spread_indices(100, 5) == [0, 25, 50, 74, 99]


@pytest.mark.parametrize("spec", [SPEC, NCHW_SPEC], ids=["nhwc", "nchw-normalised"])
def test_image_folder_batches_equal_runtime_preprocessing(tmp_path, spec):
    rng = np.random.default_rng(0)
    originals = [rng.integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8) for i in range(4)]
    for i, image in enumerate(originals):
        suffix = (".png", ".bmp", ".png", ".bmp")[i]  # lossless, so the decoded pixels are the originals
        cv2.imwrite(str(tmp_path / f"{i}{suffix}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")

    frames = ImageFolder(tmp_path).read(10, spec)
    assert len(frames) == 4 and frames.skipped == 0
    reader = FrameBatchReader(frames.frames, spec, "image", batch_size=2)
    batches = [inputs["image"] for inputs in reader]
    assert len(batches) == 2
    expected = preprocess(originals, spec)  # what the runtime computes from the full-size frames
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_image_folder_skips_unreadable_files_and_counts_them(tmp_path, capsys, scenes, write_pictures):
    write_pictures(tmp_path, scenes(3, seed=2)[0], ".jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a picture")
    frames = load_calibration_frames(ImageFolder(tmp_path), 10, SPEC)
    assert (len(frames), frames.skipped) == (3, 1)
    err = capsys.readouterr().err
    assert "skipped 1 unreadable item(s)" in err
    assert "only 3 calibration frames; INT8 ranges may be poor, 100+ recommended" in err


def test_image_folder_recursive_and_empty(tmp_path, scenes, write_pictures):
    write_pictures(tmp_path / "a" / "b", scenes(2, seed=3)[0])
    with pytest.raises(DataError, match="--recursive"):
        ImageFolder(tmp_path).read(5, SPEC)
    assert len(ImageFolder(tmp_path, recursive=True).read(5, SPEC)) == 2
    with pytest.raises(DataError, match="not a folder"):
        ImageFolder(tmp_path / "missing").read(5, SPEC)


def test_folder_of_only_broken_images_is_an_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError, match="could be read"):
        ImageFolder(tmp_path).read(5, SPEC)


def test_no_warning_at_the_recommended_count(tmp_path, capsys):
    frame = np.zeros((SPEC.input_height, SPEC.input_width, 3), np.uint8)

    class Many:
        def read(self, count, spec):
            return FrameSet([frame] * count, "memory")

    frames = load_calibration_frames(Many(), RECOMMENDED_FRAMES, SPEC)
    assert len(frames) == RECOMMENDED_FRAMES
    assert capsys.readouterr().err == ""


def test_frame_count_checks(tmp_path, scenes, write_pictures):
    write_pictures(tmp_path, scenes(5, seed=4)[0])
    warnings = []
    frames = load_calibration_frames(ImageFolder(tmp_path), 5, SPEC, batch_size=2, warn=warnings.append)
    assert len(frames) == 4  # whole batches only
    assert warnings == ["only 4 calibration frames; INT8 ranges may be poor, 100+ recommended"]
    with pytest.raises(DataError, match="fewer than the model's batch size 8"):
        load_calibration_frames(ImageFolder(tmp_path), 5, SPEC, batch_size=8, warn=warnings.append)
    with pytest.raises(DataError, match="at least 1"):
        load_calibration_frames(ImageFolder(tmp_path), 0, SPEC)


def _write_video(path: Path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    assert writer.isOpened()
    for index in range(count):
        rgb = np.zeros((40, 48, 3), np.uint8)
        rgb[..., 0] = 200  # red in RGB: checks the BGR -> RGB conversion
        rgb[..., 1] = index * 8  # green encodes the frame index
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_frames_are_sampled_evenly_and_converted_to_rgb(tmp_path):
    path = tmp_path / "drive.avi"
    _write_video(path, 30)
    frames = VideoFile(path).read(4, SPEC)
    assert len(frames) == 4 and frames.skipped == 0
    assert all(f.shape == (SPEC.input_height, SPEC.input_width, 3) and f.dtype == np.uint8 for f in frames.frames)
    reds = [float(f[..., 0].mean()) for f in frames.frames]
    greens = [float(f[..., 1].mean()) for f in frames.frames]
    assert min(reds) > 180 and max(float(f[..., 2].mean()) for f in frames.frames) < 20
    expected = [i * 8 for i in spread_indices(30, 4)]  # frames 0, 10, 19, 29
    assert greens == pytest.approx(expected, abs=6)

    # the batches equal the runtime's preprocessing of the same frames decoded by OpenCV
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    chosen = [decoded[i] for i in spread_indices(30, 4)]
    batches = [inputs["image"] for inputs in FrameBatchReader(frames.frames, NCHW_SPEC, "image", batch_size=4)]
    np.testing.assert_array_equal(batches[0], preprocess(chosen, NCHW_SPEC))


def test_unreadable_and_missing_video_are_data_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError, match="cannot open video|no frame"):
        VideoFile(bad).read(4, SPEC)
    with pytest.raises(DataError, match="does not exist"):
        VideoFile(tmp_path / "none.mp4").read(4, SPEC)


def test_dataset_images(tmp_path, scenes, write_pictures):
    images, masks = scenes(6, seed=5)
    image_paths = write_pictures(tmp_path / "images", images)
    mask_paths = []
    for index, mask in enumerate(masks):
        path = tmp_path / "masks" / f"{index:03d}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), mask)
        mask_paths.append(path)
    dataset = FileDataset("blocks", ClassInfo(SPEC.class_names), image_paths, mask_paths)
    frames = DatasetImages(dataset).read(3, NCHW_SPEC)
    assert len(frames) == 3
    chosen = [dataset.load(i)[0] for i in spread_indices(6, 3)]
    batch = FrameBatchReader(frames.frames, NCHW_SPEC, "image", batch_size=3).get_next()["image"]
    np.testing.assert_array_equal(batch, preprocess(chosen, NCHW_SPEC))
    np.testing.assert_array_equal(chosen[0], read_rgb(image_paths[0]))
    spec_string = f"index:{tmp_path / 'images'},{tmp_path / 'masks'}?classes=red,green,blue"
    from_spec = DatasetImages(spec_string, subset="all").read(6, SPEC)
    assert len(from_spec) == 6 and from_spec.digest == FrameSet(list(images), "x").digest
    # the split decides which frames are training frames (calibration reads training's split)
    assert len(DatasetImages(spec_string, subset="train", split=(0.5, 0.5, 0.0)).read(6, SPEC)) == 3
    assert len(DatasetImages(spec_string, subset="train").read(6, SPEC)) == 4


def test_reader_is_an_onnxruntime_calibration_reader_with_ranges(scenes):
    from onnxruntime.quantization import CalibrationDataReader

    frames = list(scenes(6, seed=6)[0])
    ticks = []

    class Bar:
        def update(self, n):
            ticks.append(n)

    reader = FrameBatchReader(frames, SPEC, "image", batch_size=2, progress=Bar())
    assert isinstance(reader, CalibrationDataReader)
    assert len(reader) == 3
    reader.set_range(1, 2)
    first = reader.get_next()
    assert reader.get_next() is None
    np.testing.assert_array_equal(first["image"], preprocess(frames[2:4], SPEC))
    reader.rewind()
    assert len(list(reader)) == 3
    assert sum(ticks) == 2 + 6
