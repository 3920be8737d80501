"""Meta-regularisation of any model: the ProMetaR iteration on named parameter groups and a forward function.

`MetaRegularizer` needs two things from its user and nothing else (no parameter names are parsed):

* the trainable tensors, grouped by the regulariser term that acts on them, e.g. ``{"text": {...}, "image": {...}}``
  or ``{"adapter": dict(adapter.named_parameters())}`` (any number of named groups, ``{term: {name: tensor}}``; the
  names are only the keys the forward function receives);
* a forward function ``forward(params, inputs, ctx) -> MetaOutput``: for a batch's `inputs` and a parameter set
  `params` (name -> tensor, for `torch.func.functional_call`) the class logits and, per term, the features that
  the term compares with its frozen reference (and the reference). `ctx` (`ForwardContext`) says which pass runs:
  in the meta step's query pass, `ctx.mix` must be applied to the per-sample features that enter the classifier
  head (feature mixup), and `ctx.second_order` asks for double-differentiable operations.

It then runs ProMetaR's iteration (`MetaRegularizer.step`):

1. regularised step: task gradient g = dCE/dtheta and, per tensor, g_r = d(term of its group)/dtheta, both plain
   gradients (no graph); the learned `GradientModulator` (one net per tensor) gives g + gate * g_r; one optimiser
   step;
2. meta step (batches with >= 2 classes): one class is the query, the rest the support (`MetaSampler`);
   theta' = theta - adapt_lr * (modulated support gradient), functionally, keeping the graph unless `first_order`;
   mixed-up query loss at theta' (per-sample features of each query sample mixed with a drawn support partner,
   lambda ~ Beta, labels mixed); (lr_ratio * loss).backward() reaches theta and the modulator; both optimisers step
   (the parameters' optimiser is the same object in both updates: one shared momentum buffer).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..learners import TensorSpec
from .modulator import GradientModulator
from .sampler import MetaSampler

__all__ = ["MetaRegularizer", "MetaOutput", "ForwardContext", "ForwardFn", "MetaTask", "StepMetrics", "feature_l1",
           "feature_consistency", "term_gradients", "term_losses", "select_rows", "check_finite"]

#: A distance between features and their frozen reference (a scalar loss).
Distance = Callable[[Tensor, Tensor], Tensor]


def feature_l1(features: Tensor, reference: Tensor) -> Tensor:
    """Mean absolute difference between the L2-normalised `features` and `reference`, which is used as given
    (pass it L2-normalised). ProMetaR's feature-consistency distance."""
    return F.l1_loss(F.normalize(features, dim=-1), reference.to(features.dtype))


def feature_consistency(text_feats: Tensor, teacher_text: Tensor, image_feats: Tensor, teacher_image: Tensor,
                        text_weight: float = 50.0, image_weight: float = 20.0) -> Tuple[Tensor, Tensor]:
    """(text term, image term) = weighted mean L1 distances between L2-normalised features.

    `text_feats` / `image_feats` are un-normalised student features; the teacher features are already
    normalised (the official weights are 50 and 20).
    """
    return feature_l1(text_feats, teacher_text) * text_weight, feature_l1(image_feats, teacher_image) * image_weight


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class ForwardContext:
    """What a forward function is told about the pass it runs.

    phase: "train" (regularised step, whole batch), "support" (the meta step's inner step) or "query" (the
    meta step's outer loss; features and references may be left out of the output there).
    second_order: a second derivative will be taken through this pass: use double-differentiable operations
    (the pass already runs with PyTorch's math attention kernel, which has one).
    mix: apply to the per-sample features that enter the classifier head, once; the identity except in the
    query pass, where the inputs hold the query samples then their mix partners and `mix` returns one mixed row
    per query sample.
    """

    phase: str = "train"
    second_order: bool = False
    mix: Callable[[Tensor], Tensor] = _identity


