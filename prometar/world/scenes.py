"""The procedural world: attributes, random scenes and their renderer (numpy only).

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

The benchmark draws its nuisances at ``hardness=0.75`` and photographs every scene with its own camera
(:func:`camera`: hues rotated by 30 degrees, a style that pretraining never shows and no caption names, as
EuroSAT's satellite view is for real CLIP); pretraining draws ``hardness`` uniformly in [0, 1] per image and
uses no camera, so the pretraining distribution contains clean scenes and benchmark-like scenes (as web data
contains, but is not, a benchmark's domain). Both values were chosen by ``bench/world.py --search``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ["SHAPES", "COLOURS", "COLOUR_NAMES", "PATTERNS", "IMAGE_SIZE", "Obj", "Scene", "sample_scene",
           "render_scene", "camera"]

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


def camera(img: np.ndarray, hue_shift: float) -> np.ndarray:
    """The benchmark's camera: rotate every pixel's hue by ``hue_shift`` degrees (uint8 in, uint8 out).

    A rotation about the grey axis of RGB space: greys, brightness and saturation are kept, only hues move
    (red towards yellow for a positive shift), as a false-colour sensor or a strongly tinted film would do.
    Pretraining images never pass through it and no caption names it.
    """
    if not hue_shift:
        return img
    a = math.radians(hue_shift)
    c, s, k, q = math.cos(a), math.sin(a), 1.0 / 3.0, math.sqrt(1.0 / 3.0)
    m = np.array([[c + (1 - c) * k, k * (1 - c) - q * s, k * (1 - c) + q * s],
                  [k * (1 - c) + q * s, c + k * (1 - c), k * (1 - c) - q * s],
                  [k * (1 - c) - q * s, k * (1 - c) + q * s, c + k * (1 - c)]], dtype=np.float32)
    out = (img.astype(np.float32) / 255) @ m.T
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
