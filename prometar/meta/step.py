"""ProMetaR on the prompted CLIP: the project's learners as one user of `MetaRegularizer`.

Iteration on a batch (x, y) (`ProMetaRStep`):
1. teacher image features of x, once (no grad);
2. regularised step: g = dCE/dtheta, g_r = dR/dtheta (text term for text tensors, image term for vision
   tensors), plain gradients (no graph); theta <- optimiser step with g + M_phi(g, g_r) * g_r;
3. meta step when the batch holds >= 2 classes: one class is the query, the rest the support;
   theta' = theta - ADAPT_LR * (g_s + M_phi(g_s, g_r,s) * g_r,s) computed functionally, keeping the graph
   (second order, unless first_order); query loss at theta' with mixup of query and support image features
   (lambda ~ Beta, labels mixed); (LR_RATIO * loss).backward() into theta and phi; both optimisers step.

Steps 2 and 3 are `MetaRegularizer`'s (`regularizer.py`); this module supplies its forward function
(`prompted_forward`: the model's prompts, text and image features and logits; the frozen teacher's features as
references) and its parameter groups (`prompted_regularizer`: the learner's `tensor_specs()`, text-side tensors
in the text term, vision-side tensors in the image term).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..learners import TensorSpec
from ..model import PromptedCLIP
from .modulator import GradientModulator
from .regularizer import (ForwardContext, ForwardFn, MetaOutput, MetaRegularizer, MetaTask, StepMetrics, check_finite,
                          term_gradients, term_losses)
from .sampler import MetaSampler

__all__ = ["ProMetaRStep", "MetaSettings", "Batch", "MetaTask", "StepMetrics", "SIDE_TERMS", "prompted_forward",
           "prompted_regularizer", "batch_losses", "split_gradients", "meta_objective"]

#: The regulariser term of each learner side (`TensorSpec.side`); the engines log them as reg_text, reg_image.
SIDE_TERMS = {"text": "text", "vision": "image"}


@dataclass(frozen=True)
class MetaSettings:
    """Hyper-parameters of one iteration (TRAINER.PROMETAR: ADAPT_LR, LR_RATIO, FAST_ADAPTATION,
    TEXT_LOSS_WEIGHT, IMAGE_LOSS_WEIGHT)."""

    adapt_lr: float = 5e-4      # inner (support) step size
    lr_ratio: float = 5e-4      # scale of the query loss before its backward pass
    first_order: bool = False   # detach the inner gradient (no second derivatives)
    text_weight: float = 50.0   # weight of the text-feature regulariser
    image_weight: float = 20.0  # weight of the image-feature regulariser


@dataclass(frozen=True)
class Batch:
    """Images, labels and the teacher's (zero-shot, L2-normalised) image features of the same samples."""

    images: Tensor
    labels: Tensor
    teacher_image: Tensor

    def subset(self, mask: Tensor) -> "Batch":
        """The samples selected by `mask`."""
        return Batch(self.images[mask], self.labels[mask], self.teacher_image[mask])


def prompted_forward(model: PromptedCLIP) -> ForwardFn:
    """The `MetaRegularizer` forward function of a `PromptedCLIP`: inputs are (images, teacher image features);
    terms "text" (class text features vs the teacher's template ensemble) and "image" (image features vs the
    teacher's). The model's own feature functions run, so their precision and memory handling apply."""

    def forward(params: Dict[str, Tensor], inputs: Tuple[Tensor, Tensor], ctx: ForwardContext) -> MetaOutput:
        images, teacher_image = inputs
        prompts = model.prompts(params)
        text = model.text_features(prompts, ctx.second_order)
        image = model.image_features(images, prompts, ctx.second_order)
        logits = model.logits(ctx.mix(image), text)
        if ctx.phase == "query":
            return MetaOutput(logits)
        return MetaOutput(logits, {"text": text, "image": image}, {"text": model.teacher_text, "image": teacher_image})

    return forward


def prompted_regularizer(model: PromptedCLIP, modulator: Optional[GradientModulator] = None,
                         sampler: Optional[MetaSampler] = None, settings: MetaSettings = MetaSettings(),
                         dim_rate: int = 8) -> MetaRegularizer:
    """`MetaRegularizer` over the learner's tensors in `tensor_specs()` order (the modulator's net order), each in
    the term of its side (`SIDE_TERMS`), with `prompted_forward`."""
    specs = []
    for spec in model.prompt_learner.tensor_specs():
        if spec.side not in SIDE_TERMS:
            raise ValueError(f"{type(model.prompt_learner).__name__} tensor {spec.name!r} has side {spec.side!r}; "
                             f"the prompted CLIP's regulariser terms act on the sides {sorted(SIDE_TERMS)}")
        specs.append(TensorSpec(spec.name, SIDE_TERMS[spec.side], spec.block))
    return MetaRegularizer.from_specs(
        prompted_forward(model), specs, dict(model.prompt_learner.named_parameters()),
        weights={"text": settings.text_weight, "image": settings.image_weight}, modulator=modulator,
        dim_rate=dim_rate, sampler=sampler, adapt_lr=settings.adapt_lr, lr_ratio=settings.lr_ratio,
        first_order=settings.first_order)


