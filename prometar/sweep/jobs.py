"""Job lists of the protocols: each job is exactly the train.py call the shell scripts make.

Base-to-new (per dataset, seed and trainer config)::

    train_base: train.py --root DATA --seed S --trainer T --dataset-config-file configs/datasets/D.yaml
                --config-file configs/trainers/T/CFG.yaml --output-dir OUT/base2new/train_base/D/shots_K/T/CFG/seedS
                [EXTRA] DATASET.NUM_SHOTS K DATASET.SUBSAMPLE_CLASSES base
    test_new:   same head, --output-dir OUT/base2new/test_new/D/shots_K/T/CFG/seedS
                --model-dir <train_base folder> --load-epoch E --eval-only [EXTRA]
                DATASET.NUM_SHOTS K DATASET.SUBSAMPLE_CLASSES new            (depends on train_base)

Cross-dataset / domain generalisation (per seed and config; source dataset imagenet)::

    xd_train:   ... --output-dir OUT/imagenet/T/CFG_Kshots/seedS [EXTRA]
                DATASET.NUM_SHOTS K DATASET.SUBSAMPLE_CLASSES all
    xd_test:    ... --output-dir OUT/evaluation/T/CFG_Kshots/D/seedS --model-dir <xd_train folder> --load-epoch E
                --eval-only [EXTRA] DATASET.SUBSAMPLE_CLASSES all                (depends on xd_train)

Few-shot (CoOp's protocol: per dataset, shot count K in 1 2 4 8 16, seed and config; all classes; the result
is the trained model's accuracy on the full test split, printed at the end of training)::

    fewshot:    ... --output-dir OUT/fewshot/D/T/CFG_Kshots/seedS [EXTRA]
                DATASET.NUM_SHOTS K DATASET.SUBSAMPLE_CLASSES all

E is ``--load-epoch`` when given, else the latest checkpoint of the model folder, read when the job starts.
The arguments after ``--`` (EXTRA) may not set what the sweep sets itself (:func:`check_extra`), and a job's
identity is its full config (:func:`job_config`), which the sweep compares with the config a finished folder
was made with.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..data.specs import protocol_datasets

__all__ = [
    "BASE2NEW_DATASETS",
    "DG_TARGETS",
    "FEWSHOT_DATASETS",
    "FEWSHOT_SHOTS",
    "SWEEP_PROTOCOLS",
    "XD_TARGETS",
    "ExtraClash",
    "Job",
    "Launcher",
    "SweepSpec",
    "build_jobs",
    "check_extra",
    "default_launcher",
    "job_config",
    "resolve_config",
]

#: What `prometar sweep` runs: base-to-new, cross-dataset + domain generalisation, few-shot.
SWEEP_PROTOCOLS = ("base2new", "xd", "fewshot")
#: The 11 base-to-new datasets of the paper (scripts/base2new_all.sh's default), from the dataset table.
BASE2NEW_DATASETS = protocol_datasets("base2new")
#: The ImageNet variants of domain generalisation (4), from the dataset table.
DG_TARGETS = protocol_datasets("dg")
#: Evaluation targets of `prometar sweep xd`: the cross-dataset targets (10), then the ImageNet variants (4).
XD_TARGETS = protocol_datasets("xd") + DG_TARGETS
#: The few-shot protocol's datasets (11) and shot counts, as CoOp's few-shot scripts run them.
FEWSHOT_DATASETS = protocol_datasets("fewshot")
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)
PHASES = ("all", "train", "test")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_DIR.parent


@dataclass
class Launcher:
    """How a job's train.py call is made: ``python + entry + args``, run in ``cwd``.

    In a repository checkout this is ``python train.py ...`` in the repository root with config paths relative
    to it (as the scripts call it); for an installed package ``python -m prometar train ...`` with absolute paths.
    """

    python: List[str]
    entry: List[str]
    cwd: str

    def config_ref(self, path: str) -> str:
        """``path`` relative to ``cwd`` when it lies under it, else absolute."""
        path = os.path.abspath(path)
        root = os.path.abspath(self.cwd) + os.sep
        return path[len(root):] if path.startswith(root) else path


def default_launcher(python: Optional[str] = None) -> Launcher:
    """``python`` (a command line, e.g. ``"python -X faulthandler"``; default: this interpreter) running the
    repository's ``train.py`` when this package is a checkout, else ``-m prometar train``."""
    py = shlex.split(python) if python else [sys.executable]
    if (REPO_ROOT / "train.py").is_file() and (REPO_ROOT / "configs").is_dir():
        return Launcher(py, ["train.py"], str(REPO_ROOT))
    return Launcher(py, ["-m", "prometar", "train"], os.getcwd())


