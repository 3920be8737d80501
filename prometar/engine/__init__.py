"""Training-engine building blocks shared by the standalone trainer and the Dassl adapter.

Optimisers (:mod:`.optim`), per-epoch LR schedules with Dassl's warm-up (:mod:`.lr`), the stdout
tee (:mod:`.logging`), meters and the progress line (:mod:`.meters`), the classification
evaluator (:mod:`.evaluator`) and checkpoint files (:mod:`.checkpoint`).  Nothing imports Dassl.
The built-in loop (:mod:`.trainer`, :mod:`.runner`) gets its model, optimisers and step from `prometar.build`
only through the interface in :mod:`.parts`, so `build` imports the engine and never the other way round.
"""
from importlib import import_module
from typing import Any

#: Public name -> submodule that defines it; imported on first use, so that the light modules of the package
#: (run folders, log reading) can be imported without torch.
_EXPORTS = {
    "checkpoint_path": "checkpoint", "find_resume_file": "checkpoint", "load_checkpoint": "checkpoint",
    "make_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "strip_module_prefix": "checkpoint",
    "Classification": "evaluator", "build_evaluator": "evaluator",
    "StdoutTee": "logging", "setup_logger": "logging",
    "WarmupLRScheduler": "lr", "build_lr_scheduler": "lr", "lr_table": "lr",
    "AverageMeter": "meters", "MetricMeter": "meters", "format_duration": "meters", "format_progress": "meters",
    "should_print": "meters",
    "build_optimizer": "optim",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
