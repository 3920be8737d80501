#!/usr/bin/env python
"""Wall time of the same 4-job `prometar sweep` with 1 local worker vs 2, threads per job set by the sweep.

The sweep: base-to-new on the bundled benchmark (`prometar_world`, generated into a temporary folder) with the
bundled small CLIP (`prometar-world`), seeds 1 and 2: 2 training jobs + 2 new-class evaluations, each a real
`train.py` process (built-in engine, CPU, `--epochs` epochs, `--shots` shots). Each worker count runs the whole
sweep into a fresh output folder; the sweep sets OMP/MKL threads per job to cores // workers (at least 1).
Target: 2 workers take <= 0.65x the 1-worker wall time. The machine's load average before and after each
measurement is recorded (the result means little on a busy machine).

    python bench/sweep.py --json bench/results/sweep_cpu.json

On a machine with a GPU, `--gpu-ks 1 2 4` also measures the throughput of K concurrent jobs on GPU 0 (`--gpus 0
--jobs-per-gpu K`) at ViT-B/16 shapes (a randomly initialised ViT-B/16 CLIP; `--gpu-jobs` training jobs).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common` when imported from elsewhere
from _common import ensure_repo_on_path, write_json  # noqa: E402

ensure_repo_on_path()

from prometar.sweep.cli import sweep_main  # noqa: E402

TARGET_RATIO = 0.65


def _load() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def run_sweep(argv: Sequence[str], log: Path) -> Dict[str, object]:
    """One `prometar sweep` call; returns its wall time and summary (its console output goes to ``log``)."""
    start = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = sweep_main(list(argv))
    wall = time.perf_counter() - start
    log.write_text(buf.getvalue())
    if code != 0:
        raise SystemExit(f"bench/sweep.py: prometar sweep {' '.join(argv)} exited with {code}; see {log}")
    out = Path(argv[argv.index("--output") + 1])
    [summary_path] = out.glob("sweeps/*/summary.json")
    summary = json.loads(summary_path.read_text())
    return {"wall_s": round(wall, 3), "summary": summary}


def cpu_bench(args: argparse.Namespace, work: Path) -> Dict[str, object]:
    from prometar.world import generate_world

    data = work / "data"
    generate_world(str(data))
    opts = ["--engine", "builtin", "--device", "cpu", "OPTIM.MAX_EPOCH", str(args.epochs), "OPTIM_VNET.MAX_EPOCH",
            str(args.epochs), "DATALOADER.NUM_WORKERS", "0"]
    result: Dict[str, object] = {"jobs": 4, "threads_per_job": {}, "load_before": {}, "load_after": {},
                                 "job_wall_s": {}}
    for workers in args.workers:
        out = work / f"out_w{workers}"
        argv = ["base2new", "--data", str(data), "--output", str(out), "--datasets", "prometar_world",
                "--configs", "world_ep10_batch4_4+4ctx", "--seeds", "1", "2", "--shots", str(args.shots),
                "--workers", str(workers), "--retries", "0", "--no-report", "--", *opts]
        result["load_before"][str(workers)] = _load()
        run = run_sweep(argv, work / f"sweep_w{workers}.log")
        result["load_after"][str(workers)] = _load()
        summary = run["summary"]
        assert summary["counts"]["done"] == 4, summary["counts"]
        result[f"workers_{workers}_s"] = run["wall_s"]
        result["threads_per_job"][str(workers)] = summary["sweep"]["threads_per_job"]
        result["job_wall_s"][str(workers)] = {j["id"]: j["wall_s"] for j in summary["jobs"]}
        print(f"{workers} worker(s), {summary['sweep']['threads_per_job']} thread(s) per job: "
              f"{run['wall_s']:.1f} s for 4 jobs (load {result['load_before'][str(workers)]} -> "
              f"{result['load_after'][str(workers)]})", flush=True)
    if "workers_1_s" in result and "workers_2_s" in result:
        ratio = result["workers_2_s"] / result["workers_1_s"]
        result["ratio"] = round(ratio, 3)
        result["target_ratio"] = TARGET_RATIO
        result["pass"] = ratio <= TARGET_RATIO
        print(f"ratio 2 workers / 1 worker = {ratio:.3f} (target <= {TARGET_RATIO}): "
              f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")
    return result


def gpu_bench(args: argparse.Namespace, work: Path) -> List[Dict[str, object]]:
    import torch

    from prometar.clip_loader import build_clip, save_clip
    from prometar.world import generate_world

    if not torch.cuda.is_available():
        print("--gpu-ks: no CUDA device, skipped")
        return []
    data = work / "data"
    if not data.exists():
        generate_world(str(data))
    clip_path = save_clip(build_clip("ViT-B/16", seed=0), work / "vit_b16_random.pt")
    rows = []
    for k in args.gpu_ks:
        out = work / f"gpu_k{k}"
        argv = ["base2new", "--phase", "train", "--data", str(data), "--output", str(out), "--datasets",
                "prometar_world", "--seeds", *[str(s) for s in range(1, args.gpu_jobs + 1)], "--shots",
                str(args.shots), "--gpus", "0", "--jobs-per-gpu", str(k), "--retries", "0", "--no-report", "--",
                "--engine", "builtin", "MODEL.BACKBONE.NAME", str(clip_path), "OPTIM.MAX_EPOCH", str(args.epochs),
                "OPTIM_VNET.MAX_EPOCH", str(args.epochs)]
        run = run_sweep(argv, work / f"gpu_k{k}.log")
        wall = run["wall_s"]
        rows.append({"jobs_per_gpu": k, "jobs": args.gpu_jobs, "wall_s": wall,
                     "jobs_per_hour": round(3600 * args.gpu_jobs / wall, 2),
                     "device_name": torch.cuda.get_device_name(0)})
        print(f"K={k} jobs per GPU: {wall:.1f} s for {args.gpu_jobs} jobs ({rows[-1]['jobs_per_hour']} jobs/h)")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="training epochs per job (default 2)")
    p.add_argument("--shots", type=int, default=4, help="shots per class (default 4)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    p.add_argument("--gpu-ks", type=int, nargs="*", default=[], help="with a GPU: jobs per GPU to time, e.g. 1 2 4")
    p.add_argument("--gpu-jobs", type=int, default=4, help="training jobs of the GPU sweep (default 4)")
    p.add_argument("--work", default="", help="work folder (default: a temporary one, removed after)")
    p.add_argument("--json", default="", help="write the result here")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        result = cpu_bench(args, work)
        result.update({"epochs": args.epochs, "shots": args.shots, "cpu_count": os.cpu_count(),
                       "protocol": "base2new prometar_world, seeds 1 2, bundled prometar-world CLIP, CPU"})
        if args.gpu_ks:
            result["gpu"] = gpu_bench(args, work)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
