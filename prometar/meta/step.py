"""One ProMetaR iteration: the regularised step and the bi-level meta step with task augmentation.

Iteration on a batch (x, y):
1. teacher image features of x, once (no grad);
2. regularised step: g = dCE/dtheta, g_r = dR/dtheta (text term for text tensors, image term for vision
   tensors), plain gradients (no graph); theta <- optimiser step with g + M_phi(g, g_r) * g_r;
3. meta step when the batch holds >= 2 classes: one class is the query, the rest the support;
   theta' = theta - ADAPT_LR * (g_s + M_phi(g_s, g_r,s) * g_r,s) computed functionally, keeping the graph
   (second order, unless first_order); query loss at theta' with mixup of query and support image features
   (lambda ~ Beta, labels mixed); (LR_RATIO * loss).backward() into theta and phi; both optimisers step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import PromptedCLIP
from .modulator import GradientModulator
from .regularizer import feature_consistency
from .sampler import MetaSampler

__all__ = ["ProMetaRStep", "MetaSettings", "Batch", "MetaTask", "batch_losses", "split_gradients", "meta_objective",
           "StepMetrics"]


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
        return Batch(self.images[mask], self.labels[mask], self.teacher_image[mask])


@dataclass(frozen=True)
class MetaTask:
    """A sampled meta task: `query` is the bool mask of the query samples (the rest is the support); `lam` and
    `partners` are the mixup weight and the support partner index of every query sample."""

    query: Tensor
    lam: Tensor
    partners: Tensor


@dataclass
class StepMetrics:
    ce: float
    reg_text: float = 0.0
    reg_image: float = 0.0
    meta_loss: float = 0.0
    gate: float = 0.0
    meta_ran: bool = False

    def as_dict(self) -> Dict[str, float]:
        return {"ce": self.ce, "reg_text": self.reg_text, "reg_image": self.reg_image,
                "meta_loss": self.meta_loss, "gate": self.gate, "meta": float(self.meta_ran)}


def batch_losses(model: PromptedCLIP, params: Optional[Mapping[str, Tensor]], batch: Batch, settings: MetaSettings,
                 *, double_diff: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """(CE, text regulariser, image regulariser) of the prompted model on a batch, at the learner's parameters or
    at explicit ones (`params`, by tensor name)."""
    prompts = model.prompts(None if params is None else dict(params))
    text = model.text_features(prompts, double_diff)
    image = model.image_features(batch.images, prompts, double_diff)
    ce = F.cross_entropy(model.logits(image, text), batch.labels)
    reg_text, reg_image = feature_consistency(text, model.teacher_text, image, batch.teacher_image,
                                              settings.text_weight, settings.image_weight)
    return ce, reg_text, reg_image


def _grad(loss: Tensor, inputs: List[Tensor], create_graph: bool) -> List[Optional[Tensor]]:
    if not inputs:
        return []
    if not loss.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(loss, inputs, retain_graph=True, create_graph=create_graph, allow_unused=True))


def split_gradients(ce: Tensor, reg_text: Tensor, reg_image: Tensor, params: Sequence[Tensor], sides: Sequence[str],
                    *, create_graph: bool) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
    """Task gradient of every tensor and the regulariser gradient of its side (one gradient call each)."""
    params = list(params)
    grads = _grad(ce, params, create_graph)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    reg: List[Optional[Tensor]] = [None] * len(params)
    for side, term in (("text", reg_text), ("vision", reg_image)):
        index = [i for i, s in enumerate(sides) if s == side]
        for i, g in zip(index, _grad(term, [params[i] for i in index], create_graph)):
            reg[i] = g
    return grads, reg


@torch.enable_grad()  # the inner step needs gradients even when the objective is evaluated under no_grad
def meta_objective(model: PromptedCLIP, modulator: GradientModulator, params: Mapping[str, Tensor], *,
                   batch: Batch, task: MetaTask, settings: MetaSettings) -> Tensor:
    """Query loss after one modulated inner step on the support (a differentiable function of params and phi).

    params: the learner's trainable tensors by name (every name of `model.prompt_learner.tensor_specs()`).
    """
    specs = model.prompt_learner.tensor_specs()
    names, sides = [s.name for s in specs], [s.side for s in specs]
    theta = [params[n] for n in names]
    query, lam, partners = task.query, task.lam, task.partners
    support = ~query
    second_order = not settings.first_order
    ce, reg_text, reg_image = batch_losses(model, dict(zip(names, theta)), batch.subset(support), settings,
                                           double_diff=second_order)
    grads, reg = split_gradients(ce, reg_text, reg_image, theta, sides, create_graph=second_order)
    modulated, _ = modulator(grads, reg)
    adapted = {n: p - settings.adapt_lr * g for n, p, g in zip(names, theta, modulated)}
    prompts = model.prompts(adapted)
    text = model.text_features(prompts)
    # Only the query images and the support images drawn as mix partners are needed at theta'.
    support_images = batch.images[support]
    used, which = torch.unique(partners, return_inverse=True)
    n_query = int(query.sum())
    image = model.image_features(torch.cat([batch.images[query], support_images[used]]), prompts)
    lam = lam.to(image.dtype)
    mixed = lam[:, None] * image[:n_query] + (1 - lam[:, None]) * image[n_query:][which]
    logits = model.logits(mixed, text)
    y_query, y_partner = batch.labels[query], batch.labels[support][partners]
    loss = lam * F.cross_entropy(logits, y_query, reduction="none") + \
        (1 - lam) * F.cross_entropy(logits, y_partner, reduction="none")
    return loss.mean()


class ProMetaRStep:
    """Runs training iterations of ProMetaR (or of the plain learner when `meta_reg=False`).

    optim: optimiser over the learner's parameters (shared by both updates, momentum included, as the
    official code); optim_mod: optimiser over the modulator. Returns per-step metrics.
    """

    def __init__(self, model: PromptedCLIP, modulator: Optional[GradientModulator], optim: torch.optim.Optimizer,
                 optim_mod: Optional[torch.optim.Optimizer], sampler: Optional[MetaSampler] = None, *,
                 adapt_lr: float = 5e-4, lr_ratio: float = 5e-4, first_order: bool = False,
                 text_weight: float = 50.0, image_weight: float = 20.0, meta_reg: bool = True):
        self.model, self.modulator, self.optim, self.optim_mod = model, modulator, optim, optim_mod
        self.sampler = sampler or MetaSampler()
        self.settings = MetaSettings(adapt_lr=adapt_lr, lr_ratio=lr_ratio, first_order=first_order,
                                     text_weight=text_weight, image_weight=image_weight)
        self.meta_reg = meta_reg
        specs = model.prompt_learner.tensor_specs()
        named = dict(model.prompt_learner.named_parameters())
        self.names = [s.name for s in specs]
        self.sides = [s.side for s in specs]
        self.params = [named[n] for n in self.names]
        self._warned_one_class = False
        if meta_reg and (modulator is None or optim_mod is None):
            raise ValueError("meta_reg=True needs a GradientModulator and its optimiser")

    def __call__(self, images: Tensor, labels: Tensor) -> StepMetrics:
        if not self.meta_reg:
            return self._plain_step(images, labels)
        teacher_image = self.model.teacher_image_features(images)
        metrics = self._regularised_step(images, labels, teacher_image)
        if torch.unique(labels).numel() >= 2:
            metrics.meta_loss = self._meta_step(images, labels, teacher_image)
            metrics.meta_ran = True
        elif not self._warned_one_class:
            self._warned_one_class = True
            print(f"Warning: a training batch of {labels.numel()} image(s) holds a single class, so the meta step "
                  f"is skipped for it (it needs >= 2 classes per batch: one query class, the rest support); only "
                  f"the regularised step runs. If every batch is like this (one training class, or "
                  f"DATALOADER.TRAIN_X.BATCH_SIZE 1) the run is not meta-regularised; the logged `meta` is the "
                  f"fraction of batches where the meta step ran. (Shown once per run.)")
        return metrics

    def _plain_step(self, images: Tensor, labels: Tensor) -> StepMetrics:
        prompts = self.model.prompts()
        logits = self.model.logits(self.model.image_features(images, prompts), self.model.text_features(prompts))
        ce = F.cross_entropy(logits, labels)
        _check_finite(ce, "cross-entropy")
        self.optim.zero_grad(set_to_none=True)
        ce.backward()
        self.optim.step()
        return StepMetrics(ce=ce.item())

    def _regularised_step(self, images: Tensor, labels: Tensor, teacher_image: Tensor) -> StepMetrics:
        ce, reg_text, reg_image = batch_losses(self.model, None, Batch(images, labels, teacher_image), self.settings)
        _check_finite(ce, "cross-entropy")
        grads, reg = split_gradients(ce, reg_text, reg_image, self.params, self.sides, create_graph=False)
        with torch.no_grad():
            modulated, gates = self.modulator(grads, reg)
        self.optim.zero_grad(set_to_none=True)
        for p, g in zip(self.params, modulated):
            p.grad = g.to(p.dtype)
        self.optim.step()
        gate = torch.cat([g.flatten().float() for g in gates]).mean().item() if gates else 0.0
        return StepMetrics(ce=ce.item(), reg_text=reg_text.item(), reg_image=reg_image.item(), gate=gate)

    def _meta_step(self, images: Tensor, labels: Tensor, teacher_image: Tensor) -> float:
        query = labels == self.sampler.query_class(labels)
        lam, partners = self.sampler.mixup(int(query.sum()), int((~query).sum()), images.device)
        loss = meta_objective(self.model, self.modulator, dict(zip(self.names, self.params)),
                              batch=Batch(images, labels, teacher_image), task=MetaTask(query, lam, partners),
                              settings=self.settings)
        _check_finite(loss, "meta (query) loss")
        self.optim.zero_grad(set_to_none=True)
        self.optim_mod.zero_grad(set_to_none=True)
        (loss * self.settings.lr_ratio).backward()
        self.optim.step()
        self.optim_mod.step()
        return loss.item()


def _check_finite(loss: Tensor, what: str) -> None:
    value = loss.detach()
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"{what} is {value.item()}: training diverged")
