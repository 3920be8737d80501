"""Config -> model, modulator, optimisers, schedulers and the training step (shared by both engines).

This module is the engines' `prometar.engine.parts.PartsBuilder`: it imports the engine's building blocks
(optimisers, schedulers, checkpoint files, `TrainerParts`), and the engine reaches it only through that interface,
so imports run one way (build -> engine).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .clip_loader import load_clip
from .engine.checkpoint import load_checkpoint, strip_module_prefix
from .engine.lr import build_lr_scheduler
from .engine.optim import build_optimizer
from .engine.integrity import BEST_KEY
from .engine.parts import MODEL_NAME, MODULATOR_NAME, TrainerParts, pick_device
from .engine.runfolder import RunFolder
from .learners import LEARNERS, build_learner, official_key, official_to_ivlp_state_dict
from .meta import GradientModulator, MetaSampler, ProMetaRStep
from .model import PromptedCLIP
from .towers import backbone_info

__all__ = ["TrainerParts", "build_trainer_parts", "build_prompted_clip", "build_step", "pick_device",
           "load_learner_state", "load_trained_weights", "is_official_state", "state_mismatch", "check_input_config",
           "MODEL_NAME", "MODULATOR_NAME"]


def _differs(have: Sequence[float], want: Sequence[float]) -> bool:
    return len(have) != len(want) or any(abs(float(a) - float(b)) > 1e-6 for a, b in zip(have, want))


def check_input_config(cfg: Any, clip_model: nn.Module) -> None:
    """INPUT.SIZE, and with the `normalize` transform INPUT.PIXEL_MEAN / PIXEL_STD, must be the model's own
    (`prometar.towers.backbone_info`: OpenAI's values, or an open_clip model's preprocessing config). A ValueError
    names every differing key with the config's and the model's value, and the command-line opts that fix them."""
    info = backbone_info(clip_model)
    size = tuple(cfg.INPUT.SIZE)
    wrong = []
    if (size[0], size[-1]) != tuple(info.image_size):
        wrong.append(("INPUT.SIZE", size, tuple(info.image_size), f'"{tuple(info.image_size)}"'))
    if "normalize" in cfg.INPUT.TRANSFORMS:
        for key, want in (("INPUT.PIXEL_MEAN", info.mean), ("INPUT.PIXEL_STD", info.std)):
            have = list(cfg.INPUT[key.split(".")[1]])
            if _differs(have, want):
                wrong.append((key, have, list(want), f'"{list(want)}"'))
    if wrong:
        lines = "; ".join(f"{key} is {have} but the model expects {want}" for key, have, want, _ in wrong)
        fix = " ".join(f"{key} {value}" for key, _, _, value in wrong)
        raise ValueError(f"the input config does not match the CLIP of MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME}: "
                         f"{lines}. Add to the command line (or the config file): {fix}")

def build_prompted_clip(cfg: Any, classnames: Sequence[str], device: torch.device, verbose: bool = True) -> PromptedCLIP:
    """Load CLIP (MODEL.BACKBONE.NAME), build the learner (TRAINER.PROMETAR.*) and the prompted model."""
    p = cfg.TRAINER.PROMETAR
    if p.PREC not in ("fp16", "fp32", "amp"):
        raise ValueError(f"TRAINER.PROMETAR.PREC must be fp16, fp32 or amp; got {p.PREC!r}")
    if verbose:
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, device="cpu", precision=p.PREC)
    check_input_config(cfg, clip_model)
    learner = build_learner(p.LEARNER, clip_model, **LEARNERS[p.LEARNER].options_from(p))
    clip_model = clip_model.to(device)
    learner = learner.to(device)
    if verbose:
        print(f"Building prompted CLIP: {learner.describe()}")
    model = PromptedCLIP(clip_model, learner, classnames, precision=p.PREC, amp_dtype=p.AMP_DTYPE,
                         text_chunk=p.TEXT_CHUNK, text_chunk_mb=p.TEXT_CHUNK_MB)
    if verbose:
        print(model.text_chunks.note)
    return model


def build_step(cfg: Any, model: PromptedCLIP, verbose: bool = True) -> ProMetaRStep:
    """The training step of a config for a built model: the learner's optimiser (OPTIM), the modulator and its
    optimiser (OPTIM_VNET) when META_REG, the meta sampler (SEED, MIXUP_*) and TRAINER.PROMETAR's settings.
    The optimisers start at their base LRs (`build_trainer_parts` adds the config's LR schedules)."""
    p = cfg.TRAINER.PROMETAR
    optim = build_optimizer(model.prompt_learner, cfg.OPTIM)
    modulator = optim_mod = None
    if p.META_REG:
        modulator = GradientModulator.for_learner(model.prompt_learner, dim_rate=p.DIM_RATE).to(model.device)
        optim_mod = build_optimizer(modulator, cfg.OPTIM_VNET)
        if verbose:
            n = sum(x.numel() for x in modulator.parameters())
            print(f"Gradient modulator: {len(modulator.nets)} nets, {n:,} parameters (DIM_RATE {p.DIM_RATE})")
    sampler = MetaSampler(seed=cfg.SEED if cfg.SEED >= 0 else None, alpha=p.MIXUP_ALPHA, beta=p.MIXUP_BETA)
    return ProMetaRStep(model, modulator, optim, optim_mod, sampler, adapt_lr=p.ADAPT_LR, lr_ratio=p.LR_RATIO,
                        first_order=p.FAST_ADAPTATION, text_weight=p.TEXT_LOSS_WEIGHT,
                        image_weight=p.IMAGE_LOSS_WEIGHT, meta_reg=p.META_REG)


def build_trainer_parts(cfg: Any, classnames: Sequence[str], device: torch.device, verbose: bool = True) -> TrainerParts:
    """Build the prompted model, the modulator (when META_REG), optimisers, schedulers and the step."""
    model = build_prompted_clip(cfg, classnames, device, verbose)
    if cfg.MODEL.INIT_WEIGHTS:
        load_learner_state(model, cfg.MODEL.INIT_WEIGHTS, strict=False)
    step = build_step(cfg, model, verbose)
    sched = build_lr_scheduler(step.optim, cfg.OPTIM)
    sched_mod = build_lr_scheduler(step.optim_mod, cfg.OPTIM_VNET) if step.optim_mod is not None else None
    return TrainerParts(model, step.optim, sched, step, step.modulator, step.optim_mod, sched_mod,
                        bool(cfg.TRAINER.PROMETAR.STEP_VNET_SCHED))


def is_official_state(state: Mapping[str, Any]) -> bool:
    """True for a state dict of the official IVLP / PromptSRC / ProMetaR model (whole CustomCLIP)."""
    keys = strip_module_prefix(state)
    return official_key("text.0") in keys or official_key("vision.0") in keys


def _learner_state_from(state: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Learner tensors from our checkpoints (`prompt_learner.*`) or official full-model ones."""
    state = strip_module_prefix(state)
    if is_official_state(state):
        return official_to_ivlp_state_dict(state)
    return {k[len("prompt_learner."):]: v for k, v in state.items() if k.startswith("prompt_learner.")}


def _shape(value: Any) -> Tuple[int, ...]:
    return tuple(getattr(value, "shape", ()))


def state_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any],
                   rename: Optional[Callable[[str], str]] = None) -> List[str]:
    """Lines describing how the tensors `found` in a file differ from those `expected` by a model (names and
    shapes: missing, unexpected, misshapen as expected vs found); empty when they fit exactly. `rename` gives
    a tensor's official name (`official_key`), shown next to ours for official files."""
    def label(key: str) -> str:
        try:
            other = rename(key) if rename is not None else key
        except KeyError:  # a tensor the other layout has no name for
            return key
        return key if other == key else f"{key} (official {other})"

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshapen = [k for k in expected if k in found and _shape(expected[k]) != _shape(found[k])]
    lines = []
    if missing:
        lines.append("missing (in the model, not in the file): " +
                     ", ".join(f"{label(k)} {_shape(expected[k])}" for k in missing))
    if unexpected:
        lines.append("unexpected (in the file, not in the model): " +
                     ", ".join(f"{label(k)} {_shape(found[k])}" for k in unexpected))
    if misshapen:
        lines.append("misshapen (expected vs found): " +
                     ", ".join(f"{label(k)} {_shape(expected[k])} vs {_shape(found[k])}" for k in misshapen))
    return lines


def load_learner_state(model: PromptedCLIP, source: Any, strict: bool = True,
                       where: Optional[str] = None) -> Dict[str, Any]:
    """Load learner tensors from a checkpoint path or dict into `model`; returns the checkpoint dict.

    Our files (`prompt_learner.*`) and official full-model files (prompt tensors mapped by `official_key`) are
    accepted.  `strict`: the file's tensors must be exactly the learner's (names and shapes), else a ValueError
    lists the missing, unexpected and misshapen ones.  Not strict (MODEL.INIT_WEIGHTS): shapes must still agree,
    the common tensors are loaded and a note names the rest.  Errors name the file (`where`, or the path)."""
    checkpoint = load_checkpoint(source) if isinstance(source, str) else source
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, Mapping):
        raise ValueError(f'"{where or source}" holds no state dict (found {type(state).__name__})')
    official = is_official_state(state)
    tensors = _learner_state_from(dict(state))
    own = dict(model.prompt_learner.state_dict())
    where = where or (source if isinstance(source, str) else "the checkpoint")
    learner = type(model.prompt_learner).__name__
    problems = state_mismatch(own, tensors, official_key if official else None)
    shape_problems = [line for line in problems if line.startswith("misshapen")]
    if problems and (strict or shape_problems):
        kind = "an official checkpoint" if official else "a checkpoint"
        raise ValueError(f'"{where}" ({kind}) does not fit this run\'s {learner}:\n  ' + "\n  ".join(
            problems if strict else shape_problems) + "\nCheck TRAINER.PROMETAR (LEARNER, N_CTX_TEXT, N_CTX_VISION, "
            "PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION) and MODEL.BACKBONE.NAME against the run that wrote the file")
    if problems:
        print(f'Note: "{where}" partly fits the {learner}; loaded {len(set(own) & set(tensors))} of {len(own)} '
              f"tensors; " + "; ".join(problems))
    with torch.no_grad():
        for key, value in tensors.items():
            if key in own:
                own[key].copy_(value.to(own[key].dtype))
    return checkpoint if isinstance(checkpoint, dict) else {}


def load_trained_weights(model: PromptedCLIP, modulator: Optional[nn.Module], directory: str,
                         epoch: Optional[int] = None, map_location: Any = None) -> Dict[str, Any]:
    """Eval-time loading of `<directory>/VLPromptLearner/model.pth.tar-<epoch>` (or `model-best.pth.tar`) and,
    when `modulator` is given, the matching `GradientModulator` file; used by both engines' `load_model`.

    The files must be the ones the folder's manifest published (as resume checks them). Strict: the learner file
    must hold exactly the model's tensors (ours or an official full-model file) and the modulator file exactly the
    modulator's.  The one tolerated gap: an official checkpoint has no GradientModulator folder; its prompts load
    and one line says that the modulator starts fresh.  A folder whose modulator file for this epoch is missing,
    or whose two files are from different epochs, is refused.  Returns the learner checkpoint dict ({} when
    `directory` is empty)."""
    if not directory:
        print("Note that load_model() is skipped as no pretrained model is given "
              "(ignore this if it's done on purpose)")
        return {}
    folder = RunFolder(directory)
    path = folder.learner_file(epoch)
    folder.verify_epoch(BEST_KEY if epoch is None else epoch)
    checkpoint = load_checkpoint(path, map_location=map_location)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        checkpoint = {"state_dict": checkpoint}
    load_learner_state(model, checkpoint, strict=True, where=path)
    print(f'Loading weights to {MODEL_NAME} from "{path}" (epoch = {checkpoint.get("epoch", epoch)})')
    if modulator is not None:
        _load_modulator(modulator, directory, os.path.basename(path), checkpoint, path, map_location)
    return checkpoint


def _load_modulator(modulator: nn.Module, directory: str, file_name: str, checkpoint: Dict[str, Any], path: str,
                    map_location: Any) -> None:
    """The `GradientModulator` partner of the learner file `path` (see `load_trained_weights`)."""
    folder = os.path.join(directory, MODULATOR_NAME)
    mod_path = os.path.join(folder, file_name)
    if not os.path.isdir(folder):
        if is_official_state(checkpoint["state_dict"]):
            print(f'"{path}" is an official checkpoint without a {MODULATOR_NAME} folder: prompts loaded, the '
                  f"gradient modulator starts fresh")
            return
        raise FileNotFoundError(
            f'"{directory}" has no {MODULATOR_NAME} folder but this run has a gradient modulator '
            f"(TRAINER.PROMETAR.META_REG True): the checkpoint was trained without one or is incomplete. To evaluate "
            f"a model trained with META_REG False, pass TRAINER.PROMETAR.META_REG False")
    if not os.path.isfile(mod_path):
        raise FileNotFoundError(f'Model not found at "{mod_path}": "{path}" exists but its {MODULATOR_NAME} '
                                f"partner does not (incomplete checkpoint set); pick an epoch saved for both")
    mod = load_checkpoint(mod_path, map_location=map_location)
    mod_state = mod.get("state_dict") if isinstance(mod, dict) else None
    if not isinstance(mod_state, Mapping):
        raise ValueError(f'"{mod_path}" holds no state_dict (found {type(mod).__name__}); expected a '
                         f"{MODULATOR_NAME} checkpoint")
    if isinstance(mod, dict) and mod.get("epoch") is not None and checkpoint.get("epoch") is not None \
            and int(mod["epoch"]) != int(checkpoint["epoch"]):
        raise ValueError(f'"{mod_path}" is from epoch {mod["epoch"]} but "{path}" from epoch '
                         f"{checkpoint['epoch']}: a mixed checkpoint set; pick an epoch saved for both")
    mod_state = strip_module_prefix(mod_state)
    problems = state_mismatch(modulator.state_dict(), mod_state)
    if problems:
        raise ValueError(f'"{mod_path}" does not fit this run\'s {MODULATOR_NAME}:\n  ' + "\n  ".join(problems) +
                         "\nCheck TRAINER.PROMETAR (DIM_RATE, LEARNER, N_CTX_*, PROMPT_DEPTH_*) against the run "
                         "that wrote the file")
    modulator.load_state_dict(mod_state)
    print(f'Loading weights to {MODULATOR_NAME} from "{mod_path}" (epoch = {mod.get("epoch")})')
