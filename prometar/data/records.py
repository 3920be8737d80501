"""Sample records (`Datum`) and Dassl-compatible pickles of them.

Dassl's few-shot caches (`split_fewshot/shot_{N}-seed_{S}.pkl`) and ImageNet's `preprocessed.pkl`
hold instances of `dassl.data.datasets.base_dataset.Datum` whose pickled state is the dict
`{"_impath", "_label", "_domain", "_classname"}`. This module reads such files without Dassl
(`load_records`) and writes files that Dassl un-pickles as its own `Datum` (`dump_records`).
"""
from __future__ import annotations

import io
import os
import pickle
import struct
from typing import Any, Mapping, Sequence

from ..io import atomic_write
from . import inputs

DASSL_DATUM_MODULE = "dassl.data.datasets.base_dataset"
DASSL_DATUM_NAME = "Datum"
STATE_KEYS = ("_impath", "_label", "_domain", "_classname")


class Datum:
    """One sample: absolute image path, 0-based label, domain (always 0 here), class name.

    Same fields and pickled state as Dassl's `Datum`. Like Dassl, the constructor checks that the
    image file exists (`check_file=False` skips that, e.g. when the caller already checked).
    """

    def __init__(
        self,
        impath: str = "",
        label: int = 0,
        domain: int = 0,
        classname: str = "",
        *,
        check_file: bool = True,
    ) -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}: {impath!r}")
        if check_file and not os.path.isfile(impath):
            raise FileNotFoundError(f'No file found at "{impath}"')
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def as_tuple(self) -> tuple[str, int, int, str]:
        """(impath, label, domain, classname)."""
        return (self._impath, self._label, self._domain, self._classname)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datum):
            return NotImplemented
        return self.as_tuple() == other.as_tuple()

    def __hash__(self) -> int:
        return hash(self.as_tuple())

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, "
            f"domain={self._domain}, classname={self._classname!r})"
        )


# --------------------------------------------------------------------------------------------
# Reading


class RecordUnpickler(pickle.Unpickler):
    """Un-pickler for Datum caches that maps Dassl's `Datum` to ours and refuses other globals."""

    _ALLOWED = {
        (DASSL_DATUM_MODULE, DASSL_DATUM_NAME): Datum,
        (__name__, "Datum"): Datum,
    }

    def __init__(self, file: Any, source: str = "<stream>") -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._ALLOWED:
            return self._ALLOWED[key]
        if key in {("copyreg", "_reconstructor"), ("builtins", "object")}:  # protocol 0/1 pickles
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"{self.source}: unexpected global {module}.{name}; a Datum cache may only contain "
            f"{DASSL_DATUM_MODULE}.{DASSL_DATUM_NAME} (or {__name__}.Datum) records"
        )


def loads_records(data: bytes, source: str = "<bytes>") -> Any:
    """Un-pickle bytes of a Datum cache (Dassl's or ours) without Dassl."""
    return RecordUnpickler(io.BytesIO(data), source=source).load()


def load_records(path: str) -> Any:
    """Load a Dassl few-shot cache / `preprocessed.pkl` (or one written by `dump_records`)."""
    inputs.note(path)
    with open(path, "rb") as f:
        try:
            return RecordUnpickler(f, source=path).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
            raise pickle.UnpicklingError(
                f"Cannot read the Datum cache {path}: {exc}. Delete the file to regenerate it."
            ) from exc


# --------------------------------------------------------------------------------------------
# Writing (hand-built pickle stream, protocol 2)

_PROTO2 = b"\x80\x02"
_EMPTY_DICT, _EMPTY_LIST, _EMPTY_TUPLE = b"}", b"]", b")"
_MARK, _SETITEMS, _SETITEM, _APPENDS = b"(", b"u", b"s", b"e"
_BUILD, _NEWOBJ, _STOP = b"b", b"\x81", b"."
_GLOBAL, _BINPUT, _BINGET = b"c", b"q", b"h"
_BATCH = 1000  # same batch size as CPython's pickler


def _str(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(i: int) -> bytes:
    if not isinstance(i, int) or isinstance(i, bool):
        raise TypeError(f"Datum labels/domains must be int, got {type(i).__name__}: {i!r}")
    if -(2**31) <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    data = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    if len(data) > 255:
        raise ValueError(f"integer too large for a Datum cache: {i}")
    return b"\x8a" + bytes([len(data)]) + data


def _datum(d: Datum, first: bool) -> bytes:
    if first:  # emit the global once and memoise it at index 0
        head = _GLOBAL + f"{DASSL_DATUM_MODULE}\n{DASSL_DATUM_NAME}\n".encode() + _BINPUT + b"\x00"
    else:
        head = _BINGET + b"\x00"
    state = _EMPTY_DICT + _MARK
    for key, value in zip(STATE_KEYS, d.as_tuple()):
        state += _str(key) + (_str(value) if isinstance(value, str) else _int(value))
    return head + _EMPTY_TUPLE + _NEWOBJ + state + _SETITEMS + _BUILD


def dumps_records(data: Mapping[str, Sequence[Datum]]) -> bytes:
    """Pickle `{key: [Datum, ...]}` so that Dassl un-pickles each record as its own `Datum`.

    The stream references the global `dassl.data.datasets.base_dataset.Datum`, creates each record
    with `__new__` and sets exactly the state keys Dassl's pickles carry (`_impath`, `_label`,
    `_domain`, `_classname`). No Dassl import is needed to write it; `load_records` reads it back.
    """
    out = [_PROTO2, _EMPTY_DICT]
    first = True
    for key, records in data.items():
        if not isinstance(key, str):
            raise TypeError(f"cache keys must be str, got {key!r}")
        out.append(_str(key) + _EMPTY_LIST)
        for start in range(0, len(records), _BATCH):
            chunk = records[start : start + _BATCH]
            parts = []
            for d in chunk:
                if not isinstance(d, Datum):
                    raise TypeError(f"cache list {key!r} holds a {type(d).__name__}, expected Datum")
                parts.append(_datum(d, first))
                first = False
            out.append(_MARK + b"".join(parts) + _APPENDS)
        out.append(_SETITEM)  # dict[key] = list
    out.append(_STOP)
    return b"".join(out)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` crash-safely (`prometar.io.atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def dump_records(data: Mapping[str, Sequence[Datum]], path: str) -> None:
    """Write a Dassl-readable Datum cache atomically (see `dumps_records`)."""
    write_bytes_atomic(path, dumps_records(data))
    inputs.note(path)
