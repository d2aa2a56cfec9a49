import pytest

from edgeseg.errors import EdgesegError
from edgeseg.fileio import atomic_path, atomic_write_text


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_failed_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".onnx"  # writers that pick a format by extension still work
            raise ValueError
    assert list((tmp_path / "sub").iterdir()) == []


def test_unwritable_destination_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgesegError, match="cannot write"):
        atomic_write_text(blocker / "inside.txt", "y")


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "engine.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
