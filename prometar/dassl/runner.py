"""Dassl's ``train.py`` flow with Dassl's own pieces, for ProMetaR (the steps of CoOp's ``train.py``, below).

``main(args)`` takes the Namespace of :func:`prometar.config.build_arg_parser` (the CoOp-family
``train.py`` flags) and runs:

1. config: Dassl's ``get_cfg_default()`` -> :func:`prometar.config.extend_cfg` -> dataset YAML ->
   method YAML -> CLI flags (``reset_cfg``, Dassl's quirks) -> ``opts`` -> freeze;
2. ``SEED >= 0``: ``Setting fixed seed: S`` and Dassl's ``set_random_seed`` (before the log file);
3. Dassl's ``setup_logger(OUTPUT_DIR)``; first log line ``Engine: Dassl <version>``; registration of
   the ProMetaR trainer and the datasets (names already registered are kept); cuDNN benchmark on CUDA;
   arguments, config and environment report as Dassl's ``train.py`` prints them;
4. the trainer (ours built with the ``--device`` device; ``--device cpu`` also sets USE_CUDA False);
   ``--eval-only``: ``load_model(--model-dir, epoch=--load-epoch)`` and ``test()``; else unless ``--no-train``:
   ``train()`` (resume, epochs, checkpoint, final test).

The run-folder steps are the built-in engine's (:mod:`prometar.engine.runner`, on
:class:`prometar.engine.runfolder.RunFolder`): the lock on ``<OUTPUT_DIR>/.lock``, the refusal to resume a
folder under another config or to evaluate a model under a config that changes the model
(``--allow-config-change``), ``config.yaml`` and ``provenance.json``.  Returns 0, 2 (folder busy / config
changed / model cannot be loaded / no such device) or 3 (training diverged).  Unlike a script, ``main`` restores
``sys.stdout`` when it returns, so it can be called several times in one process (each run writes its own log).
"""
from __future__ import annotations

import sys
from typing import Any

from ..config import extend_cfg, merge_file, merge_opts, reset_cfg

__all__ = ["main", "setup_cfg"]


def setup_cfg(args: Any, use_cuda: Any = None):
    """The frozen run config: Dassl defaults + ProMetaR keys, YAMLs, CLI flags, opts; ``use_cuda`` (from
    ``--device``) sets USE_CUDA, which Dassl reads to pick its device."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    extend_cfg(cfg)
    if getattr(args, "dataset_config_file", ""):
        merge_file(cfg, args.dataset_config_file, "dataset config file")
    if getattr(args, "config_file", ""):
        merge_file(cfg, args.config_file, "config file")
    reset_cfg(cfg, args)
    merge_opts(cfg, getattr(args, "opts", None))
    if use_cuda is not None:
        cfg.USE_CUDA = bool(use_cuda)
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


def _build(cfg: Any, device: Any) -> Any:
    """Our trainer built directly (so ``--device`` reaches it); another registered trainer through Dassl."""
    from dassl.engine import TRAINER_REGISTRY, build_trainer

    from .trainer import get_trainer_class

    cls = get_trainer_class()
    if cfg.TRAINER.NAME in TRAINER_REGISTRY.registered_names() and TRAINER_REGISTRY.get(cfg.TRAINER.NAME) is cls:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
        trainer = cls(cfg, device=device)
        trainer.run_folder_managed = True  # this runner locks, checks and records the run folder
        return trainer
    return build_trainer(cfg)


def _run(args: Any, cfg: Any, device: Any) -> int:
    import torch
    import dassl
    from dassl.utils import collect_env_info

    from . import register
    from ..engine.runner import load_for_eval, print_args, record_run, write_config

    print(f"Engine: Dassl {getattr(dassl, '__version__', '?')}")
    register(trainer=True, datasets=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if device.index is not None:
            torch.cuda.set_device(device)
    print_args(args, cfg)
    write_config(cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    trainer = _build(cfg, device)
    if getattr(args, "eval_only", False):
        if not load_for_eval(trainer, args):
            return 2
        record_run(args, cfg, "dassl", trainer.device)
        trainer.test()
        return 0
    record_run(args, cfg, "dassl", trainer.device)
    if not getattr(args, "no_train", False):
        trainer.train()
    return 0


def main(args: Any) -> int:
    """Run Dassl's train.py flow for ``args`` (a ``build_arg_parser()`` Namespace). Returns 0, 2 or 3."""
    from . import _require_dassl

    _require_dassl()
    import torch
    from dassl.utils import set_random_seed, setup_logger

    from ..engine.parts import DeviceError, resolve_device
    from ..engine.runner import open_run_folder, run_guarded

    flag = getattr(args, "device", "") or ""
    try:  # --device cpu forces the CPU (USE_CUDA False); a cuda / mps device must exist here
        device = resolve_device(flag) if flag else None
    except DeviceError as exc:
        print(f"ERROR: {exc}")
        return 2
    cfg = setup_cfg(args, use_cuda=None if device is None else device.type == "cuda")
    if device is None:  # Dassl's own rule: CUDA when available and USE_CUDA, else the CPU
        device = torch.device("cuda" if cfg.USE_CUDA and torch.cuda.is_available() else "cpu")
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    lock = open_run_folder(args, cfg)
    if lock is None:
        return 2
    previous_stdout = sys.stdout
    setup_logger(cfg.OUTPUT_DIR)
    try:
        return run_guarded(lambda: _run(args, cfg, device))
    finally:
        sys.stdout.flush()
        _detach_logger(previous_stdout)
        lock.release()
