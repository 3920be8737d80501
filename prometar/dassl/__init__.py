"""Dassl.pytorch plugin: the ``ProMetaR`` trainer and the datasets of this project's dataset table inside Dassl.

Importing this package never imports Dassl; Dassl is imported only when :func:`register` (or one
of the lazily loaded names below) is used, so ``prometar`` works without Dassl installed.

Public API:
    dassl_available() -> bool         Dassl.pytorch importable (with its import-time dependencies)
    register(trainer=True, datasets=True, force=False) -> dict
                                      register ``ProMetaR`` in Dassl's TRAINER_REGISTRY and the datasets
                                      (ImageNet, ..., PrometarWorld, ImageFolder) in its DATASET_REGISTRY; names that
                                      are already registered by someone else are skipped (and printed)
    extend_cfg(cfg) -> cfg            add ProMetaR's config keys (only those absent) to a Dassl config
    main(args) -> int                 Dassl's ``train.py`` flow (see :mod:`prometar.dassl.runner`)
    get_trainer_class()               the ``ProMetaR(TrainerX)`` class (imports Dassl)
    get_dataset_class(name)           the Dassl ``DatasetBase`` subclass of a dataset (imports Dassl)
    DATASET_NAMES                     the dataset class names

Drop-in for an existing CoOp / MaPLe / PromptSRC / official ProMetaR checkout (after ``pip install`` of this
package), in that checkout's ``train.py``::

    import prometar.dassl                                  # after the host's own `import trainers...` lines
    prometar.dassl.register(datasets=False, force=True)    # ProMetaR trainer; keeps the host's datasets

    def extend_cfg(cfg):
        ...                                       # the host's own additions, unchanged
        prometar.dassl.extend_cfg(cfg)            # last line: adds TRAINER.PROMETAR, OPTIM_VNET, ...

then ``python train.py --trainer ProMetaR --config-file <prometar yaml> ...`` (``prometar configs --copy DIR``
copies the shipped ProMetaR YAMLs into the checkout). ``force=True`` matters only in the official ProMetaR
checkout, whose own trainer is also named ``ProMetaR``: it replaces that one (without it, ours is skipped and a
line says so). The model is always built with OpenAI's ``clip`` package, read under a private name, so the
checkout's own ``clip/`` fork keeps serving its trainers (MaPLe, IVLP, VPT, ...) in the same process.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from typing import Any, Dict, List, Optional

from ..config import extend_cfg
from ..data.specs import SPECS

__all__ = [
    "DATASET_NAMES",
    "dassl_available",
    "dassl_import_error",
    "extend_cfg",
    "get_dataset_class",
    "get_trainer_class",
    "main",
    "register",
]

#: Class names of the datasets this plugin registers (the names Dassl configs use in DATASET.NAME).
DATASET_NAMES: tuple = tuple(SPECS)

#: The Dassl modules the plugin needs; importing them pulls Dassl's whole import chain
#: (yacs, gdown, tabulate, tensorboard, tqdm, scikit-learn, wilds, pandas).
_DASSL_MODULES = ("dassl", "dassl.config", "dassl.data", "dassl.engine", "dassl.utils")

_import_error: Optional[BaseException] = None
_checked = False

INSTALL_HINT = (
    "Dassl.pytorch is not on PyPI: clone https://github.com/KaiyangZhou/Dassl.pytorch and install it with "
    "`pip install --no-deps --no-build-isolation -e <clone>` plus its import-time dependencies "
    "(yacs gdown tensorboard tabulate scikit-learn tqdm pandas, and `pip install --no-deps wilds==1.2.2`); "
    "without Dassl, use prometar's built-in engine"
)


def _try_import() -> Optional[BaseException]:
    global _import_error, _checked
    if not _checked:
        _checked = True
        _import_error = None
        if importlib.util.find_spec("dassl") is None:
            _import_error = ModuleNotFoundError("No module named 'dassl'")
        else:
            try:
                for name in _DASSL_MODULES:
                    importlib.import_module(name)
            except Exception as exc:  # broken install: a missing dependency of Dassl's import chain
                _import_error = exc
                warnings.warn(f"Dassl.pytorch is installed but cannot be imported ({type(exc).__name__}: {exc}); "
                              f"the Dassl plugin is unavailable", RuntimeWarning, stacklevel=3)
    return _import_error


def dassl_available() -> bool:
    """True when Dassl.pytorch and its import-time dependencies import.

    Cheap when Dassl is absent (a module look-up); when it is installed, the first call imports it.
    An installed-but-broken Dassl gives False and a RuntimeWarning naming the failing import.
    """
    return _try_import() is None


def dassl_import_error() -> Optional[BaseException]:
    """The exception that made :func:`dassl_available` False, or None."""
    return _try_import()


def _require_dassl() -> None:
    error = _try_import()
    if error is not None:
        raise ImportError(f"The prometar Dassl plugin needs Dassl.pytorch ({type(error).__name__}: {error}). "
                          f"{INSTALL_HINT}") from error


def register(trainer: bool = True, datasets: bool = True, force: bool = False) -> Dict[str, List[str]]:
    """Register the ``ProMetaR`` trainer and/or the datasets with Dassl's registries.

    Idempotent.  A name that Dassl already maps to another object (e.g. ``OxfordPets`` from a
    CoOp/MaPLe/PromptSRC checkout's ``datasets/``, or the official ProMetaR trainer) is left as it
    is and printed as skipped (with how to replace it), unless ``force`` (then ours replaces it).
    Call it after the host's own trainer imports: Dassl refuses to register a name twice, so a host
    trainer named ``ProMetaR`` imported later would fail on the name ours already holds.

    Returns ``{"registered": [...], "skipped": [...]}`` (names newly registered / left to someone else).

    Raises:
        ImportError: Dassl.pytorch (or a module of its import chain) cannot be imported.
    """
    _require_dassl()
    registered: List[str] = []
    skipped: List[str] = []
    if trainer:
        from .trainer import register_trainer

        register_trainer(force=force, _report=(registered, skipped))
    if datasets:
        from .datasets import register_datasets

        register_datasets(force=force, _report=(registered, skipped))
    return {"registered": registered, "skipped": skipped}


def get_trainer_class() -> type:
    """The ``ProMetaR`` Dassl trainer class (built on first use; imports Dassl)."""
    _require_dassl()
    from .trainer import get_trainer_class as _get

    return _get()


def get_dataset_class(name: str) -> type:
    """The Dassl ``DatasetBase`` subclass for dataset ``name`` (built on first use; imports Dassl)."""
    _require_dassl()
    from .datasets import get_dataset_class as _get

    return _get(name)


def __getattr__(name: str) -> Any:
    if name == "main":
        return importlib.import_module(f"{__name__}.runner").main
    if name == "ProMetaR":
        return get_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
