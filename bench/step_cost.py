#!/usr/bin/env python
"""Cost of one ProMetaR iteration vs a plain prompt-learner step: time, peak memory, FLOPs.

Setting: CLIP of `--shape` (default ViT-B/16; every OpenAI name, e.g. ViT-L/14, or RN50 with `--learner CoOp`)
with random weights, the official prompt configuration (4 text + 4 vision context tokens, depth 9 / 9 clamped to
the shape's layer count: 0 for a ResNet image tower, CTX_INIT "a photo of a"), prompt SGD
lr 0.0025 momentum 0.9 weight decay 5e-4, modulator SGD lr 2.5e-4 (same momentum / decay), ADAPT_LR 5e-4,
LR_RATIO 5e-4, DIM_RATE 8, second-order meta step; a batch of 4 random images at the model's resolution with
4 distinct labels out of N classes (cycled when N < 4), the same batch for every variant.

Variants, each measured with a freshly built model (same seeds) in its own child process (`--in-process` runs
them in this process instead: faster, but CPU peak memory is then not isolated):

* ivlp:     a plain learner step (`ProMetaRStep(meta_reg=False)`: forward, CE, backward, SGD step);
* reg:      the regularised step alone (teacher image features + `ProMetaRStep._regularised_step`);
* prometar: the full ProMetaR iteration (regularised step + bi-level meta step; the script checks it ran).

`--variants` picks some of them (e.g. `--variants prometar` for large class counts). `--text-chunk N`
(repeatable: one row per value and class count) sets TRAINER.PROMETAR.TEXT_CHUNK for every variant: 0 encodes
all classes at once (the computation before chunking existed), N > 0 chunks of N classes, -1 (default) the
automatic choice (from `--text-chunk-mb`, or from the free memory); each row records the chunks used.

Per variant: `--warmup` untimed iterations (>= 1), then `--iters` timed ones (CUDA synchronised around each;
median reported); peak memory over warm-up + timed iterations (CPU: peak RSS `ru_maxrss` of the child process,
which includes the model weights; CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, taken
after the model is built); then one more, untimed iteration under `torch.utils.flop_counter.FlopCounterMode`
(CPU fused-attention kernels counted too; see `_common.flop_counter`) gives GFLOP per iteration.

Target checks (CPU, fp32). At 100 classes (all variants): prometar peak <= 2.5 x ivlp peak; reg_step_s <= 2 x
ivlp_s; prometar GFLOP/s >= 0.67 x ivlp GFLOP/s. Class-count targets: at 10 classes prometar_s <= 4 x ivlp_s;
at 300 classes a chunked row against the unchunked row of the same run: peak <= 0.5 x, time <= 1.25 x; at
1000 classes prometar peak <= 8 GB (8192 MB).

    python bench/step_cost.py --json bench/results/step_cost_cpu.json
    python bench/step_cost.py --n-cls 300 --text-chunk 0 --text-chunk -1 --variants prometar
    python bench/step_cost.py --device cuda --prec fp16 --json bench/results/step_cost_cuda_fp16.json
    python bench/step_cost.py --shape RN50 --learner CoOp --json bench/results/step_cost_cpu_fp32_rn50.json
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common` when imported from elsewhere
import _common  # noqa: E402  (puts the repository root on sys.path when prometar is not installed)
from _common import (cuda_peak_mb, current_rss_mb, env_info, flop_counter, format_table, median,  # noqa: E402
                     peak_rss_mb, resolve_device, set_threads, sync, time_call, write_json)

import torch  # noqa: E402

from prometar.clip_loader import CLIP_SHAPES, build_clip  # noqa: E402
from prometar.learners import LEARNERS, build_learner  # noqa: E402
from prometar.meta import GradientModulator, MetaSampler, ProMetaRStep  # noqa: E402
from prometar.model import PromptedCLIP  # noqa: E402
from prometar.templates import IMAGENET_TEMPLATES  # noqa: E402
from prometar.text_chunks import AUTO  # noqa: E402
from prometar.towers import text_tower, vision_tower  # noqa: E402

VARIANTS = ("ivlp", "reg", "prometar")
DEFAULT_N_CLS = (10, 100)
CUDA_EXTRA_N_CLS = (500,)
BATCH = 4
#: The official configuration (configs/trainers/ProMetaR/vit_b16_c2_ep10_batch4_4+4ctx.yaml).
OFFICIAL = dict(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9, ctx_init="a photo of a",
                lr=0.0025, momentum=0.9, weight_decay=5e-4, lr_mod=2.5e-4, adapt_lr=5e-4, lr_ratio=5e-4,
                dim_rate=8)
#: The issue's targets: (name, description, lhs key, "<=" or ">=", factor, rhs key): lhs OP factor * rhs.
TARGETS = (
    ("peak", "prometar peak <= 2.5 x ivlp peak", "prometar_peak_mb", "<=", 2.5, "ivlp_peak_mb"),
    ("reg_time", "reg_step_s <= 2 x ivlp_s", "reg_step_s", "<=", 2.0, "ivlp_s"),
    ("flop_rate", "prometar GFLOP/s >= 0.67 x ivlp GFLOP/s", "prometar_gflop_per_s", ">=", 0.67, "ivlp_gflop_per_s"),
)


#: Class-count targets: (name, description, n_cls, lhs key, factor, rhs key or None, compare with the unchunked
#: row of the same run): lhs <= factor * rhs (rhs None: factor is an absolute bound).
CHUNK_TARGETS = (
    ("ivlp_ratio_10", "10 classes: prometar_s <= 4.0 x ivlp_s", 10, "prometar_s", 4.0, "ivlp_s", False),
    ("chunk_peak_300", "300 classes: chunked prometar peak <= 0.5 x unchunked", 300, "prometar_peak_mb", 0.5,
     "prometar_peak_mb", True),
    ("chunk_time_300", "300 classes: chunked prometar_s <= 1.25 x unchunked", 300, "prometar_s", 1.25,
     "prometar_s", True),
    ("peak_1000", "1000 classes: prometar peak <= 8 GB (8192 MB)", 1000, "prometar_peak_mb", 8192.0, None, False),
)


def target_check(row: Dict, lhs: str, op: str, factor: float, rhs: str) -> Optional[bool]:
    """True / False, or None when a value it needs was not measured (NaN / None, e.g. with --no-flops)."""
    a, b = row.get(lhs), row.get(rhs)
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return bool(a <= factor * b) if op == "<=" else bool(a >= factor * b)


def _cpu_fp32(row: Dict) -> bool:
    return row["device"].startswith("cpu") and row["prec"] == "fp32"


def _chunk_target_row(row: Dict) -> bool:
    """The class-count targets are stated for ViT-B/16 shapes on CPU in fp32."""
    return _cpu_fp32(row) and row.get("shape") == "ViT-B/16"


def is_target_row(row: Dict) -> bool:
    return row["n_cls"] == 100 and _cpu_fp32(row) and all(row.get(k) is not None for k in ("ivlp_s", "reg_step_s"))


# ---------------------------------------------------------------------------------------------- one variant
def _labels(n_cls: int, seed: int) -> torch.Tensor:
    """BATCH labels: distinct classes drawn from n_cls (cycled when n_cls < BATCH); always >= 2 classes."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randperm(n_cls, generator=g)[:min(n_cls, BATCH)]
    return classes.repeat((BATCH + len(classes) - 1) // len(classes))[:BATCH].sort().values


def _build(spec: Dict, device: torch.device):
    """Model, step and inputs of one variant, from seeds only (identical for every variant)."""
    seed = spec["seed"]
    clip_model = build_clip(spec["shape"], seed=seed)
    if spec["prec"] == "fp16":  # what `load_clip(..., precision="fp16")` keeps: OpenAI's half weights
        from prometar.clip_loader import convert_weights

        convert_weights(clip_model)
    clip_model = clip_model.to(device)
    depth_t = min(OFFICIAL["depth_text"], text_tower(clip_model).n_blocks)
    depth_v = min(OFFICIAL["depth_vision"], vision_tower(clip_model).n_blocks)  # 0: a ResNet takes no prompts
    torch.manual_seed(seed)  # learner init
    options = dict(n_ctx_text=OFFICIAL["n_ctx_text"], n_ctx_vision=OFFICIAL["n_ctx_vision"], depth_text=depth_t,
                   depth_vision=depth_v, ctx_init=OFFICIAL["ctx_init"])
    takes = LEARNERS[spec["learner"]].options  # the official settings of the options this learner has
    learner = build_learner(spec["learner"], clip_model,
                            **{k: v for k, v in options.items() if k in takes}).to(device)
    templates = IMAGENET_TEMPLATES[:spec["templates"]]
    model = PromptedCLIP(clip_model, learner, _common.class_names(spec["n_cls"], seed=seed), precision=spec["prec"],
                         amp_dtype=spec["amp_dtype"], teacher_templates=templates,
                         text_chunk=spec.get("text_chunk", AUTO), text_chunk_mb=spec.get("text_chunk_mb", 0.0)).train()
    optim = torch.optim.SGD(learner.parameters(), lr=OFFICIAL["lr"], momentum=OFFICIAL["momentum"],
                            weight_decay=OFFICIAL["weight_decay"])
    modulator = optim_mod = None
    if spec["variant"] != "ivlp":
        specs = learner.tensor_specs()
        named = dict(learner.named_parameters())
        modulator = GradientModulator(specs, [named[s.name].shape for s in specs],
                                      dim_rate=OFFICIAL["dim_rate"]).to(device)
        optim_mod = torch.optim.SGD(modulator.parameters(), lr=OFFICIAL["lr_mod"], momentum=OFFICIAL["momentum"],
                                    weight_decay=OFFICIAL["weight_decay"])
    step = ProMetaRStep(model, modulator, optim, optim_mod, MetaSampler(seed=seed), adapt_lr=OFFICIAL["adapt_lr"],
                        lr_ratio=OFFICIAL["lr_ratio"], first_order=False, meta_reg=spec["variant"] != "ivlp")
    res = clip_model.visual.input_resolution
    g = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(BATCH, 3, res, res, generator=g).to(device)
    labels = _labels(spec["n_cls"], seed + 2).to(device)
    info = dict(depth_text=depth_t, depth_vision=depth_v, text_tokens=int(model.token_embeds.shape[1]),
                trainable_params=sum(p.numel() for p in learner.parameters()),
                modulator_params=sum(p.numel() for p in modulator.parameters()) if modulator is not None else 0,
                labels=labels.tolist(), text_chunk=model.text_chunks.size(True, spec["n_cls"]),
                text_chunk_first_order=model.text_chunks.size(False, spec["n_cls"]),
                text_chunk_note=model.text_chunks.note)
    return model, step, images, labels, info


def measure_variant(spec: Dict) -> Dict:
    """Time, peak memory and FLOPs of one (configuration, variant), in the current process."""
    device = resolve_device(spec["device"])
    set_threads(spec.get("threads"))
    model, step, images, labels, info = _build(spec, device)
    variant = spec["variant"]
    meta_ran: List[bool] = []

    if variant == "ivlp":
        def iteration():
            step(images, labels)
    elif variant == "reg":
        def iteration():
            step._regularised_step(images, labels, model.teacher_image_features(images))
    elif variant == "prometar":
        def iteration():
            meta_ran.append(step(images, labels).meta_ran)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")

    gc.collect()
    sync(device)
    if device.type == "cuda":
        base_mb = torch.cuda.memory_allocated(device) / 2 ** 20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base_mb = current_rss_mb()
    for _ in range(spec["warmup"]):
        iteration()
    times = [time_call(iteration, device) for _ in range(spec["iters"])]
    sync(device)
    peak_mb = cuda_peak_mb(device) if device.type == "cuda" else peak_rss_mb()
    if variant == "prometar" and not all(meta_ran):
        raise RuntimeError(f"the meta step did not run (labels {info['labels']}): the measurement is not ProMetaR")

    gflop = float("nan")
    if spec["flops"]:
        with flop_counter() as counter:
            iteration()
        gflop = counter.get_total_flops() / 1e9
    return dict(variant=variant, n_cls=spec["n_cls"], s=median(times), s_all=times, peak_mb=peak_mb,
                base_mb=base_mb, gflop=gflop, **info, **env_info(device))


# ---------------------------------------------------------------------------------------------- child processes
def _run_child(spec: Dict, timeout: Optional[float]) -> Dict:
    """`measure_variant(spec)` in a fresh interpreter (isolated peak RSS, allocator, caches)."""
    with tempfile.TemporaryDirectory(prefix="prometar-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(spec), str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              env=dict(os.environ))
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stdout.splitlines()[-30:])
            raise RuntimeError(f"measurement child for {spec['variant']} at n_cls={spec['n_cls']} failed "
                               f"(exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def _child_main(argv: Sequence[str]) -> int:
    spec, out = json.loads(argv[0]), Path(argv[1])
    result = measure_variant(spec)
    out.write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------- rows, checks
#: Row key prefix of each variant.
PREFIX = {"ivlp": "ivlp", "reg": "reg_step", "prometar": "prometar"}


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return None
    return a / b


def make_row(results: Dict[str, Dict], spec: Dict) -> Dict:
    """One row (class count x text-chunk setting); keys of variants not measured are None."""
    first = next(iter(results.values()))
    # each variant's child resolves the chunk sizes itself (automatic: from the free memory at its build);
    # the row's are prometar's when it was measured
    chunked = results.get("prometar", first)
    row: Dict = {"n_cls": spec["n_cls"], "text_chunk": chunked["text_chunk"],
                 "text_chunk_first_order": chunked["text_chunk_first_order"], "text_chunk_setting": spec["text_chunk"],
                 "text_chunks_by_variant": {v: [r["text_chunk"], r["text_chunk_first_order"]] for v, r in results.items()}}
    for variant, prefix in PREFIX.items():
        r = results.get(variant)
        peak = "reg_peak_mb" if variant == "reg" else f"{prefix}_peak_mb"
        base = "reg_base_mb" if variant == "reg" else f"{prefix}_base_mb"
        step_mb = "reg_step_mb" if variant == "reg" else f"{prefix}_step_mb"
        row.update({f"{prefix}_s": r and r["s"], peak: r and r["peak_mb"], f"{prefix}_gflop": r and r["gflop"],
                    f"{prefix}_gflop_per_s": r and _ratio(r["gflop"], r["s"]), base: r and r["base_mb"],
                    # peak above the memory held once the model is built (weights, interpreter / CUDA context excluded)
                    step_mb: r and r["peak_mb"] - r["base_mb"], f"{prefix}_s_all": r and r["s_all"]})
    row.update({
        "device": first["device"],
        "prec": spec["prec"] if spec["prec"] != "amp" else f"amp-{spec['amp_dtype']}",
        "learner": spec["learner"],
        "shape": spec["shape"],
        "variants": sorted(results),
        "prometar_over_ivlp_s": _ratio(row["prometar_s"], row["ivlp_s"]),
        "reg_over_ivlp_s": _ratio(row["reg_step_s"], row["ivlp_s"]),
        "peak_ratio": _ratio(row["prometar_peak_mb"], row["ivlp_peak_mb"]),
        "gflop_ratio": _ratio(row["prometar_gflop"], row["ivlp_gflop"]),
        "gflop_rate_ratio": _ratio(row["prometar_gflop_per_s"], row["ivlp_gflop_per_s"]),
        "step_mem_ratio": _ratio(row["prometar_step_mb"], row["ivlp_step_mb"]),
        "iters": spec["iters"], "warmup": spec["warmup"], "batch": BATCH, "labels": first["labels"],
        "text_tokens": first["text_tokens"], "depth_text": first["depth_text"], "depth_vision": first["depth_vision"],
        "trainable_params": first["trainable_params"],
        "modulator_params": results["prometar"]["modulator_params"] if "prometar" in results else None,
        "teacher_templates": spec["templates"], "isolated": spec["isolated"], "text_chunk_note": chunked["text_chunk_note"],
        "device_name": first["device_name"], "threads": first["threads"], "torch": first["torch"],
    })
    row["target_checks"] = ({name: target_check(row, *rest) for name, _, *rest in TARGETS}
                            if is_target_row(row) else None)
    return row


def _peak_line(row: Dict) -> str:
    return (f"{row['prometar_peak_mb']:.0f} MB vs {row['ivlp_peak_mb']:.0f} MB (x{row['peak_ratio']:.2f}; above the "
            f"built model: {row['prometar_step_mb']:.0f} MB vs {row['ivlp_step_mb']:.0f} MB, x{row['step_mem_ratio']:.2f})")


def _unchunked_twin(rows: Sequence[Dict], row: Dict, key: str) -> Optional[Dict]:
    """The unchunked CPU fp32 row of the same class count that measured `key`, if any."""
    return next((r for r in rows if r["n_cls"] == row["n_cls"] and not r["text_chunk"] and _chunk_target_row(r)
                 and r.get(key) is not None), None)


def chunk_checks(rows: Sequence[Dict]) -> List[Tuple[str, str, bool, str]]:
    """(name, description, passed, values) of the class-count targets on CPU fp32 rows; the chunked targets
    compare a chunked row with the unchunked row of the same class count (both measured in this run)."""
    out = []
    for name, text, n_cls, lhs, factor, rhs, vs_unchunked in CHUNK_TARGETS:
        for row in rows:
            if row["n_cls"] != n_cls or not _chunk_target_row(row) or row.get(lhs) is None:
                continue
            where = f"chunk {row['text_chunk']}" if row["text_chunk"] else "unchunked"
            if vs_unchunked:
                ref = _unchunked_twin(rows, row, rhs) if row["text_chunk"] else None
                if ref is None:
                    continue
                bound, where = factor * ref[rhs], f"{where}; unchunked {ref[rhs]:.4g}"
            elif rhs is None:
                bound = factor
            elif row.get(rhs) is not None:
                bound, where = factor * row[rhs], f"{where}; {rhs} {row[rhs]:.4g}"
            else:
                continue
            out.append((name, text, bool(row[lhs] <= bound), f"{row[lhs]:.4g} (bound {bound:.4g}; {where})"))
    return out


def check_lines(rows: Sequence[Dict]) -> List[str]:
    """PASS/FAIL lines of the issue's targets (100 classes, CPU, fp32; and the class-count targets)."""
    lines = []
    for row in rows:
        if not is_target_row(row):
            continue
        values = {"peak": _peak_line(row),
                  "reg_time": f"{row['reg_step_s']:.3g} s vs {row['ivlp_s']:.3g} s (x{row['reg_over_ivlp_s']:.2f})",
                  "flop_rate": f"{row['prometar_gflop_per_s'] or float('nan'):.3g} vs "
                               f"{row['ivlp_gflop_per_s'] or float('nan'):.3g} GFLOP/s "
                               f"(x{row['gflop_rate_ratio'] or float('nan'):.2f})"}
        for name, text, *rest in TARGETS:
            ok = target_check(row, *rest)
            note = " [memory not isolated: --in-process]" if name == "peak" and not row["isolated"] else ""
            lines.append(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}: {text}: {values[name]}{note}")
    for name, text, ok, values in chunk_checks(rows):
        lines.append(f"{'PASS' if ok else 'FAIL'}: {text}: {values}")
    if not lines:
        lines.append("target checks: not applicable (they need CPU fp32 rows at 100 classes with all variants, "
                     "or at 10, 300 or 1000 classes)")
    return lines


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-cls", type=int, action="append", metavar="N",
                   help=f"number of classes (repeatable; default {' '.join(map(str, DEFAULT_N_CLS))}, "
                        f"plus {' '.join(map(str, CUDA_EXTRA_N_CLS))} on CUDA)")
    p.add_argument("--text-chunk", type=int, action="append", metavar="N",
                   help="TRAINER.PROMETAR.TEXT_CHUNK: 0 = all classes at once, N > 0 = chunks of N classes, -1 = "
                        "automatic (default); repeatable: one row per value and class count")
    p.add_argument("--text-chunk-mb", type=float, default=0.0, metavar="MB",
                   help="TRAINER.PROMETAR.TEXT_CHUNK_MB: budget of the automatic choice (default 0: from free memory)")
    p.add_argument("--max-unchunked-cls", type=int, default=None, metavar="N",
                   help="skip --text-chunk 0 rows above N classes (where all classes at once do not fit in memory)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help=f"variants to measure (default all: {' '.join(VARIANTS)})")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per variant (median reported); default 3")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations before timing (>= 1); default 1")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps or auto")
    p.add_argument("--prec", default="fp32", choices=("fp32", "fp16", "amp"),
                   help="fp32 (default), fp16 (OpenAI's half weights) or amp (autocast, --amp-dtype)")
    p.add_argument("--amp-dtype", default="bf16", choices=("bf16", "fp16"), help="autocast dtype for --prec amp")
    p.add_argument("--learner", default="IVLP", choices=sorted(LEARNERS), help="prompt learner; default IVLP")
    p.add_argument("--shape", default="ViT-B/16", choices=sorted(CLIP_SHAPES), help="CLIP shape; default ViT-B/16")
    p.add_argument("--templates", type=int, default=1, metavar="T",
                   help=f"teacher text templates (first T of {len(IMAGENET_TEMPLATES)}; default 1). Built once "
                        f"before timing; per-iteration cost does not depend on T, only the set-up time does")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, prompts, class names, inputs, sampler")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP-counting iteration")
    p.add_argument("--in-process", action="store_true",
                   help="measure in this process (no child processes; CPU peak memory not isolated)")
    p.add_argument("--child-timeout", type=float, default=None, help="seconds allowed per measurement child")
    p.add_argument("--strict", action="store_true", help="exit status 1 when a target check fails")
    p.add_argument("--json", metavar="PATH", help="write the rows as a JSON list")
    args = p.parse_args(argv)
    if args.iters < 1 or args.warmup < 1:
        p.error("--iters and --warmup must be >= 1")
    if args.n_cls and any(n < 2 for n in args.n_cls):
        p.error("--n-cls must be >= 2 (the meta step needs >= 2 classes in the batch)")
    if not 1 <= args.templates <= len(IMAGENET_TEMPLATES):
        p.error(f"--templates must be in 1..{len(IMAGENET_TEMPLATES)}")
    if args.text_chunk and any(c < AUTO for c in args.text_chunk):
        p.error("--text-chunk must be -1 (automatic), 0 (all classes at once) or a number of classes")
    args.text_chunk = args.text_chunk or [AUTO]
    args.variants = [v for v in VARIANTS if v in args.variants]
    return args


