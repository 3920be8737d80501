"""PrometarWorld: a procedural image benchmark and a small CLIP pretrained on it.

The command line `python -m prometar.world` (also `prometar world`): generate, pretrain, zeroshot, probe.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .benchmark import DATASET_DIR, HARDNESS, HUE_SHIFT, SPLIT_FILE, generate_world
from .pretraining import pretrain
from .probe import linear_probe_accuracy, zeroshot_accuracy

__all__ = ["main"]

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometar.world", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write the PrometarWorld benchmark to ROOT/prometar_world")
    g.add_argument("--root", required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--hue-shift", type=float, default=HUE_SHIFT,
                   help=f"hue rotation (degrees) of the benchmark's camera (default {HUE_SHIFT:g})")
    g.add_argument("--hardness", type=float, default=HARDNESS,
                   help=f"strength of the nuisances, 0..1 (default {HARDNESS:g})")
    p = sub.add_parser("pretrain", help="pretrain the small world CLIP and save it (+ .json metadata)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "assets" / "world_clip.pt"))
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
    q = sub.add_parser("probe", help="16-shot linear probe on frozen image features vs zero-shot, base and new")
    q.add_argument("--root", required=True, help="DATA folder holding prometar_world/")
    q.add_argument("--weights", default="prometar-world", help="bundled name or .pt path")
    q.add_argument("--shots", type=int, default=16)
    q.add_argument("--seed", type=int, default=1, help="few-shot draw (the runs' --seed)")
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        generate_world(args.root, seed=args.seed, hue_shift=args.hue_shift, hardness=args.hardness, verbose=True)
    elif args.cmd == "pretrain":
        if args.eval_root and not (Path(args.eval_root) / DATASET_DIR / SPLIT_FILE).is_file():
            generate_world(args.eval_root, seed=0, verbose=True)
        pretrain(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                 eval_root=args.eval_root, time_budget_s=args.time_budget, threads=args.threads,
                 log_every=args.log_every, eval_every=args.eval_every, workers=args.workers,
                 command="python -m prometar.world " + " ".join(argv if argv is not None else sys.argv[1:]))
    elif args.cmd == "probe":
        from ..clip_loader import load_clip

        model = load_clip(args.weights, precision="fp32")
        zs = zeroshot_accuracy(model, args.root)
        out = {"zero_shot": {k: round(100 * zs[k], 2) for k in ("base", "new")}, "linear_probe": {}, "C": {}}
        for part in ("base", "new"):
            res = linear_probe_accuracy(model, args.root, subsample=part, shots=args.shots, seed=args.seed)
            out["linear_probe"][part] = round(res["accuracy"], 2)
            out["C"][part] = res["C"]
        out["headroom"] = {k: round(out["linear_probe"][k] - out["zero_shot"][k], 2) for k in ("base", "new")}
        print(json.dumps(out))
    else:
        from ..clip_loader import load_clip

        model = load_clip(args.weights, precision="fp32")
        acc = zeroshot_accuracy(model, args.root, split=args.split)
        print(json.dumps({k: round(v, 4) for k, v in acc.items()}))
    return 0
