"""The report's text: the side-by-side table, the comparison with the paper, ``report.md`` and ``report.csv``."""
from __future__ import annotations

import csv
from typing import Any, Optional, Sequence, Tuple

from ..data.specs import SPECS, protocol_datasets, resolve_name
from .results import MIN_AVERAGE_DATASETS, MethodReport, ordered, paper_average

__all__ = ["fmt", "display", "table_rows", "markdown_table", "notes", "seed_notes", "paper_comparison",
           "render_markdown", "base2new_csv_rows", "write_csv", "num", "CSV_FIELDS", "N_PAPER_DATASETS"]

#: Datasets in the paper's base-to-new table (the dataset table's base-to-new protocol).
N_PAPER_DATASETS = len(protocol_datasets("base2new"))


def fmt(mean: Optional[float], std: Optional[float] = None, n: Optional[int] = None,
        expected: Optional[int] = None) -> str:
    """``91.00 ± 0.82``; the plain value when there is no std (one seed); ``(n=2)†`` when seeds are missing."""
    if mean is None:
        return "—"
    text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
    if n is not None and expected is not None and n < expected:
        text += f" (n={n})†"
    return text


def display(dataset: str) -> str:
    """The name tables show for a dataset's config name (``oxford_flowers`` -> ``Flowers102``, the dataset
    table's ``label``); a name outside the table is shown as it is."""
    try:
        return SPECS[resolve_name(dataset, aliases=True)].label
    except KeyError:
        return dataset


def _names(datasets: Sequence[str]) -> str:
    return ", ".join(display(d) for d in datasets)


def _average_mark(rep: MethodReport, used: Sequence[str]) -> str:
    partial = any(rep.datasets[d].partial for d in used)
    return f" ({len(used)} ds)‡" if used and (len(used) < N_PAPER_DATASETS or partial) else ""


def _table_average_datasets(reports: Sequence[MethodReport]) -> list[str]:
    """Datasets in any method's average (the paper cell of the Average row is computed over them)."""
    return ordered({d for rep in reports for d in rep.average()[3] if rep.average()[2] is not None})


