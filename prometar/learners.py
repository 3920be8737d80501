"""Prompt learners: the trainable tensors and how they become per-layer prompts (`PromptSet`).

One registry, `LEARNERS` (a `prometar.registry.Registry`), selected by `TRAINER.PROMETAR.LEARNER`; each entry
holds the learner class and its options (keyword -> config key under TRAINER.PROMETAR):

| name | text side | vision side |
| --- | --- | --- |
| IVLP | context at layer 0 + independent deep text prompts (depth J_t) | independent deep vision prompts (depth J_v) |
| CoOp | context at layer 0 only | none |
| VPT  | none (fixed words of CTX_INIT) | deep vision prompts |
| MaPLe | context at layer 0 + deep text prompts | linear projections of the text prompts (coupled) |

Each learner declares, per trainable tensor, which regulariser's gradient modulates it (`side`: "text" or
"vision") and the block size the gradient modulator works on (`block`: the whole tensor for prompt tokens, one
row for projection matrices), so the meta-regularisation is independent of the learner.

Each learner also declares the towers it puts prompts into (`text_prompts`, `vision_prompts`); building one on a
model whose tower cannot take them (e.g. deep vision prompts in a ResNet, `prometar.towers`) raises
`TowerNotSupported` naming the tower and the learners that work with that model (`learners_for`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from .backbone import TowerNotSupported
from .prompting import PromptSet
from .registry import Registry
from .towers import text_tower, vision_tower

__all__ = ["TensorSpec", "PromptLearner", "IVLPLearner", "CoOpLearner", "VPTLearner", "MaPLeLearner",
           "LEARNERS", "build_learner", "text_context_init", "official_key", "official_to_ivlp_state_dict",
           "learners_for"]


@dataclass(frozen=True)
class TensorSpec:
    """A trainable tensor of a learner, as the meta-regulariser sees it."""

    name: str   # key in `learner.named_parameters()`
    side: str   # "text" or "vision": which regulariser's gradient modulates it
    block: int  # the modulator gates blocks of this many consecutive elements (numel for prompt tokens)


#: Prompt learners by name (`TRAINER.PROMETAR.LEARNER`): class, options (keyword -> TRAINER.PROMETAR key), help.
LEARNERS = Registry("learner", "TRAINER.PROMETAR.LEARNER")
_TEXT = {"n_ctx_text": "N_CTX_TEXT", "depth_text": "PROMPT_DEPTH_TEXT"}
_VISION = {"n_ctx_vision": "N_CTX_VISION", "depth_vision": "PROMPT_DEPTH_VISION"}
_INIT = {"ctx_init": "CTX_INIT"}


def text_context_init(clip_model: nn.Module, n_ctx: int, ctx_init: str, generator: Optional[torch.Generator] = None):
    """Layer-0 text context as in CoOp/IVLP: the first `n_ctx` word embeddings of `ctx_init` when it is given
    and n_ctx <= 4, else N(0, 0.02^2) with "X X ... X" placeholder text. Returns (vectors, prompt_prefix).
    Tokenizer and embeddings are the model's own (`prometar.towers.text_tower`)."""
    tower = text_tower(clip_model)
    width = tower.width
    ctx_init = (ctx_init or "").replace("_", " ").strip()
    if ctx_init and n_ctx <= 4:
        tokens = tower.tokenize([ctx_init])
        n_words = int(tokens.argmax(-1)) - 1
        if n_words < n_ctx:
            raise ValueError(f"CTX_INIT {ctx_init!r} has {n_words} tokens but N_CTX_TEXT is {n_ctx}: give at least "
                             f"{n_ctx} words or leave CTX_INIT empty for random init")
        with torch.no_grad():
            emb = tower.embed(tokens)
        return emb[0, 1:1 + n_ctx].float().cpu().clone(), ctx_init
    vectors = torch.empty(n_ctx, width).normal_(0.0, 0.02, generator=generator)
    return vectors, " ".join(["X"] * n_ctx)


def _normal(n: int, width: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(n, width).normal_(0.0, 0.02))


class PromptLearner(nn.Module):
    """Base class. Subclasses set `prompt_prefix` (text before each class name), `n_ctx_text` (learnable text
    positions after the start token at layer 0) and implement `forward() -> PromptSet` and `tensor_specs()`."""

    prompt_prefix: str = "a photo of a"
    n_ctx_text: int = 0
    text_prompts: bool = True     # puts prompts into the text tower
    vision_prompts: bool = False  # puts prompts into the image tower

    def forward(self) -> PromptSet:  # pragma: no cover - abstract
        """The prompts of every layer, from the learner's tensors."""
        raise NotImplementedError

    def tensor_specs(self) -> List[TensorSpec]:  # pragma: no cover - abstract
        """Every trainable tensor: its name, regulariser side and modulator block (the modulator's net order)."""
        raise NotImplementedError

    def _init_text_prompts(self, clip_model: nn.Module, n_ctx: int, depth: int, ctx_init: str) -> None:
        """`self.text`: the layer-0 context (`text_context_init` rule) and depth - 1 deeper N(0, 0.02^2) prompts."""
        ctx, self.prompt_prefix = text_context_init(clip_model, n_ctx, ctx_init)
        width = text_tower(clip_model).width
        self.n_ctx_text = n_ctx
        self.text = nn.ParameterList([nn.Parameter(ctx)] + [_normal(n_ctx, width) for _ in range(depth - 1)])

    def describe(self) -> str:
        """One line: class, number of trainable tensors and parameters, text prefix."""
        n = sum(p.numel() for p in self.parameters())
        return (f"{type(self).__name__}: {len(self.tensor_specs())} trainable tensors, {n:,} parameters, "
                f"text prefix {self.prompt_prefix!r}")


