"""Cross-dataset and domain-generalisation results: the paper's two tables.

The model trained on the source dataset (ImageNet: all classes, K shots) is evaluated unchanged on the other
datasets (cross-dataset) and on the ImageNet variants (domain generalisation). Folders, as `scripts/xd_train.sh`,
`scripts/xd_test.sh` and `prometar sweep xd` write them::

    <source>/<TRAINER>/<CFG>_<K>shots/seed<S>/log.txt              source accuracy (the training run's final test)
    evaluation/<TRAINER>/<CFG>_<K>shots/<target>/seed<S>/log.txt   target accuracy

Per method (trainer, config, shots) and dataset: mean ± population std over seeds (one seed: the plain value).
Which targets belong to which table comes from the dataset table (protocols ``xd`` and ``dg``; a target in
neither, e.g. a user's own folder, joins the cross-dataset table). Average: the mean over the targets run (the
source is not averaged), marked ‡ when it covers fewer targets than the paper's table or a partial cell.
Partial cells are shown and averaged with a mark (†, n = seeds with a result) and listed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..data.specs import protocol_datasets
from .results import cell_of, ordered, seed_results, subdirs
from .runs import Cell, mean_std
from .tables import display, fmt, markdown_table, markdown_tail, num

__all__ = ["XdMethod", "scan_xd", "xd_tables", "render_xd", "xd_csv_rows", "TABLES"]

_TAG_RE = re.compile(r"^(.+)_(\d+)shots$")
#: Top-level folders of an output root that are never a source dataset's folder.
_NOT_SOURCES = {"evaluation", "base2new", "fewshot", "sweeps", "curves"}
#: The two tables: (key, title, the paper's targets).
TABLES = (
    ("cross_dataset", "Cross-dataset evaluation", protocol_datasets("xd")),
    ("domain_generalisation", "Domain generalisation", protocol_datasets("dg")),
)


@dataclass
class XdMethod:
    """One trained model family (trainer, config, shots): its source cell and its target cells."""

    trainer: str
    config: str
    shots: int
    source: str = ""
    source_cell: Cell = field(default_factory=Cell)
    targets: dict[str, Cell] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        text = f"{self.trainer}/{self.config}"
        return text if self.shots == 16 else f"{text} ({self.shots} shots)"

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.source_cell.expected


def _source(root: str, trainer: str, tag: str) -> tuple[str, str]:
    """(source dataset, its folder) holding ``<source>/<trainer>/<tag>/seed*``; ("", "") when there is none."""
    found = [d for d in subdirs(root) if d not in _NOT_SOURCES
             and os.path.isdir(os.path.join(root, d, trainer, tag))]
    if not found:
        return "", ""
    name = "imagenet" if "imagenet" in found else found[0]
    return name, os.path.join(root, name, trainer, tag)


def _method(root: str, trainer: str, tag: str, keyword: str) -> Optional[XdMethod]:
    m = _TAG_RE.match(tag)
    if not m:
        return None
    method = XdMethod(trainer, m.group(1), int(m.group(2)))
    tag_dir = os.path.join(root, "evaluation", trainer, tag)
    targets = {t: seed_results(os.path.join(tag_dir, t), keyword) for t in subdirs(tag_dir)}
    method.source, source_dir = _source(root, trainer, tag)
    source = seed_results(source_dir, keyword) if source_dir else {}
    expected = tuple(sorted(set(source).union(*[set(r) for r in targets.values()])))
    if source_dir:
        method.source_cell, issues = cell_of(source, expected, f"{method.source} (source)", source_dir)
        method.issues += issues
    else:
        method.source_cell = Cell({}, expected)
        method.issues.append(f"no source training folder <source>/{trainer}/{tag}/ next to evaluation/")
    for target in ordered(targets):
        method.targets[target], issues = cell_of(targets[target], expected, target, os.path.join(tag_dir, target))
        method.issues += issues
    return method


def scan_xd(root: str, keyword: str = "accuracy") -> list[XdMethod]:
    """Every method under ``root/evaluation/`` (see the module doc); [] when there is none."""
    methods = []
    for trainer in subdirs(os.path.join(root, "evaluation")):
        for tag in subdirs(os.path.join(root, "evaluation", trainer)):
            method = _method(root, trainer, tag, keyword)
            if method is not None and method.targets:
                methods.append(method)
    return methods


def _split_targets(methods: Sequence[XdMethod]) -> dict[str, list[str]]:
    """Targets run, per table key, in the paper's order."""
    run = {t for m in methods for t in m.targets}
    xd, dg = TABLES[0][2], TABLES[1][2]
    others = sorted(t for t in run if t not in xd and t not in dg)  # e.g. a user's own folder: cross-dataset
    return {"cross_dataset": [t for t in xd if t in run] + others, "domain_generalisation": [t for t in dg if t in run]}


