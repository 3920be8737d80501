"""Stdout tee to ``OUTPUT_DIR/log.txt`` with Dassl's file-naming rule (``log.txt``, or ``log.txt-<timestamp>`` when one exists).

``setup_logger(output)`` replaces ``sys.stdout`` by a :class:`StdoutTee` that writes every print
to the console and to the log file.  The file is flushed after every write (nothing is lost when
the process crashes) and fsync'ed on ``flush()``/``close()``.  stderr is not captured (as in Dassl).
``close()`` restores the previous ``sys.stdout``, so tests can install it repeatedly.
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO, Optional

__all__ = ["StdoutTee", "log_file_path", "setup_logger"]


def log_file_path(output: str) -> str:
    """Path Dassl's logger would write for ``output`` (a directory, or a ``.txt``/``.log`` file).

    ``<output>/log.txt``; if that exists, ``log.txt-YYYY-MM-DD-HH-MM-SS`` next to it (the old file
    is kept).  If that name exists too (two runs within a second), ``-2``, ``-3``... is appended.
    """
    if output.endswith(".txt") or output.endswith(".log"):
        path = output
    else:
        path = os.path.join(output, "log.txt")
    if not os.path.exists(path):
        return path
    stamped = path + time.strftime("-%Y-%m-%d-%H-%M-%S")
    candidate, n = stamped, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{stamped}-{n}"
    return candidate


class StdoutTee:
    """File-like object writing to a console stream and a log file; installed as ``sys.stdout``."""

    def __init__(self, path: str, console: Optional[IO[str]] = None) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.path = path
        self.console = console if console is not None else sys.stdout
        self.file: Optional[IO[str]] = open(path, "w", encoding="utf-8")
        self._previous: Optional[IO[str]] = None

    # -- file-like protocol -------------------------------------------------------------------
    def write(self, msg: str) -> int:
        """Write to console and file; the file is flushed to the OS at once."""
        self.console.write(msg)
        if self.file is not None:
            self.file.write(msg)
            self.file.flush()
        return len(msg)

    def flush(self) -> None:
        """Flush both streams and fsync the log file."""
        self.console.flush()
        if self.file is not None:
            self.file.flush()
            try:
                os.fsync(self.file.fileno())
            except OSError:
                pass

    def isatty(self) -> bool:
        return bool(getattr(self.console, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:
        return getattr(self.console, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self.console.fileno()

    def __getattr__(self, name: str):  # delegate anything else (errors, buffer, ...) to the console
        if name in ("console", "file", "_previous", "path"):
            raise AttributeError(name)
        return getattr(self.console, name)

    # -- installation -------------------------------------------------------------------------
    def install(self) -> "StdoutTee":
        """Make this tee ``sys.stdout`` (remembering the stream it replaces)."""
        self._previous = sys.stdout
        sys.stdout = self
        return self

    @property
    def closed(self) -> bool:
        return self.file is None

    def close(self) -> None:
        """Flush and close the log file and restore the previous ``sys.stdout`` (idempotent)."""
        if self.file is None:
            return
        self.flush()
        self.file.close()
        self.file = None
        if sys.stdout is self:
            sys.stdout = self._previous if self._previous is not None else self.console

    def __enter__(self) -> "StdoutTee":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def setup_logger(output: Optional[str]) -> Optional[StdoutTee]:
    """Tee ``sys.stdout`` into ``output``'s log file (see :func:`log_file_path`).

    Returns the installed :class:`StdoutTee` (call ``close()`` or use it as a context manager to
    restore stdout), or None when ``output`` is None/empty (nothing installed, like Dassl).
    """
    if not output:
        return None
    return StdoutTee(log_file_path(output)).install()
