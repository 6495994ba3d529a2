"""Atomic file writes: readers see either no file or the complete file, never a partial one.

Data goes to a hidden temporary name in the target directory (".<name>.<pid>.tmp"), is fsync'd,
then renamed over the final name with os.replace (atomic on POSIX within one file system). On any
exception the temporary file is removed and the final name is left untouched.
"""

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def temp_path_for(path: Path) -> Path:
    """Return the hidden temporary name used while writing `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` atomically when the block exits cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_copy(source: Path, path: Path) -> None:
    """Copy the file `source` to `path` atomically."""
    with open(source, "rb") as src, atomic_writer(path) as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` atomically unless `path` already holds exactly these bytes; True if written."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def _fsync_dir(directory: Path) -> None:
    """Persist a rename by syncing its directory (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
