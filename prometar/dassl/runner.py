"""Dassl's ``train.py`` flow with Dassl's own pieces, for ProMetaR (the steps of CoOp's ``train.py``, below).

``main(args)`` takes the Namespace of :func:`prometar.config.build_arg_parser` (the CoOp-family
``train.py`` flags) and runs:

1. config: Dassl's ``get_cfg_default()`` -> :func:`prometar.config.extend_cfg` -> dataset YAML ->
   method YAML -> CLI flags (``reset_cfg``, Dassl's quirks) -> ``opts`` -> freeze;
2. ``SEED >= 0``: ``Setting fixed seed: S`` and Dassl's ``set_random_seed`` (before the log file);
3. Dassl's ``setup_logger(OUTPUT_DIR)``; first log line ``Engine: Dassl <version>``; registration of
   the ProMetaR trainer and the datasets (names already registered are kept); cuDNN benchmark on CUDA;
   arguments, config and environment report as Dassl's ``train.py`` prints them;
4. Dassl's ``build_trainer(cfg)``; ``--eval-only``: ``load_model(--model-dir, epoch=--load-epoch)`` and
   ``test()``; else unless ``--no-train``: ``train()`` (resume, epochs, checkpoint, final test).

Also: an exclusive lock on ``<OUTPUT_DIR>/.lock`` for the run, refusal to resume / re-evaluate a folder whose
``config.yaml`` differs (``--allow-config-change``), ``config.yaml`` written as the built-in engine writes it.
Returns 0, 2 (folder busy / config changed) or 3 (training diverged).  Other errors propagate as exceptions.  Unlike a script, ``main`` restores ``sys.stdout`` when
it returns, so it can be called several times in one process (each run writes its own log file).
"""
from __future__ import annotations

import sys
from typing import Any

from ..config import extend_cfg, merge_file, merge_opts, reset_cfg

__all__ = ["main", "setup_cfg"]


def setup_cfg(args: Any):
    """The frozen run config: Dassl defaults + ProMetaR keys, YAMLs, CLI flags, opts."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    extend_cfg(cfg)
    if getattr(args, "dataset_config_file", ""):
        merge_file(cfg, args.dataset_config_file, "dataset config file")
    if getattr(args, "config_file", ""):
        merge_file(cfg, args.config_file, "config file")
    reset_cfg(cfg, args)
    merge_opts(cfg, getattr(args, "opts", None))
    cfg.freeze()
    return cfg


class _Inert:
    """Stands in for the console of a detached Dassl ``Logger`` (whose ``close``/``__del__`` close it)."""

    def write(self, msg: str) -> int:
        return len(msg)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _detach_logger(previous: Any) -> None:
    """Put back the stdout that was there before ``setup_logger`` and close the log file only."""
    logger = sys.stdout
    if logger is previous:
        return
    sys.stdout = previous
    log_file = getattr(logger, "file", None)
    if log_file is not None:
        try:
            log_file.flush()
            log_file.close()
        finally:
            logger.file = None
    if hasattr(logger, "console"):
        logger.console = _Inert()


def main(args: Any) -> int:
    """Run Dassl's train.py flow for ``args`` (a ``build_arg_parser()`` Namespace). Returns 0."""
    from . import _require_dassl, register

    _require_dassl()
    import torch
    import dassl
    from dassl.engine import build_trainer
    from dassl.utils import collect_env_info, set_random_seed, setup_logger

    from ..engine.runner import open_run_folder, print_args, write_config
    from ..engine.trainer import TrainingDiverged

    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    lock = open_run_folder(args, cfg)
    if lock is None:
        return 2
    previous_stdout = sys.stdout
    setup_logger(cfg.OUTPUT_DIR)
    try:
        print(f"Engine: Dassl {getattr(dassl, '__version__', '?')}")
        register(trainer=True, datasets=True)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True
        print_args(args, cfg)
        write_config(cfg)
        print("Collecting env info ...")
        print(f"** System info **\n{collect_env_info()}\n")
        trainer = build_trainer(cfg)
        if getattr(args, "eval_only", False):
            trainer.load_model(getattr(args, "model_dir", ""), epoch=getattr(args, "load_epoch", None))
            trainer.test()
            return 0
        if not getattr(args, "no_train", False):
            trainer.train()
        return 0
    except TrainingDiverged as exc:
        print(f"ERROR: {exc}")
        return 3
    finally:
        sys.stdout.flush()
        _detach_logger(previous_stdout)
        lock.release()
