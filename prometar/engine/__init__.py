"""Training-engine building blocks shared by the standalone trainer and the Dassl adapter.

Optimisers (:mod:`.optim`), per-epoch LR schedules with Dassl's warm-up (:mod:`.lr`), the stdout
tee (:mod:`.logging`), meters and the progress line (:mod:`.meters`), the classification
evaluator (:mod:`.evaluator`) and checkpoint files (:mod:`.checkpoint`).  Nothing imports Dassl.
The built-in loop (:mod:`.trainer`, :mod:`.runner`) gets its model, optimisers and step from `prometar.build`
only through the interface in :mod:`.parts`, so `build` imports the engine and never the other way round.
"""
from .checkpoint import (
    checkpoint_path,
    find_resume_file,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
    strip_module_prefix,
)
from .evaluator import Classification, build_evaluator
from .logging import StdoutTee, setup_logger
from .lr import WarmupLRScheduler, build_lr_scheduler, lr_table
from .meters import AverageMeter, MetricMeter, format_duration, format_progress, should_print
from .optim import build_optimizer

__all__ = [
    "AverageMeter",
    "Classification",
    "MetricMeter",
    "StdoutTee",
    "WarmupLRScheduler",
    "build_evaluator",
    "build_lr_scheduler",
    "build_optimizer",
    "checkpoint_path",
    "find_resume_file",
    "format_duration",
    "format_progress",
    "load_checkpoint",
    "lr_table",
    "make_checkpoint",
    "save_checkpoint",
    "setup_logger",
    "should_print",
    "strip_module_prefix",
]
