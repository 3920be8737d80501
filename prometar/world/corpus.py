"""The pretraining corpus: captions of scenes and the deterministic stream of captioned batches."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .scenes import COLOUR_NAMES, IMAGE_SIZE, PATTERNS, SHAPES, Scene, render_scene, sample_scene

__all__ = ["make_caption", "prepared_batch"]

_PATTERN_ADJ = {
    "solid": [("solid", 3), ("plain", 2), ("", 6)],
    "striped": [("striped", 6), ("stripy", 1)],
    "dotted": [("dotted", 5), ("spotted", 2), ("polka-dot", 1)],
    "checkered": [("checkered", 5), ("checked", 2), ("chequered", 1)],
    "hollow": [("hollow", 5), ("outlined", 3)],
}
_PATTERN_WITH = {
    "solid": ["filled with a single colour", "with no pattern"],
    "striped": ["with stripes", "covered in stripes", "with a striped pattern"],
    "dotted": ["with dots", "covered in dots", "with polka dots"],
    "checkered": ["with a checkerboard pattern", "with checks", "covered in squares"],
    "hollow": ["drawn as an outline", "with an empty middle"],
}
_COLOUR_SYN = {"gray": [("gray", 3), ("grey", 1)], "purple": [("purple", 4), ("violet", 1)]}
_TEMPLATES = [
    ("a photo of a {}.", 4), ("a picture of a {}.", 2), ("an image of a {}.", 2), ("a {}.", 3), ("{}", 2),
    ("there is a {} in the picture.", 1), ("a close-up photo of a {}.", 1), ("a rendering of a {}.", 1),
    ("a drawing of a {}.", 1), ("this is a {}.", 1), ("a blurry photo of a {}.", 1), ("a small {}.", 1),
    ("a big {}.", 1),
]


def _pick(rng: np.random.Generator, items):
    if isinstance(items[0], tuple):
        w = np.array([x[1] for x in items], dtype=np.float64)
        return items[int(rng.choice(len(items), p=w / w.sum()))][0]
    return items[int(rng.integers(len(items)))]


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def _describe(rng: np.random.Generator, obj: Tuple[str, str, str], partial: bool = True) -> str:
    """A noun phrase (without article) for an object ``(pattern, colour, shape)``."""
    pattern, colour, shape = obj
    keep_p, keep_c, keep_s = True, True, True
    if partial:
        r = rng.uniform()
        if r < 0.12:
            keep_p = False
        elif r < 0.20:
            keep_c = False
        elif r < 0.26:
            keep_s = False
    cword = _pick(rng, _COLOUR_SYN.get(colour, [(colour, 1)])) if keep_c else ""
    noun = shape if keep_s else _pick(rng, ["shape", "object", "thing", "figure"])
    style = rng.uniform()
    if keep_p and style < 0.25 and pattern != "solid" or (keep_p and style < 0.1):
        # "red triangle with stripes" / "triangle that is red and striped"
        if rng.uniform() < 0.7 or not cword:
            return " ".join(w for w in (cword, noun, _pick(rng, _PATTERN_WITH[pattern])) if w)
        return f"{noun} that is {cword} and {_pick(rng, _PATTERN_ADJ[pattern]) or 'plain'}"
    pword = _pick(rng, _PATTERN_ADJ[pattern]) if keep_p else ""
    words = [pword, cword] if rng.uniform() < 0.75 else [cword, pword]
    return " ".join(w for w in (*words, noun) if w)


def make_caption(rng: np.random.Generator, scene: Scene) -> str:
    """A caption of a scene's main object with varied wording (see the module docstring)."""
    m = scene.main
    desc = _describe(rng, (m.pattern, m.colour, m.shape))
    template = _pick(rng, _TEMPLATES)
    text = template.format(desc)
    if text.startswith("a {}".format(desc)) or " a " + desc in text:
        text = text.replace(f"a {desc}", f"{_article(desc)} {desc}", 1)
    r = rng.uniform()
    if scene.distractors and r < 0.3:
        d = scene.distractors[int(rng.integers(len(scene.distractors)))]
        dd = _describe(rng, (d.pattern, d.colour, d.shape))
        rel = _pick(rng, ["next to", "beside", "and", "near"])
        text = text.rstrip(".") + f" {rel} {'a small' if rng.uniform() < 0.5 else _article(dd)} {dd}."
    elif scene.bg_word and r < 0.45:
        text = text.rstrip(".") + f" on a {scene.bg_word} background."
    return text


def _caption_matches(caption_attrs: Tuple[Optional[str], Optional[str], Optional[str]],
                     obj: Tuple[str, str, str]) -> bool:
    return all(a is None or a == b for a, b in zip(caption_attrs, obj))


_ALL_TRIPLES = [(p, c, s) for p in PATTERNS for c in COLOUR_NAMES for s in SHAPES]


def _batch(seed: int, step: int, batch_size: int, size: int = IMAGE_SIZE):
    """Images (uint8 N,H,W,3), captions and main-object triples of one pretraining step (deterministic)."""
    rng = np.random.default_rng([int(seed), 2, int(step)])
    images, captions, triples = [], [], []
    for _ in range(batch_size):
        main = _ALL_TRIPLES[int(rng.integers(len(_ALL_TRIPLES)))]
        scene = sample_scene(rng, main, hardness=float(rng.uniform()))
        images.append(render_scene(scene, size))
        captions.append(make_caption(rng, scene))
        triples.append(main)
    # ~3% noisy pairs: the caption of another image
    for i in range(batch_size):
        if rng.uniform() < 0.03:
            j = int(rng.integers(batch_size))
            captions[i] = captions[j]
    return np.stack(images), captions, triples


def prepared_batch(seed: int, step: int, batch_size: int):
    """What a training step needs, as numpy: uint8 images, token ids and the false-negative mask."""
    from ..clip_loader import openai_clip

    clip = openai_clip()

    images, captions, triples = _batch(seed, step, batch_size)
    tokens = clip.tokenize(captions).numpy()
    attrs = [_caption_attrs(c) for c in captions]
    fn = np.array([[j != i and _caption_matches(attrs[j], triples[i]) for j in range(batch_size)]
                   for i in range(batch_size)], dtype=bool)
    return images, tokens, fn


def _caption_attrs(caption: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """Which (pattern, colour, shape) a caption's main phrase asserts (None = not said); used for the
    false-negative mask only. Parses the words before a relation word or 'background'."""
    head = caption
    for sep in (" next to ", " beside ", " and a", " and an", " near ", " on a "):
        k = head.find(sep)
        if k >= 0:
            head = head[:k]
    words = head.replace(".", " ").split()
    text = " " + " ".join(words) + " "
    shape = next((s for s in SHAPES if f" {s} " in text), None)
    colour = None
    for c in COLOUR_NAMES:
        syns = [w for w, _ in _COLOUR_SYN.get(c, [(c, 1)])]
        if any(f" {w} " in text for w in syns):
            colour = c
    pattern = None
    for p in PATTERNS:
        syns = [w for w, _ in _PATTERN_ADJ[p] if w] + [w.split()[-1] for w in _PATTERN_WITH[p]]
        if any(f" {w} " in text for w in syns):
            pattern = p
    return pattern, colour, shape
