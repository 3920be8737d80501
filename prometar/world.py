"""PrometarWorld: a procedural image benchmark and a small CLIP pretrained on it.

No pretrained CLIP and no benchmark data can be downloaded everywhere, so the package ships a small but real
stand-in for "CLIP + a CoOp benchmark": a procedural world of rendered scenes, a small ``clip.model.CLIP``
contrastively pretrained on captioned scenes of that world (``prometar/assets/world_clip.pt``, loaded with
``load_clip("prometar-world")``), and a generator writing a benchmark in CoOp's JSON-split layout.

World design
------------
Every scene has one *main object* (the largest) described by three attributes:

* shape (8): circle, triangle, square, pentagon, hexagon, star, cross, crescent;
* colour (10): red, orange, yellow, green, teal, blue, purple, pink, brown, gray (neighbouring hues overlap
  after jitter: red/orange/brown/pink, teal/green/blue, purple/blue/pink);
* pattern (5): solid, striped, dotted, checkered, hollow (outline only; the background shows through).

Benchmark classes are 32 fixed attribute triples, named ``pattern_colour_shape`` (e.g.
``striped_red_triangle``; the prompt code turns underscores into spaces). They were chosen (by a fixed
search, then frozen in ``CLASSNAMES``) so that each half (base = labels 0..15, new = labels 16..31) uses
every shape twice, every pattern three or four times and every colour at least once, and so that each class
has near neighbours in its own half differing in a single attribute: the two halves are equally hard and
both need all three attributes to be read correctly.

Nuisances (each scene draws its own): background style (flat/gradient, smooth noise, low-contrast stripes,
dots or checks -- the same textures the pattern attribute uses -- or clutter of small blobs and bars, any
colour); 0-3 smaller distractor objects, half of them near misses of the main object (sharing two of its
three attributes, up to 0.92x its size: attribute binding -- "a photo of a striped red triangle" must not
match a striped blue triangle next to a solid red one), one of which may partially occlude it; position,
scale, rotation, aspect ratio and lighting gradient of every object; pattern angle, period and phase;
hue (+-18 degrees), saturation and value jitter of every colour; global contrast, brightness and colour cast;
blur and pixel noise. Objects are rendered anti-aliased at 2x and box-downsampled; files are 48 px PNGs, the
CLIP reads 40 px (resize shorter side, bicubic, centre crop, as CLIP's test transform).

The benchmark draws every nuisance at full strength (``hardness=1``); pretraining draws ``hardness``
uniformly in [0, 1] per image, so the pretraining distribution contains clean scenes and benchmark-like
scenes (as web data contains, but is not, a benchmark's domain).

Pretraining design
------------------
Images are freshly generated for every step from a stream seeded by ``(seed, step)``; they never reuse the
benchmark's seeds (``generate_world`` seeds by ``(seed, 1, label, index)``, pretraining by
``(seed, 2, step)``). The main object of a pretraining scene is drawn uniformly from all 400 attribute
triples, so every benchmark class -- base and new -- is a concept the model has seen, as real CLIP has seen
DTD's or EuroSAT's concepts on the web; what makes zero-shot imperfect is the vision problem (binding,
clutter, fine colour/shape distinctions at 40 px) and the caption distribution, which is not the prompt
template. Captions use varied templates ("a photo of a ...", "there is a ... in the picture", "a ... next to
a small blue circle", "a ... on a striped background"), varied attribute orders and phrasings ("a red
triangle with stripes", "a triangle that is red and striped"), synonyms ("spotted", "polka-dot", "checked",
"outlined", "grey", "violet", "plain" or no word at all for solid), partial descriptions (a dropped
attribute; "a red shape"), and about 3% are captions of a different scene (noisy web pairs).

The loss is CLIP's symmetric InfoNCE with its learnable logit scale (clamped at 100), except that a caption
that correctly describes another image of the batch (e.g. "a red shape" for two red objects) is removed from
that image's negatives (and vice versa): with 400 concepts and partial captions, such false negatives are
frequent at this batch size. Training text is run only up to the longest caption of the batch, which gives
exactly the features of the full 77-token forward (the text transformer is causal). AdamW with warm-up and a
cosine schedule; weights saved with ``save_clip`` (fp16), then every remaining fp32 tensor (the 49408 x 64
token embedding dominates) is stored in fp16 too, as OpenAI's released files do, to stay under 10 MB.

Reproducibility: ``pretrain(seed)`` seeds torch and derives every image and caption from numpy generators
seeded by ``(seed, 2, step)``; data generation is single-threaded numpy, so it is deterministic (and the same
with or without prefetching worker processes). Weights are bitwise reproducible on one machine with the same
torch thread count (CPU matmul kernels may differ elsewhere).

Shipped model (``prometar/assets/world_clip.json`` has the details): ViT 40 px / patch 5, vision width 128 x 4
layers, text width 64 x 4 layers, embedding 64; 1000 steps of batch 128 (seed 0, 1 thread) took 26 min on a
shared 2-core CPU; 8.4 MB. Zero-shot ("a photo of a {}.") on the seed-0 test split: base 67.3%, new 68.8%
(chance 6.25%), all 50.4% (32-way, chance 3.1%).

CLI::

    python -m prometar.world generate --root DATA [--seed S]
    python -m prometar.world pretrain --out prometar/assets/world_clip.pt [--steps N --seed S]
    python -m prometar.world zeroshot --root DATA [--weights PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "SHAPES", "COLOURS", "PATTERNS", "CLASSNAMES", "WORLD_SHAPE", "DATASET_DIR", "SPLIT_FILE",
    "render_scene", "sample_scene", "generate_world", "make_caption", "pretrain", "zeroshot_accuracy", "main",
]

DATASET_NAME = "PrometarWorld"
DATASET_DIR = "prometar_world"
SPLIT_FILE = "split_zhou_PrometarWorld.json"
IMAGE_SIZE = 48          # size of the PNG files
SUPERSAMPLE = 2          # anti-aliasing factor of the renderer

SHAPES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "cross", "crescent")
PATTERNS = ("solid", "striped", "dotted", "checkered", "hollow")
#: colour name -> (hue in degrees, saturation, value) of its centre
COLOURS: Dict[str, Tuple[float, float, float]] = {
    "red": (2.0, 0.85, 0.85),
    "orange": (28.0, 0.90, 0.95),
    "yellow": (54.0, 0.85, 0.95),
    "green": (118.0, 0.75, 0.70),
    "teal": (175.0, 0.80, 0.65),
    "blue": (222.0, 0.80, 0.85),
    "purple": (280.0, 0.65, 0.70),
    "pink": (330.0, 0.45, 0.95),
    "brown": (24.0, 0.75, 0.45),
    "gray": (0.0, 0.0, 0.55),
}
COLOUR_NAMES = tuple(COLOURS)

#: The 32 benchmark classes (label = index); base = first 16, new = last 16. See the module docstring. Found
#: by ``_search_classnames()`` (kept for reference) and frozen so that the benchmark never changes.
CLASSNAMES: Tuple[str, ...] = (
    # ---- base classes ----
    "checkered_yellow_pentagon", "solid_orange_square", "dotted_gray_star", "hollow_purple_triangle",
    "hollow_pink_triangle", "dotted_orange_star", "hollow_green_crescent", "striped_gray_cross",
    "solid_red_hexagon", "striped_gray_circle", "solid_gray_hexagon", "solid_brown_square",
    "dotted_gray_circle", "striped_teal_cross", "checkered_green_crescent", "checkered_blue_pentagon",
    # ---- new classes ----
    "checkered_orange_crescent", "dotted_purple_hexagon", "checkered_purple_hexagon", "striped_gray_square",
    "solid_orange_cross", "solid_orange_pentagon", "striped_red_circle", "hollow_pink_star",
    "solid_red_cross", "hollow_brown_star", "hollow_red_circle", "dotted_green_triangle",
    "checkered_blue_crescent", "striped_yellow_square", "solid_teal_pentagon", "dotted_purple_triangle",
)

#: Shape of the shipped CLIP (text width 64 keeps the 49408-row token embedding at 6.3 MB in fp16).
WORLD_SHAPE = dict(embed_dim=64, image_resolution=40, vision_layers=4, vision_width=128, vision_patch_size=5,
                   context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                   transformer_layers=4)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------------------------
# colours
# ----------------------------------------------------------------------------------------------------------
def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    i = int(h) % 6
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][i]
    m = v - c
    return np.array([r + m, g + m, b + m], dtype=np.float32)


def _colour_rgb(rng: np.random.Generator, name: str, jitter: float) -> np.ndarray:
    h, s, v = COLOURS[name]
    h = h + rng.uniform(-18, 18) * jitter
    if s > 0:
        s = float(np.clip(s * rng.uniform(1 - 0.3 * jitter, 1 + 0.15 * jitter), 0.15, 1.0))
    else:
        s = rng.uniform(0, 0.08 * jitter)
    v = float(np.clip(v * rng.uniform(1 - 0.3 * jitter, 1 + 0.12 * jitter), 0.1, 1.0))
    return _hsv_to_rgb(h, s, v)


def _random_rgb(rng: np.random.Generator, sat_max: float = 1.0) -> np.ndarray:
    return _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, sat_max), rng.uniform(0.15, 0.95))


# ----------------------------------------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Obj:
    shape: str
    colour: str
    pattern: str
    rgb: np.ndarray
    cx: float
    cy: float
    radius: float
    angle: float
    aspect: float
    pat_angle: float
    pat_period: float
    pat_phase: Tuple[float, float]
    shade_dir: float
    shade_amp: float


@dataclass
class Scene:
    objects: List[Obj]                    # in drawing order
    main_index: int
    bg: dict
    contrast: float
    brightness: float
    cast: np.ndarray
    blur: float
    noise: float
    noise_seed: int
    hardness: float = 1.0
    bg_word: Optional[str] = None         # a word describing the background, for captions

    @property
    def main(self) -> Obj:
        return self.objects[self.main_index]

    @property
    def distractors(self) -> List[Obj]:
        return [o for i, o in enumerate(self.objects) if i != self.main_index]


def _sample_obj(rng, shape, colour, pattern, cx, cy, radius, jitter) -> Obj:
    return Obj(shape=shape, colour=colour, pattern=pattern, rgb=_colour_rgb(rng, colour, jitter),
               cx=cx, cy=cy, radius=radius, angle=rng.uniform(0, 2 * math.pi),
               aspect=float(np.exp(rng.uniform(-0.15, 0.15))), pat_angle=rng.uniform(0, math.pi),
               pat_period=rng.uniform(0.34, 0.62), pat_phase=(rng.uniform(0, 1), rng.uniform(0, 1)),
               shade_dir=rng.uniform(0, 2 * math.pi), shade_amp=rng.uniform(0.0, 0.25))


def _near_miss(rng: np.random.Generator, main: Tuple[str, str, str]) -> Tuple[str, str, str]:
    """A triple sharing two of the main object's three attributes."""
    k = int(rng.integers(3))
    values = (PATTERNS, COLOUR_NAMES, SHAPES)[k]
    out = list(main)
    while out[k] == main[k]:
        out[k] = values[int(rng.integers(len(values)))]
    return tuple(out)


