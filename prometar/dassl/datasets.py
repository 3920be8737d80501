"""This project's datasets as Dassl ``DatasetBase`` subclasses (registered under the CoOp names).

One class per entry of the dataset table (``prometar.data.specs.SPECS``). Each is a thin wrapper over
:func:`prometar.data.datasets.lists_from_cfg` (readers, few-shot sampling with
the shared ``split_fewshot/shot_{N}-seed_{S}.pkl`` cache, base/new subsampling): the constructor
takes Dassl's ``cfg``, converts the records to Dassl's ``Datum`` and calls
``DatasetBase.__init__(train_x=..., val=..., test=...)`` (ImageNet: val = test; the test-only
ImageNet variants: train = test, no val).

Config keys read: ``DATASET.ROOT``, ``DATASET.NUM_SHOTS``, ``SEED`` (few-shot sampling and cache
name), ``DATASET.SUBSAMPLE_CLASSES`` (``all`` when the key is absent); ``ImageFolder`` also reads
``DATASET.IMAGEFOLDER.*`` (folder name, split seed and ratios; defaults when absent).

Importing this module does not import Dassl; classes are created on first use
(:func:`get_dataset_class`, or module attributes such as ``prometar.dassl.datasets.EuroSAT``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..data.datasets import lists_from_cfg
from ..data.specs import SPECS, resolve_name

__all__ = ["DATASET_NAMES", "get_dataset_class", "get_dataset_wrapper", "register_dataset", "register_datasets",
           "to_dassl_records"]

#: Registered class names, in the dataset table's order.
DATASET_NAMES: Tuple[str, ...] = tuple(SPECS)

_CLASSES: Dict[str, type] = {}
_WRAPPER: Optional[type] = None


def to_dassl_records(records: Optional[Iterable[Any]]) -> Optional[List[Any]]:
    """Convert records (ours or any object with impath/label/domain/classname) to Dassl ``Datum``s.

    The image files were already checked by the readers, so Dassl's per-record file check is not
    repeated (it costs a ``stat`` per image, 1.3 M for full ImageNet): the objects are created with
    ``Datum.__new__`` and given the four private fields Dassl's ``Datum`` (and its pickles) use.
    """
    if records is None:
        return None
    from dassl.data.datasets import Datum

    out = []
    for r in records:
        d = Datum.__new__(Datum)
        d._impath, d._label, d._domain, d._classname = r.impath, int(r.label), int(r.domain), r.classname
        out.append(d)
    return out


def _build_class(name: str) -> type:
    from dassl.data.datasets import DatasetBase

    spec = SPECS[name]

    def __init__(self, cfg):
        lists = lists_from_cfg(name, cfg)
        self.dataset_dir = lists.dataset_dir
        DatasetBase.__init__(self, train_x=to_dassl_records(lists.train), val=to_dassl_records(lists.val),
                             test=to_dassl_records(lists.test))

    doc = (f"{name} (folder `{spec.dataset_dir}` under DATASET.ROOT) for Dassl, read by prometar.data "
           f"(few-shot cache and base/new subsampling as CoOp).")
    cls = type(name, (DatasetBase,), {"__init__": __init__, "__doc__": doc, "__module__": __name__,
                                      "dataset_dir": spec.dataset_dir, "domains": []})
    cls.__qualname__ = name
    return cls


def get_dataset_wrapper() -> type:
    """Dassl's ``DatasetWrapper`` whose image-reading errors name the file (created once; imports Dassl).

    Dassl opens images with a bare ``Image.open(path).convert("RGB")``, so a truncated or corrupt file
    fails with e.g. ``OSError: image file is truncated`` and no path. This subclass re-raises such
    errors with the path (``FileNotFoundError`` stays one), like the built-in engine's loader.
    """
    global _WRAPPER
    if _WRAPPER is None:
        from dassl.data.data_manager import DatasetWrapper

        class NamedDatasetWrapper(DatasetWrapper):
            """Dassl's DatasetWrapper; an error while reading a sample names its image file."""

            def __getitem__(self, idx):
                try:
                    return super().__getitem__(idx)
                except OSError as exc:
                    impath = getattr(self.data_source[idx], "impath", "?")
                    if impath in str(exc):
                        raise
                    if isinstance(exc, FileNotFoundError):
                        raise FileNotFoundError(f'No file found at "{impath}"') from exc
                    raise OSError(f'Cannot read image "{impath}": {exc}. Replace or re-download this file '
                                  f"(or remove it from the split file and delete the few-shot caches)") from exc

        NamedDatasetWrapper.__module__ = __name__
        _WRAPPER = NamedDatasetWrapper
    return _WRAPPER


def get_dataset_class(name: str) -> type:
    """The Dassl dataset class of ``name`` (a name of :data:`DATASET_NAMES`, or its config alias such
    as ``eurosat``); created once; imports Dassl."""
    key = resolve_name(name, aliases=True)
    if key not in _CLASSES:
        _CLASSES[key] = _build_class(key)
    return _CLASSES[key]


def register_dataset(name: str, force: bool = False,
                     _report: Optional[Tuple[List[str], List[str]]] = None) -> type:
    """Register one dataset in Dassl's DATASET_REGISTRY unless its name is taken; returns our class.

    A name already registered by another object (e.g. a CoOp checkout's ``OxfordPets``) is kept and
    reported as skipped (ours replaces it with ``force``).
    """
    from . import _require_dassl

    _require_dassl()
    from dassl.data.datasets import DATASET_REGISTRY

    cls = get_dataset_class(name)
    key = cls.__name__
    if key in DATASET_REGISTRY.registered_names():
        if DATASET_REGISTRY.get(key) is cls:
            return cls
        if not force:
            if _report is not None:
                _report[1].append(key)
            else:
                print(f"prometar: dataset {key} is already registered in Dassl; skipped ours")
            return cls
    DATASET_REGISTRY.register(cls, force=force)
    if _report is not None:
        _report[0].append(key)
    return cls


def register_datasets(names: Sequence[str] = DATASET_NAMES, force: bool = False,
                      _report: Optional[Tuple[List[str], List[str]]] = None) -> Dict[str, type]:
    """Register several datasets (default: all); prints the names skipped because already registered."""
    registered: List[str] = []
    skipped: List[str] = []
    classes = {n: register_dataset(n, force=force, _report=(registered, skipped)) for n in names}
    if skipped:
        print(f"prometar: datasets already registered in Dassl, kept as they are (ours skipped): "
              f"{', '.join(skipped)}")
    if _report is not None:
        _report[0].extend(registered)
        _report[1].extend(skipped)
    return classes


def __getattr__(name: str) -> Any:
    if name in SPECS:
        return get_dataset_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
