"""Registering the ``ProMetaR`` trainer in Dassl's ``TRAINER_REGISTRY``.

Importing this module does not import Dassl: the class lives in :mod:`prometar.dassl.trainerx` (a plain
module-level ``ProMetaR(TrainerX)``), imported on first use by :func:`get_trainer_class` (also reachable as the
module attribute ``ProMetaR``) and registered by :func:`register_trainer`.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

__all__ = ["get_trainer_class", "register_trainer", "TRAINER_NAME"]

#: Name in Dassl's TRAINER_REGISTRY (= ``--trainer``); its config node is ``TRAINER.PROMETAR``.
TRAINER_NAME = "ProMetaR"


def get_trainer_class() -> type:
    """The ``ProMetaR(TrainerX)`` class of :mod:`prometar.dassl.trainerx` (imports Dassl)."""
    from .trainerx import ProMetaR

    return ProMetaR


def register_trainer(force: bool = False, _report: Optional[Tuple[List[str], List[str]]] = None) -> type:
    """Register ``ProMetaR`` in Dassl's TRAINER_REGISTRY unless the name is taken; returns our class.

    A ``ProMetaR`` registered by someone else (e.g. the official repository's trainer) is kept and a
    note is printed, unless ``force``.
    """
    from . import _require_dassl

    _require_dassl()
    from dassl.engine import TRAINER_REGISTRY

    cls = get_trainer_class()
    if TRAINER_NAME in TRAINER_REGISTRY.registered_names():
        if TRAINER_REGISTRY.get(TRAINER_NAME) is cls:
            return cls
        if not force:
            print(f"prometar: a trainer named {TRAINER_NAME} is already registered in Dassl "
                  f"({getattr(TRAINER_REGISTRY.get(TRAINER_NAME), '__module__', '?')}); kept it and skipped ours. "
                  f"To use this package's trainer instead, call "
                  f"prometar.dassl.register(datasets=False, force=True) after the host's trainer imports")
            if _report is not None:
                _report[1].append(TRAINER_NAME)
            return cls
    TRAINER_REGISTRY.register(cls, force=force)
    if _report is not None:
        _report[0].append(TRAINER_NAME)
    return cls


def __getattr__(name: str) -> Any:
    if name == "ProMetaR":
        return get_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