def sample_scene(rng: np.random.Generator, main: Tuple[str, str, str], hardness: float = 1.0) -> Scene:
    """Draw the nuisances of a scene whose main object is ``main = (pattern, colour, shape)``."""
    pattern, colour, shape = main
    h = float(hardness)
    # main object
    radius = rng.uniform(0.34, 0.56) - 0.08 * h * rng.uniform(0, 1)
    span = 0.12 + 0.3 * h
    cx, cy = rng.uniform(-span, span, size=2)
    cx = float(np.clip(cx, -0.95 + radius, 0.95 - radius))
    cy = float(np.clip(cy, -0.95 + radius, 0.95 - radius))
    main_obj = _sample_obj(rng, shape, colour, pattern, cx, cy, radius, jitter=0.5 + 0.5 * h)
    # distractors: random, or near misses of the main object (attribute binding); one may occlude it
    p = np.array([1.0 - 0.9 * h, 0.35 * h, 0.35 * h, 0.2 * h])
    n_dis = int(rng.choice(4, p=p / p.sum()))
    below: List[Obj] = []
    above: List[Obj] = []
    for i in range(n_dis):
        near = rng.uniform() < 0.5 * h
        if near:
            d = _near_miss(rng, main)
        else:
            while True:
                d = (PATTERNS[rng.integers(len(PATTERNS))], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
                     SHAPES[rng.integers(len(SHAPES))])
                if d != main:
                    break
        r = radius * rng.uniform(0.45, 0.92 if near else 0.8)
        occlude = i == 0 and rng.uniform() < 0.25 * h
        if occlude:  # overlapping the main object's rim, drawn on top of it
            a = rng.uniform(0, 2 * math.pi)
            dist = radius * rng.uniform(0.85, 1.15) + 0.3 * r
            x = float(np.clip(cx + dist * math.cos(a), -0.95 + r, 0.95 - r))
            y = float(np.clip(cy + dist * math.sin(a), -0.95 + r, 0.95 - r))
            above.append(_sample_obj(rng, d[2], d[1], d[0], x, y, r, jitter=1.0))
            continue
        best = None
        for _try in range(12):
            x, y = rng.uniform(-0.95 + r, 0.95 - r, size=2)
            gap = math.hypot(x - cx, y - cy) - (radius + r)
            if best is None or gap > best[0]:
                best = (gap, x, y)
            if gap > -0.2 * r:
                break
        below.append(_sample_obj(rng, d[2], d[1], d[0], float(best[1]), float(best[2]), r, jitter=1.0))
    objects = below + [main_obj] + above
    # background
    kinds = ["flat", "noise", "texture", "clutter"]
    probs = np.array([1.0, 0.5 * h + 0.1, 0.9 * h, 0.9 * h])
    kind = kinds[int(rng.choice(4, p=probs / probs.sum()))]
    sat_max = 0.25 + 0.6 * h
    c0 = _random_rgb(rng, sat_max)
    # keep the main object visible: the background must differ from its colour
    for _ in range(8):
        if np.abs(c0 - main_obj.rgb).sum() > 0.45:
            break
        c0 = _random_rgb(rng, sat_max)
    c1 = np.clip(c0 + rng.uniform(-0.35, 0.35, size=3).astype(np.float32) * (0.3 + 0.7 * h), 0, 1)
    bg = dict(kind=kind, c0=c0, c1=c1, grad_dir=rng.uniform(0, 2 * math.pi), grad_amp=rng.uniform(0, 0.6))
    bg_word = None
    if kind == "noise":
        bg["waves"] = [(rng.uniform(0.5, 3.0), rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))
                       for _ in range(4)]
    elif kind == "texture":
        bg["pattern"] = ("striped", "dotted", "checkered")[int(rng.integers(3))]
        bg["period"] = rng.uniform(0.12, 0.45)
        bg["angle"] = rng.uniform(0, math.pi)
        bg["phase"] = (rng.uniform(0, 1), rng.uniform(0, 1))
        bg_word = bg["pattern"]
    elif kind == "clutter":
        n = int(rng.integers(5, 16))
        bg["items"] = [(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.03, 0.11), rng.uniform(0, math.pi),
                        float(rng.uniform() < 0.5), _random_rgb(rng)) for _ in range(n)]
        bg_word = "cluttered"
    return Scene(objects=objects, main_index=len(below), bg=bg,
                 contrast=float(rng.uniform(1 - 0.35 * h, 1 + 0.15 * h)),
                 brightness=float(rng.uniform(-0.12, 0.12) * h),
                 cast=(1 + rng.uniform(-0.12, 0.12, size=3) * h).astype(np.float32),
                 blur=float(rng.uniform(0, 1.3) * h if rng.uniform() < 0.5 else 0.0),
                 noise=float(rng.uniform(0.0, 0.09) * h), noise_seed=int(rng.integers(2 ** 31)),
                 hardness=h, bg_word=bg_word)


