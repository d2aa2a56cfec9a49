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


def test_temporaries_of_a_killed_process_are_removed_by_the_next_write(tmp_path):
    """kill -9 mid-write leaves a hidden temporary (file and work folder); the next write of that
    output removes them, and keeps those of a process that still runs."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    from edgeseg.fileio import temporary_dir

    target = tmp_path / "model.onnx"
    script = textwrap.dedent(f"""
        import sys, time
        from edgeseg.fileio import atomic_path, temporary_dir
        with temporary_dir({str(target)!r}) as work, atomic_path({str(target)!r}) as tmp:
            (work / "part.bin").write_bytes(b"x" * 100)
            tmp.write_bytes(b"half")
            print("ready", flush=True)
            time.sleep(60)
    """)
    repo = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(repo)})
    assert process.stdout.readline().strip() == "ready"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(name.startswith(f".model.onnx.edgeseg-{process.pid}-") for name in left)
    atomic_write_text(target, "other run")  # the writer still runs: its temporaries stay
    assert len(list(tmp_path.iterdir())) == 3
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    with temporary_dir(target):
        pass
    atomic_write_text(target, "next run")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_stale_cleanup_touches_only_our_own_pattern(tmp_path):
    from edgeseg.fileio import remove_stale_temporaries

    target = tmp_path / "drive.mp4"
    ours = tmp_path / ".drive.mp4.edgeseg-999999-abc.mp4"
    other_output = tmp_path / ".other.mp4.edgeseg-999999-abc.mp4"
    foreign = tmp_path / ".drive.mp4.swp"
    for path in (ours, other_output, foreign):
        path.write_text("x")
    assert remove_stale_temporaries(target, alive=lambda pid: False) == [ours]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other_output.name, foreign.name])
