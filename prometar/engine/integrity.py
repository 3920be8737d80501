"""Run integrity shared by both engines: per-epoch manifests, the run-folder lock, config comparison.

* A checkpoint epoch is published by ``<OUTPUT_DIR>/manifest-<epoch>.json`` (written last, atomically): it lists
  every part file (path relative to the run folder, size, SHA-256) and the epoch.  Part files without a matching
  manifest are an unfinished save and are never resumed from.
* ``<OUTPUT_DIR>/.lock`` is held with ``fcntl.flock`` while a run writes the folder and holds its pid; the kernel
  drops the lock when the process dies, so a killed run never blocks the next one.
* ``config.yaml`` of a folder is compared with the requested config before resuming or re-evaluating it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

from ..io import TMP_MARK, atomic_write_text

__all__ = ["MANIFEST_PREFIX", "CONFIG_DIFF_IGNORE", "RunLock", "RunFolderBusy", "ConfigChanged", "CheckpointIncomplete",
           "fault_point", "write_manifest", "read_manifest", "verify_manifest", "newest_complete_epoch",
           "remove_temp_files", "nonfinite_tensors", "config_diff", "check_config", "has_checkpoints"]

MANIFEST_PREFIX = "manifest-"
#: Keys that may differ between a saved run and a resume / re-evaluation of it.
CONFIG_DIFF_IGNORE = ("OUTPUT_DIR", "RESUME", "DATASET.SUBSAMPLE_CLASSES", "DATASET.ROOT", "TEST.SPLIT",
                      "TEST.NO_TEST", "TEST.FINAL_MODEL", "DATALOADER.NUM_WORKERS", "DATALOADER.TEST.BATCH_SIZE",
                      "USE_CUDA", "VERBOSE", "TRAIN.PRINT_FREQ", "TRAINER.PROMETAR.TEXT_CHUNK",
                      "TRAINER.PROMETAR.TEXT_CHUNK_MB")
#: Env var for fault-injection tests: ``PROMETAR_FAULT_SAVE_STEP=k`` SIGKILLs the process after save step k.
FAULT_ENV = "PROMETAR_FAULT_SAVE_STEP"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


class ConfigChanged(RuntimeError):
    """The requested config differs from the folder's saved ``config.yaml``."""


class CheckpointIncomplete(RuntimeError):
    """A checkpoint epoch whose parts are missing, mixed or altered."""


def fault_point(step: int) -> None:
    """SIGKILL this process when ``PROMETAR_FAULT_SAVE_STEP`` equals ``step`` (fault-injection tests only)."""
    if os.environ.get(FAULT_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


class RunLock:
    """Exclusive ``fcntl.flock`` on ``<directory>/.lock``; refuses with the holder's pid."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, ".lock")
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunFolderBusy(f'run folder "{os.path.dirname(self.path)}" is in use by process {holder} '
                                f'(lock "{self.path}"); wait for it to finish or choose another --output-dir')
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(directory: str, epoch: int) -> str:
    return os.path.join(directory, f"{MANIFEST_PREFIX}{epoch}.json")


def write_manifest(directory: str, epoch: int, files: Iterable[str]) -> str:
    """Publish ``epoch``: an atomic ``manifest-<epoch>.json`` listing each part (relative path, size, sha256)."""
    parts = {os.path.relpath(p, directory): {"size": os.path.getsize(p), "sha256": _sha256(p)} for p in files}
    return atomic_write_text(manifest_path(directory, epoch),
                             json.dumps({"epoch": int(epoch), "files": parts}, indent=1, sort_keys=True) + "\n")


def read_manifest(directory: str, epoch: int) -> Optional[dict]:
    path = manifest_path(directory, epoch)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def verify_manifest(directory: str, epoch: int) -> Dict[str, str]:
    """Paths of the parts of ``epoch`` by relative name; raises CheckpointIncomplete naming the bad files."""
    manifest = read_manifest(directory, epoch)
    if manifest is None or int(manifest.get("epoch", -1)) != epoch:
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


def _flat(node: Any, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def config_diff(saved_yaml: str, cfg: Any, ignore: Iterable[str] = CONFIG_DIFF_IGNORE) -> List[str]:
    """``KEY: old -> new`` for every key of both ``saved_yaml`` and ``cfg`` whose values differ.

    Keys in ``ignore`` and keys present on one side only (a Dassl-engine config has more keys than the built-in
    engine's; a newer version may add keys) are not compared."""
    import yaml

    with open(saved_yaml, encoding="utf-8") as f:
        old = _flat(yaml.safe_load(f) or {})
    new = _flat(yaml.safe_load(cfg.dump()))
    ignore = set(ignore)
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(set(old) & set(new)) if k not in ignore and old[k] != new[k]]


def check_config(folder: str, cfg: Any, allow: bool, what: str) -> None:
    """Refuse (ConfigChanged) when ``<folder>/config.yaml`` differs from ``cfg``, unless ``allow``."""
    saved = os.path.join(folder, "config.yaml")
    if not os.path.isfile(saved):
        return
    diff = config_diff(saved, cfg)
    if not diff:
        return
    if allow:
        print(f"Warning: {what} with a config that differs from {saved} (--allow-config-change): " + "; ".join(diff))
        return
    raise ConfigChanged(f"refusing to {what}: the requested config differs from {saved} in "
                        f"{len(diff)} key(s): " + "; ".join(diff) +
                        ". Use the same config, another --output-dir, or --allow-config-change")