def target_average(method: XdMethod, targets: Sequence[str],
                   paper: Sequence[str]) -> tuple[Optional[float], list[str], bool]:
    """(mean over the targets that have a value, those targets, marked): marked when fewer than the paper's
    targets or a partial cell entered it."""
    used = [t for t in targets if t in method.targets and method.targets[t].mean is not None]
    value = mean_std([method.targets[t].mean for t in used])[0]
    marked = len(used) < len(paper) or any(method.targets[t].partial for t in used)
    return value, used, marked


def _cell_text(cell: Optional[Cell]) -> str:
    if cell is None:
        return "—"
    return fmt(cell.mean, cell.std, cell.n, len(cell.expected))


def xd_tables(methods: Sequence[XdMethod]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(key, title, header, rows) of each table that has targets: rows are methods; columns the source, the
    targets run (paper order) and the average over them."""
    out = []
    split = _split_targets(methods)
    for key, title, paper in TABLES:
        targets = split[key]
        if not targets:
            continue
        sources = sorted({m.source for m in methods if m.source}) or [""]
        header = ["Method", "Source: " + ", ".join(display(s) for s in sources if s) if sources != [""] else "Source"]
        header += [display(t) for t in targets] + ["Average"]
        rows = []
        for m in methods:
            value, used, marked = target_average(m, targets, paper)
            avg = fmt(value) + (f" ({len(used)} of {len(paper)})‡" if value is not None and marked else "")
            rows.append([m.label, _cell_text(m.source_cell)] + [_cell_text(m.targets.get(t)) for t in targets]
                        + [avg])
        out.append((key, title, header, rows))
    return out


def render_xd(methods: Sequence[XdMethod], source: str = "", figures: Sequence[tuple[str, str]] = ()) -> str:
    """The cross-dataset / domain-generalisation section of ``report.md``."""
    parts = ["# Cross-dataset and domain generalisation report", ""]
    if source:
        parts += [f"Source: `{source}`", ""]
    parts += [
        "Accuracy (%) on each dataset's full test split, mean ± population std over seeds (one seed: the plain "
        "value). The model trained on the source (all classes, K shots) is evaluated unchanged on every target "
        "(all classes). Average: mean over the targets run (the source is not averaged); ‡ over fewer targets "
        "than the paper's table (10 cross-dataset, 4 ImageNet variants) or including a partial cell; † partial "
        "seeds (n = seeds with a result). Partial cells are shown and averaged with a mark, and listed below.",
        "",
        "Seeds: " + "; ".join(f"{m.label}: {', '.join(map(str, m.seeds)) or '-'}" for m in methods),
        "",
    ]
    for _, title, header, rows in xd_tables(methods):
        parts += [f"## {title}", "", markdown_table(header, rows), ""]
    return "\n".join(parts + markdown_tail(methods, "cross-dataset / domain generalisation", figures))


def xd_csv_rows(methods: Sequence[XdMethod]) -> list[dict[str, Any]]:
    """``report.csv`` rows: per table and method, the source, each target and the ``average``."""
    rows = []
    split = _split_targets(methods)
    for key, _, paper in TABLES:
        targets = split[key]
        if not targets:
            continue
        for m in methods:
            head = {"protocol": "xd", "table": key, "trainer": m.trainer, "config": m.config, "shots": m.shots,
                    "expected_seeds": " ".join(map(str, m.seeds))}
            cells = ([(m.source or "source", m.source_cell)] if m.source else []) + \
                [(t, m.targets[t]) for t in targets if t in m.targets]
            for name, cell in cells:
                rows.append({**head, "dataset": name, "accuracy_mean": num(cell.mean),
                             "accuracy_std": num(cell.std), "accuracy_n": cell.n, "partial": int(cell.partial)})
            value, used, marked = target_average(m, targets, paper)
            if value is not None:
                rows.append({**head, "dataset": "average", "accuracy_mean": num(value), "accuracy_n": len(used),
                             "partial": int(marked)})
    return rows
