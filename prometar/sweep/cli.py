"""`prometar sweep`: a protocol's grid of train.py runs on local workers / GPUs or on Slurm, then the report.

Examples::

    prometar sweep base2new --data DATA                          # 11 datasets x seeds 1 2 3, one job at a time
    prometar sweep base2new --data DATA --gpus 0,1 --jobs-per-gpu 3
    prometar sweep base2new --data DATA --datasets eurosat dtd --seeds 1 2 --configs CFG_A CFG_B -- OPTIM.MAX_EPOCH 5
    prometar sweep xd --data DATA --backend slurm --partition gpu --gpus-per-job 1 --time 240
    prometar sweep fewshot --data DATA                           # 11 datasets x 1 2 4 8 16 shots x seeds 1 2 3
    prometar sweep base2new --data DATA --dry-run                # print the job list (train.py calls)

Everything after ``--`` is passed to every train.py call (flags first, then KEY VALUE config options), as the
scripts pass their extra arguments; what the sweep sets itself (seeds, shots, classes, folders, ...) is refused
there, naming the sweep option to use. Re-running the same command skips finished runs made with the same
config and resumes unfinished ones; a folder made with another config is refused (listed with its differing
keys) unless --rerun-changed, which moves it aside (renamed, kept) and runs it again.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Dict, List, Optional, Sequence

from .backends import LocalBackend, SubmititBackend, threads_per_job
from .fresh import ChangedRuns, JobConfigError, plan
from .jobs import (BASE2NEW_DATASETS, FEWSHOT_SHOTS, SWEEP_PROTOCOLS, XD_TARGETS, Job, Launcher, SweepSpec,
                   build_jobs, default_launcher)
from .runner import Sweep, sweep_name

__all__ = ["sweep_main", "sweep_parser", "make_backend"]


def sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prometar sweep", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("protocol", nargs="?", default="base2new", choices=list(SWEEP_PROTOCOLS),
                   help="base2new: train on base classes, evaluate on new ones; xd: train on the source dataset "
                        "(imagenet), evaluate on the cross-dataset and domain-generalisation targets; fewshot: "
                        "train on all classes with K shots, test on the full test split")
    g = p.add_argument_group("what to run")
    g.add_argument("--data", default=os.environ.get("DATA", ""), help="dataset root (default: $DATA)")
    g.add_argument("--output", default="output", help="output root (the scripts' OUTPUT; default ./output)")
    g.add_argument("--trainer", default="ProMetaR")
    g.add_argument("--configs", nargs="+", default=["vit_b16_c2_ep10_batch4_4+4ctx"], metavar="CFG",
                   help="method configs: names under configs/trainers/TRAINER/ or YAML paths (one grid each)")
    g.add_argument("--datasets", nargs="+", metavar="D",
                   help=f"base2new and fewshot: datasets (default the 11: {' '.join(BASE2NEW_DATASETS)}); xd: "
                        f"evaluation targets (default {' '.join(XD_TARGETS)})")
    g.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    g.add_argument("--shots", nargs="+", type=int, default=None, metavar="K",
                   help=f"shots per class (DATASET.NUM_SHOTS); default 16, fewshot: "
                        f"{' '.join(map(str, FEWSHOT_SHOTS))}")
    g.add_argument("--load-epoch", type=int, default=None,
                   help="epoch the evaluations load (default: the model's latest checkpoint)")
    g.add_argument("--phase", choices=["all", "train", "test"], default="all",
                   help="train: training jobs only; test: evaluations only (their models must exist)")
    g.add_argument("--test-sub", choices=["new", "base", "all"], default="new",
                   help="base2new: classes of the evaluation job (default new)")
    g.add_argument("--source", default="imagenet", help="xd: training dataset (default imagenet)")
    g.add_argument("--python", default="",
                   help="python command line for the jobs, e.g. 'python -X faulthandler' (default: this interpreter)")
    g = p.add_argument_group("how to run")
    g.add_argument("--backend", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: worker processes here; slurm: Slurm job arrays via submitit; submitit-local: "
                        "submitit's local executor (tests the submitit path without Slurm)")
    g.add_argument("--workers", type=int, default=None,
                   help="local: jobs at once (default 1, or GPUs x --jobs-per-gpu); submitit-local: the same")
    g.add_argument("--gpus", default="", help="local: GPU ids to place jobs on, e.g. 0,1 (each job sees one)")
    g.add_argument("--jobs-per-gpu", type=int, default=1, help="local: concurrent jobs per GPU (default 1)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per job (default: local cores // concurrent jobs, at least 1; "
                        "Slurm: --cpus-per-job)")
    g.add_argument("--retries", type=int, default=1, help="re-run a failed job up to N times (default 1)")
    g.add_argument("--rerun-changed", action="store_true",
                   help="run again the jobs whose folder was made with another config (the folder is moved aside "
                        "to <folder>.changed-<time>, never deleted); without it the sweep refuses to start")
    g.add_argument("--name", default="", help="sweep name (default: protocol + hash of the job folders)")
    g.add_argument("--summary", default="", help="summary JSON path (default OUTPUT/sweeps/NAME/summary.json)")
    g.add_argument("--no-report", action="store_true", help="do not run `prometar report` at the end")
    g.add_argument("--dry-run", action="store_true", help="print the jobs and their train.py calls, run nothing")
    g.add_argument("--progress-interval", type=float, default=30.0,
                   help="seconds between progress lines when the output is not a terminal (default 30)")
    g = p.add_argument_group("slurm (--backend slurm; needs `pip install -e \".[slurm]\"`)")
    g.add_argument("--partition", default="")
    g.add_argument("--gpus-per-job", type=int, default=0)
    g.add_argument("--cpus-per-job", type=int, default=None, help="CPUs per Slurm task (default 4)")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB")
    g.add_argument("--time", type=int, default=24 * 60, help="time limit per job in minutes (default 1440)")
    g.add_argument("--array-parallelism", type=int, default=64, help="array tasks running at once (default 64)")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch option (repeatable), e.g. --sbatch account=abc --sbatch qos=high")
    g.add_argument("--slurm-setup", action="append", default=[], metavar="CMD",
                   help="shell line run in each job before Python (repeatable), e.g. 'module load cuda'")
    return p


def _split_extra(argv: Sequence[str]) -> tuple:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _sbatch_options(items: Sequence[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"--sbatch {item!r}: expected KEY=VALUE, e.g. --sbatch account=abc")
        out[key.replace("-", "_")] = value
    return out


def make_backend(args: argparse.Namespace, sweep_dir: str):
    """The backend chosen by ``args.backend`` with its placement and thread settings."""
    if args.backend == "local":
        gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
        if gpus:
            if args.jobs_per_gpu < 1:
                raise ValueError(f"--jobs-per-gpu must be >= 1, got {args.jobs_per_gpu}")
            slots: List[Optional[str]] = [g for _ in range(args.jobs_per_gpu) for g in gpus]
        else:
            slots = [None] * max(1, args.workers or 1)
        threads = args.threads or threads_per_job(len(slots))
        return LocalBackend(slots, threads)
    folder = os.path.join(sweep_dir, "submitit")
    if args.backend == "submitit-local":
        workers = max(1, args.workers or 1)
        cpus = args.threads or threads_per_job(workers)
        return SubmititBackend("local", folder, workers, cpus_per_job=cpus, timeout_min=args.time)
    cpus = args.cpus_per_job or args.threads or 4
    return SubmititBackend("slurm", folder, args.array_parallelism, cpus_per_job=cpus,
                           gpus_per_job=args.gpus_per_job, timeout_min=args.time, partition=args.partition,
                           mem_gb=args.mem_gb, sbatch=_sbatch_options(args.sbatch), setup=args.slurm_setup)


_DRY_RUN_NOTES = {"skip": "finished: skipped", "run": "runs", "rerun": "runs again: {why}",
                  "changed": "made with another config ({diff}): refused without --rerun-changed"}


def _dry_run(jobs: List[Job], launcher: Launcher) -> int:
    """Print each job's train.py call and what the sweep would do with its folder."""
    verdicts = plan(jobs, launcher.cwd)
    for job in jobs:
        v = verdicts[job.id]
        after = f"  (after {', '.join(job.depends_on)})" if job.depends_on else ""
        note = _DRY_RUN_NOTES[v.action].format(why=v.why, diff="; ".join(v.diff))
        cmd = [*launcher.python, *launcher.entry, *job.train_args("LATEST")]
        print(f"# {job.id}{after} [{note}]\n{shlex.join(cmd)}")
    print(f"# {len(jobs)} jobs; run in {launcher.cwd}")
    return 0


