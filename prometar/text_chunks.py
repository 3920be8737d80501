"""Row-chunked features with exact first and second derivatives, in memory bounded by one chunk.

The prompted text features of all classes are one function of the (few, shared) text prompt tensors:
T = f(P), one row per class. Kept as one autograd graph, its activations grow with the number of classes
(about 36 MB per class for ViT-B/16 in fp32 over a ProMetaR iteration). Here the rows are computed in chunks
of classes and no activation is kept between calls:

* forward: each chunk is encoded without a graph; only P is saved;
* backward (the vector-Jacobian product P_bar = J(P)^T T_bar): each chunk is recomputed with a graph and
  differentiated at once, so one chunk's activations are alive at a time. This backward is itself a
  differentiable function of (P, T_bar) (`_ChunkedVJP`), which is what a second-order meta-gradient takes
  through `autograd.grad(..., create_graph=True)`;
* its backward (for cotangents U of P_bar): d<J^T T_bar, U>/dP (the Hessian-vector terms) and
  d<J^T T_bar, U>/dT_bar = J U, again chunk by chunk, with the chunk recomputed on the double-differentiable
  attention path. A third derivative is refused (`once_differentiable`).

The result equals the one-graph computation up to float rounding (rows are computed in other groupings).
`plan_chunks` sorts the classes by prompt length, so each chunk runs only up to its own longest prompt.
The second half of the module picks the chunk size from a memory budget (`resolve_text_chunk`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["RowFn", "ChunkedRows", "chunked_rows", "plan_chunks", "TextChunks", "resolve_text_chunk",
           "text_bytes_per_class", "free_memory_bytes", "AUTO"]

#: `fn(rows, tensors, double_diff) -> features of those rows`: rows is a 1-D index tensor; tensors are the
#: differentiable inputs shared by all rows; double_diff asks for an implementation with second derivatives.
RowFn = Callable[[Tensor, Sequence[Tensor], bool], Tensor]

#: TEXT_CHUNK value asking for the automatic choice.
AUTO = -1


@dataclass(frozen=True)
class ChunkedRows:
    """A row function, the row indices of each chunk, and the total number of rows."""

    fn: RowFn
    chunks: Tuple[Tensor, ...]
    n_rows: int


def plan_chunks(lengths: Tensor, chunk: int) -> Tuple[Tensor, ...]:
    """Row indices in as few chunks of at most `chunk` rows as possible, of equal sizes (+-1), rows sorted by
    `lengths` (so a chunk's rows have similar lengths and a chunk runs only to its own longest one)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    order = torch.sort(lengths, stable=True).indices
    n_chunks = -(-len(order) // chunk)
    return tuple(order.tensor_split(n_chunks))


def chunked_rows(fn: RowFn, chunks: Sequence[Tensor], n_rows: int, tensors: Sequence[Tensor]) -> Tensor:
    """Rows `fn(rows, tensors)` of every chunk put in place: an (n_rows, ...) tensor, differentiable (first and
    second order) with respect to `tensors` while holding one chunk's activations at a time."""
    spec = ChunkedRows(fn, tuple(chunks), n_rows)
    tensors = tuple(tensors)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _ChunkedForward.apply(spec, *tensors)
    with torch.no_grad():
        return _forward_rows(spec, tensors)


def _forward_rows(spec: ChunkedRows, tensors: Sequence[Tensor]) -> Tensor:
    out: Optional[Tensor] = None
    for rows in spec.chunks:
        part = spec.fn(rows, tensors, False)
        if out is None:
            out = part.new_empty((spec.n_rows,) + tuple(part.shape[1:]))
        out.index_copy_(0, rows.to(part.device), part)
    return out


def _leaves(tensors: Sequence[Tensor], need: Sequence[bool]) -> List[Tensor]:
    return [t.detach().requires_grad_(bool(n)) for t, n in zip(tensors, need)]


def _add(total: Optional[Tensor], part: Optional[Tensor]) -> Optional[Tensor]:
    if part is None:
        return total
    return part if total is None else total + part


class _ChunkedForward(torch.autograd.Function):
    """T = rows of `spec.fn` for all chunks; saves only the input tensors."""

    @staticmethod
    def forward(ctx, spec: ChunkedRows, *tensors: Tensor) -> Tensor:
        ctx.spec = spec
        ctx.save_for_backward(*tensors)
        return _forward_rows(spec, tensors)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        tensors = ctx.saved_tensors
        need = tuple(ctx.needs_input_grad[1:])
        grads = _ChunkedVJP.apply(ctx.spec, need, grad_out, *tensors)
        it = iter(grads)
        return (None,) + tuple(next(it) if n else None for n in need)


def _vjp_rows(spec: ChunkedRows, need: Sequence[bool], grad_out: Tensor, tensors: Sequence[Tensor]) -> List[Tensor]:
    """J(P)^T grad_out, one recomputed chunk at a time (first derivatives only: fused attention allowed)."""
    totals: List[Optional[Tensor]] = [None] * sum(need)
    for rows in spec.chunks:
        with torch.enable_grad():
            leaves = _leaves(tensors, need)
            out = spec.fn(rows, leaves, False)
            wrt = [t for t, n in zip(leaves, need) if n]
            grads = torch.autograd.grad(out, wrt, grad_out[rows.to(grad_out.device)].to(out.dtype),
                                        allow_unused=True)
        totals = [_add(t, g) for t, g in zip(totals, grads)]
    return [torch.zeros_like(p) if t is None else t for t, p in zip(totals, [x for x, n in zip(tensors, need) if n])]


class _ChunkedVJP(torch.autograd.Function):
    """(grad_out, P) -> J(P)^T grad_out, differentiable once more (second-order meta-gradients)."""

    @staticmethod
    def forward(ctx, spec: ChunkedRows, need: Tuple[bool, ...], grad_out: Tensor, *tensors: Tensor):
        ctx.spec, ctx.need = spec, need
        ctx.save_for_backward(grad_out, *tensors)
        ctx.set_materialize_grads(False)
        return tuple(_vjp_rows(spec, need, grad_out, tensors))

    @staticmethod
    @once_differentiable
    def backward(ctx, *cotangents: Optional[Tensor]):
        grad_out, *tensors = ctx.saved_tensors
        need_p = [bool(n) and w for n, w in zip(ctx.need, ctx.needs_input_grad[3:])]
        d_out, d_tensors = _vjp_backward_rows(ctx.spec, ctx.need, need_p, ctx.needs_input_grad[2], grad_out,
                                              tensors, cotangents)
        return (None, None, d_out) + tuple(d_tensors)


def _vjp_backward_rows(spec: ChunkedRows, need: Sequence[bool], need_p: Sequence[bool], need_out: bool,
                       grad_out: Tensor, tensors: Sequence[Tensor], cotangents: Sequence[Optional[Tensor]]):
    """For s = <J(P)^T grad_out, U>: ds/dgrad_out = J(P) U (rows) and ds/dP, one recomputed chunk at a time."""
    d_out = torch.zeros_like(grad_out) if need_out else None
    d_tensors: List[Optional[Tensor]] = [None] * len(tensors)
    if all(c is None for c in cotangents) or not (need_out or any(need_p)):
        return d_out, d_tensors
    for rows in spec.chunks:
        rows_out = rows.to(grad_out.device)
        with torch.enable_grad():
            leaves = _leaves(tensors, need)
            cot_rows = grad_out[rows_out].detach().requires_grad_(need_out)
            out = spec.fn(rows, leaves, True)
            wrt = [t for t, n in zip(leaves, need) if n]
            vjps = torch.autograd.grad(out, wrt, cot_rows.to(out.dtype), create_graph=True, allow_unused=True)
            s = sum((v * u.to(v.dtype)).sum() for v, u in zip(vjps, cotangents) if v is not None and u is not None)
            if not isinstance(s, Tensor) or not s.requires_grad:
                continue
            targets = [t for t, n in zip(leaves, need_p) if n] + ([cot_rows] if need_out else [])
            grads = torch.autograd.grad(s, targets, allow_unused=True)
        it = iter(grads)
        for i, n in enumerate(need_p):
            if n:
                d_tensors[i] = _add(d_tensors[i], next(it))
        if need_out:
            g = next(it)
            if g is not None:
                d_out.index_copy_(0, rows_out, g.to(d_out.dtype))
    d_tensors = [torch.zeros_like(t) if n and d is None else d for t, n, d in zip(tensors, need_p, d_tensors)]
    return d_out, d_tensors


# ---------------------------------------------------------------------------------------------- chunk size
#: Activation floats per token and layer of one text-encoder graph, as multiples of (width, heads x tokens):
#: what autograd saves for the backward pass (measured: 11.3 MB per class for ViT-B/16 at 24 tokens in fp32).
_GRAPH_FLOATS = (20.0, 1.0)
#: Peak memory per class, in graphs of the above: a first-order pass (graph + its backward), one chunk of the
#: second-order recomputation (graph, gradient graph, double-backward temporaries), a whole unchunked ProMetaR
#: iteration (peak RSS slopes on ViT-B/16 shapes in fp32: about 12, 36 and 37 MB per class at 24 tokens).
_GRAPHS = {"first": 1.1, "second": 3.2, "iteration": 3.3}


class TextChunks(NamedTuple):
    """Classes per chunk for passes needing first derivatives only (evaluation, teacher, regularised step, query)
    and for passes taking second derivatives (the support of the second-order meta step); 0 = unchunked."""

    first: int
    second: int
    note: str

    def size(self, second_order: bool, n_cls: int) -> int:
        """Chunk for a pass over `n_cls` classes; 0 when one chunk would hold them all."""
        chunk = self.second if second_order else self.first
        return chunk if 0 < chunk < n_cls else 0


def text_bytes_per_class(text: Any, length: float, kind: str) -> float:
    """Estimated peak activation bytes per class on the text side for prompts of `length` tokens, for `kind`
    "first" (a first-order pass), "second" (a chunk of the second-order recomputation) or "iteration" (a whole
    unchunked ProMetaR iteration). `text`: a CLIP model or its `prometar.towers.TextTower`. Element size: the text
    tower's dtype (fp16 weights: 2 bytes; amp: counted as 4)."""
    from .towers import TextTower, text_tower

    tower = text if isinstance(text, TextTower) else text_tower(text)
    elem = torch.empty((), dtype=tower.dtype).element_size()
    per_token_layer = (_GRAPH_FLOATS[0] * tower.width + _GRAPH_FLOATS[1] * tower.heads * length) * elem
    return _GRAPHS[kind] * tower.n_blocks * length * per_token_layer


def free_memory_bytes(device: torch.device) -> Optional[int]:
    """Free memory of the device (CUDA: `mem_get_info`; MPS: recommended maximum minus allocated; CPU: Linux
    MemAvailable, else available physical pages); None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "recommended_max_memory"):
            return int(mps.recommended_max_memory() - mps.driver_allocated_memory())
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _budget(device: torch.device, budget_mb: float) -> Tuple[float, float, str]:
    """(budget for one graph of all classes, budget for a chunk, description)."""
    if budget_mb < 0:
        raise ValueError(f"TRAINER.PROMETAR.TEXT_CHUNK_MB must be >= 0 (0: from free memory); got {budget_mb}")
    if budget_mb > 0:
        return budget_mb * 2 ** 20, budget_mb * 2 ** 20, f"TEXT_CHUNK_MB {budget_mb:g}"
    free = free_memory_bytes(device)
    if not free:
        return float(2 ** 30), float(2 ** 30), "1 GB: free memory unknown"
    return free / 2, free / 8, f"{free / 2 ** 30:.1f} GB free on {torch.device(device).type}"


def resolve_text_chunk(setting: int, lengths: Tensor, clip_model: Any, device: torch.device,
                       budget_mb: float = 0.0) -> TextChunks:
    """Chunk sizes for TEXT_CHUNK = `setting` and prompt lengths `lengths` (tokens up to end-of-text, one per
    class), with a one-line description.

    0: unchunked. N > 0: second-order chunks of N classes, first-order chunks of the size taking the same memory.
    -1 (`AUTO`): with a budget (`budget_mb`, TEXT_CHUNK_MB > 0), unchunked when a whole iteration's text
    activations fit it, else the largest chunks whose passes fit it. Without one: unchunked while that takes at
    most half of the device's free memory, else chunks fitting an eighth of it (1 GB when it is unknown)."""
    n_cls, longest = int(lengths.numel()), float(lengths.max())
    first, second = (text_bytes_per_class(clip_model, longest, kind) for kind in ("first", "second"))
    if setting == 0:
        return TextChunks(0, 0, f"Text side: all {n_cls} classes at once (TEXT_CHUNK 0)")
    if setting > 0:
        first_chunk = max(setting, int(setting * second // first))
        return TextChunks(first_chunk, setting, _note(n_cls, first_chunk, setting, f"TEXT_CHUNK {setting}"))
    if setting != AUTO:
        raise ValueError(f"TRAINER.PROMETAR.TEXT_CHUNK must be -1 (automatic), 0 (off) or a positive number of "
                         f"classes; got {setting}")
    whole_budget, budget, source = _budget(device, budget_mb)
    whole = n_cls * text_bytes_per_class(clip_model, longest, "iteration")
    if whole <= whole_budget:
        return TextChunks(0, 0, f"Text side: all {n_cls} classes at once (automatic: ~{whole / 2 ** 20:.0f} MB of "
                                f"activations <= {whole_budget / 2 ** 20:.0f} MB; {source})")
    chunks = max(1, int(budget // first)), max(1, int(budget // second))
    return TextChunks(*chunks, _note(n_cls, *chunks, f"automatic: ~{whole / 2 ** 20:.0f} MB in one graph > "
                                                     f"{whole_budget / 2 ** 20:.0f} MB; chunks fit "
                                                     f"{budget / 2 ** 20:.0f} MB; {source}"))


def _note(n_cls: int, first: int, second: int, why: str) -> str:
    def part(chunk: int) -> str:
        return f"chunks of {chunk}" if chunk < n_cls else "all at once"
    return f"Text side: {n_cls} classes; second-order passes {part(second)}, first-order passes {part(first)} ({why})"
