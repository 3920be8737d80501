"""`prometar demo`: base-to-new on the bundled procedural benchmark with the bundled small CLIP, on any CPU.

Runs the real pipeline (dataset reader, few-shot sampling, base/new split, trainer, evaluator, logs, report):
zero-shot CLIP and ProMetaR (and, with `--full`, IVLP without meta-regularisation, over seeds 1-3), in the
output layout of the base-to-new scripts, then prints the base / new / HM table and writes
`report.md`, `report.csv`, `report.png` (as `prometar report`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = ["main", "config_path", "METHODS"]

#: (folder name in the output tree, trainer config, trained?)
METHODS: Tuple[Tuple[str, str, bool], ...] = (
    ("ZeroShotCLIP", "world_zeroshot", False),
    ("IVLP", "world_ep10_batch4_4+4ctx_ivlp", True),
    ("ProMetaR", "world_ep10_batch4_4+4ctx", True),
)
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


def _finished(folder: Path) -> bool:
    from .report import read_run

    return folder.is_dir() and read_run(str(folder)).ok


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="prometar demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="DATA folder; the benchmark is generated there if absent")
    parser.add_argument("--output", default="output/demo", help="output folder (base2new/ layout + report)")
    parser.add_argument("--full", action="store_true", help="zero-shot, IVLP and ProMetaR over seeds 1, 2, 3")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 1; with --full: 1 2 3)")
    parser.add_argument("--device", default="", help="cpu, cuda, mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--verbose", action="store_true", help="show every run's full log on the console")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([1, 2, 3] if args.full else [1])
    methods = [m for m in METHODS if args.full or m[0] != "IVLP"]

    from .world import DATASET_DIR, SPLIT_FILE, generate_world

    start = time.time()
    data = Path(args.data).resolve()
    if not (data / DATASET_DIR / SPLIT_FILE).is_file():
        print(f"Generating the PrometarWorld benchmark in {data / DATASET_DIR} ...")
        generate_world(data)
    out = Path(args.output).resolve()
    dataset_cfg = config_path("datasets", "prometar_world.yaml")
    for seed in seeds:
        for name, cfg_name, trained in methods:
            cfg = config_path("trainers", "ProMetaR", cfg_name + ".yaml")
            tail = Path(DATASET_DIR) / f"shots_{SHOTS}" / name / cfg_name / f"seed{seed}"
            common = ["--root", str(data), "--seed", str(seed), "--trainer", "ProMetaR", "--dataset-config-file",
                      dataset_cfg, "--config-file", cfg, "--engine", "builtin"]
            if args.device:
                common += ["--device", args.device]
            base_dir = out / "base2new" / ("train_base" if trained else "test_base") / tail
            new_dir = out / "base2new" / "test_new" / tail
            opts = ["DATASET.NUM_SHOTS", str(SHOTS)] + list(args.opts)
            if not _finished(base_dir):
                what = f"{name} seed {seed}: {'train on' if trained else 'evaluate'} base classes"
                extra = [] if trained else ["--eval-only"]
                _run(common + ["--output-dir", str(base_dir)] + extra + opts + ["DATASET.SUBSAMPLE_CLASSES", "base"],
                     base_dir, what, args.verbose)
            if not _finished(new_dir):
                load = ["--model-dir", str(base_dir), "--load-epoch", str(_last_epoch(base_dir))] if trained else []
                _run(common + ["--output-dir", str(new_dir), "--eval-only"] + load + opts
                     + ["DATASET.SUBSAMPLE_CLASSES", "new"], new_dir, f"{name} seed {seed}: evaluate new classes",
                     args.verbose)
    from .report import report_main

    print(f"\nDemo finished in {time.time() - start:.0f} s. Results (accuracy %, test split):")
    return report_main([str(out)])


def _last_epoch(train_dir: Path) -> int:
    pointer = train_dir / "VLPromptLearner" / "checkpoint"
    name = pointer.read_text().strip()
    return int(name.rsplit("-", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
