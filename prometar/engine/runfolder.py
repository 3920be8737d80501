"""The run folder: one object that owns what a train.py ``--output-dir`` is.

Both engines, the sweep, the demo, the report and the exporter ask a :class:`RunFolder`; none decides on its own

* which config made the folder (``config.yaml``) and its fingerprint;
* which keys may differ for which use (:func:`config_diff`):

  - ``"resume"`` — resuming or re-running the folder: only runtime keys (:data:`RUNTIME_KEYS`: output folder,
    data root, loader workers, print frequency, ...);
  - ``"evaluate"`` — loading its model for ``--eval-only`` (also on another dataset: cross-dataset and domain
    generalisation): anything but the keys that change the model (:data:`MODEL_KEYS`: backbone, input size,
    learner, prompt lengths and depths, context words, precision, modulator width, meta-regularisation);

* the lock (:class:`RunLock`: ``flock``, or an exclusive lock file where the file system has no ``flock``);
* the resume point (the newest epoch whose manifest verifies, :mod:`prometar.engine.integrity`) and the
  verified checkpoint an evaluation loads;
* the one "finished" rule (:mod:`prometar.engine.runlog`: the log holds a final accuracy);
* provenance (``provenance.json``: command line, versions, commits, device, seed, the data files read and, for
  an evaluation, the model file loaded).
"""
from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..io import atomic_write_text
from .runlog import read_run

__all__ = ["MODEL_NAME", "MODULATOR_NAME", "USES", "RUNTIME_KEYS", "MODEL_KEYS", "RunFolder", "RunLock", "RunState", "RunFolderBusy", "LockError",
           "ConfigChanged", "flat_config", "config_diff", "model_keys_differ", "fingerprint", "sha256_file",
           "run_record"]

USES = ("resume", "evaluate")
#: Keys that never change what a run computes: they may differ on resume, re-run and evaluation.
RUNTIME_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATALOADER.NUM_WORKERS", "USE_CUDA", "VERBOSE",
                "TRAIN.PRINT_FREQ", "TEST.PER_CLASS_RESULT", "TEST.COMPUTE_CMAT", "TRAINER.PROMETAR.TEXT_CHUNK",
                "TRAINER.PROMETAR.TEXT_CHUNK_MB")
#: Keys (or prefixes ending in ".") that change the trained model: they must be equal to evaluate a folder's model.
MODEL_KEYS = ("MODEL.BACKBONE.", "INPUT.SIZE", "TRAINER.NAME", "TRAINER.PROMETAR.LEARNER",
              "TRAINER.PROMETAR.N_CTX_TEXT", "TRAINER.PROMETAR.N_CTX_VISION", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT",
              "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "TRAINER.PROMETAR.CTX_INIT", "TRAINER.PROMETAR.PREC",
              "TRAINER.PROMETAR.DIM_RATE", "TRAINER.PROMETAR.META_REG")
CONFIG_NAME = "config.yaml"
PROVENANCE_NAME = "provenance.json"
#: Checkpoint folder names of the parts (the official scripts expect `VLPromptLearner`).
MODEL_NAME = "VLPromptLearner"
MODULATOR_NAME = "GradientModulator"
BEST_FILE = "model-best.pth.tar"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


class LockError(RuntimeError):
    """The lock file cannot be used (e.g. ``.lock`` is a folder)."""


class ConfigChanged(RuntimeError):
    """The requested config differs from the folder's ``config.yaml`` in keys that may not differ for the use."""


# ------------------------------------------------------------------------------------------------ configs
def _flatten(node: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def flat_config(source: Any) -> Dict[str, Any]:
    """A config as a flat ``{"A.B.C": value}`` dict (tuples as lists): a yacs CfgNode, a mapping (nested or
    already flat) or the path of a ``config.yaml``."""
    import yaml

    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            return _flatten(yaml.safe_load(f) or {})
    if hasattr(source, "dump"):  # a yacs CfgNode: its YAML is what config.yaml holds
        return _flatten(yaml.safe_load(source.dump()) or {})
    return _flatten(source)


def _is_model_key(key: str) -> bool:
    return any(key.startswith(k) if k.endswith(".") else key == k for k in MODEL_KEYS)


def _compared(key: str, use: str) -> bool:
    if use not in USES:
        raise ValueError(f"use must be one of {', '.join(USES)}, got {use!r}")
    if use == "evaluate":
        return _is_model_key(key)
    return key not in RUNTIME_KEYS


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], use: str) -> List[str]:
    """``KEY: old -> new`` for every key of both flat configs whose values differ and that may not differ for
    ``use`` ("resume" or "evaluate", see the module doc). Keys present on one side only (a Dassl-engine config
    holds a host's extra keys; a newer version may add keys) are not compared."""
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(set(old) & set(new))
            if _compared(k, use) and old[k] != new[k]]


