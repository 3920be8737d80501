"""Tower adapters: each CLIP family's text and image encoders, with deep prompts where the family allows them.

`text_tower(model)` and `vision_tower(model)` pick the adapter by the model's family; both are cheap views of the
model's own modules (build them per call, never store them: a DataParallel replica must see its own modules).

| family | text tower | image tower |
| --- | --- | --- |
| OpenAI CLIP (`clip.model.CLIP`) | prompted (`prompting.encode_text`) | ViT: prompted (`prompting.encode_image`); ResNet: fixed |
| open_clip `CLIP` / `CustomTextCLIP` | open_clip's `TextTransformer` blocks: prompted (causal or bidirectional attention, `argmax` / `eos` / `first` / `last` pooling, LayerScale, linear or matrix projection); other text towers (Hugging Face) are refused | open_clip's `VisionTransformer` (class-token or average pooling, LayerNorm before or after pooling, with or without `ln_pre`, LayerScale): prompted; others (timm, ResNet, attention pooling): fixed |

A fixed tower is run by the library itself (`visual(images)`) and takes no prompts; learners that need them
are refused with `TowerNotSupported`, naming the tower. Text prompts also need CLIP's byte-pair tokenizer
(start token, then the context positions 1..n; the end-of-text token has the largest id).
"""
from __future__ import annotations

import functools
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import BackboneInfo, TowerNotSupported, backbone_info_of
from .clip_loader import openai_clip
from .prompting import attention, encode_image, encode_text, layer_norm, swap_vision_prompt

__all__ = ["TextTower", "VisionTower", "text_tower", "vision_tower", "backbone_info", "family_of"]


def _is_open_clip(obj, module: str, name: str) -> bool:
    """`obj` is open_clip's class `name` of `module` (public `open_clip` or the private `prometar._open_clip`)."""
    cls = type(obj)
    return cls.__name__ == name and cls.__module__.endswith(f"open_clip.{module}")


def family_of(model: nn.Module) -> str:
    """"openai" (OpenAI's `clip.model.CLIP`), "open_clip" (open_clip's CLIP / CustomTextCLIP); else TypeError."""
    if isinstance(model, openai_clip().model.CLIP):
        return "openai"
    if _is_open_clip(model, "model", "CLIP") or _is_open_clip(model, "model", "CustomTextCLIP"):
        return "open_clip"
    raise TypeError(f"{type(model).__module__}.{type(model).__name__} is not a CLIP prometar knows: expected OpenAI's "
                    f"clip.model.CLIP or open_clip's CLIP / CustomTextCLIP")


def backbone_info(model: nn.Module) -> BackboneInfo:
    """The `BackboneInfo` the loader attached, else the defaults of the model's family."""
    info = backbone_info_of(model)
    if info is not None:
        return info
    if family_of(model) == "openai":
        res = int(model.visual.input_resolution)
        return BackboneInfo(name=type(model).__name__, family="openai", image_size=(res, res),
                            context_length=int(model.context_length))
    pre = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = pre.get("size", getattr(model.visual, "image_size", 224))
    size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
    text = getattr(model, "text", model)
    vocab = getattr(text, "vocab_size", None)
    kwargs = {key: tuple(pre[key]) for key in ("mean", "std") if key in pre}
    return BackboneInfo(name=type(model).__name__, family="open_clip", image_size=size,
                        context_length=int(getattr(text, "context_length", 77)),
                        tokenizer="clip-bpe" if vocab == 49408 else f"unknown (vocabulary of {vocab})", **kwargs)


# ---------------------------------------------------------------------------------------------- tokenizers
@functools.lru_cache(maxsize=8)
def _simple_tokenizer(context_length: int, kwargs: tuple):
    from .open_clip_loader import open_clip

    return open_clip().tokenizer.SimpleTokenizer(context_length=context_length, **dict(kwargs))


def _tokenize(info: BackboneInfo, texts: Sequence[str]) -> Tensor:
    texts = list(texts)
    if info.family == "openai":
        try:
            return openai_clip().tokenize(texts, context_length=info.context_length)
        except RuntimeError as exc:
            raise ValueError(f"a prompt is longer than CLIP's {info.context_length}-token context: {exc}") from exc
    tok = _simple_tokenizer(info.context_length, info.tokenizer_kwargs)
    if tok.reduction_fn is None:
        for text in texts:
            if len(tok.encode(text)) + 2 > info.context_length:
                raise ValueError(f"Input {text} is too long for context length {info.context_length} of "
                                 f"{info.name}")
    return tok(texts)