@dataclass
class MetaOutput:
    """A forward function's result: class logits (one row per sample, or per query sample after `ctx.mix`) and,
    per regulariser term, the features it compares and their frozen reference (same term names in both)."""

    logits: Tensor
    features: Mapping[str, Tensor] = field(default_factory=dict)
    references: Mapping[str, Tensor] = field(default_factory=dict)


#: forward(params, inputs, ctx) -> MetaOutput; `params` maps every regularised tensor's name to its value.
ForwardFn = Callable[[Dict[str, Tensor], Any, ForwardContext], MetaOutput]


@dataclass(frozen=True)
class MetaTask:
    """A sampled meta task: `query` is the bool mask of the query samples (the rest is the support); `lam` and
    `partners` are the mixup weight and the support partner index of every query sample."""

    query: Tensor
    lam: Tensor
    partners: Tensor


@dataclass
class StepMetrics:
    """Scalars of one iteration: cross-entropy, each regulariser term, the meta (query) loss, the mean gate and
    whether the meta step ran."""

    ce: float
    terms: Dict[str, float] = field(default_factory=dict)
    meta_loss: float = 0.0
    gate: float = 0.0
    meta_ran: bool = False

    def as_dict(self) -> Dict[str, float]:
        """{"ce", "reg_<term>" for each term, "meta_loss", "gate", "meta"} (what the engines log)."""
        return {"ce": self.ce, **{f"reg_{k}": v for k, v in self.terms.items()}, "meta_loss": self.meta_loss,
                "gate": self.gate, "meta": float(self.meta_ran)}


def select_rows(inputs: Any, index: Tensor) -> Any:
    """The rows `index` (bool mask or integer index) of every tensor in `inputs`: a tensor, or a tuple, list,
    named tuple or mapping of them (nested); other values (None, strings, ...) pass through unchanged."""
    if isinstance(inputs, Tensor):
        return inputs[index]
    if isinstance(inputs, Mapping):
        return {key: select_rows(value, index) for key, value in inputs.items()}
    if isinstance(inputs, tuple) and hasattr(inputs, "_fields"):
        return type(inputs)(*(select_rows(value, index) for value in inputs))
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(select_rows(value, index) for value in inputs)
    return inputs


def term_losses(output: MetaOutput, weights: Mapping[str, float],
                distance: Union[Distance, Mapping[str, Distance]] = feature_l1) -> Dict[str, Tensor]:
    """weight * distance(features, reference) of every term in `output` (weight 1 where `weights` has none)."""
    losses = {}
    for term, feats in output.features.items():
        if term not in output.references:
            raise KeyError(f"the forward function returned features for the term {term!r} but no reference for it "
                           f"(references given: {sorted(output.references)})")
        dist = distance[term] if isinstance(distance, Mapping) else distance
        losses[term] = dist(feats, output.references[term]) * weights.get(term, 1.0)
    return losses


def _grad(loss: Tensor, inputs: List[Tensor], create_graph: bool) -> List[Optional[Tensor]]:
    if not inputs:
        return []
    if not loss.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(loss, inputs, retain_graph=True, create_graph=create_graph, allow_unused=True))


def term_gradients(task_loss: Tensor, losses: Mapping[str, Tensor], params: Sequence[Tensor], terms: Sequence[str],
                   *, create_graph: bool) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
    """Task gradient of every tensor (zeros where unused) and the gradient of its own term, `terms[i]` for
    `params[i]` (None where the term does not reach it, or `terms[i]` is "": no term): one gradient call for the
    task loss and one per term."""
    params = list(params)
    grads = _grad(task_loss, params, create_graph)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    reg: List[Optional[Tensor]] = [None] * len(params)
    for term in dict.fromkeys(t for t in terms if t):  # "" (or None): a tensor no term acts on
        index = [i for i, t in enumerate(terms) if t == term]
        for i, g in zip(index, _grad(losses[term], [params[i] for i in index], create_graph)):
            reg[i] = g
    return grads, reg