def _prompt_specs(params: nn.ParameterList, prefix: str, side: str) -> List[TensorSpec]:
    return [TensorSpec(f"{prefix}.{i}", side, p.numel()) for i, p in enumerate(params)]


@LEARNERS.register("IVLP", options={**_TEXT, **_VISION, **_INIT},
                   help="independent deep text and vision prompts (the official ProMetaR learner)")
class IVLPLearner(PromptLearner):
    """Independent deep vision and language prompts (the learner of the official ProMetaR)."""

    vision_prompts = True

    def __init__(self, clip_model: nn.Module, n_ctx_text: int = 4, n_ctx_vision: int = 4, depth_text: int = 9,
                 depth_vision: int = 9, ctx_init: str = "a photo of a"):
        super().__init__()
        if depth_text < 1:
            raise ValueError(f"IVLP needs PROMPT_DEPTH_TEXT >= 1, got {depth_text} (use LEARNER VPT for vision only)")
        _check_depth(clip_model, depth_text, depth_vision if n_ctx_vision > 0 else 0, "IVLP")
        self._init_text_prompts(clip_model, n_ctx_text, depth_text, ctx_init)
        self.vision = nn.ParameterList([_normal(n_ctx_vision, vision_tower(clip_model).width)
                                        for _ in range(depth_vision)]) if n_ctx_vision > 0 else nn.ParameterList()

    def forward(self) -> PromptSet:
        return PromptSet(text=list(self.text), vision=list(self.vision))

    def tensor_specs(self) -> List[TensorSpec]:
        return _prompt_specs(self.text, "text", "text") + _prompt_specs(self.vision, "vision", "vision")


@LEARNERS.register("CoOp", options={"n_ctx_text": "N_CTX_TEXT", **_INIT},
                   help="a learnable text context at layer 0 only")
class CoOpLearner(PromptLearner):
    """CoOp: a shared learnable context at layer 0 of the text encoder only (class token at the end)."""

    def __init__(self, clip_model: nn.Module, n_ctx_text: int = 4, ctx_init: str = "a photo of a"):
        super().__init__()
        _check_depth(clip_model, 1, 0, "CoOp")
        self._init_text_prompts(clip_model, n_ctx_text, 1, ctx_init)

    def forward(self) -> PromptSet:
        return PromptSet(text=list(self.text), vision=[])

    def tensor_specs(self) -> List[TensorSpec]:
        return _prompt_specs(self.text, "text", "text")


@LEARNERS.register("VPT", options={**_VISION, **_INIT}, help="deep vision prompts only (fixed text words)")
class VPTLearner(PromptLearner):
    """VPT-deep: vision prompts only; the text side is CLIP with the fixed words of CTX_INIT."""

    text_prompts = False
    vision_prompts = True

    def __init__(self, clip_model: nn.Module, n_ctx_vision: int = 4, depth_vision: int = 9,
                 ctx_init: str = "a photo of a"):
        super().__init__()
        if depth_vision < 1 or n_ctx_vision < 1:
            raise ValueError(f"VPT needs PROMPT_DEPTH_VISION >= 1 and N_CTX_VISION >= 1, got {depth_vision}, {n_ctx_vision}")
        _check_depth(clip_model, 0, depth_vision, "VPT")
        width_v = vision_tower(clip_model).width
        self.prompt_prefix = (ctx_init or "a photo of a").replace("_", " ").strip()
        self.n_ctx_text = 0
        self.vision = nn.ParameterList([_normal(n_ctx_vision, width_v) for _ in range(depth_vision)])

    def forward(self) -> PromptSet:
        return PromptSet(text=[], vision=list(self.vision))

    def tensor_specs(self) -> List[TensorSpec]:
        return _prompt_specs(self.vision, "vision", "vision")


@LEARNERS.register("MaPLe", options={**_TEXT, **_INIT},
                   help="deep text prompts; vision prompts are linear projections of them")
