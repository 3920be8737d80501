"""ProMetaR: Prompt Learning via Meta-Regularization for CLIP (CVPR 2024), with or without Dassl.

The public Python API (README, "Python API") is exported here and imported on first use, so ``import prometar``
(and ``prometar.config``, ``prometar.data``, ``prometar.dassl``) does not import torch:

* prompted CLIP: `load_clip`, `load_config`, `create_model`, `create_step`, `evaluate`, `save_state`,
  `load_state`, `build_trainer_parts`; `PromptedCLIP`, `ProMetaRStep`, `LEARNERS`, `PromptLearner`,
  `TensorSpec`, `PromptSet`;
* any model: `MetaRegularizer`, `MetaOutput`, `ForwardContext`, `module_forward`, `StepMetrics`, `MetaTask`,
  `GradientModulator`, `MetaSampler`, `feature_l1`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

__version__ = "0.1.0"

#: Public name -> the module defining it.
_EXPORTS = {
    "load_clip": "api", "load_config": "api", "create_model": "api", "create_step": "api", "evaluate": "api",
    "save_state": "api", "load_state": "api", "build_trainer_parts": "build",
    "PromptedCLIP": "model", "ProMetaRStep": "meta", "LEARNERS": "learners", "PromptLearner": "learners",
    "TensorSpec": "learners", "PromptSet": "prompting",
    "MetaRegularizer": "meta", "MetaOutput": "meta", "ForwardContext": "meta", "module_forward": "meta",
    "StepMetrics": "meta", "MetaTask": "meta", "GradientModulator": "meta", "MetaSampler": "meta",
    "feature_l1": "meta",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what static tools see; at run time the names load lazily
    from .api import create_model, create_step, evaluate, load_clip, load_config, load_state, save_state
    from .build import build_trainer_parts
    from .learners import LEARNERS, PromptLearner, TensorSpec
    from .meta import (ForwardContext, GradientModulator, MetaOutput, MetaRegularizer, MetaSampler, MetaTask,
                       ProMetaRStep, StepMetrics, feature_l1, module_forward)
    from .model import PromptedCLIP
    from .prompting import PromptSet
