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
from .runfolder import MODEL_NAME, MODULATOR_NAME  # checkpoint folder names

__all__ = ["TrainerParts", "PartsBuilder", "pick_device", "resolve_device", "announce_device", "DeviceError",
           "MODEL_NAME", "MODULATOR_NAME"]



def pick_device(use_cuda: bool = True) -> torch.device:
    """CUDA if available (and allowed), else Apple MPS if available, else CPU."""
    if use_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    if use_cuda and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class DeviceError(ValueError):
    """`--device` names a device this machine does not have."""


def resolve_device(flag: str = "", use_cuda: bool = True) -> torch.device:
    """The device of `--device` (`cpu`, `cuda`, `cuda:N`, `mps`; empty: :func:`pick_device`), refused with a
    DeviceError naming the flag when this machine lacks it (never a silent fall-back to another device)."""
    if not flag:
        return pick_device(use_cuda)
    try:
        device = torch.device(flag)
    except RuntimeError as exc:
        raise DeviceError(f"--device {flag}: not a device name ({exc}); use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DeviceError(f"--device {flag}: CUDA is not available on this machine (torch {torch.__version__}, "
                              f"{build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {flag}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"--device {flag}: Apple MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise DeviceError(f"--device {flag}: unsupported device type {device.type!r}; use cpu, cuda, cuda:N or mps")
    return device


def announce_device(device: torch.device) -> None:
    """One line when several GPUs are visible: which one trains, and why only one."""
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if count > 1:
        index = device.index if device.index is not None else torch.cuda.current_device()
        print(f"Using one GPU (cuda:{index}, {torch.cuda.get_device_name(index)}) of the {count} visible: the "
              f"ProMetaR meta step takes second derivatives, which nn.DataParallel does not support. Choose the GPU "
              f"with --device cuda:N or CUDA_VISIBLE_DEVICES; to use them all, run one job per GPU "
              f"(prometar sweep --gpus 0,1,...)")


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