def _measure_all(spec: Dict, variants: Sequence[str], args: argparse.Namespace, device: torch.device) -> Dict:
    results = {}
    for variant in variants:
        vspec = dict(spec, variant=variant)
        results[variant] = measure_variant(vspec) if args.in_process else _run_child(vspec, args.child_timeout)
        r = results[variant]
        print(f"  n_cls={spec['n_cls']} text_chunk={r['text_chunk']} {variant:8s} {r['s']:.4g} s/iter, "
              f"peak {r['peak_mb']:.0f} MB, {r['gflop']:.4g} GFLOP", flush=True)
        if args.in_process:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--_child":
        return _child_main(argv[1:])
    args = parse_args(argv)
    device = resolve_device(args.device)
    set_threads(args.threads)
    n_cls_list = args.n_cls or list(DEFAULT_N_CLS) + (list(CUDA_EXTRA_N_CLS) if device.type == "cuda" else [])
    if args.prec == "fp16" and device.type == "cpu":
        print("note: --prec fp16 on CPU runs half-precision kernels that CPUs are slow at", file=sys.stderr)

    rows = []
    for n_cls in n_cls_list:
        for chunk in args.text_chunk:
            if chunk == 0 and args.max_unchunked_cls is not None and n_cls > args.max_unchunked_cls:
                print(f"  n_cls={n_cls} text_chunk=0 skipped (--max-unchunked-cls {args.max_unchunked_cls})")
                continue
            spec = dict(n_cls=n_cls, device=str(device), prec=args.prec, amp_dtype=args.amp_dtype,
                        learner=args.learner, shape=args.shape, iters=args.iters, warmup=args.warmup,
                        templates=args.templates, threads=args.threads, seed=args.seed, flops=not args.no_flops,
                        isolated=not args.in_process, text_chunk=chunk, text_chunk_mb=args.text_chunk_mb)
            rows.append(make_row(_measure_all(spec, args.variants, args, device), spec))

    info = env_info(device)
    mem = "peak RSS per child process" if device.type == "cpu" else "max_memory_allocated"
    if device.type == "cpu" and args.in_process:
        mem = "peak RSS of this process (NOT isolated: --in-process)"
    print(f"\nStep cost: CLIP {args.shape} (random weights), learner {args.learner}, batch {BATCH}, "
          f"prec {rows[0]['prec']}, {info['device']} ({info['device_name']}), {info['threads']} threads; "
          f"median of {args.iters} after {args.warmup} warm-up; memory: {mem}")
    print(format_table(rows, [
        ("n_cls", "classes"), ("text_chunk", "chunk"), ("text_chunk_first_order", "chunk 1st"), ("ivlp_s", "ivlp s"), ("reg_step_s", "reg s"), ("prometar_s", "prometar s"),
        ("prometar_over_ivlp_s", "x time"), ("ivlp_peak_mb", "ivlp MB"), ("reg_peak_mb", "reg MB"),
        ("prometar_peak_mb", "prometar MB"), ("peak_ratio", "x mem"), ("step_mem_ratio", "x mem>base"), ("ivlp_gflop", "ivlp GF"),
        ("reg_step_gflop", "reg GF"), ("prometar_gflop", "prometar GF"), ("ivlp_gflop_per_s", "ivlp GF/s"),
        ("prometar_gflop_per_s", "prometar GF/s")]))
    lines = check_lines(rows)
    print("\n".join(lines))
    if args.json:
        print(f"wrote {write_json(args.json, rows)}")
    failed = any(line.startswith("FAIL") for line in lines)
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
