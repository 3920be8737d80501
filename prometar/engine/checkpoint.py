"""Checkpoint files in Dassl's layout (what Dassl's ``save_checkpoint`` writes), written atomically.

Layout of one registered model's folder ``<OUTPUT_DIR>/<name>/``: ``model.pth.tar-<epoch>``
(1-based epoch), ``checkpoint`` (text: file name of the latest checkpoint + newline) and
``model-best.pth.tar`` for best-val saves.  The dict holds ``state_dict``, ``epoch``,
``optimizer``, ``scheduler``, ``val_result``.

Every file is written to a temporary file in the same folder, fsync'ed and moved into place with
``os.replace``: a crash mid-write leaves the previous file intact.  The trainers publish one epoch's files
(all models) together with a manifest written last (:mod:`prometar.engine.integrity`).  Reading
(:func:`load_checkpoint`) lives in :mod:`prometar.engine.safe_load` and never runs code from a file.
"""
from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from typing import Any, Mapping, Optional

import torch

from ..io import atomic_write as _atomic_write
from .safe_load import CheckpointLoadError, load_checkpoint

__all__ = [
    "BEST_NAME",
    "CheckpointLoadError",
    "POINTER_NAME",
    "checkpoint_path",
    "find_resume_file",
    "load_checkpoint",
    "make_checkpoint",
    "save_checkpoint",
    "strip_module_prefix",
]

#: File name of best-val checkpoints.
BEST_NAME = "model-best.pth.tar"
#: Name of the pointer file naming the latest checkpoint.
POINTER_NAME = "checkpoint"


def strip_module_prefix(state_dict: Mapping[str, Any]) -> "OrderedDict[str, Any]":
    """Copy of ``state_dict`` with a leading ``module.`` (DataParallel) removed from keys."""
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def make_checkpoint(
    state_dict: Mapping[str, Any],
    epoch: int,
    optimizer: Any = None,
    scheduler: Any = None,
    val_result: Optional[float] = None,
) -> dict[str, Any]:
    """The checkpoint dict Dassl writes: ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``, ``val_result``
    (``optimizer``/``scheduler`` may be objects or their states; states are stored)."""
    return {
        "state_dict": state_dict,
        "epoch": int(epoch),
        "optimizer": optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer,
        "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else scheduler,
        "val_result": val_result,
    }


def checkpoint_path(directory: str, name: str = "", epoch: Optional[int] = None) -> str:
    """``<directory>/<name>/model.pth.tar-<epoch>``, or ``.../model-best.pth.tar`` when epoch is None."""
    file_name = BEST_NAME if epoch is None else f"model.pth.tar-{epoch}"
    return os.path.join(directory, name, file_name) if name else os.path.join(directory, file_name)


def save_checkpoint(
    state: Mapping[str, Any],
    save_dir: str,
    is_best: bool = False,
    model_name: str = "",
    remove_module_from_keys: bool = True,
) -> str:
    """Save ``state`` to ``save_dir`` like Dassl and return the file path.

    File name: ``model_name`` or ``model.pth.tar-<state["epoch"]>``.  Also rewrites the
    ``checkpoint`` pointer file and, if ``is_best``, copies the file to ``model-best.pth.tar``.
    Prints ``Checkpoint saved to <path>``.  ``state`` is not modified.
    """
    if "epoch" not in state:
        raise KeyError(f"checkpoint state needs an 'epoch' entry; got keys {sorted(state)}")
    os.makedirs(save_dir, exist_ok=True)
    state = dict(state)
    if remove_module_from_keys and isinstance(state.get("state_dict"), Mapping):
        state["state_dict"] = strip_module_prefix(state["state_dict"])
    fpath = os.path.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    try:
        _atomic_write(fpath, lambda f: torch.save(state, f))
    except RuntimeError as exc:  # torch.save wraps a write error (e.g. disk full) in a RuntimeError
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, f"cannot write checkpoint {fpath}: {cause.strerror}; the previous epoch's "
                                       f"checkpoint is kept") from exc
        raise
    print(f"Checkpoint saved to {fpath}")
    _atomic_write(
        os.path.join(save_dir, POINTER_NAME),
        lambda f: f.write(f"{os.path.basename(fpath)}\n"),
        binary=False,
    )
    if is_best:
        best = os.path.join(save_dir, BEST_NAME)
        if os.path.abspath(best) != os.path.abspath(fpath):
            with open(fpath, "rb") as src:
                _atomic_write(best, lambda f: shutil.copyfileobj(src, f))
        print(f'Best checkpoint saved to "{best}"')
    return fpath


def find_resume_file(directory: str) -> Optional[str]:
    """Path of the checkpoint named in ``<directory>/checkpoint``, or None if there is no pointer.

    Raises FileNotFoundError (naming both files) if the pointer names a missing file.
    """
    pointer = os.path.join(directory, POINTER_NAME)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, "r", encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f'checkpoint pointer file "{pointer}" is empty')
    path = os.path.join(directory, lines[0])
    if not os.path.isfile(path):
        raise FileNotFoundError(f'"{pointer}" names "{lines[0]}", but "{path}" does not exist')
    return path