def table_rows(reports: Sequence[MethodReport], published: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table (one Base/New/HM triple per method).  The Average row is
    present only when some method has results on two or more datasets; its paper cell is the paper's
    average over the same datasets (marked § when that is not the published 11-dataset average)."""
    header = ["Dataset"]
    for rep in reports:
        header += [f"{rep.label} Base", f"{rep.label} New", f"{rep.label} HM"]
    header.append("ProMetaR paper HM")
    paper_hm = published.get("prometar", {}).get("hm", {})
    datasets = ordered({d for rep in reports for d in rep.datasets})
    rows = []
    for d in datasets:
        row = [display(d)]
        for rep in reports:
            s = rep.datasets.get(d)
            if s is None:
                row += ["—", "—", "—"]
                continue
            k = len(s.expected_seeds)
            row += [
                fmt(s.base_mean, s.base_std, len(s.base), k),
                fmt(s.new_mean, s.new_std, len(s.new), k),
                fmt(s.hm, s.hm_seed_std) + ("†" if s.partial and s.hm is not None else ""),
            ]
        row.append(fmt(paper_hm.get(d)))
        rows.append(row)
    if any(rep.average()[2] is not None for rep in reports):
        avg = ["Average"]
        for rep in reports:
            b, n, h, used = rep.average()
            avg += [fmt(b), fmt(n), fmt(h) + (_average_mark(rep, used) if h is not None else "")]
        value, _, full = paper_average(published, _table_average_datasets(reports))
        avg.append(fmt(value) + ("" if value is None or full else "§"))
        rows.append(avg)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def issue_lines(methods: Sequence[Any]) -> list[str]:
    """Each method's listed issues (missing or partial runs), as ``[label] issue``."""
    return [f"[{m.label}] {i}" for m in methods for i in m.issues]


def markdown_tail(methods: Sequence[Any], protocol: str, figures: Sequence[Tuple[str, str]]) -> list[str]:
    """The end of a protocol's ``report.md``: its missing or partial runs, then its figures."""
    issues = issue_lines(methods)
    parts = [f"## Missing or partial runs ({protocol})", ""]
    parts += [f"- {i}" for i in issues] if issues else ["None: every seed folder has a result."]
    for title, rel in figures:
        parts += ["", f"### {title}", "", f"![{title}]({rel})"]
    parts.append("")
    return parts


def notes(reports: Sequence[MethodReport]) -> list[str]:
    """Explicit list of missing/partial runs, one line each."""
    out = []
    all_datasets = ordered({d for rep in reports for d in rep.datasets})
    for rep in reports:
        for issue in rep.issues:
            out.append(f"[{rep.label}] {issue}")
        for d in all_datasets:
            if d not in rep.datasets:
                out.append(f"[{rep.label}] {d}: no runs at all (other methods have some)")
    return out


def seed_notes(reports: Sequence[MethodReport]) -> list[str]:
    """One line per method: its seeds, and ``n=1`` (values without ±) when there is a single seed."""
    out = []
    for rep in reports:
        seeds = sorted({s for st in rep.datasets.values() for s in st.expected_seeds})
        text = f"{rep.label}: seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}"
        if len(seeds) == 1:
            text += " (n=1: plain values, no std)"
        out.append(text)
    return out


def paper_comparison(reports: Sequence[MethodReport], published: dict[str, Any]) -> list[str]:
    """Sentences comparing each method's average with the paper's over the same datasets."""
    out = []
    if not any(rep.average()[2] is not None for rep in reports):
        n_datasets = len({d for rep in reports for d in rep.datasets})
        return [f"No average: {'one dataset' if n_datasets == 1 else 'no method has results on two datasets'} "
                f"(an average needs {MIN_AVERAGE_DATASETS} or more)."]
    for rep in reports:
        b, n, h, used = rep.average()
        if h is None:
            have = len(used)
            out.append(f"{rep.label}: no average (results on {have} dataset{'s' if have != 1 else ''}; "
                       f"an average needs {MIN_AVERAGE_DATASETS} or more).")
            continue
        value, paper_used, full = paper_average(published, used)
        if value is None:
            out.append(f"{rep.label}: none of the {len(used)} datasets run ({_names(used)}) is in the "
                       f"paper's table; the published 11-dataset averages are not comparable.")
        elif full:
            avg = published.get("prometar", {}).get("average", {})
            paper_bn = f" (base {avg['base']:.2f} / new {avg['new']:.2f})" if "base" in avg and "new" in avg else ""
            out.append(f"{rep.label}: average over all {len(used)} datasets: HM {h:.2f} (base {b:.2f} / new "
                       f"{n:.2f}); paper: HM {value:.2f}{paper_bn}.")
        else:
            ours = rep.mean_hm(paper_used)
            extra = [d for d in used if d not in paper_used]
            plural = "s" if len(paper_used) != 1 else ""
            text = (f"{rep.label}: paper average over the {len(paper_used)} dataset{plural}"
                    f" run ({_names(paper_used)}): {value:.2f} (mean of the published per-dataset HMs; "
                    f"the paper lists no per-dataset base / new); this run, same datasets, same way: "
                    f"{fmt(ours)}.")
            if extra:
                text += f" Not in the paper: {_names(extra)}."
            out.append(text)
    return out


def render_markdown(reports: Sequence[MethodReport], published: dict[str, Any], source: str = "",
                    figures: Sequence[tuple[str, str]] = ()) -> str:
    """The full ``report.md`` text; ``figures``: (title, path relative to report.md) pairs to embed."""
    header, rows = table_rows(reports, published)
    parts = ["# Base-to-new generalisation report", ""]
    if source:
        parts += [f"Source: `{source}`", ""]
    parts += [
        "Base / New: mean ± population std over seeds (accuracy %, as printed in the logs; one seed: the plain "
        "value). HM = 2·B·N/(B+N) of the base and new means over the seeds having both (a seed missing one half "
        "does not enter the HM); its ± is the std of per-seed HMs. "
        f"Average row (only with {MIN_AVERAGE_DATASETS} or more datasets): HM of the averaged B and N over the "
        "datasets having a seed with both, each over those seeds.",
        "Partial runs are shown and averaged with a mark, and listed below: † partial seeds (n = seeds with a "
        "result); ‡ average over fewer than 11 datasets or including partial ones; § the paper's average over the "
        "same datasets (mean of its per-dataset HMs), see below. Runs of another config than the rest of their "
        "cell, and evaluations of a model file replaced since, are left out and listed.",
        "",
        "Seeds: " + "; ".join(seed_notes(reports)),
        "",
        markdown_table(header, rows),
        "",
        "## Against the paper",
        "",
    ]
    parts += [f"- {line}" for line in paper_comparison(reports, published)]
    parts += ["", "## Missing or partial runs", ""]
    issues = notes(reports)
    parts += [f"- {i}" for i in issues] if issues else ["None: every seed folder has a base and a new result."]
    parts += ["", "## Published averages over 11 datasets (base / new / HM)", ""]
    avg_rows = [[name, fmt(v["base"]), fmt(v["new"]), fmt(v["hm"])]
                for name, v in published.get("averages", {}).items()]
    for rep in reports:
        b, n, h, used = rep.average()
        if h is None:
            continue
        value, paper_used, full = paper_average(published, used)
        avg_rows.append([f"this run: {rep.label} ({len(used)} datasets)", fmt(b), fmt(n), fmt(h)])
        if value is not None and not full:
            avg_rows.append([f"ProMetaR paper over the same {len(paper_used)} datasets (mean HM)", "—", "—",
                             fmt(value)])
    parts.append(markdown_table(["Method", "Base", "New", "HM"], avg_rows))
    if figures:
        parts += ["", "## Figures", ""]
        for title, rel in figures:
            parts += [f"### {title}", "", f"![{title}]({rel})", ""]
    parts.append("")
    return "\n".join(parts)


#: Columns of ``report.csv`` (long format; a protocol leaves the others' columns empty). ``table``: base2new,
#: cross_dataset, domain_generalisation or fewshot; ``accuracy_*``: the single accuracy of an xd / few-shot cell.
CSV_FIELDS = ["protocol", "table", "trainer", "config", "shots", "dataset", "base_mean", "base_std", "base_n",
              "new_mean", "new_std", "new_n", "hm", "hm_seed_std", "accuracy_mean", "accuracy_std", "accuracy_n",
              "expected_seeds", "partial", "paper_hm", "paper_datasets"]


def num(x: Optional[float]) -> str:
    """A CSV number: 4 decimals, empty when there is no value."""
    return "" if x is None else f"{x:.4f}"


def base2new_csv_rows(reports: Sequence[MethodReport], published: dict[str, Any]) -> list[dict[str, Any]]:
    """``report.csv`` rows of the base-to-new table: one per (method, dataset) plus one ``average`` row per method
    that has an average (two or more datasets)."""
    paper_hm = published.get("prometar", {}).get("hm", {})
    rows = []
    for rep in reports:
        head = {"protocol": "base2new", "table": "base2new", "trainer": rep.trainer, "config": rep.config,
                "shots": rep.shots}
        for d, s in rep.datasets.items():
            rows.append({**head, "dataset": d, "base_mean": num(s.base_mean), "base_std": num(s.base_std),
                         "base_n": len(s.base), "new_mean": num(s.new_mean), "new_std": num(s.new_std),
                         "new_n": len(s.new), "hm": num(s.hm), "hm_seed_std": num(s.hm_seed_std),
                         "expected_seeds": " ".join(map(str, s.expected_seeds)), "partial": int(s.partial),
                         "paper_hm": num(paper_hm.get(d))})
        b, n, h, used = rep.average()
        if h is None:
            continue
        partial = int(len(used) < N_PAPER_DATASETS or any(rep.datasets[d].partial for d in used))
        value, paper_used, _ = paper_average(published, used)
        rows.append({**head, "dataset": "average", "base_mean": num(b), "base_n": len(used), "new_mean": num(n),
                     "new_n": len(used), "hm": num(h), "partial": partial, "paper_hm": num(value),
                     "paper_datasets": " ".join(paper_used)})
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: str) -> str:
    """Write ``rows`` (dicts keyed by :data:`CSV_FIELDS`; missing keys are empty cells) as ``report.csv``."""
    from ..io import atomic_write

    def write(f: Any) -> None:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, restval="")
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write, binary=False)
    return path
