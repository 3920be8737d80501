"""The prompted CLIP student and its frozen zero-shot teacher, sharing one frozen CLIP.

`PromptedCLIP` holds the frozen `clip.model.CLIP` and a prompt learner. The teacher is the same CLIP with
prompts off: its template-ensemble text features are computed once per class list (no grad) and its image
features once per batch. `state_dict()` holds the learner only (the trainable state).
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .learners import PromptLearner
from .prompting import PromptSet
from .templates import IMAGENET_TEMPLATES
from .text_chunks import chunked_rows, plan_chunks, resolve_text_chunk
from .towers import TextTower, VisionTower, text_tower, vision_tower

from .clip_loader import openai_clip

clip = openai_clip()  # OpenAI's package, never a host repository's `clip/` fork

__all__ = ["PromptedCLIP", "tokenize_prompts", "autocast_context"]


def tokenize_prompts(texts: Sequence[str]) -> Tensor:
    """Tokenize with OpenAI's tokenizer (77 tokens); a text too long raises an error naming it. (`PromptedCLIP`
    tokenizes with its model's own tokenizer and context length: `prometar.towers.TextTower.tokenize`.)"""
    try:
        return clip.tokenize(list(texts))
    except RuntimeError as exc:
        raise ValueError(f"a prompt is longer than CLIP's 77-token context: {exc}") from exc