# ---------------------------------------------------------------------------------------------- text towers
def _mha_block(block: nn.Module) -> bool:
    """A block of the form OpenAI / open_clip's ResidualAttentionBlock (ln_1, nn.MultiheadAttention, ln_2, mlp)."""
    return isinstance(getattr(block, "attn", None), nn.MultiheadAttention) and not hasattr(block, "ln_1_kv") \
        and all(hasattr(block, k) for k in ("ln_1", "ln_2", "mlp")) and block.attn._qkv_same_embed_dim


def _run_block(block: nn.Module, x: Tensor, causal: bool, double_diff: bool) -> Tensor:
    """open_clip's ResidualAttentionBlock (LayerScale `ls_1` / `ls_2` when present), batch-first."""
    ls_1, ls_2 = getattr(block, "ls_1", nn.Identity()), getattr(block, "ls_2", nn.Identity())
    # (LayerScale's float32 gamma would promote half activations: keep the stream's dtype)
    x = x + ls_1(attention(block.attn, layer_norm(block.ln_1, x), causal, double_diff)).to(x.dtype)
    return x + ls_2(block.mlp(layer_norm(block.ln_2, x))).to(x.dtype)


def _place_text(x: Tensor, ctx: Optional[Tensor]) -> Tensor:
    if ctx is None:
        return x
    ctx = ctx.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :1], ctx, x[:, 1 + ctx.shape[1]:]], dim=1)


def _check_depth(prompts: Sequence[Optional[Tensor]], n_layers: int, side: str) -> None:
    if len(prompts) > n_layers:
        raise ValueError(f"{len(prompts)} {side} prompt layers given but the {side} transformer has {n_layers} blocks")


