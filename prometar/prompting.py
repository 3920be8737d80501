"""Deep text and vision prompts run through an unmodified `clip.model.CLIP`.

CLIP's own modules (embeddings, layer norms, MLPs, attention weights, projections) are called as they are;
only the order of operations around them is written here, so that

* prompt tokens can be inserted at layer 0 and replaced before deeper blocks (IVLP / VPT / MaPLe placement:
  text prompts occupy positions 1..n after the start token; vision prompts are appended after the class and
  patch tokens and replace the last n tokens before deeper blocks);
* the causal text transformer runs only up to the longest end-of-text position (identical features,
  far less work);
* attention uses the fused `scaled_dot_product_attention` kernels unless a second derivative is needed,
  in which case a plain matmul-softmax path (double-differentiable) is used.

Layout is batch-first (N, L, D) throughout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PromptSet", "attention", "layer_norm", "run_block", "encode_text", "encode_image", "swap_vision_prompt",
           "eot_positions"]


@dataclass
class PromptSet:
    """Prompt tokens per transformer layer; `None` means "no prompt at this layer".

    text[0] replaces the context positions 1..n of the token embeddings (before the positional embedding is
    added); text[i > 0] replaces positions 1..n before block i. vision[0] is appended after the class and patch
    tokens (after the positional embedding, before `ln_pre`); vision[i > 0] replaces the last n tokens before
    block i. Layers beyond the lists carry the previous layer's tokens on.
    """

    text: List[Optional[Tensor]] = field(default_factory=list)
    vision: List[Optional[Tensor]] = field(default_factory=list)


_MASKS: dict = {}


def _causal_mask(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    key = (length, dtype, device)
    mask = _MASKS.get(key)
    if mask is None:
        mask = torch.full((length, length), float("-inf"), dtype=dtype, device=device).triu_(1)
        _MASKS[key] = mask
    return mask


def attention(mha: nn.MultiheadAttention, x: Tensor, causal: bool, double_diff: bool = False) -> Tensor:
    """Self-attention with the weights of an `nn.MultiheadAttention` (batch-first input).

    double_diff=True uses explicit matmul + softmax, which supports second derivatives; otherwise the fused
    `F.scaled_dot_product_attention` kernels (fast, but without double backward) are used.
    """
    n, length, width = x.shape
    heads = mha.num_heads
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    if double_diff:
        scores = (q * (width // heads) ** -0.5) @ k.transpose(-2, -1)
        if causal:
            scores = scores + _causal_mask(length, scores.dtype, scores.device)
        out = scores.softmax(dim=-1) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = out.transpose(1, 2).reshape(n, length, width)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)


def layer_norm(ln: nn.LayerNorm, x: Tensor) -> Tensor:
    """CLIP's LayerNorm (computed in float32 for half inputs), also valid for float64 models."""
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    out = F.layer_norm(x.to(compute), ln.normalized_shape, ln.weight.to(compute), ln.bias.to(compute), ln.eps)
    return out.to(x.dtype)


def run_block(block: nn.Module, x: Tensor, causal: bool, double_diff: bool = False) -> Tensor:
    """One `clip.model.ResidualAttentionBlock`, batch-first."""
    x = x + attention(block.attn, layer_norm(block.ln_1, x), causal, double_diff)
    return x + block.mlp(layer_norm(block.ln_2, x))


def eot_positions(tokens: Tensor) -> Tensor:
    """Index of the end-of-text token per row (it has the largest id, as in CLIP)."""
    return tokens.argmax(dim=-1)


def _check_depth(prompts: Sequence[Optional[Tensor]], n_layers: int, side: str) -> None:
    if len(prompts) > n_layers:
        raise ValueError(f"{len(prompts)} {side} prompt layers given but the {side} transformer has {n_layers} blocks")


def encode_text(clip_model: nn.Module, token_embeds: Tensor, eot: Tensor,
                prompts: Sequence[Optional[Tensor]] = (), double_diff: bool = False,
                length: Optional[int] = None) -> Tensor:
    """Text features of prompts given as token embeddings (n, L, d) with end-of-text positions `eot` (n,).

    Runs the causal transformer on the first `max(eot) + 1` positions only (or `length` positions when given,
    e.g. 77 for the full computation): later tokens never influence the end-of-text token, so the features
    equal the full 77-token computation.
    """
    blocks = clip_model.transformer.resblocks
    _check_depth(prompts, len(blocks), "text")
    dtype = clip_model.dtype
    length = int(eot.max()) + 1 if length is None else length
    if length > token_embeds.shape[1] or length <= int(eot.max()):
        raise ValueError(f"length={length} must cover the end-of-text positions (max {int(eot.max())}) and fit "
                         f"the {token_embeds.shape[1]} given tokens")
    x = token_embeds[:, :length].to(dtype)
    n = x.shape[0]
    for i, block in enumerate(blocks):
        ctx = prompts[i] if i < len(prompts) else None
        if ctx is not None:
            ctx = ctx.to(dtype).unsqueeze(0).expand(n, -1, -1)
            x = torch.cat([x[:, :1], ctx, x[:, 1 + ctx.shape[1]:]], dim=1)
        if i == 0:
            x = x + clip_model.positional_embedding[:length].to(dtype)
        x = run_block(block, x, causal=True, double_diff=double_diff)
    x = layer_norm(clip_model.ln_final, x).to(dtype)
    x = x[torch.arange(n, device=x.device), eot.to(x.device)]
    return x @ clip_model.text_projection


def swap_vision_prompt(x: Tensor, ctx: Tensor, n_prompt: int, layer: int) -> Tensor:
    """`x` with its last `n_prompt` tokens (the vision prompts appended at layer 0) replaced by the deep prompt
    `ctx` of `layer` (IVLP: each prompted layer gets its own prompts)."""
    if ctx.shape[0] != n_prompt:
        raise ValueError(f"vision prompt of layer {layer} has {ctx.shape[0]} tokens but {n_prompt} prompt "
                         f"tokens were appended at layer 0")
    return torch.cat([x[:, :-n_prompt], ctx.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)


def encode_image(visual: nn.Module, images: Tensor, prompts: Sequence[Optional[Tensor]] = (),
                 double_diff: bool = False) -> Tensor:
    """Image features of `clip.model.VisionTransformer` with deep vision prompts."""
    blocks = visual.transformer.resblocks
    _check_depth(prompts, len(blocks), "vision")
    dtype = visual.conv1.weight.dtype
    x = visual.conv1(images.to(dtype))
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    n = x.shape[0]
    n_prompt = 0
    if prompts and prompts[0] is not None:
        ctx = prompts[0].to(x.dtype).unsqueeze(0).expand(n, -1, -1)
        x = torch.cat([x, ctx], dim=1)
        n_prompt = ctx.shape[1]
    x = layer_norm(visual.ln_pre, x)
    for i, block in enumerate(blocks):
        ctx = prompts[i] if 0 < i < len(prompts) else None
        if ctx is not None:
            x = swap_vision_prompt(x, ctx, n_prompt, i)
        x = run_block(block, x, causal=False, double_diff=double_diff)
    x = layer_norm(visual.ln_post, x[:, 0])
    return x @ visual.proj
