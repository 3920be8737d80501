"""Reading a base-to-new output tree: log parsing, the finished/partial rule, seed statistics, published numbers.

A seed folder's result is read like ``parse_test_res.py --test-log``: the last ``* accuracy: x%`` after a
``=> result`` line.  In a training log (one with progress lines or a ``Finish training`` / ``Finished
training`` line) only a result printed after the end-of-training line counts, so a crashed run never reports
a validation accuracy.  That rule lives in :mod:`prometar.engine.runlog` (the run folder's "finished" rule);
``parse_log`` and ``read_run`` are re-exported here.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional, Sequence

from ..data.specs import protocol_datasets
from ..engine.runlog import END_SIGNALS, RESULT_SIGNAL, LogResult, parse_log, read_run
from .runs import Cell, mean_std, usable

__all__ = [
    "LogResult", "DatasetStats", "MethodReport", "Runs", "END_SIGNALS", "RESULT_SIGNAL", "SPLITS",
    "harmonic_mean", "parse_log", "read_run", "find_base2new_dir", "scan_base2new", "summarize",
    "load_published", "paper_average", "ordered", "MIN_AVERAGE_DATASETS", "subdirs", "seed_results", "cell_of",
]

SPLITS = ("train_base", "test_base", "test_new")
_SEED_RE = re.compile(r"^seed(-?\d+)$")
_SHOTS_RE = re.compile(r"^shots_(-?\d+)$")


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------
def _subdirs(path: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith(".") and os.path.isdir(os.path.join(path, n)))
    except OSError:
        return []


def subdirs(path: str) -> list[str]:
    """Sorted names of the visible sub-folders of ``path`` ([] when it is not a folder)."""
    return _subdirs(path)


def seed_results(parent: str, keyword: str = "accuracy") -> dict[int, LogResult]:
    """Result of each ``seed<S>`` folder in ``parent`` (folders moved aside, ``seed1.changed-...``, are not
    seed folders)."""
    out = {}
    for name in _subdirs(parent):
        m = _SEED_RE.match(name)
        if m:
            out[int(m.group(1))] = read_run(os.path.join(parent, name), keyword)
    return out


def cell_of(results: dict[int, LogResult], expected: Sequence[int], what: str,
            where: str) -> tuple[Cell, list[str]]:
    """The :class:`~prometar.report.runs.Cell` of one table cell from its seed results, and one line per
    expected seed without a usable value (missing under ``where``, unfinished, another config, a replaced
    model)."""
    values, issues = usable({s: r for s, r in results.items() if s in expected}, what)
    for seed in expected:
        res = results.get(seed)
        if res is None:
            issues.append(f"{what} seed{seed}: run missing (no {where}/seed{seed})")
        elif not res.ok:
            issues.append(f"{what} seed{seed}: {_describe(res)} ({res.path})")
    return Cell(values, tuple(expected)), issues


def find_base2new_dir(root: str) -> Optional[str]:
    """``root/base2new`` if it exists, else ``root`` if it holds a split folder, else None."""
    candidate = os.path.join(root, "base2new")
    if os.path.isdir(candidate):
        return candidate
    if any(os.path.isdir(os.path.join(root, s)) for s in SPLITS):
        return root
    return None


# runs[(trainer, cfg, shots)][dataset][split][seed] = LogResult
Runs = dict[tuple[str, str, int], dict[str, dict[str, dict[int, LogResult]]]]


def scan_base2new(b2n_dir: str, keyword: str = "accuracy") -> Runs:
    """Read every ``<split>/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>`` under ``b2n_dir``."""
    runs: Runs = {}
    for split in SPLITS:
        split_dir = os.path.join(b2n_dir, split)
        for dataset in _subdirs(split_dir):
            for shots_name in _subdirs(os.path.join(split_dir, dataset)):
                m = _SHOTS_RE.match(shots_name)
                if not m:
                    continue
                shots = int(m.group(1))
                shots_dir = os.path.join(split_dir, dataset, shots_name)
                for trainer in _subdirs(shots_dir):
                    for cfg in _subdirs(os.path.join(shots_dir, trainer)):
                        cfg_dir = os.path.join(shots_dir, trainer, cfg)
                        for seed_name in _subdirs(cfg_dir):
                            sm = _SEED_RE.match(seed_name)
                            if not sm:
                                continue
                            res = read_run(os.path.join(cfg_dir, seed_name), keyword)
                            per_split = runs.setdefault((trainer, cfg, shots), {}).setdefault(dataset, {})
                            per_split.setdefault(split, {})[int(sm.group(1))] = res
    return runs


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
def harmonic_mean(base: Optional[float], new: Optional[float]) -> Optional[float]:
    """2BN/(B+N); None if either is missing; 0 if both are 0."""
    if base is None or new is None:
        return None
    return 2.0 * base * new / (base + new) if base + new else 0.0


@dataclass
class DatasetStats:
    """Seed statistics of one method on one dataset.

    ``base`` / ``new``: accuracy by seed (finished runs of one config). Base and New are the means over their
    own seeds; HM (and the method's average) uses only the *paired* seeds, those having both a base and a new
    result, so that a seed missing one half never skews the HM."""

    dataset: str
    base: dict[int, float] = field(default_factory=dict)
    new: dict[int, float] = field(default_factory=dict)
    expected_seeds: tuple[int, ...] = ()

    @property
    def base_mean(self) -> Optional[float]:
        return mean_std(list(self.base.values()))[0]

    @property
    def base_std(self) -> Optional[float]:
        return mean_std(list(self.base.values()))[1]

    @property
    def new_mean(self) -> Optional[float]:
        return mean_std(list(self.new.values()))[0]

    @property
    def new_std(self) -> Optional[float]:
        return mean_std(list(self.new.values()))[1]

    @property
    def paired_seeds(self) -> list[int]:
        """Seeds having both a base and a new result."""
        return sorted(set(self.base) & set(self.new))

    @property
    def paired_base_mean(self) -> Optional[float]:
        return mean_std([self.base[s] for s in self.paired_seeds])[0]

    @property
    def paired_new_mean(self) -> Optional[float]:
        return mean_std([self.new[s] for s in self.paired_seeds])[0]

    @property
    def hm(self) -> Optional[float]:
        """HM of the base and new means over the paired seeds (None without a paired seed)."""
        return harmonic_mean(self.paired_base_mean, self.paired_new_mean)

    @property
    def hm_seed_std(self) -> Optional[float]:
        """Population std of per-seed HMs (paired seeds)."""
        return mean_std([harmonic_mean(self.base[s], self.new[s]) for s in self.paired_seeds])[1]

    @property
    def n_seeds(self) -> int:
        """Seeds having both a base and a new result."""
        return len(self.paired_seeds)

    @property
    def partial(self) -> bool:
        """Some expected seed lacks a base or a new result."""
        want = set(self.expected_seeds)
        return not (want <= set(self.base) and want <= set(self.new))

    @property
    def complete_pair(self) -> bool:
        """Has at least one paired seed (so an HM exists)."""
        return bool(self.paired_seeds)


#: An average is shown only over at least this many datasets (over one it would repeat that dataset).
MIN_AVERAGE_DATASETS = 2


@dataclass
class MethodReport:
    """All datasets of one (trainer, config, shots) group, plus the problems found."""

    trainer: str
    config: str
    shots: int
    datasets: dict[str, DatasetStats] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)

    label_override: str = ""

    @property
    def label(self) -> str:
        """``trainer/config`` (+ shots when not 16), or the shorter label set by :func:`summarize`."""
        if self.label_override:
            return self.label_override
        text = f"{self.trainer}/{self.config}"
        return text if self.shots == 16 else f"{text} ({self.shots} shots)"

    def mean_hm(self, datasets: Sequence[str]) -> Optional[float]:
        """Mean of the per-dataset HMs over ``datasets`` (the paper's per-dataset numbers are HMs only)."""
        values = [self.datasets[d].hm for d in datasets if d in self.datasets and self.datasets[d].hm is not None]
        return sum(values) / len(values) if values and len(values) == len(datasets) else None

    def average(self) -> tuple[Optional[float], Optional[float], Optional[float], list[str]]:
        """(B̄, N̄, HM(B̄, N̄), datasets used): over the datasets having a paired seed, each dataset's base and
        new means over its paired seeds; all None (and the datasets that have a pair) when fewer than
        :data:`MIN_AVERAGE_DATASETS` have one."""
        used = [d for d, s in self.datasets.items() if s.complete_pair]
        if len(used) < MIN_AVERAGE_DATASETS:
            return None, None, None, used
        b = sum(self.datasets[d].paired_base_mean for d in used) / len(used)
        n = sum(self.datasets[d].paired_new_mean for d in used) / len(used)
        return b, n, harmonic_mean(b, n), used


def _describe(res: LogResult) -> str:
    return {
        "no-log": "no log.txt",
        "no-result": "log has no '=> result' accuracy",
        "unfinished": "training did not finish (no result after 'Finish training')",
    }.get(res.status, res.status)


def _base_results(splits: dict[str, dict[int, LogResult]], seeds: Sequence[int]) -> dict[int, LogResult]:
    """Per seed the base-class result: the training log's, else a ``test_base`` evaluation's when it has one."""
    train, test_base = splits.get("train_base", {}), splits.get("test_base", {})
    out = {}
    for seed in seeds:
        res = train.get(seed)
        if (res is None or not res.ok) and seed in test_base and test_base[seed].ok:
            res = test_base[seed]
        if res is not None:
            out[seed] = res
    return out


def _unusable(dataset: str, half: str, split: str, results: dict[int, LogResult], values: dict[int, float],
              seeds: Sequence[int]) -> list[str]:
    """One line per expected seed of one half without a value: missing or unfinished (seeds left out for their
    config are described by :func:`prometar.report.runs.usable`)."""
    out = []
    for seed in seeds:
        res = results.get(seed)
        if res is None:
            out.append(f"{dataset} seed{seed} {half}: run missing (no {split}/.../seed{seed})")
        elif not res.ok:
            out.append(f"{dataset} seed{seed} {half}: {_describe(res)} ({res.path})")
    return out


def _dataset_stats(dataset: str, splits: dict[str, dict[int, LogResult]], expected: tuple[int, ...],
                   issues: list[str]) -> DatasetStats:
    stats = DatasetStats(dataset, expected_seeds=expected)
    base_res = _base_results(splits, expected)
    new_res = {s: r for s, r in splits.get("test_new", {}).items() if s in expected}
    stats.base, left_base = usable(base_res, f"{dataset} base")
    stats.new, left_new = usable(new_res, f"{dataset} new")
    issues += _unusable(dataset, "base", "train_base", base_res, stats.base, expected) + left_base
    issues += _unusable(dataset, "new", "test_new", new_res, stats.new, expected) + left_new
    if not stats.base and not stats.new:
        issues.append(f"{dataset}: no usable result at all (left out of the table's averages)")
    elif not stats.new:
        issues.append(f"{dataset}: no new-class result, HM unavailable (left out of the average)")
    elif not stats.base:
        issues.append(f"{dataset}: no base-class result, HM unavailable (left out of the average)")
    elif not stats.paired_seeds:
        issues.append(f"{dataset}: no seed has both a base and a new result, HM unavailable (left out of the "
                      f"average)")
    elif stats.partial:
        issues.append(f"{dataset}: partial seeds (base n={len(stats.base)}, new n={len(stats.new)} of "
                      f"{len(expected)}); shown and averaged with a mark, HM over the {stats.n_seeds} seed(s) "
                      f"having both")
    return stats


def summarize(runs: Runs) -> list[MethodReport]:
    """Turn scanned runs into per-method statistics and an explicit list of problems (see the module doc of
    :mod:`prometar.report` for what is averaged)."""
    reports = []
    for (trainer, cfg, shots) in sorted(runs):
        per_dataset = runs[(trainer, cfg, shots)]
        seeds: set[int] = set()
        for splits in per_dataset.values():
            for by_seed in splits.values():
                seeds.update(by_seed)
        expected = tuple(sorted(seeds))
        rep = MethodReport(trainer, cfg, shots)
        for dataset in ordered(per_dataset):
            rep.datasets[dataset] = _dataset_stats(dataset, per_dataset[dataset], expected, rep.issues)
        reports.append(rep)
    _shorten_labels(reports)
    return reports


def _shorten_labels(reports: list[MethodReport]) -> None:
    """Drop the part of the label that all methods share (trainer or config), if unambiguous."""
    if len(reports) < 2:
        return
    for parts in (lambda r: r.trainer, lambda r: r.config):
        labels = [parts(r) + ("" if r.shots == 16 else f" ({r.shots} shots)") for r in reports]
        if len(set(labels)) == len(labels):
            for rep, label in zip(reports, labels):
                rep.label_override = label
            return


# --------------------------------------------------------------------------------------------
# published numbers
# --------------------------------------------------------------------------------------------
def load_published() -> dict[str, Any]:
    """The published ProMetaR numbers shipped as ``prometar/assets/published.json``."""
    text = resources.files("prometar").joinpath("assets/published.json").read_text(encoding="utf-8")
    return json.loads(text)


_PUBLISHED_ORDER = protocol_datasets("base2new")  # the paper's order, as in the dataset table


def paper_average(published: dict[str, Any], datasets: Sequence[str]) -> tuple[Optional[float], list[str], bool]:
    """The paper's average HM comparable to an average over ``datasets``: (value, paper datasets used, full).

    Over all 11 datasets it is the published average (HM of the averaged base and new); over a subset it is
    the mean of the published per-dataset HMs over the datasets run that the paper lists (the paper gives
    no per-dataset base / new here), so compare it with :meth:`MethodReport.mean_hm` over the same list.
    """
    paper = published.get("prometar", {})
    hm = paper.get("hm", {})
    used = [d for d in ordered(datasets) if d in hm]
    if not used:
        return None, [], False
    if set(used) == set(hm) and "hm" in paper.get("average", {}):
        return float(paper["average"]["hm"]), used, True
    return sum(hm[d] for d in used) / len(used), used, False


def ordered(datasets: Sequence[str] | dict) -> list[str]:
    """Dataset names in the paper's order, others after them alphabetically."""
    names = list(datasets)
    known = [d for d in _PUBLISHED_ORDER if d in names]
    return known + sorted(d for d in names if d not in _PUBLISHED_ORDER)
