#!/usr/bin/env python
"""Full-length (77 tokens) vs truncated text encoding of class prompts through CLIP's text tower.

For each class count N: N deterministic, plausible class names (see `_common.class_names`), prompts
"a photo of a {name}.", tokenized to CLIP's 77 tokens; a randomly initialised CLIP of `--shape` (default
ViT-B/16, fp32). Under `torch.no_grad()`, `prometar.prompting.encode_text` is timed

* full:      `length=77`, all 77 positions through the causal transformer (what CLIP itself does);
* truncated: the default, only the first max(end-of-text) + 1 positions (identical features).

One warm-up call of each, then `--repeats` timed calls (alternating full / truncated); medians are reported,
with the speed-up full / truncated and the max relative error between the two outputs (max over classes of
||full_i - trunc_i||_inf / ||full_i||_inf), which must be <= --tol (1e-5, fp32). The (untimed) output of CLIP's
own `encode_text` is also compared as a sanity check of the whole path (`--no-clip-check` skips it).

    python bench/text_encoder.py --json bench/results/text_encoder.json

Exit status 1 when an agreement check fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common` when imported from elsewhere
import _common  # noqa: E402  (puts the repository root on sys.path when prometar is not installed)
from _common import (env_info, format_table, median, resolve_device, set_threads, time_call,  # noqa: E402
                     write_json)

import torch  # noqa: E402

from prometar.clip_loader import CLIP_SHAPES, build_clip  # noqa: E402
from prometar.prompting import encode_text, eot_positions  # noqa: E402

DEFAULT_N_CLS = (100, 1000)
TEMPLATE = "a photo of a {}."


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max_i ||out_i - ref_i||_inf / ||ref_i||_inf (per-class scale, no blow-up at tiny entries)."""
    out, ref = out.double(), ref.double()
    num = (out - ref).abs().amax(dim=-1)
    den = ref.abs().amax(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    return float((num / den).max())


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-cls", type=int, action="append", metavar="N",
                   help=f"number of classes (repeatable; default {' '.join(map(str, DEFAULT_N_CLS))})")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each variant (after 1 warm-up); default 3")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps or auto")
    p.add_argument("--shape", default="ViT-B/16", choices=sorted(CLIP_SHAPES), help="CLIP shape; default ViT-B/16")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random CLIP weights and the class names")
    p.add_argument("--tol", type=float, default=1e-5, help="max relative error allowed, full vs truncated (fp32)")
    p.add_argument("--clip-tol", type=float, default=1e-4,
                   help="max relative error allowed vs CLIP's own encode_text (different attention kernel)")
    p.add_argument("--no-clip-check", action="store_true", help="skip the comparison with CLIP's encode_text")
    p.add_argument("--json", metavar="PATH", help="write the rows as a JSON list")
    args = p.parse_args(argv)
    args.n_cls = args.n_cls or list(DEFAULT_N_CLS)
    if any(n < 1 for n in args.n_cls):
        p.error("--n-cls must be >= 1")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


@torch.no_grad()
def measure(clip_model, n_cls: int, repeats: int, device: torch.device, seed: int, clip_check: bool) -> Dict:
    names = _common.class_names(n_cls, seed=seed)
    tokens = _common.clip.tokenize([TEMPLATE.format(n.replace("_", " ")) for n in names]).to(device)
    eot = eot_positions(tokens)
    embeds = clip_model.token_embedding(tokens)  # (n, 77, d): the same input for both variants

    def full():
        return encode_text(clip_model, embeds, eot, (), length=tokens.shape[1])

    def truncated():
        return encode_text(clip_model, embeds, eot)

    out_full, out_trunc = full(), truncated()  # warm-up (also the outputs compared below)
    times_full: List[float] = []
    times_trunc: List[float] = []
    for _ in range(repeats):
        times_full.append(time_call(full, device))
        times_trunc.append(time_call(truncated, device))
    row = {
        "n_cls": n_cls,
        "full_s": median(times_full),
        "truncated_s": median(times_trunc),
        "speedup": median(times_full) / median(times_trunc),
        "max_rel_err": rel_err(out_trunc, out_full),
        "tokens_full": int(tokens.shape[1]),
        "tokens_truncated": int(eot.max()) + 1,
        "full_s_all": times_full,
        "truncated_s_all": times_trunc,
    }
    if clip_check:
        row["max_rel_err_vs_clip"] = rel_err(out_full, clip_model.encode_text(tokens))
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    set_threads(args.threads)
    clip_model = build_clip(args.shape, seed=args.seed).float().to(device).eval()
    info = env_info(device)
    rows = []
    for n_cls in args.n_cls:
        row = measure(clip_model, n_cls, args.repeats, device, args.seed, not args.no_clip_check)
        row.update(shape=args.shape, repeats=args.repeats, dtype="fp32", **info)
        rows.append(row)
        print(f"  n_cls={n_cls}: full {row['full_s']:.4g} s, truncated {row['truncated_s']:.4g} s", flush=True)

    columns = [("n_cls", "classes"), ("tokens_full", "tok full"), ("tokens_truncated", "tok trunc"),
               ("full_s", "full s"), ("truncated_s", "trunc s"), ("speedup", "speed-up"),
               ("max_rel_err", "max rel err")]
    if not args.no_clip_check:
        columns.append(("max_rel_err_vs_clip", "vs CLIP"))
    print(f"\nText encoder, CLIP {args.shape} (random weights, fp32), {info['device']} ({info['device_name']}), "
          f"{info['threads']} threads, median of {args.repeats} after 1 warm-up, torch.no_grad()")
    print(format_table(rows, columns))

    ok = True
    for row in rows:
        good = row["max_rel_err"] <= args.tol
        ok &= good
        print(f"{'PASS' if good else 'FAIL'}: n_cls={row['n_cls']} truncated == full: max rel err "
              f"{row['max_rel_err']:.2e} <= {args.tol:g}")
        if "max_rel_err_vs_clip" in row:
            good = row["max_rel_err_vs_clip"] <= args.clip_tol
            ok &= good
            print(f"{'PASS' if good else 'FAIL'}: n_cls={row['n_cls']} full == CLIP encode_text: max rel err "
                  f"{row['max_rel_err_vs_clip']:.2e} <= {args.clip_tol:g}")
    if args.json:
        print(f"wrote {write_json(args.json, rows)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
