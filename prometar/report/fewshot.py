"""Few-shot results (CoOp's protocol): accuracy against the number of shots, per dataset and on average.

Each run trains on all classes with K images per class and ends with its accuracy on the full test split.
Folders, as `prometar sweep fewshot` writes them (CoOp's few-shot layout under ``fewshot/``)::

    fewshot/<dataset>/<TRAINER>/<CFG>_<K>shots/seed<S>/log.txt

Per method (trainer, config), dataset and K: mean ± population std over seeds (one seed: the plain value).
Average (only over two or more datasets): per K, the mean over the datasets having a value at that K, marked ‡
when a dataset of the table lacks one there or a partial cell entered it. Partial cells are shown and averaged
with a mark (†, n = seeds with a result) and listed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .results import MIN_AVERAGE_DATASETS, cell_of, ordered, seed_results, subdirs
from .runs import Cell, mean_std
from .tables import display, fmt, markdown_table, markdown_tail, num

__all__ = ["FewshotMethod", "scan_fewshot", "fewshot_table", "render_fewshot", "fewshot_csv_rows"]

_TAG_RE = re.compile(r"^(.+)_(\d+)shots$")


@dataclass
class FewshotMethod:
    """One method (trainer, config): a cell per dataset and shot count."""

    trainer: str
    config: str
    cells: dict[str, dict[int, Cell]] = field(default_factory=dict)  # dataset -> K -> cell
    issues: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.trainer}/{self.config}"

    @property
    def shots(self) -> list[int]:
        return sorted({k for per_k in self.cells.values() for k in per_k})

    @property
    def seeds(self) -> tuple[int, ...]:
        return next((c.expected for per_k in self.cells.values() for c in per_k.values()), ())

    def average(self, shots: int) -> tuple[Optional[float], list[str], bool]:
        """(mean over the datasets with a value at ``shots``, those datasets, marked); None below
        :data:`MIN_AVERAGE_DATASETS` datasets in the table."""
        if len(self.cells) < MIN_AVERAGE_DATASETS:
            return None, [], False
        used = [d for d in ordered(self.cells) if shots in self.cells[d] and self.cells[d][shots].mean is not None]
        value = mean_std([self.cells[d][shots].mean for d in used])[0]
        marked = len(used) < len(self.cells) or any(self.cells[d][shots].partial for d in used)
        return value, used, marked


def scan_fewshot(root: str, keyword: str = "accuracy") -> list[FewshotMethod]:
    """Every method under ``root/fewshot/`` (see the module doc); [] when there is none."""
    base = os.path.join(root, "fewshot")
    found: dict[tuple[str, str], dict[str, dict[int, tuple[str, dict]]]] = {}
    for dataset in subdirs(base):
        for trainer in subdirs(os.path.join(base, dataset)):
            for tag in subdirs(os.path.join(base, dataset, trainer)):
                m = _TAG_RE.match(tag)
                if m:
                    where = os.path.join(base, dataset, trainer, tag)
                    per_k = found.setdefault((trainer, m.group(1)), {}).setdefault(dataset, {})
                    per_k[int(m.group(2))] = (where, seed_results(where, keyword))
    methods = []
    for (trainer, cfg), datasets in sorted(found.items()):
        method = FewshotMethod(trainer, cfg)
        expected = tuple(sorted({s for per_k in datasets.values() for _, res in per_k.values() for s in res}))
        for dataset in ordered(datasets):
            for k, (where, results) in sorted(datasets[dataset].items()):
                cell, issues = cell_of(results, expected, f"{dataset} {k}-shot", where)
                method.cells.setdefault(dataset, {})[k] = cell
                method.issues += issues
        methods.append(method)
    return methods


def fewshot_table(method: FewshotMethod) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per dataset (and Average), one column per shot count."""
    shots = method.shots
    header = ["Dataset"] + [f"{k} shot{'s' if k != 1 else ''}" for k in shots]
    rows = []
    for dataset in ordered(method.cells):
        row = [display(dataset)]
        for k in shots:
            cell = method.cells[dataset].get(k)
            row.append("—" if cell is None else fmt(cell.mean, cell.std, cell.n, len(cell.expected)))
        rows.append(row)
    if len(method.cells) >= MIN_AVERAGE_DATASETS:
        avg = ["Average"]
        for k in shots:
            value, used, marked = method.average(k)
            avg.append(fmt(value) + (f" ({len(used)} ds)‡" if value is not None and marked else ""))
        rows.append(avg)
    return header, rows


def render_fewshot(methods: Sequence[FewshotMethod], source: str = "",
                   figures: Sequence[tuple[str, str]] = ()) -> str:
    """The few-shot section of ``report.md``: one accuracy-vs-shots table per method."""
    parts = ["# Few-shot report", ""]
    if source:
        parts += [f"Source: `{source}`", ""]
    parts += [
        "Accuracy (%) on the full test split after training on all classes with K images per class, mean ± "
        "population std over seeds (one seed: the plain value). Average (two or more datasets): per K, the mean "
        "over the datasets having a value; ‡ when a dataset lacks one there or a partial cell entered it; † "
        "partial seeds (n = seeds with a result). Partial cells are shown and averaged with a mark, and listed "
        "below.",
        "",
    ]
    for m in methods:
        parts += [f"## {m.label} (seeds {', '.join(map(str, m.seeds)) or '-'})", "",
                  markdown_table(*fewshot_table(m)), ""]
    return "\n".join(parts + markdown_tail(methods, "few-shot", figures))


def fewshot_csv_rows(methods: Sequence[FewshotMethod]) -> list[dict[str, Any]]:
    """``report.csv`` rows: per method, dataset and K (``shots``), plus ``average`` rows per K."""
    rows = []
    for m in methods:
        head = {"protocol": "fewshot", "table": "fewshot", "trainer": m.trainer, "config": m.config,
                "expected_seeds": " ".join(map(str, m.seeds))}
        for dataset in ordered(m.cells):
            for k, cell in sorted(m.cells[dataset].items()):
                rows.append({**head, "shots": k, "dataset": dataset, "accuracy_mean": num(cell.mean),
                             "accuracy_std": num(cell.std), "accuracy_n": cell.n, "partial": int(cell.partial)})
        for k in m.shots:
            value, used, marked = m.average(k)
            if value is not None:
                rows.append({**head, "shots": k, "dataset": "average", "accuracy_mean": num(value),
                             "accuracy_n": len(used), "partial": int(marked)})
    return rows
