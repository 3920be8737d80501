"""Optimiser construction from a Dassl-style ``OPTIM`` config block."""
from __future__ import annotations

from typing import Any, Iterable, Union

import torch
import torch.nn as nn

__all__ = ["OPTIMIZERS", "build_optimizer"]

#: Supported values of ``OPTIM.NAME`` (same set as Dassl).
OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")


def _param_groups(model: Union[nn.Module, Iterable[Any]], optim_cfg: Any) -> Any:
    """Parameters to optimise: all of a module's, an explicit iterable, or staged-LR groups."""
    if not optim_cfg.STAGED_LR:
        return model.parameters() if isinstance(model, nn.Module) else model
    if not isinstance(model, nn.Module):
        raise TypeError(
            "OPTIM.STAGED_LR is True, so build_optimizer() needs an nn.Module, "
            f"got {type(model).__name__}"
        )
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    base_params, new_params = [], []
    for name, child in model.named_children():
        (new_params if name in new_layers else base_params).extend(child.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(
    params_or_module: Union[nn.Module, Iterable[Any]], optim_cfg: Any
) -> torch.optim.Optimizer:
    """Build the optimiser named by ``optim_cfg.NAME`` with the block's hyper-parameters.

    ``params_or_module``: an ``nn.Module`` (all its parameters, frozen ones included, as in
    Dassl: SGD skips parameters whose ``.grad`` is None), or an iterable of tensors / param-group
    dicts.  ``sgd`` uses coupled L2 weight decay (torch's SGD), ``radam`` uses torch's RAdam with
    decoupled weight decay (Dassl ships its own RAdam with the same update rule).
    """
    name = optim_cfg.NAME
    if name not in OPTIMIZERS:
        raise ValueError(f"OPTIM.NAME must be one of {list(OPTIMIZERS)}, got {name!r}")
    params = _param_groups(params_or_module, optim_cfg)
    lr = optim_cfg.LR
    wd = optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA
        )
    return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas, decoupled_weight_decay=True)