def autocast_context(device: torch.device, precision: str, amp_dtype: str = "bf16"):
    """`torch.autocast` for PREC amp (dtype bf16 or fp16), a no-op context otherwise."""
    if precision != "amp":
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if amp_dtype not in dtypes:
        raise ValueError(f"AMP_DTYPE must be one of {sorted(dtypes)}, got {amp_dtype!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=dtypes[amp_dtype])


class PromptedCLIP(nn.Module):
    """Prompted student + frozen teacher on one frozen CLIP.

    Args:
        clip_model: OpenAI's `clip.model.CLIP` or an open_clip CLIP (frozen here: `requires_grad_(False)`); its
            towers are run by the adapters of `prometar.towers` (tokenizer and context length from the model).
        learner: the prompt learner (its parameters are the only trainable state).
        classnames: class names as the dataset stores them (underscores become spaces in prompts).
        precision: "fp16", "fp32" or "amp" (autocast with `amp_dtype`).
        teacher_templates: templates averaged for the frozen text teacher (None: no teacher text features).
        text_chunk: TEXT_CHUNK, classes encoded at a time on the text side (`prometar.text_chunks`; same
            results, memory bounded by one chunk): 0 = all at once; N > 0 = N in passes taking second
            derivatives and as many as take the same memory in first-order ones; -1 = from `text_chunk_mb`.
        text_chunk_mb: TEXT_CHUNK_MB, the memory budget for -1 (0: from the device's free memory, see
            `resolve_text_chunk`).
    """

    def __init__(self, clip_model: nn.Module, learner: PromptLearner, classnames: Sequence[str],
                 precision: str = "fp32", amp_dtype: str = "bf16",
                 teacher_templates: Optional[Sequence[str]] = IMAGENET_TEMPLATES,
                 text_chunk: int = 0, text_chunk_mb: float = 0.0):
        super().__init__()
        text_tower(clip_model)  # refuses (naming the tower) a model whose text side the project cannot run
        self.clip = clip_model.requires_grad_(False).eval()
        self.prompt_learner = learner
        self.precision = precision
        self.amp_dtype = amp_dtype
        self.text_chunk_setting = int(text_chunk)
        self.text_chunk_mb = float(text_chunk_mb)
        self.teacher_templates = tuple(teacher_templates) if teacher_templates else ()
        self._eval_cache: Optional[tuple] = None
        self._register_state_dict_hook(_learner_only_state_dict)
        self.register_load_state_dict_post_hook(_ignore_frozen_keys)
        self.set_classnames(classnames)

    # ------------------------------------------------------------------ class-dependent buffers
    @property
    def device(self) -> torch.device:
        """Where the frozen CLIP (and so the model) is."""
        return self.clip.logit_scale.device

    def _text(self) -> TextTower:
        """The text adapter of the frozen CLIP's family (`prometar.towers`)."""
        return text_tower(self.clip)

    def _vision(self) -> VisionTower:
        """The image adapter of the frozen CLIP's family (`prometar.towers`)."""
        return vision_tower(self.clip)

    @property
    def n_cls(self) -> int:
        """The number of classes."""
        return len(self.classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """(Re)build the class-dependent token embeddings and teacher text features for `classnames`."""
        if not classnames:
            raise ValueError("classnames is empty: the dataset gave no classes")
        self.classnames = list(classnames)
        names = [c.replace("_", " ") for c in self.classnames]
        prefix = self.prompt_learner.prompt_prefix
        tower = self._text()
        tokens = tower.tokenize([f"{prefix} {name}." if prefix else f"{name}." for name in names])
        eot = tower.positions(tokens)
        length = tower.run_length(eot)
        with torch.no_grad():
            embeds = tower.embed(tokens[:, :length].to(self.device))
        self.register_buffer("token_embeds", embeds, persistent=False)
        self.register_buffer("eot", eot.to(self.device), persistent=False)
        self.register_buffer("_teacher_text", None, persistent=False)  # computed on first use (training only)
        self._prompt_names = names
        self._eval_cache = None
        self.text_chunks = resolve_text_chunk(self.text_chunk_setting, tower.run_lengths(self.eot), tower,
                                              self.device, self.text_chunk_mb)

    def _chunks(self, positions: Tensor, second_order: bool = False) -> Optional[tuple]:
        """Row chunks (sorted by prompt length) when the text side is chunked for `len(positions)` classes in a
        pass of this order, else None."""
        chunk = self.text_chunks.size(second_order, len(positions))
        return plan_chunks(positions, chunk) if chunk else None

    @property
    def teacher_text(self) -> Tensor:
        """L2-normalised template-ensemble text features of the frozen teacher, computed once per class list on
        first use: training needs them, evaluation (e.g. of 1000 new classes) never does."""
        if self._teacher_text is None:
            if not self.teacher_templates:
                raise RuntimeError("this PromptedCLIP was built with teacher_templates=None: no teacher text features")
            self._teacher_text = self._teacher_text_features(self._prompt_names)
        return self._teacher_text

    @torch.no_grad()
    def _teacher_text_features(self, names: List[str]) -> Tensor:
        """Mean over templates of CLIP's (un-normalised) text features, then L2-normalised, as the official code.
        One template at a time and, when the text side is chunked, one chunk of classes at a time."""
        total = None
        tower = self._text()
        for template in self.teacher_templates:
            tokens = tower.tokenize([template.format(n) for n in names]).to(self.device)
            positions = tower.positions(tokens)

            def encode(rows: Tensor, tensors: Sequence[Tensor] = (), double_diff: bool = False) -> Tensor:
                ids = tokens[rows, :tower.run_length(positions[rows])]
                with self.autocast():
                    return _compute_dtype(tower.encode(tower.embed(ids), positions[rows]))
            chunks = self._chunks(positions)
            feats = encode(torch.arange(len(names), device=self.device)) if chunks is None else \
                chunked_rows(encode, chunks, len(names), ())
            total = feats if total is None else total + feats
        return F.normalize(total / len(self.teacher_templates), dim=-1)

    # ------------------------------------------------------------------ forward pieces
    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision's autocast context (`autocast_context`)."""
        return autocast_context(self.device, self.precision, self.amp_dtype)

    @property
    def logit_scale(self) -> Tensor:
        """CLIP's learned logit scale (exp of its parameter), float32 or float64."""
        return _compute_dtype(self.clip.logit_scale.exp())

    def prompts(self, params: Optional[Dict[str, Tensor]] = None) -> PromptSet:
        """The learner's prompts, or those of explicit parameters (functional call; used by the meta step)."""
        if params is None:
            return self.prompt_learner()
        return torch.func.functional_call(self.prompt_learner, params, ())

    def text_features(self, prompts: PromptSet, double_diff: bool = False) -> Tensor:
        """Un-normalised prompted text features of all classes (float32, or float64 for a float64 model).

        `double_diff` says that second derivatives will be taken. With the text side chunked (`text_chunk`),
        classes are encoded a chunk at a time and only the prompts are kept for the backward pass, which
        recomputes each chunk (first and second derivatives exact); second-order passes use smaller chunks."""
        tower = self._text()
        chunks = self._chunks(self.eot, second_order=double_diff)
        if chunks is None:
            with self.autocast():
                return _compute_dtype(tower.encode(self.token_embeds, self.eot, prompts.text, double_diff))
        layers = [i for i, p in enumerate(prompts.text) if p is not None]
        depth = len(prompts.text)

        def encode(rows: Tensor, tensors: Sequence[Tensor], double_diff: bool) -> Tensor:
            text: List[Optional[Tensor]] = [None] * depth
            for i, t in zip(layers, tensors):
                text[i] = t
            positions = self.eot[rows]
            with self.autocast():
                embeds = self.token_embeds[rows, :tower.run_length(positions)]
                return _compute_dtype(tower.encode(embeds, positions, text, double_diff))
        return chunked_rows(encode, chunks, self.n_cls, [prompts.text[i] for i in layers])

    def image_features(self, images: Tensor, prompts: Optional[PromptSet], double_diff: bool = False) -> Tensor:
        """Un-normalised (prompted, or plain when `prompts` is None) image features (float32 or float64)."""
        with self.autocast():
            vision = prompts.vision if prompts is not None else ()
            return _compute_dtype(self._vision().encode(images, vision, double_diff))

    @torch.no_grad()
    def teacher_image_features(self, images: Tensor) -> Tensor:
        """L2-normalised zero-shot image features (prompts off)."""
        return F.normalize(self.image_features(images, None), dim=-1)

    def logits(self, image_feats: Tensor, text_feats: Tensor) -> Tensor:
        """scale * cos(image, text) from un-normalised features."""
        return self.logit_scale * F.normalize(image_feats, dim=-1) @ F.normalize(text_feats, dim=-1).t()

    def forward(self, images: Tensor) -> Tensor:
        """Class logits. In eval mode without grad, the text features of all classes are computed once and
        reused until the learner's parameters change (in place or replaced)."""
        prompts = self.prompts()
        if self.training or torch.is_grad_enabled():
            self._eval_cache = None
            text = self.text_features(prompts)
        else:
            params = list(self.prompt_learner.parameters())
            key = (tuple(p._version for p in params), tuple(p.data_ptr() for p in params), self.device)
            if self._eval_cache is None or self._eval_cache[0] != key:
                self._eval_cache = (key, self.text_features(prompts))
            text = self._eval_cache[1]
        return self.logits(self.image_features(images, prompts), text)

    def train(self, mode: bool = True) -> "PromptedCLIP":
        """Set the learner's mode; the frozen CLIP always stays in eval mode."""
        super().train(mode)
        self.clip.eval()  # CLIP has no dropout/batch-norm, but keep it in eval mode regardless
        return self


def _compute_dtype(x: Tensor) -> Tensor:
    """Half-precision results are returned as float32; float32/float64 pass through."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _learner_only_state_dict(module: PromptedCLIP, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "clip.")]:
        del state_dict[key]


def _ignore_frozen_keys(module: PromptedCLIP, incompatible) -> None:
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if ".clip." not in "." + k]
