"""`train.py` flow on the built-in engine, for runs without Dassl: the same steps as CoOp's `train.py` on Dassl
(config, seed, log file, trainer, then `--eval-only` evaluation or training; see `prometar.dassl.runner`), and
the run-folder steps both engines share (:func:`open_run_folder`, :func:`record_run`, :func:`run_guarded`)."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Callable, Optional

import torch

from .. import __version__
from ..config import load_cfg
from ..data import inputs
from .epochs import TrainingDiverged
from .integrity import CheckpointIncomplete, remove_temp_files
from .logging import setup_logger
from .parts import MODEL_NAME, MODULATOR_NAME, DeviceError, PartsBuilder, announce_device, resolve_device
from .rng import set_random_seed
from .runfolder import ConfigChanged, LockError, RunFolder, RunFolderBusy, RunLock, run_record, sha256_file
from .safe_load import CheckpointLoadError
from .trainer import Trainer

__all__ = ["main", "set_random_seed", "print_args", "open_run_folder", "write_config", "record_run", "model_record",
           "run_guarded", "load_for_eval", "LOAD_ERRORS"]

_PART_NAMES = (MODEL_NAME, MODULATOR_NAME)
#: Errors of loading a trained model for evaluation that end the run with one ERROR line (exit 2), not a traceback.
LOAD_ERRORS = (FileNotFoundError, CheckpointIncomplete, CheckpointLoadError, ValueError, KeyError)


def print_args(args: Any, cfg: Any) -> None:
    """Dassl's header: the CLI arguments sorted by name, then the full config."""
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)


def _system_info(device: torch.device) -> str:
    lines = [f"PyTorch version: {torch.__version__}", f"Python version: {platform.python_version()}",
             f"Platform: {platform.platform()}", f"Device: {device}"]
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    return "\n".join(lines)


def _check_folders(args: Any, cfg: Any) -> None:
    """Refuse (ConfigChanged) to resume a folder, or to evaluate a folder's model, under a config that differs in
    keys that may not differ for that use (:meth:`RunFolder.check`)."""
    allow = bool(getattr(args, "allow_config_change", False))
    remove_temp_files(cfg.OUTPUT_DIR)
    if getattr(args, "eval_only", False):
        if getattr(args, "model_dir", ""):
            RunFolder(args.model_dir).check(cfg, "evaluate", allow)
        return
    folder = RunFolder(cfg.RESUME or cfg.OUTPUT_DIR)
    if folder.has_checkpoints(_PART_NAMES):
        folder.check(cfg, "resume", allow)


def open_run_folder(args: Any, cfg: Any) -> Optional[RunLock]:
    """Lock ``cfg.OUTPUT_DIR`` for this run, check it against the config and write its ``config.yaml``; both
    engines' runners call it. Returns the held lock, or None after printing one ``ERROR:`` line when the folder
    is busy, its lock unusable or its saved config differs (the caller then exits with code 2)."""
    folder = RunFolder(cfg.OUTPUT_DIR)
    lock = folder.lock()
    try:
        lock.acquire()
        _check_folders(args, cfg)
    except (RunFolderBusy, ConfigChanged, LockError) as exc:
        lock.release()
        print(f"ERROR: {exc}")
        return None
    except BaseException:
        lock.release()
        raise
    return lock


def write_config(cfg: Any) -> None:
    """``<OUTPUT_DIR>/config.yaml``, unless the folder holds a model trained under its own config."""
    folder = RunFolder(cfg.OUTPUT_DIR)
    folder.write_config(cfg, has_model=folder.has_checkpoints(_PART_NAMES))


def record_run(args: Any, cfg: Any, engine: str, device: Any) -> None:
    """Append this run's provenance to ``<OUTPUT_DIR>/provenance.json`` (after the data was built: the split and
    few-shot files read are hashed; for ``--eval-only`` the learner file the model was loaded from). ``args``: the
    train.py Namespace (None when a host repository's own train.py drives the trainer)."""
    model = None
    model_dir = getattr(args, "model_dir", "") if getattr(args, "eval_only", False) else ""
    if model_dir:
        model = model_record(model_dir, getattr(args, "load_epoch", None))
    record = run_record(cfg, sys.argv, engine, device, inputs.digests(), model)
    record["args"] = {k: v for k, v in sorted(vars(args).items())} if args is not None else None
    RunFolder(cfg.OUTPUT_DIR).add_provenance(record)


def model_record(model_dir: str, epoch: Optional[int]) -> dict:
    """Which learner file an evaluation loaded: folder, epoch, path and SHA-256."""
    path = RunFolder(model_dir).learner_file(epoch)
    return {"dir": os.path.abspath(model_dir), "epoch": epoch, "file": os.path.abspath(path),
            "sha256": sha256_file(path)}


def run_guarded(body: Callable[[], int]) -> int:
    """Run ``body``; a diverged training (exit 3) or a model that cannot be loaded / a bad ``--device``
    (exit 2) ends with one ``ERROR:`` line instead of a traceback."""
    try:
        return body()
    except TrainingDiverged as exc:
        print(f"ERROR: {exc}")
        return 3
    except DeviceError as exc:
        print(f"ERROR: {exc}")
        return 2


def load_for_eval(trainer: Any, args: Any) -> bool:
    """``trainer.load_model(--model-dir, --load-epoch)``; False after one ``ERROR:`` line naming the folder and
    the problem (missing or unpublished file, tensors that do not fit) when it cannot be loaded."""
    try:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    except LOAD_ERRORS as exc:
        print(f'ERROR: cannot evaluate the model in "{args.model_dir}": {exc}')
        return False
    return True


def main(args: Any, engine_note: str = "Dassl is not installed", *, builder: PartsBuilder) -> int:
    """Run training / evaluation on the built-in engine with the parts `builder` makes (`prometar.build`);
    returns a process exit code."""
    cfg = load_cfg(args.dataset_config_file, args.config_file, args.opts, args=args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    try:
        device = resolve_device(getattr(args, "device", "") or "", cfg.USE_CUDA)
    except DeviceError as exc:
        print(f"ERROR: {exc}")
        return 2
    lock = open_run_folder(args, cfg)
    if lock is None:
        return 2
    tee = setup_logger(cfg.OUTPUT_DIR)
    try:
        return run_guarded(lambda: _run(args, cfg, device, engine_note, builder))
    finally:
        if tee is not None:
            tee.close()
        lock.release()


def _run(args: Any, cfg: Any, device: torch.device, engine_note: str, builder: PartsBuilder) -> int:
    print(f"Engine: built-in (prometar {__version__}; {engine_note})")
    print_args(args, cfg)
    write_config(cfg)
    print("Collecting env info ...")
    print("** System info **\n" + _system_info(device) + "\n")
    announce_device(device)
    print(f"Loading trainer: {cfg.TRAINER.NAME or 'ProMetaR'}")
    inputs.reset()
    trainer = Trainer(cfg, device, builder=builder)
    if args.eval_only:
        if not load_for_eval(trainer, args):
            return 2
        record_run(args, cfg, "builtin", device)
        trainer.test()
        return 0
    record_run(args, cfg, "builtin", device)
    if not args.no_train:
        trainer.train()
    return 0