class MaPLeLearner(PromptLearner):
    """MaPLe: text prompts at layers 0..J-1; vision prompts are linear projections of them (coupled).

    Initialisation as MaPLe's public code: layer-0 context from CTX_INIT (n_ctx <= 4), deeper text prompts
    N(0, 0.02^2); the layer-0 projection is its own `nn.Linear`, the deeper projections are copies of one
    freshly initialised `nn.Linear` (identical at start).
    """

    vision_prompts = True

    def __init__(self, clip_model: nn.Module, n_ctx_text: int = 2, depth_text: int = 9,
                 ctx_init: str = "a photo of a"):
        super().__init__()
        if depth_text < 1:
            raise ValueError(f"MaPLe needs PROMPT_DEPTH_TEXT >= 1, got {depth_text}")
        _check_depth(clip_model, depth_text, depth_text, "MaPLe")
        self._init_text_prompts(clip_model, n_ctx_text, depth_text, ctx_init)
        width_t = text_tower(clip_model).width
        width_v = vision_tower(clip_model).width
        first = nn.Linear(width_t, width_v)
        deep = nn.Linear(width_t, width_v)
        self.proj = nn.ModuleList([first] + [copy.deepcopy(deep) for _ in range(depth_text - 1)])

    def forward(self) -> PromptSet:
        text = list(self.text)
        return PromptSet(text=text, vision=[proj(t) for proj, t in zip(self.proj, text)])

    def tensor_specs(self) -> List[TensorSpec]:
        specs = _prompt_specs(self.text, "text", "text")
        for i, proj in enumerate(self.proj):
            specs.append(TensorSpec(f"proj.{i}.weight", "vision", proj.weight.shape[-1]))
            specs.append(TensorSpec(f"proj.{i}.bias", "vision", proj.bias.numel()))
        return specs


def learners_for(clip_model: nn.Module) -> List[str]:
    """Names of the registered learners whose prompts `clip_model`'s towers can take."""
    text_ok = text_tower(clip_model).prompt_problem() is None
    vision_ok = vision_tower(clip_model).promptable
    return [entry.name for entry in LEARNERS.values()
            if (text_ok or not entry.target.text_prompts) and (vision_ok or not entry.target.vision_prompts)]


def _check_depth(clip_model: nn.Module, depth_text: int, depth_vision: int, learner: str) -> None:
    """Prompts only in towers that take them (TowerNotSupported naming the tower and the learners that work), and
    prompt depths within the towers' blocks."""
    text, vision = text_tower(clip_model), vision_tower(clip_model)
    for side, depth, problem in (("vision", depth_vision, vision.prompt_problem()),
                                 ("text", depth_text, text.prompt_problem())):
        if depth > 0 and problem is not None:
            usable = learners_for(clip_model)
            raise TowerNotSupported(
                f"TRAINER.PROMETAR.LEARNER {learner} puts prompts into the {side} tower, but {text.info.name}: "
                f"{problem}. Learners for this model: {', '.join(usable) or 'none'} (see README, 'Backbones')")
    n_text, n_vision = text.n_blocks, vision.n_blocks
    if depth_text > n_text:
        raise ValueError(f"PROMPT_DEPTH_TEXT={depth_text} exceeds the {n_text} blocks of the text transformer")
    if depth_vision > n_vision:
        raise ValueError(f"PROMPT_DEPTH_VISION={depth_vision} exceeds the {n_vision} blocks of the vision transformer")


def build_learner(name: str, clip_model: nn.Module, **options) -> PromptLearner:
    """Build a learner by registry name (`LEARNERS`). An unknown name raises KeyError and an option the learner
    does not take raises TypeError, each naming the valid choices."""
    entry = LEARNERS[name]
    entry.check_options(options, "learner")
    return entry.target(clip_model, **options)


def official_key(name: str) -> str:
    """Name in the official IVLP / PromptSRC / ProMetaR model (its whole CustomCLIP) of the `IVLPLearner` tensor
    `name`: `text.0` is `prompt_learner.ctx`, `vision.0` is `image_encoder.VPT`, and deeper prompts `text.<i>` /
    `vision.<i>` are the `VPT_shallow` of block i of the text / image transformer.  The one mapping between the
    two layouts: reading official files inverts it."""
    side, _, index = name.partition(".")
    if side not in ("text", "vision") or not index.isdigit():
        raise KeyError(f"{name!r} is not an IVLP prompt tensor (text.<i> or vision.<i>); the official model has no "
                       f"place for it")
    i = int(index)
    if i == 0:
        return "prompt_learner.ctx" if side == "text" else "image_encoder.VPT"
    tower = "text_encoder" if side == "text" else "image_encoder"
    return f"{tower}.transformer.resblocks.{i}.VPT_shallow"


def _ivlp_name(official: str) -> Optional[str]:
    """Inverse of `official_key`: the `IVLPLearner` name of an official key, None for every other key."""
    parts = official.split(".")
    i = int(parts[3]) if len(parts) == 5 and parts[1:3] == ["transformer", "resblocks"] and parts[3].isdigit() else 0
    for side in ("text", "vision"):
        if official_key(f"{side}.{i}") == official:
            return f"{side}.{i}"
    return None


def official_to_ivlp_state_dict(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Map the learnable tensors of an official IVLP/PromptSRC/ProMetaR checkpoint (whole CustomCLIP) to
    `IVLPLearner` keys (`official_key` inverted); everything else (frozen CLIP, token buffers, zero-shot encoder)
    is dropped. Keys are taken as they are: strip DataParallel's `module.` first
    (`prometar.engine.checkpoint.strip_module_prefix`, as `prometar.build` does)."""
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        name = _ivlp_name(key)
        if name is not None:
            out[name] = value
    return {k: v.float() for k, v in out.items()}