def model_keys_differ(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """The keys that change the model and differ: ``config_diff(old, new, "evaluate")``."""
    return config_diff(old, new, "evaluate")


def _known_keys() -> frozenset:
    """The keys of the built-in config (Dassl v0.6.3's + ProMetaR's): a fingerprint ignores a host's extra keys."""
    global _KNOWN
    if _KNOWN is None:
        from ..config import extend_cfg, get_cfg_default

        _KNOWN = frozenset(flat_config(extend_cfg(get_cfg_default())))
    return _KNOWN


_KNOWN: Optional[frozenset] = None


def fingerprint(config: Any, use: str = "resume", exclude: Sequence[str] = ()) -> str:
    """First 16 hex digits of the SHA-256 of the keys compared for ``use`` (minus ``exclude``, e.g. ``("SEED",)``
    to group the seeds of one report row). Equal fingerprints mean an empty :func:`config_diff` for ``use``; the
    same config gives the same fingerprint on both engines (only the built-in config's keys count)."""
    flat = flat_config(config)  # a flat mapping comes back unchanged
    known = _known_keys()
    kept = {k: v for k, v in flat.items() if k in known and k not in exclude and _compared(k, use)}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sha256_file(path: str) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ lock
_FLOCK_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
if hasattr(errno, "ENOTSUP"):
    _FLOCK_UNSUPPORTED.add(errno.ENOTSUP)


def _holder_text() -> str:
    return f"{socket.gethostname()} {os.getpid()}\n"


def _parse_holder(text: str) -> Tuple[str, Optional[int]]:
    """(host, pid) from a lock file's text: ``host pid`` (this version) or ``pid`` (older versions)."""
    parts = text.split()
    host = parts[0] if len(parts) >= 2 else socket.gethostname()
    try:
        return host, int(parts[-1])
    except (ValueError, IndexError):
        return host, None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Exclusive lock of a run folder: ``fcntl.flock`` on ``<directory>/.lock`` (the kernel drops it when the
    process dies), or, where the file system has no ``flock`` (NFS / Lustre mounted without locks: ENOLCK,
    EOPNOTSUPP), the file created exclusively, holding host and pid; a lock file whose process no longer runs
    on this host is stale and taken over. Refuses (:class:`RunFolderBusy`) naming the holder."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, ".lock")
        self.fd: Optional[int] = None
        self.mode: Optional[str] = None  # "flock" or "file" while held

    def _busy(self, holder: str) -> RunFolderBusy:
        return RunFolderBusy(f'run folder "{self.directory}" is in use by process {holder} (lock "{self.path}"); '
                             f"wait for it to finish or choose another --output-dir")

    def acquire(self) -> "RunLock":
        """Take the lock or raise RunFolderBusy / LockError."""
        if os.path.isdir(self.path):
            raise LockError(f'"{self.path}" is a folder, but a run folder\'s lock must be a file; remove it '
                            f"(rmdir) and run again")
        os.makedirs(self.directory, exist_ok=True)
        existed = os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 256).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno in _FLOCK_UNSUPPORTED:
                if not existed and not holder:  # the empty file this probe created
                    os.remove(self.path)
                return self._acquire_file(note=f"flock unsupported here ({os.strerror(exc.errno)})")
            raise self._busy(" on ".join(reversed(holder.split())) or "?") from None
        os.ftruncate(fd, 0)
        os.write(fd, _holder_text().encode())
        self.fd, self.mode = fd, "flock"
        return self

    def _acquire_file(self, note: str, attempts: int = 3) -> "RunLock":
        """The fallback: create ``.lock`` with O_EXCL; take over a stale one (its pid is gone on this host)."""
        for _ in range(attempts):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._remove_if_stale()
                continue
            os.write(fd, _holder_text().encode())
            os.close(fd)
            self.mode = "file"
            print(f"Note: {note}; locked {self.directory} with an exclusive lock file instead")
            return self
        raise self._busy(self._describe_holder())

    def _read_holder(self) -> str:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _describe_holder(self) -> str:
        host, pid = _parse_holder(self._read_holder())
        where = "" if host == socket.gethostname() else f" on host {host} (if it is gone, delete {self.path})"
        return f"{pid if pid is not None else '?'}{where}"

    def _remove_if_stale(self) -> None:
        raw = self._read_holder()
        if not raw:  # a holder writes right after creating the file: still empty a moment later = left behind
            time.sleep(0.2)
            raw = self._read_holder()
        host, pid = _parse_holder(raw) if raw else (socket.gethostname(), 0)
        if host != socket.gethostname() or pid is None or _pid_alive(pid):
            raise self._busy(self._describe_holder())
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)  # atomic: of several processes taking over, one renames it
        except FileNotFoundError:
            return
        with open(aside, encoding="utf-8", errors="replace") as f:
            if f.read() != raw:  # another process had already replaced it with a live lock: put it back
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
        os.remove(aside)
        print(f"Note: removed the stale lock of process {pid} (no longer running) from {self.directory}")

    def release(self) -> None:
        """Release the lock (the flock file stays; the fallback file is removed if still ours)."""
        if self.mode == "flock" and self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        elif self.mode == "file" and self._read_holder() == _holder_text():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.fd, self.mode = None, None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ------------------------------------------------------------------------------------------------ the folder