def _config_dirs() -> List[Path]:
    return [d for d in (REPO_ROOT / "configs", PACKAGE_DIR / "configs") if d.is_dir()]


def resolve_config(kind: str, name: str, trainer: str = "") -> str:
    """Absolute path of a dataset (``kind="datasets"``) or method (``kind="trainers"``) config: ``name`` is a
    YAML path, or a name looked up as ``configs/datasets/<name>.yaml`` / ``configs/trainers/<trainer>/<name>.yaml``."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        if os.path.isfile(name):
            return os.path.abspath(name)
        raise FileNotFoundError(f"config file {name} does not exist")
    rel = Path(kind, trainer, f"{name}.yaml") if kind == "trainers" else Path(kind, f"{name}.yaml")
    for base in _config_dirs():
        if (base / rel).is_file():
            return str(base / rel)
    where = " or ".join(str(b) for b in _config_dirs()) or str(REPO_ROOT / "configs")
    raise FileNotFoundError(f"no {'dataset' if kind == 'datasets' else 'method'} config configs/{rel.as_posix()} "
                            f"(looked under {where})")


def _stem(name: str) -> str:
    base = os.path.basename(name)
    for ext in (".yaml", ".yml"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


@dataclass
class Job:
    """One train.py run. ``id`` is its output folder relative to the sweep's output root (unique)."""

    id: str
    phase: str  # train_base, test_<sub>, xd_train, xd_test, fewshot
    dataset: str
    seed: int
    trainer: str
    config: str
    output_dir: str
    head: List[str]  # --root ... --output-dir DIR
    extra: List[str]  # the user's extra train.py args / KEY VALUE opts
    tail: List[str]  # trailing KEY VALUE opts of the protocol
    model_dir: Optional[str] = None  # eval-only jobs: the training folder loaded
    load_epoch: Optional[int] = None  # fixed epoch (else the latest checkpoint when the job starts)
    depends_on: List[str] = field(default_factory=list)
    shots: Optional[int] = None  # DATASET.NUM_SHOTS of the training (None: the data's full split)

    @property
    def eval_only(self) -> bool:
        return self.model_dir is not None

    @property
    def level(self) -> int:
        """Dependency level: 0 for training jobs, 1 for the evaluations that load them."""
        return 1 if self.eval_only else 0

    @property
    def kind(self) -> str:
        return "eval" if self.eval_only else "train"

    def train_args(self, epoch: Union[int, str, None] = None) -> List[str]:
        """The train.py arguments (``epoch``: the epoch to load for an eval-only job without a fixed one)."""
        if not self.eval_only:
            return [*self.head, *self.extra, *self.tail]
        e = self.load_epoch if self.load_epoch is not None else epoch
        if e is None:
            raise ValueError(f"job {self.id}: an eval-only job needs the epoch to load")
        return [*self.head, "--model-dir", self.model_dir, "--load-epoch", str(e), "--eval-only", *self.extra,
                *self.tail]

    def label(self) -> str:
        """Short human name: ``train_base eurosat seed1 (cfg)``."""
        shots = f" {self.shots}-shot" if self.phase == "fewshot" else ""
        return f"{self.phase} {self.dataset}{shots} seed{self.seed} ({self.config})"


@dataclass
class SweepSpec:
    """What to run: protocol, lists (datasets, seeds, configs, shots), paths and the extra train.py arguments.

    ``shots``: one shot count or a list (base2new and xd: one folder tree per count; default 16); few-shot:
    default :data:`FEWSHOT_SHOTS`."""

    protocol: str = "base2new"
    data: str = ""
    output: str = "output"
    trainer: str = "ProMetaR"
    configs: Sequence[str] = ("vit_b16_c2_ep10_batch4_4+4ctx",)
    datasets: Sequence[str] = ()
    seeds: Sequence[int] = (1, 2, 3)
    shots: Union[int, Sequence[int], None] = None
    load_epoch: Optional[int] = None
    extra: Sequence[str] = ()
    phase: str = "all"  # all, train (training jobs only), test (evaluations only; models must exist)
    test_sub: str = "new"  # base2new: classes of the evaluation job (new, base, all)
    source: str = "imagenet"  # xd: the training dataset

    def shot_list(self) -> List[int]:
        """The shot counts to run (see the class doc)."""
        if self.shots is None:
            return list(FEWSHOT_SHOTS) if self.protocol == "fewshot" else [16]
        return [int(self.shots)] if isinstance(self.shots, int) else [int(k) for k in self.shots]


