"""The interface between the training engines and `prometar.build`.

Imports go one way: `prometar.build` imports this module (and the engine's optimiser, scheduler and checkpoint
helpers); the engine never imports `prometar.build`. A run's caller (`prometar.launch`) hands the engine a
:class:`PartsBuilder` (the `prometar.build` module itself satisfies it), and the engine calls it once to build
the :class:`TrainerParts` it steps and checkpoints, and again only to load learner weights from a checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Protocol, Sequence

import torch

from ..meta import GradientModulator, ProMetaRStep
from ..model import PromptedCLIP

__all__ = ["TrainerParts", "PartsBuilder", "pick_device", "MODEL_NAME", "MODULATOR_NAME"]

#: Checkpoint folder names (the official scripts expect `VLPromptLearner`).
MODEL_NAME = "VLPromptLearner"
MODULATOR_NAME = "GradientModulator"


def pick_device(use_cuda: bool = True) -> torch.device:
    """CUDA if available (and allowed), else Apple MPS if available, else CPU."""
    if use_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    if use_cuda and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class TrainerParts:
    """Everything a trainer steps and checkpoints.

    model: the `PromptedCLIP`; step: the `ProMetaRStep` (one training iteration per call); the modulator and its
    optimiser / scheduler are None when TRAINER.PROMETAR.META_REG is off.
    """

    model: PromptedCLIP
    optim: torch.optim.Optimizer
    sched: Any
    step: ProMetaRStep
    modulator: Optional[GradientModulator] = None
    optim_mod: Optional[torch.optim.Optimizer] = None
    sched_mod: Any = None
    step_mod_sched: bool = False

    def update_lr(self) -> None:
        """Once per epoch, after the last batch: the prompts' scheduler, and the modulator's when
        TRAINER.PROMETAR.STEP_VNET_SCHED (the official code never steps it)."""
        self.sched.step()
        if self.sched_mod is not None and self.step_mod_sched:
            self.sched_mod.step()


class PartsBuilder(Protocol):
    """What an engine needs from the composition layer (`prometar.build` provides both functions)."""

    def build_trainer_parts(self, cfg: Any, classnames: Sequence[str], device: torch.device,
                            verbose: bool = True) -> TrainerParts:
        """The model, modulator, optimisers, schedulers and step of a frozen config."""

    def load_learner_state(self, model: PromptedCLIP, source: Any, strict: bool = True) -> Dict[str, Any]:
        """Load learner tensors from a checkpoint path or dict into `model`; returns the checkpoint dict."""

    def load_trained_weights(self, model: PromptedCLIP, modulator: Optional[GradientModulator], directory: str,
                             epoch: Optional[int] = None, map_location: Any = None) -> Dict[str, Any]:
        """Strictly load a run folder's learner (and modulator) weights for evaluation."""
