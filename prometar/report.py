"""Base-to-new report: parse an output tree, tabulate base / new / HM per dataset, plot.

Usage: ``python -m prometar.report OUTPUT_DIR [--out DIR] [--no-plot]``

``OUTPUT_DIR`` holds ``base2new/`` (or is the ``base2new`` folder itself), laid out like the
CoOp-family scripts write it (protocol §7.5)::

    base2new/train_base/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt   -> base accuracy
    base2new/test_new/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt     -> new accuracy
    (base2new/test_base/... is used for a seed whose train_base log has no result)

Accuracy is read like ``parse_test_res.py --test-log``: the last ``* accuracy: x%`` after a
``=> result`` line.  In a training log (one with progress lines or a ``Finish training`` /
``Finished training`` line) only a result printed after the end-of-training line counts, so a
crashed run never reports a validation accuracy.  Per (trainer, config, shots) and dataset: B and N
are seed means (± population std), HM = 2BN/(B+N) of the means; the average row is the HM of the
averaged B and N over the datasets that have both.  Missing or partial runs are listed, never
silently averaged.  Writes ``report.md``, ``report.csv`` and ``report.png``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional, Sequence

__all__ = [
    "LogResult",
    "DatasetStats",
    "MethodReport",
    "harmonic_mean",
    "parse_log",
    "read_run",
    "find_base2new_dir",
    "scan_base2new",
    "summarize",
    "load_published",
    "render_markdown",
    "write_csv",
    "draw_plot",
    "report_main",
]

END_SIGNALS = ("Finish training", "Finished training")
RESULT_SIGNAL = "=> result"
SPLITS = ("train_base", "test_base", "test_new")
_SEED_RE = re.compile(r"^seed(-?\d+)$")
_SHOTS_RE = re.compile(r"^shots_(-?\d+)$")


# --------------------------------------------------------------------------------------------
# log parsing
# --------------------------------------------------------------------------------------------
@dataclass
class LogResult:
    """What one seed folder gave: ``accuracy`` (None if unusable), a status and the log read."""

    accuracy: Optional[float]
    status: str  # "ok", "no-log", "no-result", "unfinished"
    path: str = ""

    @property
    def ok(self) -> bool:
        return self.accuracy is not None


def parse_log(path: str, keyword: str = "accuracy") -> LogResult:
    """Parse one Dassl ``log.txt`` (see module doc for the rules)."""
    if not os.path.isfile(path):
        return LogResult(None, "no-log", path)
    regex = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    armed = False
    training = False
    end_line = -1
    value: Optional[float] = None
    value_line = -1
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for i, raw in enumerate(f):
            line = raw.strip()
            if line in END_SIGNALS:
                training = True
                end_line = i
            elif line.startswith("epoch [") and " batch [" in line:
                training = True
            if line == RESULT_SIGNAL:
                armed = True
            if armed:
                match = regex.search(line)
                if match:
                    try:
                        value, value_line = float(match.group(1)), i
                    except ValueError:
                        pass
    if training and (end_line < 0 or value_line < end_line):
        return LogResult(None, "unfinished", path)
    if value is None:
        return LogResult(None, "no-result", path)
    return LogResult(value, "ok", path)


def read_run(seed_dir: str, keyword: str = "accuracy") -> LogResult:
    """Result of one seed folder: ``log.txt``; if it has none, the newest ``log.txt-<time>`` that has
    one (Dassl writes a re-run's log there when ``log.txt`` exists)."""
    main = parse_log(os.path.join(seed_dir, "log.txt"), keyword)
    if main.ok:
        return main
    try:
        extra = sorted((n for n in os.listdir(seed_dir) if n.startswith("log.txt-")), reverse=True)
    except OSError:
        extra = []
    for name in extra:
        res = parse_log(os.path.join(seed_dir, name), keyword)
        if res.ok:
            return res
    return main


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------
def _subdirs(path: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith(".") and os.path.isdir(os.path.join(path, n)))
    except OSError:
        return []


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


def _mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass
class DatasetStats:
    """Seed statistics of one method on one dataset."""

    dataset: str
    base: dict[int, float] = field(default_factory=dict)
    new: dict[int, float] = field(default_factory=dict)
    expected_seeds: tuple[int, ...] = ()

    @property
    def base_mean(self) -> Optional[float]:
        return _mean_std(list(self.base.values()))[0]

    @property
    def base_std(self) -> Optional[float]:
        return _mean_std(list(self.base.values()))[1]

    @property
    def new_mean(self) -> Optional[float]:
        return _mean_std(list(self.new.values()))[0]

    @property
    def new_std(self) -> Optional[float]:
        return _mean_std(list(self.new.values()))[1]

    @property
    def hm(self) -> Optional[float]:
        return harmonic_mean(self.base_mean, self.new_mean)

    @property
    def hm_seed_std(self) -> Optional[float]:
        """Population std of per-seed HMs (seeds having both results)."""
        seeds = sorted(set(self.base) & set(self.new))
        return _mean_std([harmonic_mean(self.base[s], self.new[s]) for s in seeds])[1]

    @property
    def partial(self) -> bool:
        """Some expected seed lacks a base or a new result."""
        want = set(self.expected_seeds)
        return not (want <= set(self.base) and want <= set(self.new))

    @property
    def complete_pair(self) -> bool:
        """Has at least one base and one new result (so an HM exists)."""
        return bool(self.base) and bool(self.new)


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

    def average(self) -> tuple[Optional[float], Optional[float], Optional[float], list[str]]:
        """(B̄, N̄, HM(B̄, N̄), datasets used): over datasets with both a base and a new result."""
        used = [d for d, s in self.datasets.items() if s.complete_pair]
        if not used:
            return None, None, None, []
        b = sum(self.datasets[d].base_mean for d in used) / len(used)
        n = sum(self.datasets[d].new_mean for d in used) / len(used)
        return b, n, harmonic_mean(b, n), used


def _describe(res: LogResult) -> str:
    return {
        "no-log": "no log.txt",
        "no-result": "log has no '=> result' accuracy",
        "unfinished": "training did not finish (no result after 'Finish training')",
    }.get(res.status, res.status)


def summarize(runs: Runs) -> list[MethodReport]:
    """Turn scanned runs into per-method statistics and an explicit list of problems."""
    reports = []
    for (trainer, cfg, shots) in sorted(runs):
        per_dataset = runs[(trainer, cfg, shots)]
        seeds: set[int] = set()
        for splits in per_dataset.values():
            for by_seed in splits.values():
                seeds.update(by_seed)
        expected = tuple(sorted(seeds))
        rep = MethodReport(trainer, cfg, shots)
        for dataset in _ordered(per_dataset):
            splits = per_dataset[dataset]
            stats = DatasetStats(dataset, expected_seeds=expected)
            train, test_base, test_new = (splits.get(s, {}) for s in SPLITS)
            for seed in expected:
                res = train.get(seed)
                if (res is None or not res.ok) and seed in test_base and test_base[seed].ok:
                    res = test_base[seed]
                if res is not None and res.ok:
                    stats.base[seed] = res.accuracy
                elif res is not None:
                    rep.issues.append(f"{dataset} seed{seed} base: {_describe(res)} ({res.path})")
                else:
                    rep.issues.append(f"{dataset} seed{seed} base: run missing (no train_base/.../seed{seed})")
                res = test_new.get(seed)
                if res is not None and res.ok:
                    stats.new[seed] = res.accuracy
                elif res is not None:
                    rep.issues.append(f"{dataset} seed{seed} new: {_describe(res)} ({res.path})")
                else:
                    rep.issues.append(f"{dataset} seed{seed} new: run missing (no test_new/.../seed{seed})")
            if not stats.base and not stats.new:
                rep.issues.append(f"{dataset}: no usable result at all (left out of the table's averages)")
            elif not stats.new:
                rep.issues.append(f"{dataset}: no new-class result, HM unavailable (left out of the average)")
            elif not stats.base:
                rep.issues.append(f"{dataset}: no base-class result, HM unavailable (left out of the average)")
            elif stats.partial:
                rep.issues.append(
                    f"{dataset}: partial seeds (base n={len(stats.base)}, new n={len(stats.new)} "
                    f"of {len(expected)}); shown and averaged as marked"
                )
            rep.datasets[dataset] = stats
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


_PUBLISHED_ORDER = [
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
]


def _ordered(datasets: Sequence[str] | dict) -> list[str]:
    names = list(datasets)
    known = [d for d in _PUBLISHED_ORDER if d in names]
    return known + sorted(d for d in names if d not in _PUBLISHED_ORDER)


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _fmt(mean: Optional[float], std: Optional[float] = None, n: Optional[int] = None,
         expected: Optional[int] = None) -> str:
    if mean is None:
        return "—"
    text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
    if n is not None and expected is not None and n < expected:
        text += f" (n={n})†"
    return text


def _display(dataset: str, published: dict[str, Any]) -> str:
    return published.get("display_names", {}).get(dataset, dataset)


def table_rows(reports: Sequence[MethodReport], published: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table (one Base/New/HM triple per method)."""
    header = ["Dataset"]
    for rep in reports:
        header += [f"{rep.label} Base", f"{rep.label} New", f"{rep.label} HM"]
    header.append("ProMetaR paper HM")
    paper_hm = published.get("prometar", {}).get("hm", {})
    datasets = _ordered({d for rep in reports for d in rep.datasets})
    rows = []
    for d in datasets:
        row = [_display(d, published)]
        for rep in reports:
            s = rep.datasets.get(d)
            if s is None:
                row += ["—", "—", "—"]
                continue
            k = len(s.expected_seeds)
            row += [
                _fmt(s.base_mean, s.base_std, len(s.base), k),
                _fmt(s.new_mean, s.new_std, len(s.new), k),
                _fmt(s.hm, s.hm_seed_std) + ("†" if s.partial and s.hm is not None else ""),
            ]
        row.append(_fmt(paper_hm.get(d)))
        rows.append(row)
    avg = ["Average"]
    for rep in reports:
        b, n, h, used = rep.average()
        mark = ""
        if used and (len(used) < len(_PUBLISHED_ORDER) or any(rep.datasets[d].partial for d in used)):
            mark = f" ({len(used)} ds)‡"
        avg += [_fmt(b), _fmt(n), _fmt(h) + mark]
    avg.append(_fmt(published.get("prometar", {}).get("average", {}).get("hm")))
    rows.append(avg)
    return header, rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def notes(reports: Sequence[MethodReport]) -> list[str]:
    """Explicit list of missing/partial runs, one line each."""
    out = []
    all_datasets = _ordered({d for rep in reports for d in rep.datasets})
    for rep in reports:
        for issue in rep.issues:
            out.append(f"[{rep.label}] {issue}")
        for d in all_datasets:
            if d not in rep.datasets:
                out.append(f"[{rep.label}] {d}: no runs at all (other methods have some)")
    return out


def render_markdown(reports: Sequence[MethodReport], published: dict[str, Any], source: str = "") -> str:
    """The full ``report.md`` text."""
    header, rows = table_rows(reports, published)
    parts = ["# Base-to-new generalisation report", ""]
    if source:
        parts += [f"Source: `{source}`", ""]
    parts += [
        "Base / New: mean ± population std over seeds (accuracy %, as printed in the logs). "
        "HM = 2·B·N/(B+N) of the seed means; its ± is the std of per-seed HMs. "
        "Average row: HM of the averaged B and N over the datasets having both.",
        "† partial seeds (n = seeds with a result); ‡ average over fewer than 11 datasets or including partial ones.",
        "",
        _markdown_table(header, rows),
        "",
        "## Missing or partial runs",
        "",
    ]
    issues = notes(reports)
    parts += [f"- {i}" for i in issues] if issues else ["None: every seed folder has a base and a new result."]
    parts += ["", "## Published averages over 11 datasets (base / new / HM)", ""]
    avg_rows = [[name, _fmt(v["base"]), _fmt(v["new"]), _fmt(v["hm"])] for name, v in published.get("averages", {}).items()]
    for rep in reports:
        b, n, h, used = rep.average()
        avg_rows.append([f"this run: {rep.label} ({len(used)} datasets)", _fmt(b), _fmt(n), _fmt(h)])
    parts.append(_markdown_table(["Method", "Base", "New", "HM"], avg_rows))
    parts.append("")
    return "\n".join(parts)


def write_csv(reports: Sequence[MethodReport], published: dict[str, Any], path: str) -> str:
    """Long-format CSV: one row per (method, dataset) plus one ``average`` row per method."""
    paper_hm = published.get("prometar", {}).get("hm", {})
    fields = ["trainer", "config", "shots", "dataset", "base_mean", "base_std", "base_n", "new_mean",
              "new_std", "new_n", "hm", "hm_seed_std", "expected_seeds", "partial", "paper_hm"]

    def num(x: Optional[float]) -> str:
        return "" if x is None else f"{x:.4f}"

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for rep in reports:
            for d, s in rep.datasets.items():
                w.writerow([rep.trainer, rep.config, rep.shots, d, num(s.base_mean), num(s.base_std), len(s.base),
                            num(s.new_mean), num(s.new_std), len(s.new), num(s.hm), num(s.hm_seed_std),
                            " ".join(map(str, s.expected_seeds)), int(s.partial), num(paper_hm.get(d))])
            b, n, h, used = rep.average()
            partial = int(len(used) < len(_PUBLISHED_ORDER) or any(rep.datasets[d].partial for d in used))
            w.writerow([rep.trainer, rep.config, rep.shots, "average", num(b), "", len(used), num(n), "", len(used),
                        num(h), "", "", partial, num(published.get("prometar", {}).get("average", {}).get("hm"))])
    return path


def draw_plot(reports: Sequence[MethodReport], published: dict[str, Any], path: str) -> str:
    """Grouped bars (base / new / HM per dataset and method) with the paper's ProMetaR HM as markers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = _ordered({d for rep in reports for d in rep.datasets})
    labels = [_display(d, published) for d in datasets] + ["Average"]
    paper = published.get("prometar", {})
    n_groups = max(1, len(reports)) * 3
    width = 0.8 / n_groups
    colors = {"Base": "#4C72B0", "New": "#DD8452", "HM": "#55A868"}
    hatches = ["", "//", "..", "xx", "\\\\", "++"]
    fig = Figure(figsize=(max(8.0, 1.1 * len(labels) * max(1, len(reports)) ** 0.5), 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for m, rep in enumerate(reports):
        b_avg, n_avg, h_avg, _ = rep.average()
        series = {
            "Base": [rep.datasets[d].base_mean if d in rep.datasets else None for d in datasets] + [b_avg],
            "New": [rep.datasets[d].new_mean if d in rep.datasets else None for d in datasets] + [n_avg],
            "HM": [rep.datasets[d].hm if d in rep.datasets else None for d in datasets] + [h_avg],
        }
        for j, (metric, values) in enumerate(series.items()):
            offset = (m * 3 + j - (n_groups - 1) / 2) * width
            xs = [i + offset for i, v in enumerate(values) if v is not None]
            ys = [v for v in values if v is not None]
            ax.bar(xs, ys, width, color=colors[metric], hatch=hatches[m % len(hatches)], edgecolor="white",
                   label=f"{rep.label} {metric}")
    px = [i for i, d in enumerate(datasets) if d in paper.get("hm", {})]
    py = [paper["hm"][datasets[i]] for i in px]
    if "hm" in paper.get("average", {}) and px:  # the paper's 11-dataset average only next to paper datasets
        px.append(len(datasets))
        py.append(paper["average"]["hm"])
    if px:
        ax.scatter(px, py, marker="*", s=90, color="black", zorder=5, label="ProMetaR paper HM")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Base-to-new generalisation")
    ax.legend(fontsize=7, ncol=max(1, len(reports)), loc="upper center", bbox_to_anchor=(0.5, -0.18),
              frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def report_main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: returns 0 when a report was written, 1 when no result was found, 2 on a bad path."""
    parser = argparse.ArgumentParser(prog="python -m prometar.report", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="folder holding base2new/ (or the base2new folder itself)")
    parser.add_argument("--out", default=None, help="where to write report.md/.csv/.png (default: OUTPUT_DIR)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw report.png")
    parser.add_argument("--keyword", default="accuracy", help="metric to read from the logs (default accuracy)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if not os.path.isdir(args.output_dir):
        print(f'report: "{args.output_dir}" is not a directory', file=sys.stderr)
        return 2
    b2n = find_base2new_dir(args.output_dir)
    if b2n is None:
        print(f'report: no base2new/ (or train_base/, test_new/) folder under "{args.output_dir}"', file=sys.stderr)
        return 1
    reports = summarize(scan_base2new(b2n, args.keyword))
    if not reports:
        print(f'report: no seed folders found under "{b2n}"', file=sys.stderr)
        return 1
    published = load_published()
    header, rows = table_rows(reports, published)
    print(_markdown_table(header, rows))
    issues = notes(reports)
    if issues:
        print("\nMissing or partial runs:")
        for issue in issues:
            print(f"  - {issue}")
    out_dir = args.out or args.output_dir
    os.makedirs(out_dir, exist_ok=True)
    written = []
    md_path = os.path.join(out_dir, "report.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(render_markdown(reports, published, source=os.path.abspath(b2n)))
    written.append(md_path)
    written.append(write_csv(reports, published, os.path.join(out_dir, "report.csv")))
    if not args.no_plot:
        written.append(draw_plot(reports, published, os.path.join(out_dir, "report.png")))
    print("\nWrote " + ", ".join(written))
    found_any = any(s.base or s.new for rep in reports for s in rep.datasets.values())
    return 0 if found_any else 1


if __name__ == "__main__":
    sys.exit(report_main())
