"""`prometar demo`: base-to-new on the bundled procedural benchmark with the bundled small CLIP, on any CPU.

Runs the real pipeline (dataset reader, few-shot sampling, base/new split, trainer, evaluator, logs, report):
zero-shot CLIP, IVLP (prompts trained with plain cross-entropy) and ProMetaR on seed 1; with `--full` also CoOp
(learned text context only) and a 16-shot linear probe on the frozen image features, over seeds 1, 2, 3. Runs go
to the output layout of the base-to-new scripts; then the base / new / HM table is printed and `report.md`,
`report.csv`, `report.png` (as `prometar report`) and `demo.json` (means and seed std per method) are written.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:
    from .sweep.jobs import Job

__all__ = ["main", "config_path", "METHODS"]

#: (folder name in the output tree, trainer config or "" for the probe, trained?, key in demo.json)
METHODS: Tuple[Tuple[str, str, bool, str], ...] = (
    ("ZeroShotCLIP", "world_zeroshot", False, "zero_shot"),
    ("LinearProbe", "", False, "linear_probe"),
    ("CoOp", "world_ep10_batch4_4ctx_coop", True, "coop"),
    ("IVLP", "world_ep10_batch4_4+4ctx_ivlp", True, "ivlp"),
    ("ProMetaR", "world_ep10_batch4_4+4ctx", True, "prometar"),
)
DEFAULT_METHODS = ("ZeroShotCLIP", "IVLP", "ProMetaR")
FULL_METHODS = tuple(m[0] for m in METHODS)
PROBE_CONFIG = "linear_probe"
SHOTS = 16


def config_path(*parts: str) -> str:
    """A shipped YAML: the repo's `configs/` (editable install) or the installed `prometar.configs`."""
    here = Path(__file__).resolve().parent
    for base in (here.parent / "configs", here / "configs"):
        path = base.joinpath(*parts)
        if path.is_file():
            return str(path)
    raise FileNotFoundError(f"config {'/'.join(parts)} not found under {here.parent / 'configs'} or "
                            f"{here / 'configs'}: reinstall prometar (`pip install -e .` from the repository)")


def _run(argv: List[str], folder: Path, what: str, verbose: bool) -> None:
    """One train.py run; its full output goes to `folder/log.txt` (and the console with --verbose)."""
    from .launch import train_main
    from .report import read_run

    print(f"{what} ...", end="" if not verbose else "\n", flush=True)
    start = time.time()
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        code = train_main(argv)
    if code != 0:
        raise SystemExit(f"\nprometar demo: train.py {' '.join(argv)} exited with {code}; see {folder / 'log.txt'}")
    result = read_run(str(folder))
    print(f" accuracy {result.accuracy:.1f}% ({time.time() - start:.0f} s, log: {folder / 'log.txt'})")


