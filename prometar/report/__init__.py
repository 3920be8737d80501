"""The results report of an output folder: base-to-new, cross-dataset / domain generalisation, few-shot.

Usage: ``python -m prometar.report OUTPUT_DIR [--out DIR] [--no-plot]`` (or ``prometar report``).

``OUTPUT_DIR`` is laid out as the scripts and `prometar sweep` write it; each protocol found gets its tables::

    base2new/train_base/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt   -> base accuracy
    base2new/test_new/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt     -> new accuracy
    (base2new/test_base/... is used for a seed whose train_base log has no result; OUTPUT_DIR may also be the
    base2new folder itself)
    <source>/<TRAINER>/<CFG>_<K>shots/seed<S>, evaluation/<TRAINER>/<CFG>_<K>shots/<target>/seed<S>
                                                   -> cross-dataset and domain-generalisation tables (:mod:`.xd`)
    fewshot/<dataset>/<TRAINER>/<CFG>_<K>shots/seed<S>  -> accuracy-vs-shots tables (:mod:`.fewshot`)

Whether a run is finished is decided by :func:`prometar.report.results.parse_log` (see there). A cell averages
its seeds (mean ± population std; one seed: the plain value). Partial runs (missing seeds, a missing base or new
half) are shown and averaged with a mark (†, ‡) and listed; runs of another config than the rest of their cell,
and evaluations of a model file replaced since, are left out and listed (:mod:`.runs`). Base-to-new: Base and
New are the means over their own seeds, HM = 2BN/(B+N) of the means over the seeds having both; the average
(only over two or more datasets) is the HM of the averaged B and N over the datasets having such a seed, set
beside the paper's average over the same datasets. Writes ``report.md`` and ``report.csv`` (every protocol;
long format, column ``protocol``), and the figures: ``report.png`` (base-to-new bars with seed-std error bars),
``report_base_new.png`` (base vs new with HM iso-curves), ``curves/*.png`` (per-epoch training curves from each
run's ``history.jsonl``), ``report_xd.png`` and ``report_fewshot.png``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .results import (DatasetStats, LogResult, MethodReport, Runs, find_base2new_dir, harmonic_mean,
                      load_published, paper_average, parse_log, read_run, scan_base2new, summarize)
from .tables import (base2new_csv_rows, issue_lines, markdown_table, notes, paper_comparison, render_markdown,
                     seed_notes, table_rows, write_csv)

__all__ = [
    "LogResult",
    "DatasetStats",
    "MethodReport",
    "Runs",
    "harmonic_mean",
    "parse_log",
    "read_run",
    "find_base2new_dir",
    "scan_base2new",
    "summarize",
    "load_published",
    "paper_average",
    "table_rows",
    "render_markdown",
    "write_csv",
    "base2new_csv_rows",
    "draw_plot",
    "draw_base_new",
    "draw_curves",
    "report_main",
]


def draw_plot(*args, **kwargs):  # noqa: D103 - imported lazily: matplotlib only when plotting
    from .plots import draw_plot as impl

    return impl(*args, **kwargs)


draw_plot.__doc__ = "Bars per dataset with seed-std error bars: see :func:`prometar.report.plots.draw_plot`."


def draw_base_new(*args, **kwargs):  # noqa: D103
    from .plots import draw_base_new as impl

    return impl(*args, **kwargs)


draw_base_new.__doc__ = "Base vs new with HM iso-curves: see :func:`prometar.report.plots.draw_base_new`."


def draw_curves(*args, **kwargs):  # noqa: D103
    from .plots import draw_curves as impl

    return impl(*args, **kwargs)


draw_curves.__doc__ = "Per-epoch training curves: see :func:`prometar.report.plots.draw_curves`."


def _base2new_section(root: str, out_dir: str, keyword: str, plot: bool) -> Optional[dict]:
    """Tables, CSV rows and figures of the base-to-new runs under ``root`` (None when there are none)."""
    b2n = find_base2new_dir(root)
    if b2n is None:
        return None
    runs = scan_base2new(b2n, keyword)
    reports = summarize(runs)
    if not reports:
        return None
    published = load_published()
    header, rows = table_rows(reports, published)
    text = ["Seeds: " + "; ".join(seed_notes(reports)), markdown_table(header, rows),
            *paper_comparison(reports, published)]
    issues = notes(reports)
    if issues:
        text += ["", "Missing or partial runs:"] + [f"  - {issue}" for issue in issues]
    figures: list[tuple[str, str]] = []
    written = []
    if plot:
        written.append(draw_plot(reports, published, os.path.join(out_dir, "report.png")))
        figures.append(("Base / new / HM per dataset", "report.png"))
        written.append(draw_base_new(reports, published, os.path.join(out_dir, "report_base_new.png")))
        figures.append(("Base vs new, HM iso-curves", "report_base_new.png"))
        curves = draw_curves(runs, reports, published, os.path.join(out_dir, "curves"))
        written += [path for _, path in curves]
        figures += [(title, os.path.relpath(path, out_dir)) for title, path in curves]
    found = any(s.base or s.new for rep in reports for s in rep.datasets.values())
    return {"text": text, "md": render_markdown(reports, published, source=os.path.abspath(b2n), figures=figures),
            "rows": base2new_csv_rows(reports, published), "written": written, "found": found}


def _xd_section(root: str, out_dir: str, keyword: str, plot: bool) -> Optional[dict]:
    """The cross-dataset / domain-generalisation tables under ``root`` (None when there are none)."""
    from .xd import render_xd, scan_xd, xd_csv_rows, xd_tables

    methods = scan_xd(root, keyword)
    if not methods:
        return None
    text = []
    for _, title, header, rows in xd_tables(methods):
        text += ["", f"{title}:", markdown_table(header, rows)]
    issues = issue_lines(methods)
    if issues:
        text += ["", "Missing or partial runs (cross-dataset / domain generalisation):"] + [f"  - {i}" for i in issues]
    written, figures = [], []
    if plot:
        from .plots import draw_xd

        written.append(draw_xd(methods, os.path.join(out_dir, "report_xd.png")))
        figures.append(("Cross-dataset and domain generalisation", "report_xd.png"))
    found = any(c.values for m in methods for c in [m.source_cell, *m.targets.values()])
    return {"text": text, "md": render_xd(methods, os.path.abspath(root), figures), "rows": xd_csv_rows(methods),
            "written": written, "found": found}


def _fewshot_section(root: str, out_dir: str, keyword: str, plot: bool) -> Optional[dict]:
    """The few-shot tables under ``root`` (None when there are none)."""
    from .fewshot import fewshot_csv_rows, fewshot_table, render_fewshot, scan_fewshot

    methods = scan_fewshot(root, keyword)
    if not methods:
        return None
    text = []
    for m in methods:
        text += ["", f"Few-shot, {m.label}:", markdown_table(*fewshot_table(m))]
    issues = issue_lines(methods)
    if issues:
        text += ["", "Missing or partial runs (few-shot):"] + [f"  - {i}" for i in issues]
    written, figures = [], []
    if plot:
        from .plots import draw_fewshot

        written.append(draw_fewshot(methods, os.path.join(out_dir, "report_fewshot.png")))
        figures.append(("Few-shot: accuracy against shots", "report_fewshot.png"))
    found = any(c.values for m in methods for per_k in m.cells.values() for c in per_k.values())
    return {"text": text, "md": render_fewshot(methods, os.path.join(os.path.abspath(root), "fewshot"), figures),
            "rows": fewshot_csv_rows(methods), "written": written, "found": found}


def report_main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: returns 0 when a report was written, 1 when no result was found, 2 on a bad path."""
    from ..io import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m prometar.report", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="output folder (holding base2new/, evaluation/, fewshot/; or the "
                                           "base2new folder itself)")
    parser.add_argument("--out", default=None, help="where to write the report files (default: OUTPUT_DIR)")
    parser.add_argument("--no-plot", action="store_true", help="write report.md and report.csv only, no PNG")
    parser.add_argument("--keyword", default="accuracy", help="metric to read from the logs (default accuracy)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    root = args.output_dir
    if not os.path.isdir(root):
        print(f'report: "{root}" is not a directory', file=sys.stderr)
        return 2
    out_dir = args.out or root
    os.makedirs(out_dir, exist_ok=True)
    sections = [s for s in (build(root, out_dir, args.keyword, not args.no_plot)
                            for build in (_base2new_section, _xd_section, _fewshot_section)) if s is not None]
    if not sections:
        print(f'report: no results under "{root}": no base2new/ (or train_base/, test_new/), evaluation/ or '
              f'fewshot/ folder with seed folders', file=sys.stderr)
        return 1
    for section in sections:
        print("\n".join(section["text"]).strip("\n") + "\n")
    md_path = atomic_write_text(os.path.join(out_dir, "report.md"), "\n".join(s["md"] for s in sections))
    written = [md_path, write_csv([r for s in sections for r in s["rows"]], os.path.join(out_dir, "report.csv"))]
    written += [w for s in sections for w in s["written"]]
    curves = [w for w in written if os.path.dirname(w) == os.path.join(out_dir, "curves")]
    shown = [w for w in written if w not in curves] if len(curves) > 2 else written
    more = [f"and {len(curves)} training-curve PNGs in {os.path.join(out_dir, 'curves')}"] if len(curves) > 2 else []
    print("Wrote " + ", ".join(shown + more))
    return 0 if any(s["found"] for s in sections) else 1
