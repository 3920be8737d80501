"""Reading checkpoint files without running code from them.

Every file is read with ``torch.load(weights_only=True)``.  Files written by this project hold plain data and
load directly.  Legacy files (official ProMetaR and Dassl checkpoints pickle their LR scheduler, optimiser and
other objects) are read by torch's restricted unpickler too, with one addition: every class or function the file
names is either on a short allow-list of plain containers (``collections.OrderedDict``, ``defaultdict`` as a plain
dict, a few builtin types, NumPy scalars, dtypes and arrays) or is replaced by an inert :class:`PickledObject`
placeholder that only stores the data it is given (never calls anything, has no ``__call__``).  A file that names
a module that can run commands (``os``, ``posix``, ``subprocess``, ...) or a builtin outside the allow-list
(``eval``, ``exec``, ``getattr``, ...) is refused: a checkpoint never needs them.

:func:`dassl_loads_safely` routes Dassl's own ``load_checkpoint`` (used by ``resume_model_if_exist`` and
``load_pretrained_weights``) through :func:`load_checkpoint` while a block runs.
"""
from __future__ import annotations

import collections
import contextlib
import os
import pickle
from typing import Any, Callable, Dict, Iterator, List, Tuple

import torch

__all__ = ["CheckpointLoadError", "PickledObject", "load_checkpoint", "dassl_load_checkpoint", "dassl_loads_safely"]


class CheckpointLoadError(RuntimeError):
    """A checkpoint file could not be read (corrupt, truncated, or refused as unsafe); the message names it."""


class PickledObject:
    """Inert stand-in for an object of a class (or the result of a function) outside the allow-list.

    ``args`` holds the constructor / reduce arguments, ``state`` the pickled state; attribute access falls back
    to ``state`` when it is a dict (``obj.last_epoch``).  Creating one or setting its state runs no code from the
    file: it only stores what it is given.
    """

    #: ``module.name`` of the global this placeholder stands for.
    pickled_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "PickledObject":
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None)
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # state already stored by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __getattr__(self, name: str) -> Any:  # only called for names not found normally
        state = self.__dict__.get("state")
        if not name.startswith("__") and isinstance(state, dict) and name in state:
            return state[name]
        raise AttributeError(f"{self!r} has no attribute {name!r} (it is an inert placeholder; see .state)")

    def __repr__(self) -> str:
        return f"<PickledObject {self.pickled_name}>"


def _placeholder_class(full_name: str) -> type:
    name = f"PickledObject[{full_name}]"
    return type(name, (PickledObject,), {"pickled_name": full_name, "__module__": __name__, "__qualname__": name})


def _defaultdict_as_dict(default_factory: Any = None, *args: Any) -> dict:
    """``collections.defaultdict`` (e.g. an optimiser's ``state``) rebuilt as a plain dict: torch's restricted
    unpickler fills only plain dicts, and the factory (possibly a placeholder) is never called."""
    return dict(*args[:1]) if args and isinstance(args[0], dict) else {}


def _allowed_globals() -> Dict[str, Any]:
    """Globals rebuilt as the real thing: plain containers and NumPy data (constructors that run no file code)."""
    allowed: Dict[str, Any] = {"collections.OrderedDict": collections.OrderedDict,
                               "collections.defaultdict": _defaultdict_as_dict}
    for t in (dict, list, tuple, set, frozenset, int, float, complex, bool, str, bytes, bytearray, slice, range):
        allowed[f"builtins.{t.__name__}"] = t
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a torch dependency in practice
        return allowed
    allowed["numpy.dtype"] = np.dtype
    allowed["numpy.ndarray"] = np.ndarray
    for package in ("numpy.core", "numpy._core"):
        try:
            multiarray = __import__(f"{package}.multiarray", fromlist=["scalar"])
        except ImportError:
            continue
        for name in ("scalar", "_reconstruct"):
            if hasattr(multiarray, name):
                allowed[f"{package}.multiarray.{name}"] = getattr(multiarray, name)
    dtypes = getattr(np, "dtypes", None)
    for name in dir(dtypes) if dtypes is not None else ():
        value = getattr(dtypes, name)
        if isinstance(value, type) and issubclass(value, np.dtype):
            allowed[f"numpy.dtypes.{name}"] = value
    return allowed


#: Modules whose members can run commands, import or execute code: a file that names one is refused.
_REFUSED_MODULES = frozenset({"os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "ctypes", "importlib",
                              "runpy", "pickle", "_pickle", "marshal", "code", "codeop", "pty", "webbrowser",
                              "multiprocessing", "builtins", "__builtin__", "operator"})


def _refused(full_name: str, allowed: Dict[str, Any]) -> bool:
    if full_name in allowed:
        return False
    return full_name.split(".")[0] in _REFUSED_MODULES


