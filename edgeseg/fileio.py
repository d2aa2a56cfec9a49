"""Atomic file writes: an output either appears whole or not at all.

Every artifact edgeseg writes (models, specs, engines, reports, pictures) goes through here,
so an interrupted or failed run never leaves a half-written file behind.

Temporaries are hidden and named after their output and the process that makes them:
`.model.onnx.edgeseg-1234-k2j4x9.onnx` (a file) or `.model.engine.edgeseg-1234-0a8f3d` (a
work folder). A process killed with -9, or a machine that lost power, cannot remove its own;
the next write of the same output removes those whose process is gone
(`remove_stale_temporaries`). Those of a process that still runs are left alone, so two runs
writing beside each other never delete each other's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from edgeseg.errors import EdgesegError


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Args:
        path: the final destination.
        suffix: suffix for the temporary file (defaults to the destination's, so writers that
            choose a format by extension, like Keras or OpenCV, still work).
    """
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp_name = tempfile.mkstemp(
            prefix=temporary_prefix(path), suffix=suffix if suffix is not None else path.suffix, dir=parent
        )
    except OSError as err:
        raise EdgesegError(f"cannot write {path}: {err.strerror}; choose a writable output path") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def temporary_dir(output: str | Path) -> Iterator[Path]:
    """A hidden work folder beside `output` (same file system, so results move into place by
    rename), removed with everything in it when the block ends.

    Raises:
        EdgesegError: the folder cannot be made there.
    """
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(output)
        work = tempfile.TemporaryDirectory(prefix=temporary_prefix(output), dir=output.parent)
    except OSError as err:
        raise EdgesegError(
            f"cannot write into {output.parent}: {err.strerror}; choose a writable output path"
        ) from None
    with work as name:
        yield Path(name)


def temporary_prefix(output: Path) -> str:
    """`.NAME.edgeseg-PID-`: the start of every temporary name for `output` made by this process."""
    return f".{output.name}.edgeseg-{os.getpid()}-"


def stale_temporaries(output: str | Path, alive: Callable[[int], bool] | None = None) -> list[Path]:
    """The temporaries of `output` (our own pattern, `temporary_prefix`) whose process no longer runs."""
    output = Path(output)
    pattern = re.compile(re.escape(f".{output.name}.edgeseg-") + r"(\d+)-")
    is_alive = alive or _process_alive
    try:
        entries = sorted(output.parent.iterdir())
    except OSError:
        return []
    return [entry for entry in entries
            if (match := pattern.match(entry.name)) is not None and not is_alive(int(match.group(1)))]


def remove_stale_temporaries(output: str | Path, alive: Callable[[int], bool] | None = None) -> list[Path]:
    """Remove the temporaries of `output` left by processes that no longer run; return them.

    Only names of our own pattern (`temporary_prefix`) are touched; a temporary whose process
    still runs (another edgeseg writing the same output right now) is kept. Errors removing one
    are ignored: it is tried again next time.
    """
    removed = []
    for entry in stale_temporaries(output, alive):
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    """True if a process with this id exists (ours, or one we may not signal)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but is not ours
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_writable(path: str | Path, what: str) -> Path:
    """Raise EdgesegError unless a file can be created at `path`; creates nothing.

    Outputs are checked when a run starts but made only once it runs, so a run that fails to
    start (no camera, no model) leaves no empty file behind.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise EdgesegError(f"cannot write {what} to {path}: it is a folder; give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise EdgesegError(f"cannot write {what} to {path}: {folder} is not a writable folder; choose a writable path")
    if path.exists() and not os.access(path, os.W_OK):
        raise EdgesegError(f"cannot write {what} to {path}: the file is read-only; choose a writable path")
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (models and engines can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
