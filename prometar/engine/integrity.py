"""Checkpoint integrity shared by both engines: per-epoch manifests and the checks that read them.

A checkpoint epoch is published by ``<OUTPUT_DIR>/manifest-<epoch>.json`` (written last, atomically): it lists
every part file (path relative to the run folder, size, SHA-256) and the epoch.  Part files without a matching
manifest are an unfinished save and are never resumed from.  The best-val set (every part's
``model-best.pth.tar``) is published the same way by ``manifest-best.json``.  The lock and the config rules of a
run folder are in :mod:`prometar.engine.runfolder`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch

from ..io import TMP_MARK, atomic_write_text

__all__ = ["MANIFEST_PREFIX", "BEST_KEY", "CheckpointIncomplete", "fault_point", "write_manifest", "read_manifest",
           "verify_manifest", "newest_complete_epoch", "remove_temp_files", "nonfinite_tensors", "has_checkpoints"]

MANIFEST_PREFIX = "manifest-"
#: Manifest key of the best-val checkpoint set (``manifest-best.json``, publishing every part's model-best file).
BEST_KEY = "best"
#: Env var for fault-injection tests: ``PROMETAR_FAULT_SAVE_STEP=k`` SIGKILLs the process after save step k.
FAULT_ENV = "PROMETAR_FAULT_SAVE_STEP"


class CheckpointIncomplete(RuntimeError):
    """A checkpoint epoch whose parts are missing, mixed or altered."""


def fault_point(step: int) -> None:
    """SIGKILL this process when ``PROMETAR_FAULT_SAVE_STEP`` equals ``step`` (fault-injection tests only)."""
    if os.environ.get(FAULT_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(directory: str, key: Union[int, str]) -> str:
    """``<directory>/manifest-<key>.json`` (key: an epoch number, or ``"best"``)."""
    return os.path.join(directory, f"{MANIFEST_PREFIX}{key}.json")


def write_manifest(directory: str, key: Union[int, str], files: Iterable[str], epoch: Optional[int] = None) -> str:
    """Publish a checkpoint set: an atomic ``manifest-<key>.json`` listing each part (relative path, size, sha256)
    and the epoch it holds (``key`` itself for epoch saves; ``epoch`` for the best-val set)."""
    parts = {os.path.relpath(p, directory): {"size": os.path.getsize(p), "sha256": _sha256(p)} for p in files}
    held = int(key) if epoch is None else int(epoch)
    return atomic_write_text(manifest_path(directory, key),
                             json.dumps({"epoch": held, "files": parts}, indent=1, sort_keys=True) + "\n")


def read_manifest(directory: str, key: Union[int, str]) -> Optional[dict]:
    path = manifest_path(directory, key)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def verify_manifest(directory: str, epoch: Union[int, str]) -> Dict[str, str]:
    """Paths of the parts of ``epoch`` (or of the ``"best"`` set) by relative name; raises CheckpointIncomplete
    naming the bad files."""
    manifest = read_manifest(directory, epoch)
    if manifest is None or (epoch != BEST_KEY and int(manifest.get("epoch", -1)) != epoch):
        raise CheckpointIncomplete(f'no manifest for epoch {epoch} at "{manifest_path(directory, epoch)}"')
    bad = []
    out = {}
    for rel, info in manifest["files"].items():
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            bad.append(f"{path} (missing)")
        elif os.path.getsize(path) != info["size"] or _sha256(path) != info["sha256"]:
            bad.append(f"{path} (not the file epoch {epoch} saved)")
        out[rel] = path
    if bad:
        raise CheckpointIncomplete(f"checkpoint epoch {epoch} is incomplete: {', '.join(bad)}")
    return out


def _manifest_epochs(directory: str) -> List[int]:
    if not os.path.isdir(directory):
        return []
    epochs = []
    for name in os.listdir(directory):
        if name.startswith(MANIFEST_PREFIX) and name.endswith(".json") and TMP_MARK not in name:
            try:
                epochs.append(int(name[len(MANIFEST_PREFIX):-len(".json")]))
            except ValueError:
                pass
    return sorted(epochs, reverse=True)


def _part_epochs(directory: str, names: Iterable[str]) -> Dict[int, List[str]]:
    found: Dict[int, List[str]] = {}
    for name in names:
        folder = os.path.join(directory, name)
        if not os.path.isdir(folder):
            continue
        for f in os.listdir(folder):
            if f.startswith("model.pth.tar-") and TMP_MARK not in f:
                try:
                    found.setdefault(int(f.rsplit("-", 1)[1]), []).append(os.path.join(folder, f))
                except ValueError:
                    pass
    return found


def has_checkpoints(directory: str, names: Iterable[str]) -> bool:
    return bool(_manifest_epochs(directory)) or bool(_part_epochs(directory, names))


def newest_complete_epoch(directory: str, names: Iterable[str]) -> Tuple[Optional[int], Optional[Dict[str, str]]]:
    """The newest epoch whose manifest verifies, and its parts; prints one line per refused newer epoch."""
    names = list(names)
    parts = _part_epochs(directory, names)
    manifests = _manifest_epochs(directory)
    if not manifests and parts:
        legacy = _legacy_epoch(directory, names)
        if legacy is not None:
            return legacy, {os.path.join(n, f"model.pth.tar-{legacy}"): os.path.join(directory, n, f"model.pth.tar-{legacy}")
                            for n in names}
    newest_manifest = manifests[0] if manifests else 0
    for epoch in sorted(parts, reverse=True):
        if epoch > newest_manifest:
            print(f"Refusing unfinished checkpoint epoch {epoch} (no manifest; files: "
                  f"{', '.join(sorted(parts[epoch]))}); falling back to the newest complete epoch")
    for epoch in manifests:
        try:
            files = verify_manifest(directory, epoch)
        except CheckpointIncomplete as exc:
            print(f"Refusing {exc}; falling back to the newest complete epoch")
            continue
        missing = [n for n in names if not any(r.startswith(n + os.sep) for r in files)]
        if missing:
            print(f"Refusing checkpoint epoch {epoch}: manifest lacks {', '.join(missing)}; falling back")
            continue
        return epoch, files
    return None, None


def _legacy_epoch(directory: str, names: List[str]) -> Optional[int]:
    """A folder without any manifest (written by Dassl or an older prometar): the epoch every ``checkpoint``
    pointer names, if they all name the same existing ``model.pth.tar-N``; else None (and a line naming them)."""
    named = {}
    for n in names:
        pointer = os.path.join(directory, n, "checkpoint")
        if os.path.isfile(pointer):
            with open(pointer, encoding="utf-8") as f:
                named[n] = (f.read().strip().splitlines() or [""])[0]
    files = set(named.values())
    if len(named) == len(names) and len(files) == 1:
        name = files.pop()
        if name.startswith("model.pth.tar-") and all(os.path.isfile(os.path.join(directory, n, name)) for n in names):
            epoch = int(name.rsplit("-", 1)[1])
            print(f"Note: no manifest in {directory} (written by Dassl or an older prometar); every checkpoint "
                  f"pointer names {name}, resuming from epoch {epoch}")
            return epoch
    print(f"Refusing checkpoints in {directory}: no manifest and the pointer files disagree "
          f"({', '.join(f'{n}/checkpoint -> {v}' for n, v in sorted(named.items())) or 'none'})")
    return None


def remove_temp_files(directory: str) -> List[str]:
    """Delete temp files left by an interrupted atomic write under ``directory``; returns their paths."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for root, _, files in os.walk(directory):
        for f in files:
            if TMP_MARK in f:
                path = os.path.join(root, f)
                try:
                    os.remove(path)
                    removed.append(path)
                except OSError:
                    pass
    if removed:
        print(f"Removed {len(removed)} leftover temp file(s): {', '.join(removed)}")
    return removed


#: Largest |value| a saved weight may hold (fp16's largest finite value). Trained prompts stay near 0.2; a state
#: past this has diverged even while the loss is still finite (e.g. OPTIM.LR 1e6 drives prompts to ~1e15 before
#: the first NaN), and it could not be cast to CLIP's fp16 weights anyway.
MAX_ABS_VALUE = 65504.0


def nonfinite_tensors(state: Any, prefix: str = "", limit: float = MAX_ABS_VALUE) -> List[str]:
    """Keys of floating tensors (or floats) in a nested state that hold NaN, Inf or a |value| above ``limit``."""
    bad: List[str] = []
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() and state.numel():
            finite = bool(torch.isfinite(state).all())
            if not finite or float(state.detach().abs().max()) > limit:
                bad.append(prefix or "<tensor>")
    elif isinstance(state, dict):
        for k, v in state.items():
            bad += nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k), limit)
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            bad += nonfinite_tensors(v, f"{prefix}[{i}]", limit)
    elif isinstance(state, float) and (not math.isfinite(state) or abs(state) > limit):
        bad.append(prefix)
    return bad