def _short(names: List[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _reason(exc: BaseException) -> str:
    """The informative line of a torch.load error (torch wraps it in a long generic explanation)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error:"):
            rest = line[len("WeightsUnpickler error:"):].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return f"{type(exc).__name__}: {rest.rstrip('.')}"
    return f"{type(exc).__name__}: {lines[0].rstrip('.') if lines else ''}"


def _read_error(path: str, exc: BaseException) -> CheckpointLoadError:
    return CheckpointLoadError(f'cannot read checkpoint "{path}": {_reason(exc)}. The file is corrupt, '
                               f"truncated or not a torch.save file; re-create it or point to another epoch")


def _load_with_placeholders(path: str, map_location: Any, first_error: str) -> Any:
    """Second attempt for files with pickled objects: allow-listed globals as themselves, the rest as placeholders."""
    serialization = torch.serialization
    if not (hasattr(serialization, "get_unsafe_globals_in_checkpoint") and hasattr(serialization, "safe_globals")):
        raise CheckpointLoadError(
            f'"{path}" holds pickled objects ({first_error}); reading such a file without running code from it '
            f"needs torch >= 2.6 (installed: {torch.__version__}). Upgrade torch, or load and re-save only its "
            f"'state_dict' where you trust the file") from None
    try:
        names = sorted(serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as exc:  # not a zip checkpoint, unsupported opcode (e.g. a pickle protocol > 2), corrupt
        raise CheckpointLoadError(
            f'cannot read checkpoint "{path}" safely: {_reason(exc)} (first attempt: {first_error}). '
            f"Only torch.save zip files with pickle protocol 2 can be read without running code") from None
    allowed = _allowed_globals()
    refused = [n for n in names if _refused(n, allowed)]
    if refused:
        raise CheckpointLoadError(
            f'refused to load "{path}": it references {_short(refused)}, which can run code; a checkpoint never '
            f"needs that. Nothing from the file was executed. Do not use this file") from None
    # Every allow-listed global is registered (a NumPy dtype REDUCE builds e.g. a Float64DType instance that the
    # file never names); each other name the file uses gets its own placeholder class.
    entries: List[Tuple[Callable[..., Any], str]] = [(obj, name) for name, obj in allowed.items()]
    placeholders = [name for name in names if name not in allowed]
    entries += [(_placeholder_class(name), name) for name in placeholders]
    try:
        with serialization.safe_globals(entries):
            result = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointLoadError(
            f'cannot read checkpoint "{path}" safely: {_reason(exc)}. Nothing from the file was executed') from None
    if placeholders:
        print(f'Note: "{path}" holds pickled objects; {_short(placeholders, 4)} read as inert placeholders '
              f"(no code from the file was run)")
    return result


def load_checkpoint(path: str, map_location: Any = None) -> Any:
    """Load a checkpoint file with ``torch.load(weights_only=True)``, never running code from it.

    Files with pickled objects (official ProMetaR / Dassl checkpoints) load with their objects outside the
    allow-list as inert :class:`PickledObject` placeholders (a one-line note names them); a file naming a
    code-running global (``os.system``, ``builtins.eval``, ...) is refused.  ``map_location`` defaults to CPU
    when CUDA is unavailable.

    Raises:
        FileNotFoundError: ``Model not found at "<path>"`` when the file does not exist.
        CheckpointLoadError: the file is corrupt, truncated or refused; the message names it.
    """
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f'Model not found at "{path}"')
    if map_location is None and not torch.cuda.is_available():
        map_location = "cpu"
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first_error: BaseException = exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise _read_error(path, exc) from None
    return _load_with_placeholders(path, map_location, _reason(first_error))


def dassl_load_checkpoint(fpath: str) -> Any:
    """Drop-in for ``dassl.utils.load_checkpoint`` (same errors for a missing path) that never runs file code."""
    if fpath is None:
        raise ValueError("File path is None")
    if not os.path.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')
    return load_checkpoint(fpath)


@contextlib.contextmanager
def dassl_loads_safely() -> Iterator[None]:
    """While the block runs, Dassl's ``load_checkpoint`` (in ``dassl.utils``, ``dassl.utils.torchtools`` and the
    name imported by ``dassl.engine.trainer``) is :func:`dassl_load_checkpoint`; restored afterwards."""
    import importlib

    modules = []
    for name in ("dassl.utils.torchtools", "dassl.utils", "dassl.engine.trainer"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    saved = [(m, m.__dict__.get("load_checkpoint")) for m in modules if "load_checkpoint" in m.__dict__]
    for module, _ in saved:
        module.load_checkpoint = dassl_load_checkpoint
    try:
        yield
    finally:
        for module, original in saved:
            module.load_checkpoint = original
