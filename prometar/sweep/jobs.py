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

E is ``--load-epoch`` when given, else the latest checkpoint of the model folder, read when the job starts.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..data.specs import PROTOCOLS, protocol_datasets

__all__ = [
    "BASE2NEW_DATASETS",
    "XD_TARGETS",
    "Job",
    "Launcher",
    "SweepSpec",
    "build_jobs",
    "default_launcher",
    "resolve_config",
]

#: The 11 base-to-new datasets of the paper (scripts/base2new_all.sh's default), from the dataset table.
BASE2NEW_DATASETS = protocol_datasets("base2new")
#: Cross-dataset targets (10) and the ImageNet variants of domain generalisation (4), from the dataset table.
XD_TARGETS = protocol_datasets("xd")
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
    phase: str  # train_base, test_<sub>, xd_train, xd_test
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
        return f"{self.phase} {self.dataset} seed{self.seed} ({self.config})"


@dataclass
class SweepSpec:
    """What to run: protocol, lists (datasets, seeds, configs), paths and the extra train.py arguments."""

    protocol: str = "base2new"
    data: str = ""
    output: str = "output"
    trainer: str = "ProMetaR"
    configs: Sequence[str] = ("vit_b16_c2_ep10_batch4_4+4ctx",)
    datasets: Sequence[str] = ()
    seeds: Sequence[int] = (1, 2, 3)
    shots: int = 16
    load_epoch: Optional[int] = None
    extra: Sequence[str] = ()
    phase: str = "all"  # all, train (training jobs only), test (evaluations only; models must exist)
    test_sub: str = "new"  # base2new: classes of the evaluation job (new, base, all)
    source: str = "imagenet"  # xd: the training dataset


def build_jobs(spec: SweepSpec, launcher: Launcher) -> List[Job]:
    """The job list of ``spec`` in a deterministic order (dataset, seed, config; training before evaluation)."""
    if spec.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {spec.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if spec.phase not in PHASES:
        raise ValueError(f"unknown phase {spec.phase!r}: expected one of {', '.join(PHASES)}")
    if spec.test_sub not in ("new", "base", "all"):
        raise ValueError(f"test classes must be new, base or all, got {spec.test_sub!r}")
    if not spec.data:
        raise ValueError("no dataset root: pass --data DATA (or set DATA)")
    data = os.path.abspath(spec.data)
    out = os.path.abspath(spec.output)
    cfgs: Dict[str, str] = {}
    for c in spec.configs:
        path = resolve_config("trainers", c, spec.trainer)
        name = _stem(c)
        if name in cfgs and cfgs[name] != path:
            raise ValueError(f"two configs named {name}: {cfgs[name]} and {path} (their runs would share folders)")
        cfgs[name] = path
    jobs: List[Job] = []

    def head(dataset_yaml: str, seed: int, cfg_path: str, out_dir: str) -> List[str]:
        return ["--root", data, "--seed", str(seed), "--trainer", spec.trainer, "--dataset-config-file",
                launcher.config_ref(dataset_yaml), "--config-file", launcher.config_ref(cfg_path),
                "--output-dir", out_dir]

    def add(job: Job) -> None:
        if spec.phase == "train" and job.eval_only or spec.phase == "test" and not job.eval_only:
            return
        if spec.phase == "test":
            job.depends_on = []
        jobs.append(job)

    shots = str(spec.shots)
    if spec.protocol == "base2new":
        for d in spec.datasets or BASE2NEW_DATASETS:
            dyaml = resolve_config("datasets", d)
            dname = _stem(d)
            for seed in spec.seeds:
                for cname, cpath in cfgs.items():
                    common = os.path.join(dname, f"shots_{shots}", spec.trainer, cname, f"seed{seed}")
                    train_id = os.path.join("base2new", "train_base", common)
                    train_dir = os.path.join(out, train_id)
                    add(Job(train_id, "train_base", dname, seed, spec.trainer, cname, train_dir,
                            head(dyaml, seed, cpath, train_dir), list(spec.extra),
                            ["DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", "base"]))
                    test_id = os.path.join("base2new", f"test_{spec.test_sub}", common)
                    test_dir = os.path.join(out, test_id)
                    add(Job(test_id, f"test_{spec.test_sub}", dname, seed, spec.trainer, cname, test_dir,
                            head(dyaml, seed, cpath, test_dir), list(spec.extra),
                            ["DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", spec.test_sub],
                            model_dir=train_dir, load_epoch=spec.load_epoch, depends_on=[train_id]))
    else:
        src_yaml = resolve_config("datasets", spec.source)
        src = _stem(spec.source)
        targets = [(t, resolve_config("datasets", t)) for t in (spec.datasets or XD_TARGETS)]
        for seed in spec.seeds:
            for cname, cpath in cfgs.items():
                tag = f"{cname}_{shots}shots"
                train_id = os.path.join(src, spec.trainer, tag, f"seed{seed}")
                train_dir = os.path.join(out, train_id)
                add(Job(train_id, "xd_train", src, seed, spec.trainer, cname, train_dir,
                        head(src_yaml, seed, cpath, train_dir), list(spec.extra),
                        ["DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", "all"]))
                for t, tyaml in targets:
                    test_id = os.path.join("evaluation", spec.trainer, tag, _stem(t), f"seed{seed}")
                    test_dir = os.path.join(out, test_id)
                    add(Job(test_id, "xd_test", _stem(t), seed, spec.trainer, cname, test_dir,
                            head(tyaml, seed, cpath, test_dir), list(spec.extra), ["DATASET.SUBSAMPLE_CLASSES", "all"],
                            model_dir=train_dir, load_epoch=spec.load_epoch, depends_on=[train_id]))
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate jobs (same output folder): {', '.join(dup)}; check the lists for repeats")
    return jobs
