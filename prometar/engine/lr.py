"""Per-epoch LR schedules with Dassl's warm-up semantics (cosine / single-step / multi-step per epoch, constant or linear warm-up, stepped once after the epoch's last batch), for current torch.

Dassl wraps a torch scheduler (cosine / StepLR / MultiStepLR) in a warm-up scheduler whose
constructor no longer works on recent torch and whose ``state_dict`` pickles the wrapped scheduler
object.  :class:`WarmupLRScheduler` implements the same LR law in one ``LRScheduler`` subclass:

* epochs ``e < WARMUP_EPOCH`` (when > 0): ``constant`` -> ``WARMUP_CONS_LR``; ``linear`` ->
  ``WARMUP_MIN_LR`` at e = 0, ``base * e / WARMUP_EPOCH`` after;
* then the wrapped schedule takes over at the full base LR.  With ``WARMUP_RECOUNT`` (default) its
  step counter starts at 0; otherwise it starts at ``WARMUP_EPOCH`` (the LR still starts at base,
  and torch's recursive update rules are applied from there, as in Dassl).

Stepped once per epoch.  Construction writes epoch 0's LR (the warm-up LR) into the optimiser.
``state_dict()`` holds only plain numbers, so a checkpoint containing it loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["SCHEDULERS", "WARMUP_TYPES", "WarmupLRScheduler", "build_lr_scheduler", "lr_table"]

#: Supported values of ``OPTIM.LR_SCHEDULER``.
SCHEDULERS = ("single_step", "multi_step", "cosine")
#: Supported values of ``OPTIM.WARMUP_TYPE``.
WARMUP_TYPES = ("linear", "constant")


def _successor_lr(kind: str, start: int, steps: int, base_lr: float, max_epoch: int,
                  step_size: int, milestones: Sequence[int], gamma: float) -> float:
    """LR of the wrapped torch-style scheduler after ``steps`` steps from counter ``start``.

    The wrapped scheduler starts at ``base_lr`` whatever its counter, then applies torch's
    recursive (chainable) update at every step, like the real torch schedulers do in Dassl.
    """
    lr = base_lr
    t_max = float(max_epoch)
    for c in range(start + 1, start + steps + 1):
        if kind == "cosine":
            if (c - 1 - t_max) % (2 * t_max) == 0:
                lr = lr + base_lr * (1 - math.cos(math.pi / t_max)) / 2
            else:
                lr = (1 + math.cos(math.pi * c / t_max)) / (1 + math.cos(math.pi * (c - 1) / t_max)) * lr
        elif kind == "single_step":
            if c % step_size == 0:
                lr = lr * gamma
        else:  # multi_step
            lr = lr * gamma ** sum(1 for m in milestones if m == c)
    return lr


class WarmupLRScheduler(LRScheduler):
    """Dassl's per-epoch LR law (cosine / single_step / multi_step + optional warm-up).

    Args:
        optimizer: the optimiser; its current ``lr`` of each group is the base LR.
        scheduler: one of :data:`SCHEDULERS`.
        max_epoch: ``OPTIM.MAX_EPOCH`` (cosine period; default single-step size).
        stepsize: ``OPTIM.STEPSIZE`` (single_step: last entry, <= 0 means max_epoch;
            multi_step: the milestones).
        gamma: decay factor of the step schedules.
        warmup_epoch: number of warm-up epochs (<= 0: none).
        warmup_type: one of :data:`WARMUP_TYPES`.
        warmup_cons_lr / warmup_min_lr: constant LR / first-epoch LR of linear warm-up.
        warmup_recount: restart the wrapped schedule's counter after warm-up (Dassl default).
        last_epoch: as for torch schedulers (-1 = fresh).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: str = "cosine",
        max_epoch: int = 10,
        stepsize: Any = (-1,),
        gamma: float = 0.1,
        warmup_epoch: int = -1,
        warmup_type: str = "linear",
        warmup_cons_lr: float = 1e-5,
        warmup_min_lr: float = 1e-5,
        warmup_recount: bool = True,
        last_epoch: int = -1,
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {list(SCHEDULERS)}, got {scheduler!r}")
        self.scheduler = scheduler
        self.max_epoch = int(max_epoch)
        self.gamma = float(gamma)
        self.step_size = 0
        self.milestones: list[int] = []
        if scheduler == "single_step":
            size = stepsize[-1] if isinstance(stepsize, (list, tuple)) else stepsize
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(
                    f"OPTIM.STEPSIZE for single_step must be an int (or a list ending in one), got {stepsize!r}"
                )
            self.step_size = size if size > 0 else self.max_epoch
            if self.step_size <= 0:
                raise ValueError(f"single_step needs OPTIM.MAX_EPOCH > 0 when STEPSIZE <= 0, got {max_epoch}")
        elif scheduler == "multi_step":
            if not isinstance(stepsize, (list, tuple)):
                raise TypeError(f"OPTIM.STEPSIZE for multi_step must be a list of ints, got {stepsize!r}")
            self.milestones = [int(m) for m in stepsize]
        elif self.max_epoch <= 0:
            raise ValueError(f"cosine needs OPTIM.MAX_EPOCH > 0, got {max_epoch}")
        self.warmup_epoch = int(warmup_epoch) if warmup_epoch > 0 else 0
        if self.warmup_epoch and warmup_type not in WARMUP_TYPES:
            raise ValueError(f"OPTIM.WARMUP_TYPE must be one of {list(WARMUP_TYPES)}, got {warmup_type!r}")
        self.warmup_type = str(warmup_type)
        self.warmup_cons_lr = float(warmup_cons_lr)
        self.warmup_min_lr = float(warmup_min_lr)
        self.warmup_recount = bool(warmup_recount)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int, base_lr: float) -> float:
        """LR used during 0-based ``epoch`` (= after ``epoch`` scheduler steps) for ``base_lr``."""
        w = self.warmup_epoch
        if epoch < w:
            if self.warmup_type == "constant":
                return self.warmup_cons_lr
            return self.warmup_min_lr if epoch == 0 else base_lr * epoch / w
        start = 0 if (self.warmup_recount or not w) else w
        return _successor_lr(self.scheduler, start, epoch - w, base_lr, self.max_epoch,
                             self.step_size, self.milestones, self.gamma)

    def get_lr(self) -> list[float]:
        """LRs for the current ``last_epoch`` (closed over the schedule; no optimiser read)."""
        return [self.lr_at(self.last_epoch, base) for base in self.base_lrs]

    _get_closed_form_lr = get_lr

    def state_dict(self) -> dict[str, Any]:
        """Scheduler state: plain numbers, strings and lists only (no optimiser, no objects)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        if "last_epoch" not in state_dict or "base_lrs" not in state_dict:
            raise KeyError(
                "not a WarmupLRScheduler state (needs 'last_epoch' and 'base_lrs'); "
                f"got keys {sorted(state_dict)}"
            )
        self.__dict__.update(state_dict)


def _schedule_kwargs(optim_cfg: Any) -> dict[str, Any]:
    return dict(
        scheduler=optim_cfg.LR_SCHEDULER,
        max_epoch=optim_cfg.MAX_EPOCH,
        stepsize=optim_cfg.STEPSIZE,
        gamma=optim_cfg.GAMMA,
        warmup_epoch=optim_cfg.WARMUP_EPOCH,
        warmup_type=optim_cfg.WARMUP_TYPE,
        warmup_cons_lr=optim_cfg.WARMUP_CONS_LR,
        warmup_min_lr=optim_cfg.WARMUP_MIN_LR,
        warmup_recount=optim_cfg.WARMUP_RECOUNT,
    )


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> WarmupLRScheduler:
    """Build the per-epoch scheduler described by an ``OPTIM``-style block (Dassl semantics)."""
    return WarmupLRScheduler(optimizer, **_schedule_kwargs(optim_cfg))


def lr_table(optim_cfg: Any, base_lr: Optional[float] = None, num_epochs: Optional[int] = None) -> list[float]:
    """LR of each epoch 0..num_epochs-1 (default MAX_EPOCH) for base ``base_lr`` (default ``LR``)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=optim_cfg.LR if base_lr is None else base_lr)
    sched = build_lr_scheduler(opt, optim_cfg)
    n = optim_cfg.MAX_EPOCH if num_epochs is None else num_epochs
    return [sched.lr_at(e, sched.base_lrs[0]) for e in range(n)]
