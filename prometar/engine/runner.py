"""`train.py` flow on the built-in engine, for runs without Dassl: the same steps as CoOp's `train.py` on Dassl
(config, seed, log file, trainer, then `--eval-only` evaluation or training; see `prometar.dassl.runner`)."""
from __future__ import annotations

import os
import platform
import random
from typing import Any, Optional

import numpy as np
import torch

from .. import __version__
from .parts import MODEL_NAME, MODULATOR_NAME, PartsBuilder, pick_device
from ..config import dump_cfg, load_cfg
from .logging import setup_logger
from .integrity import ConfigChanged, RunFolderBusy, RunLock, check_config, has_checkpoints, remove_temp_files
from .trainer import Trainer, TrainingDiverged

__all__ = ["main", "set_random_seed", "print_args"]


def set_random_seed(seed: int) -> None:
    """Seed Python `random`, NumPy and torch (CPU and every CUDA device), like Dassl."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


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


_PART_NAMES = (MODEL_NAME, MODULATOR_NAME)


def prepare_run_folder(args: Any, cfg: Any) -> None:
    """Remove leftover temp files; refuse (ConfigChanged) to resume or re-evaluate a folder under another config."""
    allow = bool(getattr(args, "allow_config_change", False))
    remove_temp_files(cfg.OUTPUT_DIR)
    if getattr(args, "eval_only", False):
        if getattr(args, "model_dir", ""):
            check_config(args.model_dir, cfg, allow, f'evaluate the model in "{args.model_dir}"')
        return
    folder = cfg.RESUME or cfg.OUTPUT_DIR
    if has_checkpoints(folder, _PART_NAMES):
        check_config(folder, cfg, allow, f'resume the run in "{folder}"')


def write_config(cfg: Any) -> None:
    """Write ``<OUTPUT_DIR>/config.yaml`` unless the folder already holds a model trained under its own config."""
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    if os.path.isfile(path) and has_checkpoints(cfg.OUTPUT_DIR, _PART_NAMES):
        print(f"Keeping {path}: it describes the checkpoints already in this folder")
        return
    dump_cfg(cfg, path)


def open_run_folder(args: Any, cfg: Any) -> Optional[RunLock]:
    """Lock ``cfg.OUTPUT_DIR`` for this run and check it (`prepare_run_folder`); both engines' runners call it.

    Returns the held lock, or None after printing one ``ERROR:`` line when the folder is busy or its saved config
    differs (the caller then exits with code 2)."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    lock = RunLock(cfg.OUTPUT_DIR)
    try:
        lock.acquire()
        prepare_run_folder(args, cfg)
    except (RunFolderBusy, ConfigChanged) as exc:
        lock.release()
        print(f"ERROR: {exc}")
        return None
    except BaseException:
        lock.release()
        raise
    return lock


def main(args: Any, engine_note: str = "Dassl is not installed", *, builder: PartsBuilder) -> int:
    """Run training / evaluation on the built-in engine with the parts `builder` makes (`prometar.build`);
    returns a process exit code."""
    cfg = load_cfg(args.dataset_config_file, args.config_file, args.opts, args=args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    lock = open_run_folder(args, cfg)
    if lock is None:
        return 2
    tee = setup_logger(cfg.OUTPUT_DIR)
    try:
        print(f"Engine: built-in (prometar {__version__}; {engine_note})")
        print_args(args, cfg)
        write_config(cfg)
        device = torch.device(args.device) if getattr(args, "device", None) else pick_device(cfg.USE_CUDA)
        print("Collecting env info ...")
        print("** System info **\n" + _system_info(device) + "\n")
        print(f"Loading trainer: {cfg.TRAINER.NAME or 'ProMetaR'}")
        trainer = Trainer(cfg, device, builder=builder)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            trainer.test()
            return 0
        if not args.no_train:
            trainer.train()
        return 0
    except TrainingDiverged as exc:
        print(f"ERROR: {exc}")
        return 3
    finally:
        if tee is not None:
            tee.close()
        lock.release()
