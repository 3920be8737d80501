"""Base-to-new report: parse an output tree, tabulate base / new / HM per dataset, plot.

Usage: ``python -m prometar.report OUTPUT_DIR [--out DIR] [--no-plot]`` (or ``prometar report``).

``OUTPUT_DIR`` holds ``base2new/`` (or is the ``base2new`` folder itself), laid out like the
CoOp-family scripts write it::

    base2new/train_base/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt   -> base accuracy
    base2new/test_new/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>/log.txt     -> new accuracy
    (base2new/test_base/... is used for a seed whose train_base log has no result)

Whether a run is finished is decided by :func:`prometar.report.results.parse_log` (see there).  Per
(trainer, config, shots) and dataset: B and N are seed means (± population std; one seed: the plain value),
HM = 2BN/(B+N) of the means; the average (only over two or more datasets) is the HM of the averaged B and N
over the datasets that have both, set beside the paper's average over the same datasets.  Missing or partial
runs are listed, never silently averaged.  Writes ``report.md``, ``report.csv``, ``report.png`` (bars with
seed-std error bars), ``report_base_new.png`` (base vs new with HM iso-curves) and ``curves/*.png``
(per-epoch training curves from each run's ``history.jsonl``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from .results import (DatasetStats, LogResult, MethodReport, Runs, find_base2new_dir, harmonic_mean,
                      load_published, paper_average, parse_log, read_run, scan_base2new, summarize)
from .tables import markdown_table, notes, paper_comparison, render_markdown, seed_notes, table_rows, write_csv

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


def report_main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: returns 0 when a report was written, 1 when no result was found, 2 on a bad path."""
    from ..io import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m prometar.report", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="folder holding base2new/ (or the base2new folder itself)")
    parser.add_argument("--out", default=None, help="where to write the report files (default: OUTPUT_DIR)")
    parser.add_argument("--no-plot", action="store_true", help="write report.md and report.csv only, no PNG")
    parser.add_argument("--keyword", default="accuracy", help="metric to read from the logs (default accuracy)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if not os.path.isdir(args.output_dir):
        print(f'report: "{args.output_dir}" is not a directory', file=sys.stderr)
        return 2
    b2n = find_base2new_dir(args.output_dir)
    if b2n is None:
        print(f'report: no base2new/ (or train_base/, test_new/) folder under "{args.output_dir}"', file=sys.stderr)
        return 1
    runs = scan_base2new(b2n, args.keyword)
    reports = summarize(runs)
    if not reports:
        print(f'report: no seed folders found under "{b2n}"', file=sys.stderr)
        return 1
    published = load_published()
    header, rows = table_rows(reports, published)
    print("Seeds: " + "; ".join(seed_notes(reports)))
    print(markdown_table(header, rows))
    for line in paper_comparison(reports, published):
        print(line)
    issues = notes(reports)
    if issues:
        print("\nMissing or partial runs:")
        for issue in issues:
            print(f"  - {issue}")
    out_dir = args.out or args.output_dir
    os.makedirs(out_dir, exist_ok=True)
    written = [write_csv(reports, published, os.path.join(out_dir, "report.csv"))]
    figures: list[tuple[str, str]] = []
    if not args.no_plot:
        written.append(draw_plot(reports, published, os.path.join(out_dir, "report.png")))
        figures.append(("Base / new / HM per dataset", "report.png"))
        written.append(draw_base_new(reports, published, os.path.join(out_dir, "report_base_new.png")))
        figures.append(("Base vs new, HM iso-curves", "report_base_new.png"))
        curves = draw_curves(runs, reports, published, os.path.join(out_dir, "curves"))
        written += [path for _, path in curves]
        figures += [(title, os.path.relpath(path, out_dir)) for title, path in curves]
    md_path = os.path.join(out_dir, "report.md")
    atomic_write_text(md_path, render_markdown(reports, published, source=os.path.abspath(b2n), figures=figures))
    written.insert(0, md_path)
    n_curves = len(written) - 4
    shown = written if n_curves <= 2 else written[:4] + [f"and {n_curves} training-curve PNGs in "
                                                         f"{os.path.join(out_dir, 'curves')}"]
    print("\nWrote " + ", ".join(shown))
    found_any = any(s.base or s.new for rep in reports for s in rep.datasets.values())
    return 0 if found_any else 1
