"""Crash-safe file writing: the one place that writes a file through a temp file and ``os.replace``.

A file written with :func:`atomic_write` is either the previous version or the complete new one,
whatever instant the process is killed at; a failed write (disk full, exception in ``write``)
removes its temp file and leaves the previous version in place.
"""
from __future__ import annotations

import os
from typing import IO, Any, Callable, Union

__all__ = ["atomic_write", "atomic_write_text", "fsync_dir", "TMP_MARK"]

#: Substring of every temp file name this module creates (``.<name>.tmp-<pid>``), for clean-up scans.
TMP_MARK = ".tmp-"

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(directory: PathLike) -> None:
    """fsync a folder so that a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[IO[Any]], Any], binary: bool = True) -> str:
    """Write ``path`` by calling ``write(fileobj)`` on a temp file in the same folder, then publish it.

    The temp file is flushed and fsync'ed, moved over ``path`` with ``os.replace`` and the folder is
    fsync'ed.  Returns ``path`` as a string.  Any exception leaves ``path`` untouched and no temp file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}{TMP_MARK}{os.getpid()}")
    try:
        mode = "wb" if binary else "w"
        with open(tmp, mode, **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_dir(directory)
    return path


def atomic_write_text(path: PathLike, text: str) -> str:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text), binary=False)