def batch_losses(model: PromptedCLIP, params: Optional[Mapping[str, Tensor]], batch: Batch, settings: MetaSettings,
                 *, double_diff: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """(CE, text regulariser, image regulariser) of the prompted model on a batch, at the learner's parameters or
    at explicit ones (`params`, by tensor name)."""
    if params is None:
        params = dict(model.prompt_learner.named_parameters())
    out = prompted_forward(model)(dict(params), (batch.images, batch.teacher_image),
                                  ForwardContext("train", double_diff))
    terms = term_losses(out, {"text": settings.text_weight, "image": settings.image_weight})
    return F.cross_entropy(out.logits, batch.labels), terms["text"], terms["image"]


def split_gradients(ce: Tensor, reg_text: Tensor, reg_image: Tensor, params: Sequence[Tensor], sides: Sequence[str],
                    *, create_graph: bool) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
    """Task gradient of every tensor and the regulariser gradient of its side (one gradient call each)."""
    return term_gradients(ce, {"text": reg_text, "vision": reg_image}, params, sides, create_graph=create_graph)


def meta_objective(model: PromptedCLIP, modulator: GradientModulator, params: Mapping[str, Tensor], *,
                   batch: Batch, task: MetaTask, settings: MetaSettings) -> Tensor:
    """Query loss after one modulated inner step on the support (a differentiable function of params and phi).

    params: the learner's trainable tensors by name (every name of `model.prompt_learner.tensor_specs()`).
    """
    regularizer = prompted_regularizer(model, modulator, settings=settings)
    return regularizer.meta_objective(params, (batch.images, batch.teacher_image), batch.labels, task)


class ProMetaRStep:
    """Runs training iterations of ProMetaR (or of the plain learner when `meta_reg=False`).

    optim: optimiser over the learner's parameters (shared by both updates, momentum included, as the
    official code); optim_mod: optimiser over the modulator. Returns per-step metrics. The iteration itself is
    `self.regularizer` (a `MetaRegularizer`, None when `meta_reg=False`).
    """

    def __init__(self, model: PromptedCLIP, modulator: Optional[GradientModulator], optim: torch.optim.Optimizer,
                 optim_mod: Optional[torch.optim.Optimizer], sampler: Optional[MetaSampler] = None, *,
                 adapt_lr: float = 5e-4, lr_ratio: float = 5e-4, first_order: bool = False,
                 text_weight: float = 50.0, image_weight: float = 20.0, meta_reg: bool = True):
        if meta_reg and (modulator is None or optim_mod is None):
            raise ValueError("meta_reg=True needs a GradientModulator and its optimiser")
        self.model, self.modulator, self.optim, self.optim_mod = model, modulator, optim, optim_mod
        self.settings = MetaSettings(adapt_lr=adapt_lr, lr_ratio=lr_ratio, first_order=first_order,
                                     text_weight=text_weight, image_weight=image_weight)
        self.meta_reg = meta_reg
        self._sampler = sampler or MetaSampler()
        self.regularizer = prompted_regularizer(model, modulator, self._sampler, self.settings) if meta_reg else None

    @property
    def sampler(self) -> MetaSampler:
        """The meta step's source of random choices (its state is checkpointed)."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler: MetaSampler) -> None:
        self._sampler = sampler
        if self.regularizer is not None:
            self.regularizer.sampler = sampler

    def __call__(self, images: Tensor, labels: Tensor) -> StepMetrics:
        """One iteration on a batch of images and labels (on the model's device)."""
        if not self.meta_reg:
            return self._plain_step(images, labels)
        teacher_image = self.model.teacher_image_features(images)
        return self.regularizer.step((images, teacher_image), labels, self.optim, self.optim_mod)

    def _plain_step(self, images: Tensor, labels: Tensor) -> StepMetrics:
        prompts = self.model.prompts()
        logits = self.model.logits(self.model.image_features(images, prompts), self.model.text_features(prompts))
        ce = F.cross_entropy(logits, labels)
        check_finite(ce, "cross-entropy")
        self.optim.zero_grad(set_to_none=True)
        ce.backward()
        self.optim.step()
        return StepMetrics(ce=ce.item(), terms={"text": 0.0, "image": 0.0})

    def _regularised_step(self, images: Tensor, labels: Tensor, teacher_image: Tensor) -> StepMetrics:
        return self.regularizer.regularised_step((images, teacher_image), labels, self.optim)

    def state_dict(self) -> Dict[str, Any]:
        """Optimiser, modulator, modulator-optimiser and sampler states (the learner's tensors are the model's)."""
        return {"optim": self.optim.state_dict(), "sampler": self.sampler.state_dict(),
                "modulator": self.modulator.state_dict() if self.modulator is not None else None,
                "optim_mod": self.optim_mod.state_dict() if self.optim_mod is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (a modulator state must match this step's modulator)."""
        if (state.get("modulator") is None) != (self.modulator is None):
            raise ValueError("the saved step and this one differ in meta-regularisation (one has a gradient modulator, "
                             "the other not): build the step with the same meta_reg")
        self.optim.load_state_dict(state["optim"])
        self.sampler.load_state_dict(state["sampler"])
        if self.modulator is not None:
            self.modulator.load_state_dict(state["modulator"])
            self.optim_mod.load_state_dict(state["optim_mod"])
