"""Zero-shot probe: accuracy of a plain CLIP on a generated benchmark (base, new and all classes)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, Optional, Union

from .benchmark import DATASET_DIR, SPLIT_FILE

__all__ = ["zeroshot_accuracy", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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

    from ..clip_loader import openai_clip

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
