"""Gradient modulator M_phi: learns how strongly the regulariser's gradient is added to the task gradient."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..learners import TensorSpec

__all__ = ["GradientModulator"]


class GradientModulator(nn.Module):
    """One two-layer linear net (no bias, no activation in between) per trainable tensor.

    For a tensor whose gradient is g and whose regulariser gradient is g_r, split into blocks of
    `spec.block` consecutive elements (the whole tensor for prompt tokens, as in the official code):
    gate = sigmoid(W2 W1 [g_blk; g_r_blk]) has block / dim_rate values, each repeated dim_rate times
    consecutively, and the modulated gradient is g + gate * g_r. Nets are matched to tensors by position in
    the learner's `tensor_specs()` (or the tensor order of a `MetaRegularizer`), never by parameter names, so
    wrappers (DataParallel, DDP) do not matter. `specs` need only `name` and `block`; block 0 means "not
    modulated" (no net; a tensor no regulariser term acts on keeps g).
    """

    def __init__(self, specs: Sequence[TensorSpec], shapes: Sequence[Sequence[int]], dim_rate: int = 8):
        super().__init__()
        if dim_rate < 1:
            raise ValueError(f"DIM_RATE must be >= 1, got {dim_rate}")
        if len(specs) != len(shapes):
            raise ValueError(f"{len(specs)} tensor specs but {len(shapes)} shapes")
        self.dim_rate = dim_rate
        self.blocks: List[int] = []
        self.nets = nn.ModuleList()
        for spec, shape in zip(specs, shapes):
            if spec.block == 0:
                self.blocks.append(0)
                self.nets.append(nn.Identity())  # keeps the other nets' positions (and state-dict keys)
                continue
            numel = math.prod(shape)
            if numel % spec.block:
                raise ValueError(f"tensor {spec.name!r} of shape {tuple(shape)} does not split into blocks of {spec.block}")
            if spec.block % dim_rate:
                raise ValueError(f"DIM_RATE={dim_rate} must divide the modulator block of tensor {spec.name!r} "
                                 f"({spec.block} elements, shape {tuple(shape)})")
            hidden = spec.block // dim_rate
            self.blocks.append(spec.block)
            self.nets.append(nn.Sequential(nn.Linear(2 * spec.block, hidden, bias=False),
                                           nn.Linear(hidden, hidden, bias=False)))

    @classmethod
    def for_learner(cls, learner: nn.Module, dim_rate: int = 8) -> "GradientModulator":
        """The modulator of a prompt learner: one net per tensor of `learner.tensor_specs()`, in that order."""
        specs = learner.tensor_specs()
        named = dict(learner.named_parameters())
        return cls(specs, [named[s.name].shape for s in specs], dim_rate=dim_rate)

    def gate(self, index: int, grad: Tensor, reg_grad: Tensor) -> Tensor:
        """Gate values for tensor `index`, same shape as `grad`."""
        block = self.blocks[index]
        net = self.nets[index]
        dtype = net[0].weight.dtype
        x = torch.cat([grad.reshape(-1, block), reg_grad.reshape(-1, block)], dim=1).to(dtype)
        gate = torch.sigmoid(net(x)).repeat_interleave(self.dim_rate, dim=-1)
        return gate.reshape(grad.shape)

    def forward(self, grads: Sequence[Tensor],
                reg_grads: Sequence[Optional[Tensor]]) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
        """Modulated gradients g + gate * g_r and the gates (None for a tensor that is not modulated: g as is).
        A missing g_r (None) counts as zeros."""
        if len(grads) != len(self.nets):
            raise ValueError(f"the modulator has {len(self.nets)} nets but got {len(grads)} gradients")
        out, gates = [], []
        for i, (g, g_r) in enumerate(zip(grads, reg_grads)):
            if self.blocks[i] == 0:
                out.append(g)
                gates.append(None)
                continue
            if g_r is None:
                g_r = torch.zeros_like(g)
            gate = self.gate(i, g, g_r)
            out.append(g + gate.to(g.dtype) * g_r)
            gates.append(gate)
        return out, gates
