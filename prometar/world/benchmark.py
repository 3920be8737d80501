"""The PrometarWorld benchmark: its 32 frozen classes and the generator of CoOp's JSON-split layout."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..io import atomic_write_text
from .scenes import COLOUR_NAMES, IMAGE_SIZE, PATTERNS, SHAPES, camera, render_scene, sample_scene

__all__ = ["DATASET_DIR", "SPLIT_FILE", "CLASSNAMES", "generate_world"]

DATASET_DIR = "prometar_world"
SPLIT_FILE = "split_zhou_PrometarWorld.json"
#: The benchmark's world parameters, chosen by ``bench/world.py --search`` (see the README's demo section): the hue
#: rotation (degrees) of its camera (:func:`prometar.world.scenes.camera`) and the strength of its nuisances.
HUE_SHIFT = 30.0
HARDNESS = 0.75

#: The 32 benchmark classes (label = index); base = first 16, new = last 16. See :mod:`prometar.world.scenes`. Found
#: by :func:`search_classnames` (a test re-runs it) and frozen so that the benchmark never changes.
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



def _parse(name: str) -> Tuple[str, str, str]:
    pattern, colour, shape = name.split("_")
    return pattern, colour, shape




def search_classnames(n_classes: int = 32, iters: int = 20000, seed: int = 1234) -> List[str]:
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
                   n_test: int = 30, classnames: Optional[Sequence[str]] = None, hardness: float = HARDNESS,
                   hue_shift: float = HUE_SHIFT, verbose: bool = False) -> Path:
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
                arr = camera(render_scene(sample_scene(rng, main, hardness)), hue_shift)
                rel = f"{name}/{name}_{k:04d}.png"
                Image.fromarray(arr, "RGB").save(img_dir / rel, format="PNG", optimize=False, compress_level=6)
                split[part].append([rel, label, name])
                k += 1
    atomic_write_text(out / SPLIT_FILE, json.dumps(split, indent=1))
    info = dict(generator="prometar.world.generate_world", seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                hardness=hardness, hue_shift=hue_shift, image_size=IMAGE_SIZE, n_classes=len(classnames),
                n_base=math.ceil(len(classnames) / 2))
    (out / "generator.json").write_text(json.dumps(info, indent=1) + "\n")
    if verbose:
        n = sum(len(v) for v in split.values())
        print(f"wrote {n} images of {len(classnames)} classes to {out} in {time.time() - t0:.1f}s")
    return out