class TextTower:
    """Text side of a CLIP: tokenizer, token embeddings, pooled positions and the (prompted) encoder.

    `encode(token_embeds, positions, prompts)` places text prompts as `prompting.encode_text` does (layer 0:
    positions 1..n of the embeddings, before the positional embedding; deeper: replace 1..n before block i) and
    returns the projected features at `positions` (the pooled token of each row).
    """

    label = "OpenAI CLIP text transformer"
    causal = True
    pool = "argmax"

    def __init__(self, model: nn.Module, info: BackboneInfo):
        self.model, self.info = model, info
        self.module = model

    @property
    def width(self) -> int:
        return int(self.module.ln_final.weight.shape[0])

    @property
    def n_blocks(self) -> int:
        return len(self.module.transformer.resblocks)

    @property
    def context_length(self) -> int:
        return int(self.module.positional_embedding.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.module.transformer.resblocks[0].attn.in_proj_weight.dtype

    def prompt_problem(self) -> Optional[str]:
        """Why text prompts cannot be placed in this tower (None when they can)."""
        if self.info.tokenizer != "clip-bpe":
            return f"its tokenizer is {self.info.tokenizer}; text prompts are placed after CLIP's start token"
        return None

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        return _tokenize(self.info, texts)

    def embed(self, tokens: Tensor) -> Tensor:
        emb = self.module.token_embedding
        return emb(tokens.to(emb.weight.device))

    def positions(self, tokens: Tensor) -> Tensor:
        """Index of the pooled token of each row."""
        if self.pool == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        index = 0 if self.pool == "first" else tokens.shape[1] - 1
        return torch.full(tokens.shape[:1], index, dtype=torch.long, device=tokens.device)

    def run_length(self, positions: Tensor) -> int:
        """Tokens the encoder needs: up to the last pooled position when later tokens cannot influence it (causal
        attention, end-of-text pooling; identical features), else the whole context."""
        if self.causal and self.pool in ("argmax", "eos"):
            return int(positions.max()) + 1
        return self.context_length

    def run_lengths(self, positions: Tensor) -> Tensor:
        """Per row, the tokens the encoder needs for that row alone (`run_length` of one row)."""
        if self.causal and self.pool in ("argmax", "eos"):
            return positions + 1
        return torch.full_like(positions, self.context_length)

    @property
    def heads(self) -> int:
        """Attention heads per block (from the first block's attention)."""
        attn = self.module.transformer.resblocks[0].attn
        return int(getattr(attn, "num_heads", max(1, self.width // 64)))

    def encode(self, token_embeds: Tensor, positions: Tensor, prompts: Sequence[Optional[Tensor]] = (),
               double_diff: bool = False) -> Tensor:
        return encode_text(self.model, token_embeds, positions, prompts, double_diff)


class OpenClipTextTower(TextTower):
    """open_clip's text transformer (`CLIP`'s own text modules, or `CustomTextCLIP.text`)."""

    label = "open_clip TextTransformer"

    def __init__(self, model: nn.Module, info: BackboneInfo):
        super().__init__(model, info)
        custom = hasattr(model, "text")
        self.module = model.text if custom else model
        self.causal = self.module.attn_mask is not None
        self.pool = self.module.pool_type if custom else model.text_pool_type
        self.eos_id = getattr(self.module, "eos_id" if custom else "text_eos_id", None)

    def encode(self, token_embeds: Tensor, positions: Tensor, prompts: Sequence[Optional[Tensor]] = (),
               double_diff: bool = False) -> Tensor:
        m = self.module
        blocks = m.transformer.resblocks
        _check_depth(prompts, len(blocks), "text")
        length = self.run_length(positions)
        if token_embeds.shape[1] < length:
            raise ValueError(f"{token_embeds.shape[1]} token embeddings given, the {self.label} needs {length}")
        x = token_embeds[:, :length].to(self.dtype)
        for i, block in enumerate(blocks):
            x = _place_text(x, prompts[i] if i < len(prompts) else None)
            if i == 0:
                x = x + m.positional_embedding[:length].to(x.dtype)
            x = _run_block(block, x, self.causal, double_diff)
        x = layer_norm(m.ln_final, x)
        x = x[torch.arange(x.shape[0], device=x.device), positions.to(x.device)]
        proj = m.text_projection
        if isinstance(proj, nn.Linear):
            return proj(x)
        return x if proj is None else x @ proj


def _text_problem(model: nn.Module) -> Optional[str]:
    """Why the project cannot run this open_clip text tower (None when it can)."""
    text = getattr(model, "text", model)
    if type(text).__name__ != "TextTransformer" and text is not model:
        return f"its text tower is {type(text).__name__} (a Hugging Face model)"
    if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
        return "its text tower appends a class token or masks padding (CoCa-style)"
    bad = [type(b).__name__ for b in text.transformer.resblocks if not _mha_block(b)]
    if bad:
        return f"its text blocks are {bad[0]} (not open_clip's ResidualAttentionBlock)"
    return None


def text_tower(model: nn.Module) -> TextTower:
    """The text adapter of `model`; TowerNotSupported (naming the tower) when the project cannot run it."""
    info = backbone_info(model)
    if family_of(model) == "openai":
        return TextTower(model, info)
    problem = _text_problem(model)
    if problem is None and info.tokenizer != "clip-bpe":
        problem = f"its tokenizer is {info.tokenizer}; prometar tokenizes with CLIP's byte-pair tokenizer"
    if problem:
        raise TowerNotSupported(f"{info.name}: prometar cannot run this model's text side: {problem}. Supported: "
                                f"OpenAI CLIPs and open_clip models with open_clip's TextTransformer and CLIP's "
                                f"tokenizer (see README, 'Backbones')")
    return OpenClipTextTower(model, info)


# ---------------------------------------------------------------------------------------------- vision towers
def _first_weight_dtype(module: nn.Module) -> torch.dtype:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return m.weight.dtype
    return next(module.parameters()).dtype


class VisionTower:
    """Image side of a CLIP run by the library itself (`visual(images)`): no prompts ("fixed")."""

    promptable = False

    def __init__(self, model: nn.Module, info: BackboneInfo):
        self.model, self.info, self.visual = model, info, model.visual

    @property
    def label(self) -> str:
        cls = type(self.visual).__name__
        family = "OpenAI" if self.info.family == "openai" else "open_clip"
        trunk = getattr(getattr(self.visual, "trunk", None), "pretrained_cfg", {}) or {}
        extra = f", timm {trunk['architecture']}" if trunk.get("architecture") else ""
        kind = " (ResNet)" if cls == "ModifiedResNet" else ""
        return f"{family} {cls}{kind}{extra}"

    @property
    def width(self) -> Optional[int]:
        return None

    @property
    def n_blocks(self) -> int:
        return 0

    @property
    def dtype(self) -> torch.dtype:
        return _first_weight_dtype(self.visual)

    def prompt_problem(self) -> Optional[str]:
        return f"its image tower is {self.label}, which prometar runs as a whole (no blocks to prompt)"

    def encode(self, images: Tensor, prompts: Sequence[Optional[Tensor]] = (), double_diff: bool = False) -> Tensor:
        if any(p is not None for p in prompts):
            raise TowerNotSupported(f"{self.info.name}: vision prompts given, but {self.prompt_problem()}")
        return self.visual(images.to(self.dtype))


class OpenAIViTTower(VisionTower):
    """OpenAI's VisionTransformer, prompted by `prompting.encode_image`."""

    promptable = True

    @property
    def width(self) -> int:
        return int(self.visual.conv1.weight.shape[0])

    @property
    def n_blocks(self) -> int:
        return len(self.visual.transformer.resblocks)

    def prompt_problem(self) -> Optional[str]:
        return None

    def encode(self, images: Tensor, prompts: Sequence[Optional[Tensor]] = (), double_diff: bool = False) -> Tensor:
        return encode_image(self.visual, images, prompts, double_diff)


class OpenClipViTTower(OpenAIViTTower):
    """open_clip's VisionTransformer: prompts as `prompting.encode_image` places them (appended after the patch
    tokens before `ln_pre`, replacing the last n tokens before deeper blocks), removed again after the last block,
    then open_clip's pooling (class token or mean of the patch tokens; `ln_post` before or after it)."""

    def encode(self, images: Tensor, prompts: Sequence[Optional[Tensor]] = (), double_diff: bool = False) -> Tensor:
        v = self.visual
        blocks = v.transformer.resblocks
        _check_depth(prompts, len(blocks), "vision")
        x = v.conv1(images.to(self.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = x + v.positional_embedding.to(x.dtype)
        n_prompt = 0
        if prompts and prompts[0] is not None:
            x = torch.cat([x, prompts[0].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
            n_prompt = prompts[0].shape[0]
        if not isinstance(v.ln_pre, nn.Identity):
            x = layer_norm(v.ln_pre, x)
        for i, block in enumerate(blocks):
            ctx = prompts[i] if 0 < i < len(prompts) else None
            if ctx is not None:
                x = swap_vision_prompt(x, ctx, n_prompt, i)
            x = _run_block(block, x, False, double_diff)
        if n_prompt:
            x = x[:, :-n_prompt]
        pool = (lambda t: t[:, 1:].mean(dim=1)) if v.pool_type == "avg" else (lambda t: t[:, 0])
        pooled = layer_norm(v.ln_post, pool(x)) if v.final_ln_after_pool else pool(layer_norm(v.ln_post, x))
        return pooled if v.proj is None else pooled @ v.proj


def _open_clip_vit_problem(visual: nn.Module) -> Optional[str]:
    if not _is_open_clip(visual, "transformer", "VisionTransformer"):
        return "not open_clip's VisionTransformer"
    if visual.attn_pool is not None or visual.pool_type not in ("tok", "avg"):
        return "attention pooling"
    if not all(_mha_block(b) for b in visual.transformer.resblocks):
        return "custom attention blocks"
    return None


def vision_tower(model: nn.Module) -> VisionTower:
    """The image adapter of `model`: prompted for OpenAI's and open_clip's ViTs, fixed for every other tower."""
    info = backbone_info(model)
    if family_of(model) == "openai":
        return VisionTower(model, info) if isinstance(model.visual, openai_clip().model.ModifiedResNet) \
            else OpenAIViTTower(model, info)
    return OpenClipViTTower(model, info) if _open_clip_vit_problem(model.visual) is None else VisionTower(model, info)


def prompt_towers_summary(model: nn.Module) -> List[str]:
    """One line per tower: its label and whether it takes prompts (for logs)."""
    text, vision = text_tower(model), vision_tower(model)
    return [f"text: {text.label} ({'prompts' if text.prompt_problem() is None else 'fixed'})",
            f"image: {vision.label} ({'prompts' if vision.promptable else 'fixed'})"]