def sweep_main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `prometar sweep` (see the module doc); exit 0 when every job finished, 1 when some failed,
    2 on a usage error, 130 when interrupted."""
    own, extra = _split_extra(sys.argv[1:] if argv is None else argv)
    parser = sweep_parser()
    args = parser.parse_args(own)
    spec = SweepSpec(protocol=args.protocol, data=args.data, output=args.output, trainer=args.trainer,
                     configs=args.configs, datasets=args.datasets or (), seeds=args.seeds, shots=args.shots,
                     load_epoch=args.load_epoch, extra=extra, phase=args.phase, test_sub=args.test_sub,
                     source=args.source)
    launcher = default_launcher(args.python or None)
    try:
        jobs: List[Job] = build_jobs(spec, launcher)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prometar sweep: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        try:
            return _dry_run(jobs, launcher)
        except JobConfigError as exc:
            print(f"prometar sweep: {exc}", file=sys.stderr)
            return 2
    output = os.path.abspath(args.output)
    name = args.name or sweep_name(args.protocol, jobs)
    sweep_dir = os.path.join(output, "sweeps", name)
    try:
        backend = make_backend(args, sweep_dir)
    except (ValueError, RuntimeError) as exc:
        print(f"prometar sweep: {exc}", file=sys.stderr)
        return 2
    full_argv = ["prometar", "sweep", *(sys.argv[1:] if argv is None else argv)]
    sweep = Sweep(jobs, backend, launcher, sweep_dir, retries=args.retries, protocol=args.protocol,
                  argv=full_argv, output=output, progress_interval=args.progress_interval,
                  summary_path=os.path.abspath(args.summary) if args.summary else None,
                  rerun_changed=args.rerun_changed)
    try:
        code = sweep.run()
    except (ChangedRuns, JobConfigError, RuntimeError) as exc:  # another config; bad args; a second driver
        print(f"prometar sweep: {exc}", file=sys.stderr)
        return 2
    if code == 130 or args.no_report:
        return code
    if any(r.accuracy is not None for r in sweep.records.values()):
        from ..report import report_main

        print()
        if report_main([output]) not in (0, 1):
            print("prometar sweep: the report could not be written", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(sweep_main())
