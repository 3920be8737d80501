"""What the project knows about a loaded CLIP besides its modules, and the errors of loading and prompting one.

Loaders (`prometar.clip_loader`, `prometar.open_clip_loader`) attach a `BackboneInfo` to the model they return
(attribute `prometar_backbone`); the tower adapters (`prometar.towers`) read it, and fall back to the defaults of
the model's family for a model built elsewhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

__all__ = ["ClipLoadError", "TowerNotSupported", "BackboneInfo", "INFO_ATTR", "OPENAI_MEAN", "OPENAI_STD",
           "backbone_info_of", "CACHE_ENV", "DOWNLOAD_ENV", "clip_cache_dir"]

CACHE_ENV = "PROMETAR_CLIP_CACHE"
DOWNLOAD_ENV = "PROMETAR_ALLOW_DOWNLOAD"

#: OpenAI CLIP's image normalisation (also open_clip's default).
OPENAI_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
#: Attribute of a loaded model that holds its `BackboneInfo`.
INFO_ATTR = "prometar_backbone"


class ClipLoadError(RuntimeError):
    """CLIP weights could not be found or read."""


class TowerNotSupported(ValueError):
    """A model's text or vision tower cannot do what was asked (e.g. deep prompts in a ResNet); the message names
    the tower and what works instead."""


@dataclass(frozen=True)
class BackboneInfo:
    """Input and tokenizer facts of a loaded CLIP.

    tokenizer: "clip-bpe" (OpenAI's byte-pair tokenizer with start / end-of-text tokens, as OpenAI's package and
    open_clip's `SimpleTokenizer` implement it), or a description of another tokenizer (its text tower then runs
    no prompts). tokenizer_kwargs: keyword arguments of open_clip's `SimpleTokenizer` from the model's config.
    """

    name: str
    family: str                      # "openai" or "open_clip"
    image_size: Tuple[int, int]
    mean: Tuple[float, ...] = OPENAI_MEAN
    std: Tuple[float, ...] = OPENAI_STD
    interpolation: str = "bicubic"
    context_length: int = 77
    tokenizer: str = "clip-bpe"
    tokenizer_kwargs: Tuple[Tuple[str, object], ...] = field(default=())


def backbone_info_of(model) -> Optional[BackboneInfo]:
    """The `BackboneInfo` a loader attached to `model`, or None."""
    return getattr(model, INFO_ATTR, None)


def clip_cache_dir() -> Path:
    """Folder searched for OpenAI weight files (and open_clip's URL downloads): `$PROMETAR_CLIP_CACHE`, else
    `~/.cache/clip` (where OpenAI's `clip.load` and open_clip put them)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "clip").expanduser()
