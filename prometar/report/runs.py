"""Which seed folders of one table cell may be averaged together, and the seed statistics of a cell.

A cell of a report table (one method on one dataset, e.g. the new-class accuracy of ProMetaR on EuroSAT) averages
the final accuracies of its seed folders. The report never mixes runs of different configs in a cell: the
folders' saved ``config.yaml`` files are compared with the run-folder model's fingerprint (every key that may not
differ between a run and its re-run, minus ``SEED``); when they disagree, the cell keeps the config most of its
seeds share (on a tie, the one of the newest run) and the other folders are listed with their differing keys. An
evaluation folder whose recorded model file (``provenance.json``) has changed since it was evaluated is left out
too: its accuracy belongs to an earlier model. Folders without ``config.yaml`` or provenance (written by Dassl
or by older versions) cannot be compared and are used as they are.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

__all__ = ["Cell", "mean_std", "consistent_seeds", "stale_model", "usable"]


def mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and population std; the std is None for fewer than two values (one seed has no spread)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass
class Cell:
    """The seeds of one table cell: ``values`` by seed (finished, consistent runs only) and the seeds the
    method was run with (``expected``); a cell with fewer values than expected seeds is *partial*."""

    values: dict[int, float] = field(default_factory=dict)
    expected: tuple[int, ...] = ()

    @property
    def mean(self) -> Optional[float]:
        return mean_std(list(self.values.values()))[0]

    @property
    def std(self) -> Optional[float]:
        return mean_std(list(self.values.values()))[1]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def partial(self) -> bool:
        return not set(self.expected) <= set(self.values)


def _folder(log_path: str) -> str:
    return os.path.dirname(log_path)


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(os.path.join(path, "config.yaml"))
    except OSError:
        return 0.0


def consistent_seeds(folders: dict[int, str], what: str) -> tuple[set[int], list[str]]:
    """The seeds of ``folders`` (seed -> run folder) that share one config, and one line per seed left out
    (``what`` names the cell, e.g. ``eurosat base``). See the module doc for the rule."""
    from ..engine.runfolder import RunFolder, config_diff, fingerprint

    configs: dict[int, dict[str, Any]] = {}
    for seed, folder in folders.items():
        cfg = RunFolder(folder).saved_config()
        if cfg is not None:
            configs[seed] = cfg
    groups: dict[str, list[int]] = {}
    for seed in sorted(configs):
        groups.setdefault(fingerprint(configs[seed], "resume", exclude=("SEED",)), []).append(seed)
    if len(groups) < 2:
        return set(folders), []
    keep = max(groups.values(), key=lambda seeds: (len(seeds), max(_mtime(folders[s]) for s in seeds)))
    ref = keep[0]
    issues = []
    for seeds in groups.values():
        if seeds is keep:
            continue
        for seed in seeds:
            diff = [d for d in config_diff(configs[ref], configs[seed], "resume") if not d.startswith("SEED:")]
            issues.append(f"{what} seed{seed}: left out, made with another config than seed{ref} "
                          f"({folders[seed]} vs {folders[ref]}: {'; '.join(diff)})")
    dropped = {s for seeds in groups.values() if seeds is not keep for s in seeds}
    return set(folders) - dropped, issues


def stale_model(folder: str) -> Optional[str]:
    """Why the accuracy of evaluation folder ``folder`` is not the current model's, or None: the model file its
    last run loaded (recorded in ``provenance.json``) is gone or has other bytes now. None as well when nothing
    was recorded (a training folder, or one written before provenance was kept)."""
    from ..engine.runfolder import RunFolder, sha256_file

    runs = RunFolder(folder).provenance().get("runs") or []
    model = (runs[-1] or {}).get("model") if runs else None
    if not model or not model.get("file") or not model.get("sha256"):
        return None
    path = model["file"]
    if not os.path.isabs(path) and model.get("dir"):
        path = os.path.join(model["dir"], path)
    if not os.path.isfile(path):
        return f"the model file it evaluated, {path}, no longer exists"
    if sha256_file(path) != model["sha256"]:
        return f"the model file it evaluated, {path}, has been replaced since (re-run the evaluation)"
    return None


def usable(results: dict[int, Any], what: str) -> tuple[dict[int, float], list[str]]:
    """Accuracy by seed of the finished, consistent runs among ``results`` (seed -> :class:`LogResult`), and
    one line per finished run left out (made with another config, or an evaluation of a model file replaced
    since). Unfinished runs are not listed here (the caller describes them)."""
    done = {s: r for s, r in results.items() if r.ok}
    keep, issues = consistent_seeds({s: _folder(r.path) for s, r in done.items()}, what)
    values = {}
    for seed in sorted(keep):
        why = stale_model(_folder(done[seed].path))
        if why:
            issues.append(f"{what} seed{seed}: left out, {why} ({_folder(done[seed].path)})")
            continue
        values[seed] = done[seed].accuracy
    return values, issues
