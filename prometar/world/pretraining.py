"""Contrastive pretraining of the small world CLIP.

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
frequent at this batch size. Text features come from :func:`prometar.prompting.encode_text` (the text path of the
prompted model, with no prompts), which runs the causal transformer only up to the longest caption of the batch:
exactly the features of the full 77-token forward. (The shipped weights were trained with an earlier copy of
this computation inside ``world.py``, built on ``nn.MultiheadAttention``: its features are bit for bit the same,
but its backward pass sums gradients in another order, so re-running the shipped command now reproduces the
shipped weights up to float rounding that grows over the 1000 steps, not bit for bit.) AdamW with warm-up and a
cosine schedule; weights saved with ``save_clip`` (fp16), then every remaining fp32 tensor (the 49408 x 64
token embedding dominates) is stored in fp16 too, as OpenAI's released files do, to stay under 10 MB.

Reproducibility: ``pretrain(seed)`` seeds torch and derives every image and caption from numpy generators
seeded by ``(seed, 2, step)``; data generation is single-threaded numpy, so it is deterministic (and the same
with or without prefetching worker processes). Weights are bitwise reproducible on one machine with the same
torch thread count (CPU matmul kernels may differ elsewhere).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ..io import atomic_write, atomic_write_text
from .benchmark import DATASET_DIR
from .corpus import prepared_batch
from .probe import CLIP_MEAN, CLIP_STD, zeroshot_accuracy

__all__ = ["WORLD_SHAPE", "pretrain"]

#: Shape of the shipped CLIP (text width 64 keeps the 49408-row token embedding at 6.3 MB in fp16).
WORLD_SHAPE = dict(embed_dim=64, image_resolution=40, vision_layers=4, vision_width=128, vision_patch_size=5,
                   context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                   transformer_layers=4)


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
    from ..clip_loader import save_clip

    save_clip(model, out_path, fp16=True)
    state = torch.load(str(out_path), map_location="cpu", weights_only=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    atomic_write(out_path, lambda f: torch.save(state, f))
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


def _optimizer(model, lr: float, weight_decay: float):
    """AdamW with weight decay on matrices only (not on embeddings, norms and biases)."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, lr: float, warmup: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * t))


def _batches(seed: int, steps: int, batch_size: int, workers: int):
    """(step, images, tokens, false-negative mask) for every step; with ``workers`` > 0 generated ahead in other
    processes (batches depend only on (seed, step), so the result is the same)."""
    if workers <= 0:
        for step in range(steps):
            yield (step, *prepared_batch(seed, step, batch_size))
        return
    import concurrent.futures
    import multiprocessing

    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: Dict[int, object] = {}
    try:
        for step in range(steps):
            for s in range(step, min(steps, step + 2 * workers + 1)):
                if s not in pending:
                    pending[s] = pool.submit(prepared_batch, seed, s, batch_size)
            yield (step, *pending.pop(step).result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _contrastive_step(model, opt, images, tokens, fn, res: int):
    """One symmetric InfoNCE step (false negatives masked); returns (loss, logits, labels)."""
    import torch
    import torch.nn.functional as F

    from ..prompting import encode_text, eot_positions

    x = _to_model_input(images, res)
    tokens, fn = torch.from_numpy(tokens), torch.from_numpy(fn)
    img = F.normalize(model.encode_image(x), dim=-1)
    txt = F.normalize(encode_text(model, model.token_embedding(tokens), eot_positions(tokens)), dim=-1)
    logits = (model.logit_scale.exp() * img @ txt.t()).masked_fill(fn, float("-inf"))
    labels = torch.arange(logits.shape[0])
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss, logits, labels


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

    from ..clip_loader import build_clip

    shape = dict(shape or WORLD_SHAPE)
    out_path = Path(out_path)
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    model = build_clip(shape, seed=seed).float().train()
    res = model.visual.input_resolution
    opt = _optimizer(model, lr, weight_decay)
    t0, t_data, done, loss_ema = time.time(), 0.0, 0, None
    print(f"pretraining PrometarWorld CLIP: steps={steps} batch={batch_size} seed={seed} shape={shape}", flush=True)
    batches = _batches(seed, steps, batch_size, workers)
    try:
        while True:
            td = time.time()
            item = next(batches, None)
            if item is None:
                break
            step, images, tokens, fn = item
            t_data += time.time() - td
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, lr, warmup, steps)
            loss, logits, labels = _contrastive_step(model, opt, images, tokens, fn, res)
            done = step + 1
            loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
            elapsed = time.time() - t0
            if step % log_every == 0 or done == steps:
                with torch.no_grad():
                    acc = (logits.argmax(1) == labels).float().mean().item()
                print(f"step {done}/{steps} loss {loss.item():.4f} (ema {loss_ema:.4f}) batch-acc {acc:.3f} "
                      f"scale {model.logit_scale.exp().item():.1f} lr {_lr_at(step, lr, warmup, steps):.2e} "
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
        batches.close()
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
        _write_metadata(meta, out_path, eval_root)
    return out_path


def _write_metadata(meta: dict, out_path: Path, eval_root: Optional[Union[str, os.PathLike]]) -> None:
    """``<out>.json``: the run's settings, and the saved model's zero-shot accuracy on ``eval_root`` if given."""
    from ..clip_loader import load_clip

    if eval_root is not None:
        zs_model = load_clip(str(out_path), precision="fp32")
        meta["zeroshot"] = {k: round(v, 4) for k, v in zeroshot_accuracy(zs_model, eval_root).items()}
        meta["zeroshot_benchmark"] = dict(root_seed=_benchmark_seed(eval_root), split="test",
                                          prompt="a photo of a {}.", precision="fp32 compute of the fp16 weights")
        print(f"zero-shot on {eval_root}: {meta['zeroshot']}", flush=True)
    atomic_write_text(out_path.with_suffix(".json"), json.dumps(meta, indent=2))


def _benchmark_seed(root) -> Optional[int]:
    p = Path(root) / DATASET_DIR / "generator.json"
    return json.loads(p.read_text()).get("seed") if p.is_file() else None