# ----------------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------------
_GRIDS: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}


def _grid(n: int) -> Tuple[np.ndarray, np.ndarray]:
    if n not in _GRIDS:
        t = ((np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1).astype(np.float32)
        _GRIDS[n] = (t[None, :].repeat(n, 0), t[:, None].repeat(n, 1))  # x (columns), y (rows, down)
    return _GRIDS[n]


def _sd_polygon(x, y, n: int, rot: float = 0.0) -> np.ndarray:
    """Signed distance-like function of a regular n-gon of circumradius 1 (negative inside)."""
    apothem = math.cos(math.pi / n)
    d = None
    for k in range(n):
        a = rot + (2 * k + 1) * math.pi / n
        e = x * math.cos(a) + y * math.sin(a)
        d = e if d is None else np.maximum(d, e)
    return d - apothem


def _sd_shape(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return np.sqrt(x * x + y * y) - 0.88
    if shape == "triangle":
        return _sd_polygon(x, y + 0.12, 3, rot=math.pi / 2)
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.76
    if shape == "pentagon":
        return _sd_polygon(x, y, 5, rot=-math.pi / 2) + 0.05
    if shape == "hexagon":
        return _sd_polygon(x, y, 6) + 0.06
    if shape == "star":
        r = np.sqrt(x * x + y * y)
        th = np.arctan2(y, x) + math.pi / 2
        sector = 2 * math.pi / 5
        t = np.abs(((th % sector) / sector) - 0.5) * 2  # 1 at the tips, 0 between them
        outer, inner = 1.05, 0.45
        return r - (inner + (outer - inner) * t ** 1.6)
    if shape == "cross":
        w = 0.33
        ax, ay = np.abs(x), np.abs(y)
        return np.minimum(np.maximum(ax - w, ay - 0.92), np.maximum(ax - 0.92, ay - w))
    if shape == "crescent":
        r = np.sqrt(x * x + y * y)
        r2 = np.sqrt((x - 0.42) ** 2 + (y + 0.12) ** 2)
        return np.maximum(r - 0.92, 0.74 - r2)
    raise ValueError(f"unknown shape {shape!r}")


def _pattern_mask(o: Obj, lx, ly, px: float) -> np.ndarray:
    ca, sa = math.cos(o.pat_angle), math.sin(o.pat_angle)
    u = (lx * ca + ly * sa) / o.pat_period + o.pat_phase[0]
    v = (-lx * sa + ly * ca) / o.pat_period + o.pat_phase[1]
    sharp = 0.5 * o.pat_period / px   # edge softness of about one (super)pixel
    if o.pattern == "striped":
        return np.clip(0.5 + sharp * np.sin(2 * math.pi * u) / math.pi, 0, 1)
    if o.pattern == "checkered":
        return np.clip(0.5 + sharp * np.sin(2 * math.pi * u) * np.sin(2 * math.pi * v) / math.pi * 1.5, 0, 1)
    if o.pattern == "dotted":
        fu = u - np.floor(u) - 0.5
        fv = v - np.floor(v) - 0.5
        dist = np.sqrt(fu * fu + fv * fv) * o.pat_period
        return np.clip(0.5 - (dist - 0.26 * o.pat_period) / px, 0, 1)
    return None


def _draw(img: np.ndarray, o: Obj, n: int) -> None:
    X, Y = _grid(n)
    px_world = 2.0 / n
    x0, x1 = max(0, int((o.cx - o.radius * 1.3 + 1) / 2 * n)), min(n, int((o.cx + o.radius * 1.3 + 1) / 2 * n) + 2)
    y0, y1 = max(0, int((o.cy - o.radius * 1.3 + 1) / 2 * n)), min(n, int((o.cy + o.radius * 1.3 + 1) / 2 * n) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    gx, gy = X[y0:y1, x0:x1] - o.cx, Y[y0:y1, x0:x1] - o.cy
    c, s = math.cos(o.angle), math.sin(o.angle)
    lx = (gx * c + gy * s) / (o.radius * o.aspect)
    ly = (-gx * s + gy * c) * o.aspect / o.radius
    px = px_world / o.radius
    d = _sd_shape(o.shape, lx, ly)
    cover = np.clip(0.5 - d / px, 0, 1)
    if o.pattern == "hollow":
        cover = cover * np.clip(0.5 + (d + 0.24) / px, 0, 1)
    shade = 1 + o.shade_amp * (lx * math.cos(o.shade_dir) + ly * math.sin(o.shade_dir)) * 0.5
    col = o.rgb[None, None, :] * shade[..., None]
    m = _pattern_mask(o, lx, ly, px)
    if m is not None:
        col = col * (1 - 0.62 * m[..., None])
    region = img[y0:y1, x0:x1]
    region += (np.clip(col, 0, 1) - region) * cover[..., None]


def _background(sc: Scene, n: int) -> np.ndarray:
    X, Y = _grid(n)
    bg = sc.bg
    c0, c1 = bg["c0"], bg["c1"]
    g = (X * math.cos(bg["grad_dir"]) + Y * math.sin(bg["grad_dir"])) * 0.5 * bg["grad_amp"] + 0.5 * bg["grad_amp"]
    kind = bg["kind"]
    if kind == "noise":
        t = np.zeros_like(X)
        for f, a, ph in bg["waves"]:
            t += np.sin(math.pi * f * (X * math.cos(a) + Y * math.sin(a)) + ph)
        t = np.clip(0.5 + t / 4, 0, 1)
        mix = np.clip(0.5 * g + t, 0, 1)
    elif kind == "texture":
        ca, sa = math.cos(bg["angle"]), math.sin(bg["angle"])
        u = (X * ca + Y * sa) / bg["period"] + bg["phase"][0]
        v = (-X * sa + Y * ca) / bg["period"] + bg["phase"][1]
        sharp = 0.5 * bg["period"] / (2.0 / n)
        if bg["pattern"] == "striped":
            t = np.clip(0.5 + sharp * np.sin(2 * math.pi * u) / math.pi, 0, 1)
        elif bg["pattern"] == "checkered":
            t = np.clip(0.5 + sharp * np.sin(2 * math.pi * u) * np.sin(2 * math.pi * v) / math.pi * 1.5, 0, 1)
        else:
            fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
            t = np.clip(0.5 - (np.sqrt(fu * fu + fv * fv) - 0.26) * bg["period"] / (2.0 / n), 0, 1)
        mix = np.clip(0.3 * g + t, 0, 1)
    else:
        mix = g
    img = c0[None, None, :] + (c1 - c0)[None, None, :] * mix[..., None]
    img = np.ascontiguousarray(img, dtype=np.float32)
    if kind == "clutter":
        for (x, y, r, a, is_bar, rgb) in bg["items"]:
            x0, x1 = max(0, int((x - r * 2.2 + 1) / 2 * n)), min(n, int((x + r * 2.2 + 1) / 2 * n) + 2)
            y0, y1 = max(0, int((y - r * 2.2 + 1) / 2 * n)), min(n, int((y + r * 2.2 + 1) / 2 * n) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            gx, gy = X[y0:y1, x0:x1] - x, Y[y0:y1, x0:x1] - y
            if is_bar:
                c, s = math.cos(a), math.sin(a)
                lx, ly = gx * c + gy * s, -gx * s + gy * c
                d = np.maximum(np.abs(lx) - 2 * r, np.abs(ly) - 0.35 * r)
            else:
                d = np.sqrt(gx * gx + gy * gy) - r
            cover = np.clip(0.5 - d / (2.0 / n), 0, 1)
            region = img[y0:y1, x0:x1]
            region += (rgb - region) * cover[..., None]
    return img


def render_scene(sc: Scene, size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Render a scene to an ``(size, size, 3)`` uint8 array (deterministic)."""
    n = size * supersample
    img = _background(sc, n)
    for o in sc.objects:
        _draw(img, o, n)
    if supersample > 1:
        img = img.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    if sc.blur > 0:
        k = np.array([sc.blur * 0.5, 1.0, sc.blur * 0.5], dtype=np.float32)
        k /= k.sum()
        p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
        img = k[0] * p[:-2, 1:-1] + k[1] * p[1:-1, 1:-1] + k[2] * p[2:, 1:-1]
        p = np.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
        img = k[0] * p[:, :-2] + k[1] * p[:, 1:-1] + k[2] * p[:, 2:]
    img = (img - 0.5) * sc.contrast + 0.5 + sc.brightness
    img = img * sc.cast[None, None, :]
    if sc.noise > 0:
        nrng = np.random.default_rng(sc.noise_seed)
        img = img + nrng.standard_normal(img.shape, dtype=np.float32) * sc.noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# benchmark classes and generation
# ----------------------------------------------------------------------------------------------------------
def _parse(name: str) -> Tuple[str, str, str]:
    pattern, colour, shape = name.split("_")
    return pattern, colour, shape




def _search_classnames(n_classes: int = 32, iters: int = 20000, seed: int = 1234) -> List[str]:
    """Pick classes: in each half every shape twice, patterns balanced, every colour at least once, and many
    single-attribute neighbours within a half (equal counts in both halves). Local search over swaps."""
    rng = np.random.default_rng(seed)
    half = n_classes // 2

    def make_half():
        shapes = [s for s in SHAPES for _ in range(half // len(SHAPES))]
        cols = list(COLOUR_NAMES) + [COLOUR_NAMES[i] for i in rng.choice(len(COLOUR_NAMES), half - len(COLOUR_NAMES))]
        pats = [PATTERNS[i % len(PATTERNS)] for i in range(half)]
        rng.shuffle(cols)
        rng.shuffle(pats)
        return [[p, c, s] for p, c, s in zip(pats, cols, shapes)]

    def neighbours(part):
        return [sum(1 for b in part if sum(x != y for x, y in zip(a, b)) == 1) for a in part]

    def score(halves):
        flat = [tuple(t) for h in halves for t in h]
        if len(set(flat)) < len(flat):
            return -1e9
        n = [neighbours(h) for h in halves]
        return sum(map(sum, n)) - 4 * sum(k == 0 for nn in n for k in nn) - 3 * abs(sum(n[0]) - sum(n[1]))

    halves = [make_half(), make_half()]
    best = score(halves)
    for _ in range(iters):
        h = halves[int(rng.integers(2))]
        i, j = rng.choice(half, 2, replace=False)
        attr = int(rng.choice([0, 1]))  # swap patterns or colours between two classes of a half
        h[i][attr], h[j][attr] = h[j][attr], h[i][attr]
        s = score(halves)
        if s >= best:
            best = s
        else:
            h[i][attr], h[j][attr] = h[j][attr], h[i][attr]
    names = []
    for h in halves:
        order = rng.permutation(half)
        names += ["_".join(h[k]) for k in order]
    return names


def _image_seed(seed: int, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 1, int(label), int(index)])


def generate_world(root: Union[str, os.PathLike], seed: int = 0, n_train: int = 24, n_val: int = 6,
                   n_test: int = 30, classnames: Optional[Sequence[str]] = None, hardness: float = 1.0,
                   verbose: bool = False) -> Path:
    """Write the benchmark to ``ROOT/prometar_world`` (images + CoOp split file); return that folder.

    Deterministic: the same arguments give byte-identical files.
    """
    from PIL import Image

    classnames = list(classnames or CLASSNAMES)
    out = Path(root).expanduser() / DATASET_DIR
    img_dir = out / "images"
    split: Dict[str, list] = {"train": [], "val": [], "test": []}
    t0 = time.time()
    for label, name in enumerate(classnames):
        main = _parse(name)
        (img_dir / name).mkdir(parents=True, exist_ok=True)
        k = 0
        for part, count in (("train", n_train), ("val", n_val), ("test", n_test)):
            for _ in range(count):
                rng = _image_seed(seed, label, k)
                arr = render_scene(sample_scene(rng, main, hardness))
                rel = f"{name}/{name}_{k:04d}.png"
                Image.fromarray(arr, "RGB").save(img_dir / rel, format="PNG", optimize=False, compress_level=6)
                split[part].append([rel, label, name])
                k += 1
    tmp = out / (SPLIT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(split, f, indent=1)
    os.replace(tmp, out / SPLIT_FILE)
    info = dict(generator="prometar.world.generate_world", seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                hardness=hardness, image_size=IMAGE_SIZE, n_classes=len(classnames),
                n_base=math.ceil(len(classnames) / 2))
    (out / "generator.json").write_text(json.dumps(info, indent=1) + "\n")
    if verbose:
        n = sum(len(v) for v in split.values())
        print(f"wrote {n} images of {len(classnames)} classes to {out} in {time.time() - t0:.1f}s")
    return out


# ----------------------------------------------------------------------------------------------------------
# captions
# ----------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------
# pretraining
# ----------------------------------------------------------------------------------------------------------
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


def _prepared_batch(seed: int, step: int, batch_size: int):
    """What a training step needs, as numpy: uint8 images, token ids and the false-negative mask."""
    from .clip_loader import openai_clip

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


def _encode_text_truncated(model, tokens):
    """``model.encode_text`` computed over the first L positions only (exact: the transformer is causal)."""
    import torch

    L = int(tokens.argmax(dim=-1).max()) + 1
    t = tokens[:, :L]
    x = model.token_embedding(t).type(model.dtype) + model.positional_embedding[:L].type(model.dtype)
    x = x.permute(1, 0, 2)
    mask = torch.full((L, L), float("-inf")).triu_(1).to(x.dtype)
    for block in model.transformer.resblocks:
        x = x + block.attn(block.ln_1(x), block.ln_1(x), block.ln_1(x), need_weights=False, attn_mask=mask)[0]
        x = x + block.mlp(block.ln_2(x))
    x = x.permute(1, 0, 2)
    x = model.ln_final(x).type(model.dtype)
    return x[torch.arange(x.shape[0]), t.argmax(dim=-1)] @ model.text_projection


def _to_model_input(images_u8: np.ndarray, resolution: int):
    """uint8 N,H,W,3 -> normalised float tensor at CLIP's resolution (bicubic, antialiased, centre crop)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div_(255)
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp_(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _save_weights(model, out_path: Path) -> Path:
    """``save_clip`` (fp16), then store the remaining fp32 tensors in fp16 as well (OpenAI's files do)."""
    import torch
    from .clip_loader import save_clip

    save_clip(model, out_path, fp16=True)
    state = torch.load(str(out_path), map_location="cpu", weights_only=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    tmp = out_path.with_name(out_path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out_path)
    return out_path


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} with {torch.get_num_threads()} threads"


def pretrain(out_path: Union[str, os.PathLike], seed: int = 0, steps: int = 1000, batch_size: int = 128,
             lr: float = 1e-3, weight_decay: float = 0.1, warmup: int = 100, shape: Optional[dict] = None,
             log_every: int = 50, eval_root: Optional[Union[str, os.PathLike]] = None,
             metadata: bool = True, time_budget_s: Optional[float] = None, threads: Optional[int] = None,
             eval_every: int = 0, workers: int = 0, command: Optional[str] = None) -> Path:
    """Contrastively pretrain a small CLIP on captioned world scenes; save it (+ ``.json`` metadata).

    ``eval_root``: a generated benchmark to evaluate zero-shot on at the end (recorded in the metadata), and
    every ``eval_every`` steps if that is > 0 (10 test images per class; progress only).
    ``time_budget_s``: stop early (and record it) if training runs longer than this.
    ``threads``: torch CPU threads (default: leave torch's setting). On a machine shared with other jobs, 1 thread can
    be much faster than an oversubscribed 2; results are only bitwise reproducible with the same count.
    ``workers``: processes generating batches ahead of the training loop (0: in the loop). Same results.
    """
    import torch
    import torch.nn.functional as F

    from .clip_loader import build_clip, load_clip

    shape = dict(shape or WORLD_SHAPE)
    out_path = Path(out_path)
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    model = build_clip(shape, seed=seed).float().train()
    res = model.visual.input_resolution
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * 0.5 * (1 + math.cos(math.pi * t))

    t0 = time.time()
    t_data = 0.0
    done = 0
    loss_ema = None
    print(f"pretraining PrometarWorld CLIP: steps={steps} batch={batch_size} seed={seed} shape={shape}", flush=True)
    pool = None
    pending: Dict[int, object] = {}
    if workers > 0:  # batches depend only on (seed, step): prefetching them in other processes changes nothing
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for step in range(steps):
            td = time.time()
            if pool is not None:
                for s in range(step, min(steps, step + 2 * workers + 1)):
                    if s not in pending:
                        pending[s] = pool.submit(_prepared_batch, seed, s, batch_size)
                images, tokens, fn = pending.pop(step).result()
            else:
                images, tokens, fn = _prepared_batch(seed, step, batch_size)
            x = _to_model_input(images, res)
            tokens, fn = torch.from_numpy(tokens), torch.from_numpy(fn)
            t_data += time.time() - td
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            img = F.normalize(model.encode_image(x), dim=-1)
            txt = F.normalize(_encode_text_truncated(model, tokens), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.t()
            logits = logits.masked_fill(fn, float("-inf"))
            labels = torch.arange(batch_size)
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            done = step + 1
            loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
            elapsed = time.time() - t0
            if step % log_every == 0 or done == steps:
                with torch.no_grad():
                    acc = (logits.argmax(1) == labels).float().mean().item()
                print(f"step {done}/{steps} loss {loss.item():.4f} (ema {loss_ema:.4f}) batch-acc {acc:.3f} "
                      f"scale {model.logit_scale.exp().item():.1f} lr {lr_at(step):.2e} "
                      f"elapsed {elapsed:.0f}s (data {t_data:.0f}s)", flush=True)
            if eval_root is not None and eval_every > 0 and done % eval_every == 0 and done < steps:
                model.eval()
                acc = zeroshot_accuracy(model, eval_root, max_per_class=10)
                model.train()
                print(f"step {done} zero-shot (10/class): " + " ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
            if time_budget_s is not None and elapsed > time_budget_s:
                print(f"time budget {time_budget_s}s reached at step {done}", flush=True)
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    wall = time.time() - t0
    model.eval()
    _save_weights(model, out_path)
    size = out_path.stat().st_size
    print(f"saved {out_path} ({size / 1e6:.2f} MB) after {done} steps in {wall:.0f}s", flush=True)
    if metadata:
        meta = dict(name="prometar-world", file=out_path.name, seed=seed, steps=done, steps_planned=steps,
                    batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup, shape=shape,
                    wall_time_s=round(wall, 1), data_time_s=round(t_data, 1), machine=_machine(),
                    threads=torch.get_num_threads(), workers=workers, size_bytes=size, command=command,
                    final_loss_ema=round(float(loss_ema), 4))
        if eval_root is not None:
            zs_model = load_clip(str(out_path), precision="fp32")
            meta["zeroshot"] = {k: round(v, 4) for k, v in zeroshot_accuracy(zs_model, eval_root).items()}
            meta["zeroshot_benchmark"] = dict(root_seed=_benchmark_seed(eval_root), split="test",
                                              prompt="a photo of a {}.", precision="fp32 compute of the fp16 weights")
            print(f"zero-shot on {eval_root}: {meta['zeroshot']}", flush=True)
        with open(out_path.with_suffix(".json"), "w") as f:
            json.dump(meta, f, indent=2)
    return out_path


def _benchmark_seed(root) -> Optional[int]:
    p = Path(root) / DATASET_DIR / "generator.json"
    return json.loads(p.read_text()).get("seed") if p.is_file() else None


# ----------------------------------------------------------------------------------------------------------
# zero-shot evaluation
# ----------------------------------------------------------------------------------------------------------
def _test_transform(resolution: int):
    from torchvision import transforms as T

    return T.Compose([T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(resolution),
                      lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])


def zeroshot_accuracy(clip_model, root: Union[str, os.PathLike], split: str = "test",
                      max_per_class: Optional[int] = None, batch_size: int = 256,
                      template: str = "a photo of a {}.") -> Dict[str, float]:
    """Zero-shot accuracy of a plain ``clip.model.CLIP`` on a generated benchmark.

    base: base-class images classified among the base classes (the first ceil(C/2) labels); new: new-class
    images among the new classes (CoOp's base-to-new protocol); all: every image among all C classes.
    ``max_per_class`` evaluates the first images of each class only (for quick checks).
    """
    import torch
    from PIL import Image

    from .clip_loader import openai_clip

    clip = openai_clip()
    folder = Path(root).expanduser() / DATASET_DIR
    with open(folder / SPLIT_FILE) as f:
        items = json.load(f)[split]
    names: Dict[int, str] = {}
    for _, label, name in items:
        names[int(label)] = name
    n_cls = max(names) + 1
    n_base = math.ceil(n_cls / 2)
    if max_per_class is not None:
        seen: Dict[int, int] = {}
        kept = []
        for it in items:
            if seen.get(it[1], 0) < max_per_class:
                kept.append(it)
                seen[it[1]] = seen.get(it[1], 0) + 1
        items = kept
    device = next(clip_model.parameters()).device
    dtype = clip_model.dtype
    tf = _test_transform(clip_model.visual.input_resolution)
    with torch.no_grad():
        prompts = [template.format(names[i].replace("_", " ")) for i in range(n_cls)]
        txt = clip_model.encode_text(clip.tokenize(prompts).to(device)).float()
        txt = txt / txt.norm(dim=-1, keepdim=True)
        feats, labels = [], []
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            x = torch.stack([tf(Image.open(folder / "images" / p)) for p, _, _ in chunk]).to(device, dtype)
            f = clip_model.encode_image(x).float()
            feats.append(f / f.norm(dim=-1, keepdim=True))
            labels += [int(l) for _, l, _ in chunk]
        img = torch.cat(feats)
        y = torch.tensor(labels, device=device)
        sims = img @ txt.t()
        out = {"all": (sims.argmax(1) == y).float().mean().item()}
        base = y < n_base
        if base.any():
            out["base"] = (sims[base][:, :n_base].argmax(1) == y[base]).float().mean().item()
        if (~base).any():
            out["new"] = (sims[~base][:, n_base:].argmax(1) + n_base == y[~base]).float().mean().item()
    return {k: out[k] for k in ("base", "new", "all") if k in out}


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometar.world", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write the PrometarWorld benchmark to ROOT/prometar_world")
    g.add_argument("--root", required=True)
    g.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("pretrain", help="pretrain the small world CLIP and save it (+ .json metadata)")
    p.add_argument("--out", default=str(Path(__file__).parent / "assets" / "world_clip.pt"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-root", default=None,
                   help="benchmark root to evaluate zero-shot on at the end (generated with seed 0 if missing)")
    p.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=0, help="zero-shot check on --eval-root every N steps")
    p.add_argument("--workers", type=int, default=1, help="data-generating processes (0: none)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the shipped weights were trained so; 0: torch's choice)")
    z = sub.add_parser("zeroshot", help="zero-shot accuracy of a CLIP on a generated benchmark")
    z.add_argument("--root", required=True)
    z.add_argument("--weights", default="prometar-world", help="bundled name or .pt path")
    z.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        generate_world(args.root, seed=args.seed, verbose=True)
    elif args.cmd == "pretrain":
        if args.eval_root and not (Path(args.eval_root) / DATASET_DIR / SPLIT_FILE).is_file():
            generate_world(args.eval_root, seed=0, verbose=True)
        pretrain(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                 eval_root=args.eval_root, time_budget_s=args.time_budget, threads=args.threads,
                 log_every=args.log_every, eval_every=args.eval_every, workers=args.workers,
                 command="python -m prometar.world " + " ".join(argv if argv is not None else sys.argv[1:]))
    else:
        from .clip_loader import load_clip

        model = load_clip(args.weights, precision="fp32")
        acc = zeroshot_accuracy(model, args.root, split=args.split)
        print(json.dumps({k: round(v, 4) for k, v in acc.items()}))
    return 0



if __name__ == "__main__":
    sys.exit(main())