def check_finite(loss: Tensor, what: str) -> None:
    """Raise FloatingPointError ("<what> is nan: training diverged") for a non-finite loss."""
    value = loss.detach()
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"{what} is {value.item()}: training diverged")


def module_forward(module: nn.Module, features: Mapping[str, nn.Module],
                   references: Mapping[str, Union[Tensor, Callable[[Any], Tensor]]], mix_at: nn.Module) -> ForwardFn:
    """The forward function of a model used as it is (e.g. a CoOp-family ``CustomCLIP``): ``module(*inputs)``
    (``module(inputs)`` for a non-tuple) returns the logits, run with `params` swapped in by
    `torch.func.functional_call` (so `params` keys are ``module``'s parameter names).

    features: per term, the submodule whose output (of its last call in a forward) is that term's features, taken
    with a forward hook; references: per term, the frozen reference, a tensor or a function of the batch's inputs
    (per-sample references); mix_at: the submodule whose output holds the per-sample features entering the head
    (e.g. ``image_encoder``): in the query pass a forward hook replaces that output by ``ctx.mix(output)``.
    """
    if set(features) != set(references):
        raise KeyError(f"features and references must name the same terms, got {sorted(features)} and "
                       f"{sorted(references)}")

    def capture(store: Dict[str, Tensor], term: str) -> Callable:
        def hook(_module: nn.Module, _args: Any, output: Tensor) -> None:
            store[term] = output
        return hook

    def forward(params: Dict[str, Tensor], inputs: Any, ctx: ForwardContext) -> MetaOutput:
        captured: Dict[str, Tensor] = {}
        query = ctx.phase == "query"
        handles = [] if query else [m.register_forward_hook(capture(captured, t)) for t, m in features.items()]
        if query:
            handles.append(mix_at.register_forward_hook(lambda _m, _a, output: ctx.mix(output)))
        try:
            logits = torch.func.functional_call(module, params, inputs if isinstance(inputs, tuple) else (inputs,))
        finally:
            for handle in handles:
                handle.remove()
        if query:
            return MetaOutput(logits)
        return MetaOutput(logits, captured, {t: r(inputs) if callable(r) else r for t, r in references.items()})

    return forward


