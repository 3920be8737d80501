"""Config -> model, modulator, optimisers, schedulers and the training step (shared by both engines).

This module is the engines' `prometar.engine.parts.PartsBuilder`: it imports the engine's building blocks
(optimisers, schedulers, checkpoint files, `TrainerParts`), and the engine reaches it only through that interface,
so imports run one way (build -> engine).
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch

from .clip_loader import load_clip
from .engine.checkpoint import load_checkpoint
from .engine.lr import build_lr_scheduler
from .engine.optim import build_optimizer
from .engine.parts import MODEL_NAME, MODULATOR_NAME, TrainerParts, pick_device
from .learners import LEARNERS, build_learner, official_to_ivlp_state_dict
from .meta import GradientModulator, MetaSampler, ProMetaRStep
from .model import PromptedCLIP

__all__ = ["TrainerParts", "build_trainer_parts", "build_prompted_clip", "pick_device", "load_learner_state",
           "MODEL_NAME", "MODULATOR_NAME"]

def build_prompted_clip(cfg: Any, classnames: Sequence[str], device: torch.device, verbose: bool = True) -> PromptedCLIP:
    """Load CLIP (MODEL.BACKBONE.NAME), build the learner (TRAINER.PROMETAR.*) and the prompted model."""
    p = cfg.TRAINER.PROMETAR
    if p.PREC not in ("fp16", "fp32", "amp"):
        raise ValueError(f"TRAINER.PROMETAR.PREC must be fp16, fp32 or amp; got {p.PREC!r}")
    if verbose:
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, device="cpu", precision=p.PREC)
    size = tuple(cfg.INPUT.SIZE)
    res = clip_model.visual.input_resolution
    if size[0] != res or size[-1] != res:
        raise ValueError(f"INPUT.SIZE {size} must equal the CLIP input resolution ({res}, {res}) of "
                         f"{cfg.MODEL.BACKBONE.NAME}")
    learner = build_learner(p.LEARNER, clip_model, **LEARNERS[p.LEARNER].options_from(p))
    clip_model = clip_model.to(device)
    learner = learner.to(device)
    if verbose:
        print(f"Building prompted CLIP: {learner.describe()}")
    return PromptedCLIP(clip_model, learner, classnames, precision=p.PREC, amp_dtype=p.AMP_DTYPE)


def build_trainer_parts(cfg: Any, classnames: Sequence[str], device: torch.device, verbose: bool = True) -> TrainerParts:
    """Build the prompted model, the modulator (when META_REG), optimisers, schedulers and the step."""
    p = cfg.TRAINER.PROMETAR
    model = build_prompted_clip(cfg, classnames, device, verbose)
    if cfg.MODEL.INIT_WEIGHTS:
        load_learner_state(model, cfg.MODEL.INIT_WEIGHTS, strict=False)
    optim = build_optimizer(model.prompt_learner, cfg.OPTIM)
    sched = build_lr_scheduler(optim, cfg.OPTIM)
    modulator = optim_mod = sched_mod = None
    if p.META_REG:
        specs = model.prompt_learner.tensor_specs()
        named = dict(model.prompt_learner.named_parameters())
        modulator = GradientModulator(specs, [named[s.name].shape for s in specs], dim_rate=p.DIM_RATE).to(device)
        optim_mod = build_optimizer(modulator, cfg.OPTIM_VNET)
        sched_mod = build_lr_scheduler(optim_mod, cfg.OPTIM_VNET)
        if verbose:
            n = sum(x.numel() for x in modulator.parameters())
            print(f"Gradient modulator: {len(modulator.nets)} nets, {n:,} parameters (DIM_RATE {p.DIM_RATE})")
    sampler = MetaSampler(seed=cfg.SEED if cfg.SEED >= 0 else None, alpha=p.MIXUP_ALPHA, beta=p.MIXUP_BETA)
    step = ProMetaRStep(model, modulator, optim, optim_mod, sampler, adapt_lr=p.ADAPT_LR, lr_ratio=p.LR_RATIO,
                        first_order=p.FAST_ADAPTATION, text_weight=p.TEXT_LOSS_WEIGHT,
                        image_weight=p.IMAGE_LOSS_WEIGHT, meta_reg=p.META_REG)
    return TrainerParts(model, optim, sched, step, modulator, optim_mod, sched_mod, bool(p.STEP_VNET_SCHED))


def _learner_state_from(state: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Learner tensors from our checkpoints (`prompt_learner.*`) or official full-model ones."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if "prompt_learner.ctx" in state or "image_encoder.VPT" in state:  # official IVLP/PromptSRC/ProMetaR file
        return official_to_ivlp_state_dict(state)
    return {k[len("prompt_learner."):]: v for k, v in state.items() if k.startswith("prompt_learner.")}


def load_learner_state(model: PromptedCLIP, source: Any, strict: bool = True) -> Dict[str, Any]:
    """Load learner tensors from a checkpoint path or dict into `model`; shape mismatches raise an error
    naming the tensor, both shapes and the source. Returns the checkpoint dict."""
    checkpoint = load_checkpoint(source) if isinstance(source, str) else source
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    tensors = _learner_state_from(state)
    own = dict(model.prompt_learner.state_dict())
    where = source if isinstance(source, str) else "the checkpoint"
    for key, value in tensors.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"{where}: tensor {key!r} has shape {tuple(value.shape)} but the model "
                             f"({type(model.prompt_learner).__name__}) expects {tuple(own[key].shape)}; check "
                             f"TRAINER.PROMETAR (N_CTX_*, PROMPT_DEPTH_*, LEARNER) and the backbone")
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if strict and (missing or unexpected):
        raise ValueError(f"{where} does not fit the {type(model.prompt_learner).__name__} learner: missing "
                         f"{missing or 'none'}, unexpected {unexpected or 'none'}")
    with torch.no_grad():
        for key, value in tensors.items():
            if key in own:
                own[key].copy_(value.to(own[key].dtype))
    return checkpoint if isinstance(checkpoint, dict) else {}
