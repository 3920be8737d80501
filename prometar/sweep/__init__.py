"""Protocol sweeps: the grid of train.py runs of a protocol on local workers / GPUs or on Slurm.

- :mod:`.state`: whether a run folder is finished (the one rule, shared with `prometar report` and the scripts).
- :mod:`.jobs`: the job lists (base-to-new, cross-dataset / domain generalisation, explicit lists).
- :mod:`.backends`: local worker pool, Slurm and submitit's local executor (through submitit).
- :mod:`.runner`: the driver (skip finished, dependencies, retries, progress, summary JSON).
- :mod:`.cli`: ``prometar sweep``.

Importing this package does not import torch.
"""
from typing import Any

__all__ = ["RunState", "is_finished", "latest_epoch", "run_state"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m prometar.sweep.state` does not import its own module twice.
    if name in __all__:
        from . import state

        return getattr(state, name)
    raise AttributeError(f"module 'prometar.sweep' has no attribute {name!r}")
