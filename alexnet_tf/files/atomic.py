"""Writes that are all or nothing: a crash, a kill or a full disk never leaves a partial file.

Each write goes to a hidden temporary name in the target's folder and is renamed over the target
only once complete (`os.replace` is atomic on one file system). A failed write removes its
temporary file and raises `WriteError`, one line naming the path and the reason, so a binary can
print it as it is; the previous file at that path is left untouched.

    with atomic.writing("out/eval.json") as f:        # a text or binary file object
        json.dump(result, f)
    with atomic.temporary_path("out/features.npy") as tmp:  # for writers that take a name
        np.save(tmp, features)
    atomic.write_text("out/flags.cfg", text)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from typing import IO, Any

# errno values a user fixes outside the program (free space, quota, permissions): reported as one
# line rather than a traceback.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
TEMPORARY_MARK = ".tmp-"


class WriteError(OSError):
    """A file could not be written; `str()` is one line naming the path and the OS's reason."""

    def __init__(self, path: str, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause), path)
        self.path = path

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"


def temporary_name(path: str, suffix: str = "") -> str:
    """The hidden temporary name a write of `path` uses: `.NAME.tmp-PID[suffix]` beside it."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{TEMPORARY_MARK}{os.getpid()}{suffix}")


def is_temporary(name: str) -> bool:
    """Whether a file name is a leftover of an interrupted atomic write."""
    return os.path.basename(name).startswith(".") and TEMPORARY_MARK in name


@contextlib.contextmanager
def temporary_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path to write `path` through; renames it over `path` on success.

    Works for a file or a folder (a SavedModel). `suffix` keeps an extension that a writer
    insists on (`np.save` adds ".npy" to a name without it). The parent folder is created.

    Raises:
        WriteError: the write or the rename failed; nothing is left at the temporary path and the
            previous `path` is unchanged.
    """
    folder = os.path.dirname(path) or "."
    tmp = temporary_name(path, suffix)
    try:
        os.makedirs(folder, exist_ok=True)
        yield tmp
        _replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise e if isinstance(e, WriteError) else WriteError(path, e) from e
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def writing(path: str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Opens a temporary file for writing (`mode` "w" or "wb"); it replaces `path` on success."""
    with (
        temporary_path(path) as tmp,
        open(tmp, mode, encoding=None if "b" in mode else encoding) as f,
    ):
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str, text: str) -> str:
    """Writes `text` to `path` atomically; returns `path`."""
    with writing(path) as f:
        f.write(text)
    return path


def write_bytes(path: str, data: bytes) -> str:
    """Writes `data` to `path` atomically; returns `path`."""
    with writing(path, "wb") as f:
        f.write(data)
    return path


def write_json(path: str, value: Any, indent: int | None = 1) -> str:
    """Writes `value` as JSON to `path` atomically; returns `path`."""
    return write_text(path, json.dumps(value, indent=indent) + "\n")


def _replace(tmp: str, path: str) -> None:
    if os.path.isdir(tmp) and os.path.isdir(path):
        # A folder can't be renamed over a non-empty one: move the old one aside first, so that
        # one complete folder is at `path` at every moment but the one between the two renames.
        old = temporary_name(path, ".old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)