# ----------------------------------------------------------------------------------------------- job lists
class _Grid:
    """Shared state of :func:`build_jobs`: resolved paths and the job constructors."""

    def __init__(self, spec: SweepSpec, launcher: Launcher) -> None:
        self.spec, self.launcher = spec, launcher
        self.data = os.path.abspath(spec.data)
        self.out = os.path.abspath(spec.output)
        self.cfgs: Dict[str, str] = {}
        for c in spec.configs:
            path = resolve_config("trainers", c, spec.trainer)
            name = _stem(c)
            if name in self.cfgs and self.cfgs[name] != path:
                raise ValueError(f"two configs named {name}: {self.cfgs[name]} and {path} (their runs would share "
                                 f"folders)")
            self.cfgs[name] = path
        self.jobs: List[Job] = []

    def head(self, dataset_yaml: str, seed: int, cfg_path: str, out_dir: str) -> List[str]:
        return ["--root", self.data, "--seed", str(seed), "--trainer", self.spec.trainer, "--dataset-config-file",
                self.launcher.config_ref(dataset_yaml), "--config-file", self.launcher.config_ref(cfg_path),
                "--output-dir", out_dir]

    def add(self, job_id: str, phase: str, dataset: str, seed: int, cname: str, dyaml: str, tail: List[str],
            shots: Optional[int], model: Optional[Job] = None) -> Job:
        """Append the job (unless ``--phase`` leaves it out) and return it."""
        spec = self.spec
        out_dir = os.path.join(self.out, job_id)
        job = Job(job_id, phase, dataset, seed, spec.trainer, cname, out_dir,
                  self.head(dyaml, seed, self.cfgs[cname], out_dir), list(spec.extra), tail, shots=shots)
        if model is not None:
            job.model_dir, job.load_epoch = model.output_dir, spec.load_epoch
            job.depends_on = [] if spec.phase == "test" else [model.id]
        if not (spec.phase == "train" and job.eval_only or spec.phase == "test" and not job.eval_only):
            self.jobs.append(job)
        return job


def _base2new(g: _Grid) -> None:
    spec = g.spec
    for d in spec.datasets or BASE2NEW_DATASETS:
        dyaml, dname = resolve_config("datasets", d), _stem(d)
        for shots in spec.shot_list():
            for seed in spec.seeds:
                for cname in g.cfgs:
                    common = os.path.join(dname, f"shots_{shots}", spec.trainer, cname, f"seed{seed}")
                    k = ["DATASET.NUM_SHOTS", str(shots)]
                    train = g.add(os.path.join("base2new", "train_base", common), "train_base", dname, seed, cname,
                                  dyaml, k + ["DATASET.SUBSAMPLE_CLASSES", "base"], shots)
                    g.add(os.path.join("base2new", f"test_{spec.test_sub}", common), f"test_{spec.test_sub}", dname,
                          seed, cname, dyaml, k + ["DATASET.SUBSAMPLE_CLASSES", spec.test_sub], shots, model=train)


def _xd(g: _Grid) -> None:
    spec = g.spec
    src_yaml, src = resolve_config("datasets", spec.source), _stem(spec.source)
    targets = [(_stem(t), resolve_config("datasets", t)) for t in (spec.datasets or XD_TARGETS)]
    for shots in spec.shot_list():
        for seed in spec.seeds:
            for cname in g.cfgs:
                tag = f"{cname}_{shots}shots"
                train = g.add(os.path.join(src, spec.trainer, tag, f"seed{seed}"), "xd_train", src, seed, cname,
                              src_yaml, ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "all"], shots)
                for t, tyaml in targets:
                    g.add(os.path.join("evaluation", spec.trainer, tag, t, f"seed{seed}"), "xd_test", t, seed, cname,
                          tyaml, ["DATASET.SUBSAMPLE_CLASSES", "all"], shots, model=train)


def _fewshot(g: _Grid) -> None:
    spec = g.spec
    if spec.phase == "test":
        raise ValueError("the few-shot protocol has no evaluation jobs (each training run ends with its test "
                         "accuracy): use --phase all or train")
    for d in spec.datasets or FEWSHOT_DATASETS:
        dyaml, dname = resolve_config("datasets", d), _stem(d)
        for shots in spec.shot_list():
            for seed in spec.seeds:
                for cname in g.cfgs:
                    g.add(os.path.join("fewshot", dname, spec.trainer, f"{cname}_{shots}shots", f"seed{seed}"),
                          "fewshot", dname, seed, cname, dyaml,
                          ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "all"], shots)


_BUILDERS: Dict[str, Callable[[_Grid], None]] = {"base2new": _base2new, "xd": _xd, "fewshot": _fewshot}