def _math_attention() -> contextlib.AbstractContextManager:
    """PyTorch's math kernel for `scaled_dot_product_attention` (and so `nn.MultiheadAttention`): the fused CPU and
    CUDA kernels have no double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False)
    return sdpa_kernel([SDPBackend.MATH])


def _group_specs(groups: Mapping[Optional[str], Mapping[str, Tensor]],
                 blocks: Optional[Mapping[str, int]]) -> Tuple[List[TensorSpec], Dict[str, Tensor]]:
    """Specs (name, term, block) in group order and the tensors by name, from {term: {name: tensor}} (term None:
    "", tensors no regulariser term acts on)."""
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("params must be a non-empty mapping {term: {name: tensor}}, e.g. "
                         "{'adapter': dict(adapter.named_parameters())}")
    specs, named, owner = [], {}, {}
    blocks = dict(blocks or {})
    for term, group in groups.items():
        if not isinstance(group, Mapping):
            raise TypeError(f"params[{term!r}] must map names to tensors (e.g. dict(module.named_parameters())), got "
                            f"{type(group).__name__}")
        for name, tensor in group.items():
            if name in named:
                raise ValueError(f"tensor name {name!r} is in both groups {owner[name]!r} and {term!r}: each tensor "
                                 f"belongs to one regulariser term")
            block = int(blocks.pop(name, tensor.shape[-1] if tensor.dim() else 1))
            specs.append(TensorSpec(name, term or "", block if term is not None else 0))
            named[name], owner[name] = tensor, term
    if not specs:
        raise ValueError("MetaRegularizer needs at least one trainable tensor; every group is empty")
    if blocks:
        raise KeyError(f"blocks names tensors that are in no group: {sorted(blocks)}; tensors: {list(named)}")
    return specs, named


class MetaRegularizer:
    """ProMetaR's meta-regularisation for any model: regularised step, task augmentation, bi-level meta step.

    Args:
        forward: ``forward(params, inputs, ctx) -> MetaOutput`` (see the module docstring and `ForwardContext`).
        params: the trainable tensors grouped by the regulariser term acting on them, ``{term: {name: tensor}}``;
            tensor names are unique across groups and are the keys `forward` receives. The group ``None`` holds
            tensors trained by the task loss alone (e.g. a classifier head): their g_r is zero.
        weights: weight of each term's distance (1 where not given; terms the forward returns without a group of
            tensors are computed and logged only).
        blocks: per tensor name, how many consecutive elements one modulator block gates (default: one row,
            ``shape[-1]``; ProMetaR's prompt learners gate whole prompt tensors); `dim_rate` must divide it. The
            tensors of the ``None`` group are not modulated (no net).
        order: the tensors' names in the order of the modulator's nets (default: group by group).
        distance: ``distance(features, reference)``, or one per term (default `feature_l1`).
        modulator: an existing `GradientModulator` with one net per tensor in this order (default: a new one
            with `dim_rate`, on the tensors' device).
        sampler: the `MetaSampler` of the query class and mixup draws (default: unseeded).
        adapt_lr: inner-step size; lr_ratio: scale of the query loss before its backward pass;
        first_order: detach the inner gradient (no second derivatives).

    The tensors' optimiser and the modulator's optimiser are the caller's (``step(inputs, labels, opt, opt_mod)``);
    build the latter over ``regularizer.modulator.parameters()``.
    """

    def __init__(self, forward: ForwardFn, params: Mapping[Optional[str], Mapping[str, Tensor]], *,
                 weights: Optional[Mapping[str, float]] = None, blocks: Optional[Mapping[str, int]] = None,
                 order: Optional[Sequence[str]] = None, distance: Union[Distance, Mapping[str, Distance]] = feature_l1,
                 modulator: Optional[GradientModulator] = None, dim_rate: int = 8,
                 sampler: Optional[MetaSampler] = None, adapt_lr: float = 5e-4, lr_ratio: float = 5e-4,
                 first_order: bool = False):
        specs, named = _group_specs(params, blocks)
        if order is not None:
            if sorted(order) != sorted(named):
                raise ValueError(f"order must list every tensor once: got {list(order)}, tensors {list(named)}")
            by_name = {s.name: s for s in specs}
            specs = [by_name[name] for name in order]
        frozen = [s.name for s in specs if not named[s.name].requires_grad]
        if frozen:
            raise ValueError(f"tensors {frozen} do not require grad: give only the trainable tensors")
        self.forward = forward
        self.specs = specs
        self.names = [s.name for s in specs]
        self.terms = [s.side for s in specs]
        self.params = [named[n] for n in self.names]
        self.weights = dict(weights or {})
        self.distance = distance
        self.adapt_lr, self.lr_ratio, self.first_order = float(adapt_lr), float(lr_ratio), bool(first_order)
        self.sampler = sampler if sampler is not None else MetaSampler()
        if modulator is None:
            first = self.params[0]
            modulator = GradientModulator(specs, [p.shape for p in self.params], dim_rate=dim_rate).to(
                device=first.device, dtype=torch.promote_types(first.dtype, torch.float32))
        elif modulator.blocks != [s.block for s in specs]:
            raise ValueError(f"the modulator's blocks {modulator.blocks} do not match the tensors' blocks "
                             f"{[s.block for s in specs]} (tensors {self.names})")
        self.modulator = modulator
        self._warned_one_class = False

    @classmethod
    def from_specs(cls, forward: ForwardFn, specs: Sequence[TensorSpec], params: Mapping[str, Tensor],
                   **options: Any) -> "MetaRegularizer":
        """From an ordered list of `TensorSpec` (name, term as `side`, "" for none, block) and the tensors by
        name: the order (and so the modulator's net of each tensor) is the specs' order. `options` as for the
        constructor (but `blocks` and `order`)."""
        groups: Dict[Optional[str], Dict[str, Tensor]] = {}
        for spec in specs:
            if spec.name not in params:
                raise KeyError(f"no tensor given for the spec {spec.name!r}; tensors: {list(params)}")
            groups.setdefault(spec.side or None, {})[spec.name] = params[spec.name]
        return cls(forward, groups, blocks={s.name: s.block for s in specs}, order=[s.name for s in specs], **options)

    # ------------------------------------------------------------------ losses
    def named_params(self) -> Dict[str, Tensor]:
        """The regularised tensors by name (their current values: the parameters themselves)."""
        return dict(zip(self.names, self.params))

    def run(self, params: Mapping[str, Tensor], inputs: Any, ctx: ForwardContext) -> MetaOutput:
        """Call the forward function (under the math attention kernel when `ctx.second_order`)."""
        with _math_attention() if ctx.second_order else contextlib.nullcontext():
            return self.forward(dict(params), inputs, ctx)

    def losses(self, params: Mapping[str, Tensor], inputs: Any, labels: Tensor,
               ctx: ForwardContext = ForwardContext()) -> Tuple[Tensor, Dict[str, Tensor]]:
        """(cross-entropy, {term: weighted distance}) at `params` on a batch."""
        output = self.run(params, inputs, ctx)
        ce = F.cross_entropy(output.logits, labels)
        losses = term_losses(output, self.weights, self.distance)
        missing = [t for t in dict.fromkeys(self.terms) if t and t not in losses]
        if missing:
            raise KeyError(f"the forward function returned no features for the term(s) {missing} of the parameter "
                           f"groups (features returned: {sorted(losses)})")
        return ce, losses

    # ------------------------------------------------------------------ meta objective
    @torch.enable_grad()  # the inner step needs gradients even when the objective is evaluated under no_grad
    def meta_objective(self, params: Mapping[str, Tensor], inputs: Any, labels: Tensor, task: MetaTask) -> Tensor:
        """Query loss after one modulated inner step on the support: a differentiable function of `params` (every
        regularised tensor by name) and the modulator's weights."""
        theta = [params[n] for n in self.names]
        support = ~task.query
        second_order = not self.first_order
        ce, losses = self.losses(dict(zip(self.names, theta)), select_rows(inputs, support), labels[support],
                                 ForwardContext("support", second_order))
        grads, reg = term_gradients(ce, losses, theta, self.terms, create_graph=second_order)
        modulated, _ = self.modulator(grads, reg)
        adapted = {n: p - self.adapt_lr * g for n, p, g in zip(self.names, theta, modulated)}
        return self.query_loss(adapted, inputs, labels, task)

    def query_loss(self, params: Mapping[str, Tensor], inputs: Any, labels: Tensor, task: MetaTask) -> Tensor:
        """Mixed-up query loss at `params`: only the query samples and the support samples drawn as mix partners
        are run; lam * CE(query label) + (1 - lam) * CE(partner label), averaged over the query samples."""
        query, lam, partners = task.query, task.lam, task.partners
        support_rows = (~query).nonzero()[:, 0]
        used, which = torch.unique(partners, return_inverse=True)
        n_query = int(query.sum())
        rows = torch.cat([query.nonzero()[:, 0], support_rows[used]])

        def mix(z: Tensor) -> Tensor:
            w = lam.to(device=z.device, dtype=z.dtype).reshape(-1, *([1] * (z.dim() - 1)))
            return w * z[:n_query] + (1 - w) * z[n_query:][which.to(z.device)]

        logits = self.run(params, select_rows(inputs, rows), ForwardContext("query", False, mix)).logits
        if logits.shape[0] != n_query:
            raise ValueError(f"the forward function returned {logits.shape[0]} rows of logits in the query pass, "
                             f"expected {n_query} (one per query sample): apply ctx.mix to the per-sample features "
                             f"before the classifier head")
        w = lam.to(device=logits.device, dtype=logits.dtype)
        y_query, y_partner = labels[query], labels[~query][partners]
        loss = w * F.cross_entropy(logits, y_query, reduction="none") + \
            (1 - w) * F.cross_entropy(logits, y_partner, reduction="none")
        return loss.mean()

    # ------------------------------------------------------------------ the iteration
    def sample_task(self, labels: Tensor) -> MetaTask:
        """Query class, mixup weights and partners from the sampler (in this order: seeded runs replay)."""
        query = labels == self.sampler.query_class(labels)
        lam, partners = self.sampler.mixup(int(query.sum()), int((~query).sum()), labels.device)
        return MetaTask(query, lam, partners)

    def regularised_step(self, inputs: Any, labels: Tensor, optimizer: torch.optim.Optimizer) -> StepMetrics:
        """theta <- optimizer step with g + gate * g_r (plain gradients, no graph kept)."""
        ce, losses = self.losses(self.named_params(), inputs, labels, ForwardContext("train"))
        check_finite(ce, "cross-entropy")
        grads, reg = term_gradients(ce, losses, self.params, self.terms, create_graph=False)
        with torch.no_grad():
            modulated, gates = self.modulator(grads, reg)
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.params, modulated):
            p.grad = g.to(p.dtype)
        optimizer.step()
        gates = [g.flatten().float() for g in gates if g is not None]
        gate = torch.cat(gates).mean().item() if gates else 0.0
        return StepMetrics(ce=ce.item(), terms={k: v.item() for k, v in losses.items()}, gate=gate)

    def meta_step(self, inputs: Any, labels: Tensor, optimizer: torch.optim.Optimizer,
                  modulator_optimizer: torch.optim.Optimizer) -> float:
        """Sample a task, backpropagate lr_ratio * meta objective into theta and the modulator, step both; returns
        the (unscaled) query loss. Needs >= 2 classes in `labels`."""
        loss = self.meta_objective(self.named_params(), inputs, labels, self.sample_task(labels))
        check_finite(loss, "meta (query) loss")
        optimizer.zero_grad(set_to_none=True)
        modulator_optimizer.zero_grad(set_to_none=True)
        (loss * self.lr_ratio).backward()
        optimizer.step()
        modulator_optimizer.step()
        return loss.item()

    def step(self, inputs: Any, labels: Tensor, optimizer: torch.optim.Optimizer,
             modulator_optimizer: torch.optim.Optimizer) -> StepMetrics:
        """One ProMetaR iteration on a batch: the regularised step, then the meta step when the batch holds at
        least two classes (a one-class batch takes the regularised step only; a note says so once)."""
        metrics = self.regularised_step(inputs, labels, optimizer)
        if torch.unique(labels).numel() >= 2:
            metrics.meta_loss = self.meta_step(inputs, labels, optimizer, modulator_optimizer)
            metrics.meta_ran = True
        elif not self._warned_one_class:
            self._warned_one_class = True
            print(f"Warning: a training batch of {labels.numel()} sample(s) holds a single class, so the meta step "
                  f"is skipped for it (it needs >= 2 classes per batch: one query class, the rest support); only "
                  f"the regularised step runs. If every batch is like this (one training class, or a batch size of "
                  f"1, e.g. DATALOADER.TRAIN_X.BATCH_SIZE 1) the run is not meta-regularised; the logged `meta` is "
                  f"the fraction of batches where the meta step ran. (Shown once per run.)")
        return metrics

    def state_dict(self) -> Dict[str, Any]:
        """The modulator's weights and the sampler's state."""
        return {"modulator": self.modulator.state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.modulator.load_state_dict(state["modulator"])
        self.sampler.load_state_dict(state["sampler"])
