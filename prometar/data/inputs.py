"""The data files a run read (split files, few-shot caches, class lists), for the run folder's provenance.

The readers call :func:`note` with each file they read or write; a runner calls :func:`reset` before it builds
the data and :func:`digests` after, and records each file's SHA-256, so a result can be traced to the exact
split and few-shot draw it came from.  Process-wide: one run at a time per process (as train.py runs).
"""
from __future__ import annotations

import hashlib
import os
from typing import Dict, List

__all__ = ["note", "reset", "digests"]

_SEEN: List[str] = []


def note(path: str) -> None:
    """Record that the run read (or wrote) the data file ``path``."""
    path = os.path.abspath(path)
    if path not in _SEEN:
        _SEEN.append(path)


def reset() -> None:
    """Forget the files noted so far (call before building a run's data)."""
    _SEEN.clear()


def digests() -> Dict[str, str]:
    """{path: sha256 hex} of every noted file that still exists, in the order they were first noted."""
    out: Dict[str, str] = {}
    for path in _SEEN:
        try:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[path] = h.hexdigest()
        except OSError:
            continue
    return out
