"""Probes of a plain CLIP on a generated benchmark: zero-shot accuracy, and a few-shot linear probe on its
frozen image features (how much the features hold beyond what the class-name prompts use)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, Optional, Union

from .benchmark import DATASET_DIR, SPLIT_FILE

__all__ = ["zeroshot_accuracy", "linear_probe_accuracy", "PROBE_C_GRID", "CLIP_MEAN", "CLIP_STD"]

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


#: Inverse L2 strengths tried by the linear probe; the one with the best few-shot validation accuracy is used.
PROBE_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def _image_features(clip_model, impaths, batch_size: int = 256):
    """L2-normalised ``encode_image`` features (float64, CPU) of image files, CLIP's test transform."""
    import torch
    from PIL import Image

    device = next(clip_model.parameters()).device
    tf = _test_transform(clip_model.visual.input_resolution)
    out = []
    with torch.no_grad():
        for i in range(0, len(impaths), batch_size):
            x = torch.stack([tf(Image.open(p)) for p in impaths[i:i + batch_size]]).to(device, clip_model.dtype)
            f = clip_model.encode_image(x).float()
            out.append((f / f.norm(dim=-1, keepdim=True)).double().cpu())
    return torch.cat(out)


def _fit_logistic(x, y, n_classes: int, c: float):
    """Multinomial logistic regression, ``C * sum(cross-entropy) + |W|^2 / 2`` (bias not penalised), L-BFGS."""
    import torch
    import torch.nn.functional as F

    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=1000, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = c * F.cross_entropy(x @ w + b, y, reduction="sum") + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def linear_probe_accuracy(clip_model, root: Union[str, os.PathLike], subsample: str, shots: int = 16,
                          seed: int = 1, c_grid=PROBE_C_GRID) -> Dict[str, float]:
    """Accuracy of a logistic-regression probe on frozen image features, trained on the run's few-shot split.

    ``subsample``: ``base`` or ``new``; the probe is trained on those classes' own ``shots``-shot training
    images (the same draw, cached in ``split_fewshot/``, that prompt learners get with this ``seed``), its
    inverse L2 strength C is picked from ``c_grid`` by accuracy on the few-shot validation images (ties: the
    smaller C), and it is tested on those classes' test images. For ``new`` this measures how separable the
    new classes are, not transfer from the base classes. Returns ``{"accuracy": %, "C": ..., "n_test": ...}``.
    """
    import torch

    from ..data.datasets import build_lists
    from ..data.specs import SPECS

    name = next(n for n, s in SPECS.items() if s.dataset_dir == DATASET_DIR)
    lists = build_lists(name, str(root), num_shots=shots, seed=seed, subsample=subsample)
    parts = {}
    for key, items in (("train", lists.train), ("val", lists.val), ("test", lists.test)):
        parts[key] = (_image_features(clip_model, [d.impath for d in items]),
                      torch.tensor([d.label for d in items]))
    n_classes = int(max(int(parts[k][1].max()) for k in parts)) + 1
    best = None
    for c in c_grid:
        w, b = _fit_logistic(parts["train"][0], parts["train"][1], n_classes, float(c))
        acc = ((parts["val"][0] @ w + b).argmax(1) == parts["val"][1]).double().mean().item()
        if best is None or acc > best[0]:
            best = (acc, float(c), w, b)
    _, c, w, b = best
    x, y = parts["test"]
    acc = ((x @ w + b).argmax(1) == y).double().mean().item()
    return {"accuracy": 100.0 * acc, "C": c, "n_test": int(len(y))}