def _method_list(text: str) -> Tuple[str, ...]:
    """`--methods` value: comma-separated names from METHODS."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = [m[0] for m in METHODS]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(bad) or repr(text)}; "
                                         f"choose from {', '.join(known)}")
    return names


def _probe(data: Path, seed: int, split: str, folder: Path, device: str, shots: int) -> None:
    """The linear probe of one seed and split, written as a finished evaluation log that the report reads."""
    from .clip_loader import load_clip
    from .io import atomic_write_text
    from .world.probe import linear_probe_accuracy

    print(f"LinearProbe seed {seed}: {split} classes ...", end="", flush=True)
    start = time.time()
    model = load_clip("prometar-world", device=device or None, precision="fp32")
    res = linear_probe_accuracy(model, data, subsample=split, shots=shots, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "log.txt", (
        f"Linear probe (logistic regression on frozen image features) of prometar-world, {shots} shots of the "
        f"{split} classes, seed {seed}; C = {res['C']:g} chosen on the few-shot validation images\n"
        f"=> result\n* total: {res['n_test']:,}\n* accuracy: {res['accuracy']:.1f}%\n"))
    print(f" accuracy {res['accuracy']:.1f}% ({time.time() - start:.0f} s)")


def _finished(folder: Path) -> bool:
    from .report import read_run

    return folder.is_dir() and read_run(str(folder)).ok


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prometar demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="DATA folder; the benchmark is generated there if absent")
    parser.add_argument("--output", default="output/demo", help="output folder (base2new/ layout + report)")
    parser.add_argument("--full", action="store_true",
                        help="also CoOp and the linear probe, over seeds 1, 2, 3")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 1; with --full: 1 2 3)")
    parser.add_argument("--methods", type=_method_list, metavar="A,B,...",
                        help=f"comma-separated methods to run, from {','.join(m[0] for m in METHODS)} "
                             f"(default: {','.join(DEFAULT_METHODS)}; with --full: all)")
    parser.add_argument("--device", default="", help="cpu, cuda, mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--verbose", action="store_true", help="show every run's full log on the console")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    return parser.parse_args(argv)


def _jobs(args: argparse.Namespace, data: Path, out: Path, shots: int, seeds: List[int],
          methods: list) -> List[Tuple["Job", str]]:
    """The demo's train.py runs as sweep jobs (so that the sweep's never-stale rule applies), each with the line
    printed while it runs; a trained method's new-class evaluation depends on its training."""
    from .sweep.jobs import Job
    from .world import DATASET_DIR

    dataset_cfg = config_path("datasets", "prometar_world.yaml")
    jobs: List[Tuple[Job, str]] = []
    for seed in seeds:
        for name, cfg_name, trained, _ in methods:
            if not cfg_name:
                continue
            cfg = config_path("trainers", "ProMetaR", cfg_name + ".yaml")
            tail = Path(DATASET_DIR) / f"shots_{shots}" / name / cfg_name / f"seed{seed}"
            common = ["--root", str(data), "--seed", str(seed), "--trainer", "ProMetaR", "--dataset-config-file",
                      dataset_cfg, "--config-file", cfg, "--engine", "builtin"]
            common += ["--device", args.device] if args.device else []
            opts = ["DATASET.NUM_SHOTS", str(SHOTS)] + list(args.opts)
            base_id = str(Path("base2new") / ("train_base" if trained else "test_base") / tail)
            new_id = str(Path("base2new") / "test_new" / tail)

            def job(job_id: str, phase: str, extra: List[str], sub: str) -> Job:
                folder = str(out / job_id)
                return Job(job_id, phase, DATASET_DIR, seed, "ProMetaR", cfg_name, folder,
                           common + ["--output-dir", folder], extra, opts + ["DATASET.SUBSAMPLE_CLASSES", sub])

            base = job(base_id, "train_base" if trained else "test_base", [] if trained else ["--eval-only"], "base")
            jobs.append((base, f"{name} seed {seed}: {'train on' if trained else 'evaluate'} base classes"))
            new = job(new_id, "test_new", [] if trained else ["--eval-only"], "new")
            if trained:
                new.model_dir, new.depends_on = base.output_dir, [base.id]
            jobs.append((new, f"{name} seed {seed}: evaluate new classes"))
    return jobs