def build_jobs(spec: SweepSpec, launcher: Launcher) -> List[Job]:
    """The job list of ``spec`` in a deterministic order (dataset, shots, seed, config; training before its
    evaluations). Raises ValueError for a bad spec or an ``extra`` that sets what the sweep sets
    (:func:`check_extra`), FileNotFoundError for a missing config."""
    if spec.protocol not in SWEEP_PROTOCOLS:
        raise ValueError(f"unknown protocol {spec.protocol!r}: expected one of {', '.join(SWEEP_PROTOCOLS)}")
    if spec.phase not in PHASES:
        raise ValueError(f"unknown phase {spec.phase!r}: expected one of {', '.join(PHASES)}")
    if spec.test_sub not in ("new", "base", "all"):
        raise ValueError(f"test classes must be new, base or all, got {spec.test_sub!r}")
    if not spec.data:
        raise ValueError("no dataset root: pass --data DATA (or set DATA)")
    bad = [k for k in spec.shot_list() if k < 1]
    if bad:
        raise ValueError(f"shot counts must be >= 1, got {bad}")
    check_extra(spec.extra, spec.protocol)
    grid = _Grid(spec, launcher)
    _BUILDERS[spec.protocol](grid)
    ids = [j.id for j in grid.jobs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate jobs (same output folder): {', '.join(dup)}; check the lists for repeats")
    return grid.jobs


# ----------------------------------------------------------------------------------------------- extra args
class ExtraClash(ValueError):
    """An argument after ``--`` sets something the sweep sets itself (the message names both)."""


#: train.py flags the sweep passes itself -> the sweep option that sets the same thing.
_OWN_FLAGS: Dict[str, str] = {
    "root": "--data", "seed": "--seeds", "trainer": "--trainer", "dataset_config_file": "--datasets / --source",
    "config_file": "--configs", "output_dir": "--output", "model_dir": "the evaluation jobs (--phase)",
    "load_epoch": "--load-epoch", "eval_only": "--phase test", "resume": "the sweep's own resume (re-run it)",
    "no_train": "--dry-run",
}
#: Config keys the sweep sets itself (through a flag or its trailing options) -> the sweep option.
_OWN_KEYS: Dict[str, str] = {
    "DATASET.ROOT": "--data", "SEED": "--seeds", "TRAINER.NAME": "--trainer", "OUTPUT_DIR": "--output",
    "RESUME": "the sweep's own resume (re-run it)", "DATASET.NAME": "--datasets / --source",
    "DATASET.NUM_SHOTS": "--shots", "DATASET.SUBSAMPLE_CLASSES": "the protocol (base2new: --test-sub)",
}


def check_extra(extra: Sequence[str], protocol: str = "base2new") -> None:
    """Refuse (:class:`ExtraClash`) an argument after ``--`` that sets what the sweep sets itself, e.g.
    ``DATASET.NUM_SHOTS 4`` (the sweep's ``--shots``) or ``--seed 3`` (``--seeds``): either would silently
    override the other. The message names the argument and the sweep option to use instead."""
    if not extra:
        return
    from ..launch import train_parser

    parser = train_parser()
    try:
        args, unknown = parser.parse_known_args(list(extra))
    except SystemExit:
        raise ExtraClash(f"the arguments after -- are not train.py arguments: {shlex.join(extra)}") from None
    clashes = []
    for dest, own in _OWN_FLAGS.items():
        value = getattr(args, dest, None)
        if value != parser.get_default(dest):
            flag = "--" + dest.replace("_", "-") + ("" if isinstance(value, bool) else f" {value}")
            clashes.append(f"{flag} after -- clashes with the sweep's {own}, which sets it for every job")
    opts = list(args.opts or [])
    flags = [o for o in opts if o.startswith("--")]
    if flags:  # train.py reads everything after the first KEY as KEY VALUE pairs
        raise ExtraClash(f"{' '.join(flags)} after the KEY VALUE options (after --): train.py flags must come "
                         f"before the first KEY VALUE option")
    for key, value in zip(opts[::2], opts[1::2]):
        if key in _OWN_KEYS:
            clashes.append(f"{key} {value} after -- clashes with the sweep's {_OWN_KEYS[key]}, which sets {key} "
                           f"for every job")
    if clashes:
        raise ExtraClash("refusing to run: " + "; ".join(clashes) + f" ({protocol} sweep). Use the sweep's own "
                         f"option instead")


# ----------------------------------------------------------------------------------------------- job config
def job_config(job: Job, cwd: str) -> Any:
    """The full config (a frozen yacs node) ``job``'s train.py call runs with: the dataset and method YAMLs
    (paths relative to ``cwd``, as the launcher runs it), the flags and the trailing options, merged exactly as
    train.py merges them (:func:`prometar.config.load_cfg`)."""
    from ..config import load_cfg
    from ..launch import train_parser

    args = train_parser().parse_args(job.train_args(0))

    def here(path: str) -> str:
        return path if not path or os.path.isabs(path) else os.path.join(cwd, path)

    return load_cfg(here(args.dataset_config_file), here(args.config_file), args.opts, args=args)