@dataclass
class RunState:
    """What a run folder holds: ``finished``, the final ``accuracy`` (None unless finished), the log's
    ``status`` ("ok", "no-log", "no-result", "unfinished") and the ``log`` file it was read from."""

    finished: bool
    accuracy: Optional[float]
    status: str
    log: str


class RunFolder:
    """A train.py ``--output-dir``: config, lock, checkpoints, the finished rule and provenance (module doc)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.config_path = os.path.join(self.path, CONFIG_NAME)
        self.provenance_path = os.path.join(self.path, PROVENANCE_NAME)

    def __repr__(self) -> str:
        return f"RunFolder({self.path!r})"

    # -- config
    def saved_config(self) -> Optional[Dict[str, Any]]:
        """The flat config the folder was made with, or None when it has no ``config.yaml``."""
        if not os.path.isfile(self.config_path):
            return None
        return flat_config(self.config_path)

    def diff(self, cfg: Any, use: str) -> List[str]:
        """Keys of ``cfg`` that differ from the saved config and may not for ``use`` (:func:`config_diff`)."""
        saved = self.saved_config()
        return [] if saved is None else config_diff(saved, flat_config(cfg), use)

    def check(self, cfg: Any, use: str, allow: bool = False, what: str = "") -> None:
        """Raise ConfigChanged listing :meth:`diff` (a warning line instead when ``allow``)."""
        diff = self.diff(cfg, use)
        if not diff:
            return
        what = what or (f'resume the run in "{self.path}"' if use == "resume"
                        else f'evaluate the model in "{self.path}"')
        if allow:
            print(f"Warning: {what} with a config that differs from {self.config_path} (--allow-config-change): "
                  + "; ".join(diff))
            return
        kind = "keys that change the model" if use == "evaluate" else "key(s)"
        raise ConfigChanged(f"refusing to {what}: the requested config differs from {self.config_path} in "
                            f"{len(diff)} {kind}: " + "; ".join(diff) +
                            ". Use the same config, another --output-dir, or --allow-config-change")

    def write_config(self, cfg: Any, has_model: bool) -> None:
        """Write ``config.yaml`` unless the folder already holds a model trained under its own config."""
        from ..config import dump_cfg

        if has_model and os.path.isfile(self.config_path):
            print(f"Keeping {self.config_path}: it describes the checkpoints already in this folder")
            return
        dump_cfg(cfg, self.config_path)

    # -- state
    def state(self, keyword: str = "accuracy") -> RunState:
        """THE finished rule: the log holds a final accuracy (:mod:`prometar.engine.runlog`)."""
        res = read_run(self.path, keyword)
        return RunState(res.ok, res.accuracy, res.status, res.path)

    @property
    def finished(self) -> bool:
        return self.state().finished

    def lock(self) -> RunLock:
        """The folder's (not yet acquired) lock."""
        return RunLock(self.path)

    def move_aside(self) -> str:
        """Rename the folder to ``<path>.changed-<YYYYmmdd-HHMMSS>[-n]`` (never deleted); returns the new path.
        Refuses (RunFolderBusy) while a live run holds its lock."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        target, n = f"{self.path}.changed-{stamp}", 1
        while os.path.exists(target):
            n += 1
            target = f"{self.path}.changed-{stamp}-{n}"
        with self.lock():
            os.rename(self.path, target)
        return target

    # -- checkpoints
    def resume_point(self, names: Iterable[str]) -> Tuple[Optional[int], Optional[Dict[str, str]]]:
        """The newest epoch whose manifest verifies and its part files (see :mod:`prometar.engine.integrity`)."""
        from .integrity import newest_complete_epoch

        return newest_complete_epoch(self.path, names)

    def has_checkpoints(self, names: Iterable[str]) -> bool:
        from .integrity import has_checkpoints

        return has_checkpoints(self.path, names)

    def saved_epochs(self, name: str = MODEL_NAME) -> List[int]:
        """Epochs N with a ``<name>/model.pth.tar-N`` file, ascending."""
        from .integrity import _part_epochs

        return sorted(_part_epochs(self.path, [name]))

    def learner_file(self, epoch: Optional[int] = None) -> str:
        """The learner checkpoint an evaluation of this folder loads: ``VLPromptLearner/model.pth.tar-<epoch>``, or
        ``model-best.pth.tar`` when ``epoch`` is None. FileNotFoundError names what the folder has instead."""
        name = BEST_FILE if epoch is None else f"model.pth.tar-{epoch}"
        path = os.path.join(self.path, MODEL_NAME, name)
        if os.path.isfile(path):
            return path
        have = self.saved_epochs()
        saved = f"epochs saved there: {', '.join(map(str, have))}" if have else "it holds no model.pth.tar-N file"
        if epoch is None:
            hint = (f"{BEST_FILE} is written only by a run with TEST.FINAL_MODEL best_val; pass --load-epoch N "
                    f"({saved})")
        else:
            hint = saved
        raise FileNotFoundError(f'Model not found at "{path}": {hint}')

    def verify_epoch(self, epoch: Union[int, str]) -> None:
        """Raise CheckpointIncomplete when ``epoch`` (a number or ``"best"``) has a manifest whose files do not match
        it (a folder without manifests, e.g. Dassl's or an official one, is accepted as it is)."""
        from .integrity import read_manifest, verify_manifest

        if read_manifest(self.path, epoch) is not None:
            verify_manifest(self.path, epoch)

    # -- provenance
    def provenance(self) -> Dict[str, Any]:
        """``provenance.json`` as a dict (``{"runs": [...]}``), or {} when absent or unreadable."""
        try:
            with open(self.provenance_path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def add_provenance(self, entry: Mapping[str, Any]) -> None:
        """Append one run's record to ``provenance.json`` (rewritten atomically)."""
        data = self.provenance()
        runs = data.get("runs") if isinstance(data.get("runs"), list) else []
        data["runs"] = [*runs, dict(entry)]
        os.makedirs(self.path, exist_ok=True)
        atomic_write_text(self.provenance_path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


# ------------------------------------------------------------------------------------------------ provenance
def _git_commit(folder: str) -> Optional[str]:
    """HEAD of the git checkout holding ``folder`` (``+dirty`` when tracked files changed), or None."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _git_top(folder: str) -> Optional[str]:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return os.path.realpath(out.stdout.strip()) if out.returncode == 0 else None


def run_record(cfg: Any, argv: Sequence[str], engine: str, device: Any, inputs: Mapping[str, str],
               model: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """One run's provenance: command line, versions (prometar, its git commit, the host checkout's commit when
    run from another repository, torch, CUDA, Dassl), engine, device, seed, config fingerprint, the data files
    read with their SHA-256 (``inputs``) and, for an evaluation, the model file loaded (``model``)."""
    import sys

    import torch

    from .. import __version__

    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    own_top, host_top = _git_top(package_dir), _git_top(os.getcwd())
    dassl = sys.modules.get("dassl")
    return {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "argv": list(argv),
            "cwd": os.getcwd(), "engine": engine, "prometar": __version__,
            "prometar_git": _git_commit(package_dir) if own_top else None,
            "host_git": _git_commit(host_top) if host_top and host_top != own_top else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "dassl": getattr(dassl, "__version__", None),
            "device": str(device), "seed": int(cfg.SEED), "fingerprint": fingerprint(cfg),
            "inputs": dict(inputs), "model": dict(model) if model else None}