def _run_jobs(jobs: List[Tuple["Job", str]], verbose: bool) -> None:
    """Run what is not finished and current; a folder made with another config (or an evaluation of a model
    trained again) is moved aside, kept, and run again, saying so."""
    from .sweep.fresh import CHANGED, RERUN, SKIP, move_aside, plan

    verdicts = plan([j for j, _ in jobs], str(Path.cwd()))
    for job, what in jobs:
        verdict = verdicts[job.id]
        if verdict.action == SKIP:
            continue
        if verdict.action in (CHANGED, RERUN):
            why = ("it was made with another config: " + "; ".join(verdict.diff) if verdict.action == CHANGED
                   else verdict.why)
            print(f"{what}: running again, {why}; the earlier run is kept in {move_aside(job)}")
        epoch = _last_epoch(Path(job.model_dir)) if job.eval_only else None
        _run(job.train_args(epoch), Path(job.output_dir), what, verbose)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    seeds = args.seeds or ([1, 2, 3] if args.full else [1])
    shots = _shots(args.opts)
    wanted = args.methods or (FULL_METHODS if args.full else DEFAULT_METHODS)
    methods = [m for m in METHODS if m[0] in wanted]

    from .world import DATASET_DIR, SPLIT_FILE, generate_world

    start = time.time()
    data = Path(args.data).resolve()
    if not (data / DATASET_DIR / SPLIT_FILE).is_file():
        print(f"Generating the PrometarWorld benchmark in {data / DATASET_DIR} ...")
        generate_world(data)
    else:
        _check_world(data / DATASET_DIR)
    out = Path(args.output).resolve()
    if any(not cfg_name for _, cfg_name, _, _ in methods):
        for seed in seeds:
            for split in ("base", "new"):
                folder = (out / "base2new" / ("test_base" if split == "base" else "test_new") / DATASET_DIR
                          / f"shots_{shots}" / "LinearProbe" / PROBE_CONFIG / f"seed{seed}")
                if not _finished(folder):
                    _probe(data, seed, split, folder, args.device, shots)
    _run_jobs(_jobs(args, data, out, shots, seeds, methods), args.verbose)
    from .report import report_main

    print(f"\nDemo finished in {time.time() - start:.0f} s. Results (accuracy %, test split):")
    code = report_main([str(out)])
    summary = summarize_demo(out, [m for m in methods], seeds, wall_s=time.time() - start)
    from .io import atomic_write_text

    atomic_write_text(out / "demo.json", json.dumps(summary, indent=1) + "\n")
    print(f"Wrote {out / 'demo.json'}")
    return code


def summarize_demo(out: Path, methods, seeds: List[int], wall_s: float) -> dict:
    """Means and seed std (population, in %) of base, new and HM per method, from the output tree's logs.

    HM is the harmonic mean of the mean base and mean new accuracies (as the report and the papers compute it);
    ``hm_std`` is the std of the per-seed HMs.
    """
    from .report.results import scan_base2new, summarize
    from .world import DATASET_DIR

    reports = {r.trainer: r for r in summarize(scan_base2new(str(out / "base2new")))}
    result: dict = {}
    for name, _, _, key in methods:
        rep = reports.get(name)
        stats = rep.datasets.get(DATASET_DIR) if rep else None
        if stats is None:
            continue
        row = {}
        for part, mean, std in (("base", stats.base_mean, stats.base_std), ("new", stats.new_mean, stats.new_std),
                                ("hm", stats.hm, stats.hm_seed_std)):
            row[part] = None if mean is None else round(mean, 2)
            row[part + "_std"] = None if std is None else round(std, 2)
        row["seeds"] = sorted(set(stats.base) & set(stats.new))
        result[key] = row
    result["seeds"] = list(seeds)
    result["wall_s"] = round(wall_s, 1)
    return result


def _check_world(folder: Path) -> None:
    """Say so when an existing benchmark folder was not generated with the default world parameters."""
    from .world import HARDNESS, HUE_SHIFT

    info_path = folder / "generator.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        info = {}
    used = {"seed": info.get("seed"), "hue_shift": info.get("hue_shift", 0.0), "hardness": info.get("hardness")}
    default = {"seed": 0, "hue_shift": HUE_SHIFT, "hardness": HARDNESS}
    if used != default:
        diff = ", ".join(f"{k} {used[k]} (default {default[k]})" for k in default if used[k] != default[k])
        print(f"Note: using the existing benchmark in {folder}, which is not the default one: {diff} "
              f"(from {info_path}). Delete that folder, or pass another --data, for the default benchmark.")


def _shots(opts: List[str]) -> int:
    """The shot count of the runs: SHOTS, or the last `DATASET.NUM_SHOTS N` among the overrides."""
    shots = SHOTS
    for key, value in zip(opts, opts[1:]):
        if key == "DATASET.NUM_SHOTS":
            try:
                shots = int(value)
            except ValueError:
                raise SystemExit(f"prometar demo: DATASET.NUM_SHOTS must be an integer, got {value!r}") from None
    return shots


def _last_epoch(train_dir: Path) -> int:
    pointer = train_dir / "VLPromptLearner" / "checkpoint"
    name = pointer.read_text().strip()
    return int(name.rsplit("-", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
