"""The public Python API: ProMetaR from a notebook or your own training loop, without train.py or an engine.

Every name here is exported by the package itself (``prometar.create_model``, ...) and imported on first use,
so ``import prometar`` stays light. A training loop (README, "Python API")::

    clip_model = prometar.load_clip("ViT-B/16", precision="fp32")
    model = prometar.create_model(clip_model, classnames, learner="IVLP")
    step = prometar.create_step(model, seed=1)
    for images, labels in loader:
        metrics = step(images, labels)
    print(prometar.evaluate(model, test_loader))
    prometar.save_state("prometar.pt", model, step)
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .build import build_prompted_clip, build_step, load_learner_state, pick_device
from .clip_loader import load_clip
from .config import load_cfg
from .engine.evaluator import macro_f1
from .engine.safe_load import load_checkpoint
from .io import atomic_write
from .learners import build_learner
from .meta import GradientModulator, MetaRegularizer, MetaSampler, ProMetaRStep
from .model import PromptedCLIP
from .shipped import TRAINER_SUBDIR, configs_dir

__all__ = ["load_clip", "load_config", "create_model", "create_step", "evaluate", "save_state", "load_state",
           "STATE_FORMAT"]

PathLike = Union[str, "os.PathLike[str]"]
DeviceLike = Union[str, torch.device]
#: The "format" entry of the files `save_state` writes.
STATE_FORMAT = "prometar-state-1"


def load_config(config: PathLike = "vit_b16_c2_ep10_batch4_4+4ctx", opts: Sequence[Any] = (),
                dataset_config: Optional[PathLike] = None) -> Any:
    """A frozen run config (yacs ``CfgNode``) as train.py builds it: Dassl's defaults and ProMetaR's keys, then
    `dataset_config`, then the trainer YAML `config` (a file, or the name of a shipped one such as
    ``"world_ep10_batch4_4+4ctx"``), then `opts` (``["KEY", value, ...]`` as on train.py's command line)."""
    path = Path(config)
    if not path.is_file():
        shipped = configs_dir() / TRAINER_SUBDIR
        path = shipped / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if not path.is_file():
            names = sorted(p.stem for p in shipped.glob("*.yaml"))
            raise FileNotFoundError(f"config {os.fspath(config)!r} is neither a file nor a shipped trainer config; "
                                    f"shipped ({shipped}): {names}")
    return load_cfg(os.fspath(dataset_config) if dataset_config else None, str(path), list(opts))


def create_model(clip_model: Union[nn.Module, PathLike, None] = None, classnames: Sequence[str] = (),
                 learner: Optional[str] = None, *, cfg: Any = None, precision: str = "fp32",
                 amp_dtype: str = "bf16", device: Optional[DeviceLike] = None,
                 **learner_options: Any) -> PromptedCLIP:
    """A prompted CLIP (`PromptedCLIP`: frozen CLIP + a prompt learner + the frozen zero-shot teacher).

    Plain arguments: `clip_model` is a loaded CLIP or a name / path for `load_clip` (loaded with `precision`);
    `learner` a name of `prometar.LEARNERS` (default "IVLP") and `learner_options` its keywords (IVLP:
    n_ctx_text, n_ctx_vision, depth_text, depth_vision, ctx_init); `device` defaults to the CLIP's.
    Or `cfg` (see `load_config`): MODEL.BACKBONE.NAME and TRAINER.PROMETAR as train.py reads them, on `device`
    (default: CUDA, else MPS, else CPU).
    """
    if cfg is not None:
        extra = [n for n, v in (("clip_model", clip_model), ("learner", learner)) if v is not None]
        extra += list(learner_options)
        if extra:
            raise ValueError(f"create_model got a config and the arguments {extra}: give one or the other (the "
                             f"config's MODEL.BACKBONE.NAME and TRAINER.PROMETAR.* choose them)")
        return build_prompted_clip(cfg, classnames, torch.device(device) if device else pick_device(), verbose=False)
    if clip_model is None:
        raise ValueError("create_model needs a CLIP (a model, or a name / path for load_clip) or a config")
    if not isinstance(clip_model, nn.Module):
        clip_model = load_clip(clip_model, device="cpu", precision=precision)
    target = torch.device(device) if device is not None else clip_model.logit_scale.device  # any CLIP family
    prompt_learner = build_learner(learner or "IVLP", clip_model, **learner_options)
    return PromptedCLIP(clip_model.to(target), prompt_learner.to(target), classnames, precision=precision,
                        amp_dtype=amp_dtype)


def create_step(model: PromptedCLIP, cfg: Any = None, *, lr: float = 0.0025, momentum: float = 0.9,
                weight_decay: float = 5e-4, modulator_lr: float = 2.5e-4, adapt_lr: float = 5e-4,
                lr_ratio: float = 5e-4, first_order: bool = False, dim_rate: int = 8, text_weight: float = 50.0,
                image_weight: float = 20.0, mixup_alpha: float = 0.5, mixup_beta: float = 0.5,
                seed: Optional[int] = None, meta_reg: bool = True) -> ProMetaRStep:
    """ProMetaR's training step for `model`: call it with a batch, ``step(images, labels) -> StepMetrics``.

    It holds the gradient modulator (`step.modulator`), the SGD optimiser of the learner (`step.optim`, shared by
    both updates), the modulator's SGD (`step.optim_mod`, same momentum and weight decay) and the meta sampler
    (`seed`: reproducible draws). Defaults are the official configuration (ViT-B/16); the official run never
    steps the modulator's LR schedule, so its modulator trains at the warm-up constant 1e-6: pass
    ``modulator_lr=1e-6`` to match. `meta_reg=False` gives plain cross-entropy training (no modulator).
    Or `cfg` (see `load_config`): OPTIM, OPTIM_VNET, SEED and TRAINER.PROMETAR as both engines read them; the
    optimisers then start at their base LRs (`prometar.build_trainer_parts` also builds the LR schedules).
    LR schedules are the caller's (any ``torch.optim.lr_scheduler`` on `step.optim`).
    """
    options = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, modulator_lr=modulator_lr,
                   adapt_lr=adapt_lr, lr_ratio=lr_ratio, first_order=first_order, dim_rate=dim_rate,
                   text_weight=text_weight, image_weight=image_weight, mixup_alpha=mixup_alpha,
                   mixup_beta=mixup_beta, seed=seed, meta_reg=meta_reg)
    if cfg is not None:
        changed = [k for k, v in options.items() if v != _STEP_DEFAULTS[k]]
        if changed:
            raise ValueError(f"create_step got a config and the arguments {changed}: give one or the other (set "
                             f"them in the config: OPTIM.*, OPTIM_VNET.*, SEED, TRAINER.PROMETAR.*)")
        return build_step(cfg, model, verbose=False)
    learner = model.prompt_learner
    optim = torch.optim.SGD(learner.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    modulator = optim_mod = None
    if meta_reg:
        modulator = GradientModulator.for_learner(learner, dim_rate=dim_rate).to(model.device)
        optim_mod = torch.optim.SGD(modulator.parameters(), lr=modulator_lr, momentum=momentum,
                                    weight_decay=weight_decay)
    return ProMetaRStep(model, modulator, optim, optim_mod, MetaSampler(seed, mixup_alpha, mixup_beta),
                        adapt_lr=adapt_lr, lr_ratio=lr_ratio, first_order=first_order, text_weight=text_weight,
                        image_weight=image_weight, meta_reg=meta_reg)


_STEP_DEFAULTS = {name: p.default for name, p in inspect.signature(create_step).parameters.items()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _device_of(model: Any) -> torch.device:
    if isinstance(model, PromptedCLIP):
        return model.device
    if isinstance(model, nn.Module):
        for tensor in list(model.parameters()) + list(model.buffers()):
            return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: Any, data: Iterable[Any], device: Optional[DeviceLike] = None) -> Dict[str, float]:
    """Accuracy, error rate and macro-F1 (percent) and the sample count (`total`) of a classifier over `data`.

    model: any callable images -> logits (a `PromptedCLIP`, or your own); an `nn.Module` runs in eval mode
    (its mode is restored after). data: batches of (images, labels) or dicts with "img" and "label" (Dassl's
    and this project's loaders). Images go to `device` (default: where the model's parameters are).
    """
    device = torch.device(device) if device is not None else _device_of(model)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    y_true, y_pred = [], []
    try:
        for batch in data:
            images, labels = (batch["img"], batch["label"]) if isinstance(batch, Mapping) else (batch[0], batch[1])
            logits: Tensor = model(images.to(device))
            y_pred.append(logits.argmax(dim=-1).cpu())
            y_true.append(torch.as_tensor(labels).cpu())
    finally:
        if was_training:
            model.train()
    if not y_true:
        raise ValueError("evaluate() got no batches: the data is empty")
    truth, pred = torch.cat(y_true), torch.cat(y_pred)
    accuracy = 100.0 * (truth == pred).double().mean().item()
    return {"accuracy": accuracy, "error_rate": 100.0 - accuracy,
            "macro_f1": 100.0 * macro_f1(truth.tolist(), pred.tolist()), "total": float(truth.numel())}


def save_state(path: PathLike, model: nn.Module, step: Union[ProMetaRStep, MetaRegularizer, None] = None) -> str:
    """Write the trainable state to `path` (atomically; read it back with `load_state`): `model.state_dict()`
    (a `PromptedCLIP`'s holds the prompt learner only, never CLIP) and, with `step`, its state (a `ProMetaRStep`:
    optimisers, modulator, sampler; a `MetaRegularizer`: modulator and sampler). Returns the path."""
    state = {"format": STATE_FORMAT, "model": model.state_dict(),
             "step": step.state_dict() if step is not None else None}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_state(path: PathLike, model: nn.Module, step: Union[ProMetaRStep, MetaRegularizer, None] = None,
               map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a `save_state` file into `model` (and `step`); returns the file's dict. Read with the safe loader (no
    code runs from the file). A `PromptedCLIP` must get exactly its learner's tensors (the error lists missing,
    unexpected and misshapen ones); other modules load with ``load_state_dict(strict=True)``."""
    where = os.fspath(path)
    state = load_checkpoint(where, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f'"{where}" is not a file written by prometar.save_state (expected "format": '
                         f'"{STATE_FORMAT}")')
    if isinstance(model, PromptedCLIP):
        load_learner_state(model, {"state_dict": state["model"]}, strict=True, where=where)
    else:
        model.load_state_dict(state["model"])
    if step is not None:
        if state.get("step") is None:
            raise ValueError(f'"{where}" holds no step state: it was saved without `step`')
        step.load_state_dict(state["step"])
    return state
