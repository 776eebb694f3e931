"""Atomic file writes and clear errors for unwritable or full folders.

Every file the core writes (assemblies, cache entries, run files, progress files) goes
through :func:`atomic_output`: data is written to a temporary file in the same folder,
flushed, then renamed over the target, so a crash or SIGKILL never leaves a half file
under the final name.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from encoding_core.common.errors import StorageError

PathLike = Union[str, Path]


def _umask_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFAULT_FILE_MODE = _umask_file_mode()


def storage_error(path: PathLike, exc: OSError) -> StorageError:
    """Turn an OSError into a StorageError that says what to do."""
    path = Path(path)
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free some space or choose another folder"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "the folder is not writable; choose a writable folder or fix its permissions"
    elif exc.errno == errno.ENOENT:
        hint = "the folder does not exist"
    else:
        hint = exc.strerror or str(exc)
    return StorageError(f"Cannot write {path}: {hint} ({exc.__class__.__name__}: {exc.strerror}).")


def ensure_dir(path: PathLike) -> Path:
    """Create a folder (and parents) or raise StorageError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(path, exc) from None
    return path


def check_writable(folder: PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it; else raise StorageError.

    Writes, fsyncs and removes one 1-byte temporary file, so a read-only or completely full
    disk is reported before long work starts (a nearly full one is still caught at write time).
    """
    folder = ensure_dir(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise storage_error(folder, exc) from None
    try:
        os.write(fd, b"\0")
        os.fsync(fd)
    except OSError as exc:
        raise storage_error(folder, exc) from None
    finally:
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
    return folder


@contextlib.contextmanager
def atomic_output(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{suffix}.tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise storage_error(path, exc) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _DEFAULT_FILE_MODE)  # mkstemp makes 0600; give the usual umask-based mode
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def create_unique_dir(parent: PathLike, new_id: "Callable[[], str]", attempts: int = 100) -> tuple[str, Path]:
    """Create ``parent / new_id()`` with an exclusive mkdir (retrying on a collision).

    Returns (id, path). Two processes never get the same folder. Raises StorageError.
    """
    parent = ensure_dir(parent)
    for _ in range(attempts):
        folder_id = new_id()
        path = parent / folder_id
        try:
            path.mkdir()
            return folder_id, path
        except FileExistsError:
            continue
        except OSError as exc:
            raise storage_error(path, exc) from None
    raise StorageError(f"Could not create a new folder in {parent} after {attempts} attempts.")


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars/arrays and paths."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextlib.contextmanager
def staging_dir(parent: PathLike, prefix: str, target: PathLike) -> Iterator[Path]:
    """A temporary folder in ``parent`` (mode 0755) in which to build ``target``.

    The caller fills it and renames it to ``target`` inside the ``with`` block; whatever is
    left of it on exit (an error, or an early return) is removed. OSError -> StorageError.
    """
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; these folders are shared like any cache
    except OSError as exc:
        raise storage_error(parent, exc) from None
    try:
        yield tmp
    except OSError as exc:
        raise storage_error(target, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
