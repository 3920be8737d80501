"""The report's figures: per-dataset bars with seed-std error bars, base-vs-new with HM iso-curves, training curves,
the cross-dataset / domain-generalisation bars and the few-shot accuracy-vs-shots lines.

Every ``*_figure`` function returns a matplotlib ``Figure`` (drawn with the Agg canvas, no display needed);
``draw_*`` saves it.  matplotlib is imported only here.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Optional, Sequence

from .results import MethodReport, Runs, ordered, paper_average
from .tables import display

__all__ = ["bar_figure", "draw_plot", "base_new_figure", "draw_base_new", "curve_figure", "draw_curves",
           "xd_figure", "draw_xd", "fewshot_figure", "draw_fewshot", "METER_TITLES"]

_METRICS = ("Base", "New", "HM")
#: Panel titles of the per-epoch meters (others are shown by name).
METER_TITLES = {
    "ce": "ce: cross-entropy",
    "reg_text": "reg_text: text regulariser",
    "reg_image": "reg_image: image regulariser",
    "meta_loss": "meta_loss: meta (query) loss",
    "gate": "gate: mean modulator gate",
    "meta": "meta: share of steps with a meta step",
}
_ACC_TITLES = {"train_acc": "train", "val_acc": "val", "test_acc": "test (during training)"}


def _new_figure(width: float, height: float, layout: Optional[str] = None) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _save(fig: Any, path: str) -> str:
    from ..io import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    return path


# ------------------------------------------------------------------------------------------ bars
def _panel_values(rep: MethodReport, panel: str) -> list[tuple[Optional[float], Optional[float], str]]:
    """(value, std, note) for Base, New, HM of one method in one panel (a dataset or "Average"); the note
    is ``n=2`` when seeds are missing."""
    if panel == "Average":
        b, n, h, _ = rep.average()
        return [(b, None, ""), (n, None, ""), (h, None, "")]
    s = rep.datasets.get(panel)
    if s is None:
        return [(None, None, "")] * 3
    k = len(s.expected_seeds)

    def note(count: int) -> str:
        return f"n={count}" if count < k else ""
    return [(s.base_mean, s.base_std, note(len(s.base))), (s.new_mean, s.new_std, note(len(s.new))),
            (s.hm, s.hm_seed_std, note(s.n_seeds))]


def _paper_marks(panel: str, reports: Sequence[MethodReport], published: dict[str, Any]) -> dict[int, float]:
    """Published values to draw in a panel, by metric index (0 base, 1 new, 2 HM)."""
    paper = published.get("prometar", {})
    if panel != "Average":
        return {2: paper["hm"][panel]} if panel in paper.get("hm", {}) else {}
    used = ordered({d for rep in reports for d in rep.average()[3] if rep.average()[2] is not None})
    value, _, full = paper_average(published, used)
    if value is None:
        return {}
    if full:
        avg = paper.get("average", {})
        return {0: avg.get("base"), 1: avg.get("new"), 2: value}
    return {2: value}


def bar_figure(reports: Sequence[MethodReport], published: dict[str, Any]) -> Any:
    """One panel per dataset (and "Average" when some method has two or more datasets): Base / New / HM bars
    per method with seed std as error bars and each value written on its bar; each panel's y-axis spans its
    own values, so a difference of one point is visible (the axes do not start at 0)."""
    datasets = ordered({d for rep in reports for d in rep.datasets})
    panels = datasets + (["Average"] if any(rep.average()[2] is not None for rep in reports) else [])
    n_methods = max(1, len(reports))
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    panel_w = max(3.2, 0.42 * 3 * n_methods + 1.2)
    fig = _new_figure(panel_w * ncols, 3.1 * nrows + 1.0, layout="constrained")
    colors = _colors(n_methods)
    width = 0.8 / n_methods
    rotate = n_methods >= 3
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        lo, hi = math.inf, -math.inf
        labels = []
        for m, rep in enumerate(reports):
            for g, (value, std, note) in enumerate(_panel_values(rep, panel)):
                if value is None:
                    continue
                x = g + (m - (n_methods - 1) / 2) * width
                err = std if std is not None else 0.0
                ax.bar([x], [value], width * 0.92, color=colors[m], yerr=[std] if std is not None else None,
                       capsize=3, error_kw={"elinewidth": 1.0, "ecolor": "black"},
                       label=rep.label if (k == 0 and g == 0) else None)
                lo, hi = min(lo, value - err), max(hi, value + err)
                labels.append((x, value + err, f"{value:.1f}" + (("\n" if not rotate else " ") + note if note else "")))
        marks = _paper_marks(panel, reports, published)
        for g, value in marks.items():
            if value is None:
                continue
            ax.hlines(value, g - 0.46, g + 0.46, colors="black", linestyles="--", linewidth=1.2,
                      label="ProMetaR paper" if g == 2 else None)
            lo, hi = min(lo, value), max(hi, value)
        if lo > hi:
            lo, hi = 0.0, 100.0
        span = max(hi - lo, 3.0)
        bottom = max(0.0, lo - 0.45 * span)
        top = hi + (0.32 if rotate else 0.2) * span
        ax.set_ylim(bottom, top)
        for x, y, text in labels:
            ax.text(x, y + 0.02 * (top - bottom), text, ha="center", va="bottom", fontsize=7,
                    rotation=90 if rotate else 0, zorder=6,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.4, "alpha": 0.8})
        ax.set_xticks(range(3))
        ax.set_xticklabels(_METRICS)
        ax.set_xlim(-0.5, 2.5)
        if panel == "Average":
            used = {d for rep in reports for d in rep.average()[3] if rep.average()[2] is not None}
            title = f"Average ({len(used)} datasets)"
        else:
            title = display(panel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if k % ncols == 0:
            ax.set_ylabel("accuracy (%)")
    handles, names = [], []
    for ax in fig.axes:
        for h, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(h)
                names.append(name)
    seeds = sorted({len(s.expected_seeds) for rep in reports for s in rep.datasets.values()})
    what = "error bars: seed std" if seeds and max(seeds) > 1 else "one seed: no error bars"
    sep = "\n" if ncols == 1 else " "
    fig.suptitle(f"Base-to-new accuracy (%), mean over seeds{sep}({what}; y-axes do not start at 0)", fontsize=11)
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), frameon=False, fontsize=9)
    return fig


def draw_plot(reports: Sequence[MethodReport], published: dict[str, Any], path: str) -> str:
    """Save :func:`bar_figure` as ``path`` (``report.png``)."""
    return _save(bar_figure(reports, published), path)


# ------------------------------------------------------------------------------------------ base vs new
def _hm_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10):
        if span / step <= 12:
            return step
    return 20


def base_new_figure(reports: Sequence[MethodReport], published: dict[str, Any]) -> Any:
    """One panel per method: each dataset (and the average, a star) at (base, new) with seed-std error bars,
    over iso-curves HM = const (labelled).  Both axes share one range so the curves keep their shape."""
    import numpy as np

    ncols = min(3, max(1, len(reports)))
    nrows = math.ceil(max(1, len(reports)) / ncols)
    fig = _new_figure(5.0 * ncols, 4.8 * nrows + 0.4, layout="constrained")
    points = [(s.base_mean, s.new_mean) for rep in reports for s in rep.datasets.values() if s.complete_pair]
    points += [(rep.average()[0], rep.average()[1]) for rep in reports if rep.average()[2] is not None]
    paper_avg = published.get("prometar", {}).get("average", {})
    values = [v for p in points for v in p] or [0.0, 100.0]
    lo, hi = min(values), max(values)
    pad = max(2.0, 0.1 * (hi - lo))
    lo, hi = max(0.0, lo - pad), min(100.0, hi + pad)
    grid = np.linspace(max(lo, 1e-3), hi, 200)
    bb, nn = np.meshgrid(grid, grid)
    hm = 2 * bb * nn / (bb + nn)
    step = _hm_step(hi - lo)
    levels = np.arange(math.ceil(lo / step) * step, hi + 1e-9, step)
    levels = levels[(levels > lo + step / 3) & (levels < hi - step / 3)]  # no label squeezed into a corner
    colors = _colors(max(1, len(reports)))
    for k, rep in enumerate(reports):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        if len(levels):
            cs = ax.contour(bb, nn, hm, levels=levels, colors="0.6", linewidths=0.8)
            # labels where each curve meets the diagonal base = new (there HM = base = new)
            ax.clabel(cs, fmt=lambda v: f"HM {v:g}", fontsize=7, inline=True,
                      manual=[(float(v), float(v)) for v in levels])
        ax.plot([lo, hi], [lo, hi], color="0.85", linewidth=0.8, zorder=0)
        for d in ordered(rep.datasets):
            s = rep.datasets[d]
            if not s.complete_pair:
                continue
            ax.errorbar([s.base_mean], [s.new_mean], xerr=[s.base_std] if s.base_std else None,
                        yerr=[s.new_std] if s.new_std else None, fmt="o", color=colors[k], ms=5, capsize=2)
            ax.annotate(display(d), (s.base_mean, s.new_mean), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        b, n, h, used = rep.average()
        if h is not None:
            ax.plot([b], [n], marker="*", ms=14, color=colors[k], markeredgecolor="black", linestyle="none",
                    label=f"average over {len(used)} datasets (HM {h:.2f})")
            _, _, full = paper_average(published, used)
            if full and "base" in paper_avg:
                ax.plot([paper_avg["base"]], [paper_avg["new"]], marker="*", ms=14, color="white",
                        markeredgecolor="black", linestyle="none", label=f"ProMetaR paper (HM {paper_avg['hm']:.2f})")
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("base accuracy (%)")
        ax.set_ylabel("new accuracy (%)")
        ax.set_title(rep.label, fontsize=10)
        ax.grid(alpha=0.2)
    fig.suptitle("Base vs new accuracy per dataset (grey: HM iso-curves; error bars: seed std)", fontsize=11)
    return fig


def draw_base_new(reports: Sequence[MethodReport], published: dict[str, Any], path: str) -> str:
    """Save :func:`base_new_figure` as ``path`` (``report_base_new.png``)."""
    return _save(base_new_figure(reports, published), path)


# ------------------------------------------------------------------------------------------ curves
def curve_figure(histories: dict[int, list[dict[str, Any]]], title: str,
                 final: Optional[dict[int, float]] = None) -> Any:
    """Per-epoch curves of one method on one dataset, seeds overlaid: one panel per meter, one per optimiser's
    LR (log scale) and one for accuracy (train / val when recorded, the final test accuracy as a marker)."""
    meters: list[str] = []
    lrs: list[str] = []
    accs: list[str] = []
    for records in histories.values():
        for rec in records:
            meters += [k for k in rec.get("meters", {}) if k not in meters]
            lrs += [k for k in rec.get("lr", {}) if k not in lrs]
            accs += [k for k in _ACC_TITLES if k in rec and k not in accs]
    meters = [k for k in METER_TITLES if k in meters] + [k for k in meters if k not in METER_TITLES]
    final = {s: v for s, v in (final or {}).items() if v is not None and s in histories}
    panels = [("meter", k) for k in meters] + [("lr", k) for k in lrs] + ([("acc", "")] if accs or final else [])
    n_panels = max(1, len(panels))
    ncols = n_panels if n_panels <= 4 else min((4, 3, 5), key=lambda c: (-(n_panels % c == 0), -n_panels % c, c != 4))
    nrows = math.ceil(n_panels / ncols)
    fig = _new_figure(3.4 * ncols, 2.5 * nrows + 0.9, layout="constrained")
    seeds = sorted(histories)
    colors = dict(zip(seeds, _colors(len(seeds))))
    styles = {"train_acc": ":", "val_acc": "-", "test_acc": "--"}
    max_epoch = max((r["epoch"] for recs in histories.values() for r in recs), default=1)
    for k, (kind, key) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for seed in seeds:
            recs = histories[seed]
            x = [r["epoch"] for r in recs]
            if kind == "meter":
                y = [r.get("meters", {}).get(key) for r in recs]
                ax.set_title(METER_TITLES.get(key, key), fontsize=9)
            elif kind == "lr":
                y = [r.get("lr", {}).get(key) for r in recs]
                ax.set_title(f"LR: {key}", fontsize=9)
                ax.set_yscale("log")
            else:
                for acc in accs:
                    pts = [(r["epoch"], r[acc]) for r in recs if acc in r]
                    if pts:
                        ax.plot(*zip(*pts), linestyle=styles[acc], marker=".", color=colors[seed])
                if seed in final:
                    ax.plot([max_epoch], [final[seed]], marker="D", color=colors[seed], linestyle="none")
                parts = [_ACC_TITLES[a] for a in accs] + (["◆ final test (base classes)"] if final else [])
                ax.set_title("accuracy (%): " + ", ".join(parts), fontsize=9)
                continue
            pts = [(a, b) for a, b in zip(x, y) if b is not None]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, color=colors[seed],
                        label=f"seed {seed}")
        if kind == "acc":
            low, high = ax.get_ylim()
            ax.set_ylim(low, min(high, 100.5))
        ax.set_xlim(0.5, max_epoch + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k >= len(panels) - ncols:
            ax.set_xlabel("epoch", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[s], marker=".") for s in seeds]
    fig.legend(handles, [f"seed {s}" for s in seeds], loc="outside lower center", ncol=max(1, len(seeds)),
               frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def draw_curves(runs: Runs, reports: Sequence[MethodReport], published: dict[str, Any],
                out_dir: str) -> list[tuple[str, str]]:
    """One PNG per (method, dataset) whose training folders hold ``history.jsonl``, seeds overlaid, written as
    ``out_dir/<dataset>__<trainer>__<config>[__<K>shots].png``; returns (title, path) pairs."""
    from ..engine.history import read_history

    labels = {(r.trainer, r.config, r.shots): r.label for r in reports}
    written = []
    for key in sorted(runs):
        trainer, cfg, shots = key
        for dataset in ordered(runs[key]):
            train = runs[key][dataset].get("train_base", {})
            histories, final = {}, {}
            for seed, res in sorted(train.items()):
                records = read_history(os.path.dirname(res.path))
                if records:
                    histories[seed] = records
                    final[seed] = res.accuracy
            if not histories:
                continue
            title = f"{labels.get(key, f'{trainer}/{cfg}')} on {display(dataset)}: per-epoch training curves"
            name = _slug(f"{dataset}__{trainer}__{cfg}" + ("" if shots == 16 else f"__{shots}shots")) + ".png"
            os.makedirs(out_dir, exist_ok=True)
            written.append((title, _save(curve_figure(histories, title, final), os.path.join(out_dir, name))))
    return written


# ------------------------------------------------------------------------------------------ cross-dataset / DG
def xd_figure(methods: Sequence[Any]) -> Any:
    """One panel per table (cross-dataset, domain generalisation): per column (source, each target, the average
    over the targets) a bar per method with seed std as error bars and its value written on it."""
    from .xd import TABLES, _split_targets, target_average

    split = _split_targets(methods)
    tables = [(key, title, paper) for key, title, paper in TABLES if split[key]]
    fig = _new_figure(max(6.0, 0.55 * max(len(split[k]) + 2 for k, _, _ in tables) * max(1, len(methods)) + 2),
                      3.6 * len(tables) + 0.8, layout="constrained")
    colors = _colors(len(methods))
    width = 0.8 / max(1, len(methods))
    for row, (key, title, paper) in enumerate(tables):
        ax = fig.add_subplot(len(tables), 1, row + 1)
        names = ["source"] + split[key] + ["average"]
        for m, method in enumerate(methods):
            avg = target_average(method, split[key], paper)[0]
            cells = [method.source_cell] + [method.targets.get(t) for t in split[key]]
            values = [(c.mean, c.std) if c is not None else (None, None) for c in cells] + [(avg, None)]
            for g, (value, std) in enumerate(values):
                if value is None:
                    continue
                x = g + (m - (len(methods) - 1) / 2) * width
                ax.bar([x], [value], width * 0.92, color=colors[m], yerr=[std] if std else None, capsize=3,
                       label=method.label if g == 0 or (g == 1 and method.source_cell.mean is None) else None)
                ax.text(x, value + (std or 0) + 0.5, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
        labels = [display(methods[0].source) + "\n(source)" if methods[0].source else "source"]
        labels += [display(t) for t in split[key]] + ["Average"]
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(labels, fontsize=8, rotation=30 if len(names) > 6 else 0)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), frameon=False, fontsize=9)
    fig.suptitle("Trained on the source, evaluated on other datasets: accuracy (%), mean over seeds "
                 "(error bars: seed std)", fontsize=11)
    return fig


def draw_xd(methods: Sequence[Any], path: str) -> str:
    """Save :func:`xd_figure` as ``path`` (``report_xd.png``)."""
    return _save(xd_figure(methods), path)


# ------------------------------------------------------------------------------------------ few-shot
def fewshot_figure(methods: Sequence[Any]) -> Any:
    """Accuracy against the number of shots (log2 axis): one panel per dataset, plus "Average" when a method has
    two or more datasets; a line per method, seed std as error bars."""
    datasets = ordered({d for m in methods for d in m.cells})
    panels = datasets + (["Average"] if any(len(m.cells) >= 2 for m in methods) else [])
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(3.4 * ncols, 2.9 * nrows + 0.9, layout="constrained")
    colors = _colors(len(methods))
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for m, method in enumerate(methods):
            if panel == "Average":
                pts = [(s, method.average(s)[0], None) for s in method.shots]
            else:
                pts = [(s, c.mean, c.std) for s, c in sorted(method.cells.get(panel, {}).items())]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            xs, ys, errs = zip(*pts)
            ax.errorbar(xs, ys, yerr=[e or 0.0 for e in errs], marker="o", ms=4, capsize=2, color=colors[m],
                        label=method.label if k == 0 or panel == "Average" else None)
        ax.set_xscale("log", base=2)
        shots = sorted({s for method in methods for s in method.shots})
        ax.set_xticks(shots)
        ax.set_xticklabels([str(s) for s in shots])
        ax.set_title(panel if panel == "Average" else display(panel), fontsize=10)
        ax.set_xlabel("shots per class", fontsize=8)
        if k % ncols == 0:
            ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    handles, names = [], []
    for ax in fig.axes:
        for h, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(h)
                names.append(name)
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), frameon=False, fontsize=9)
    fig.suptitle("Few-shot: test accuracy (%) against shots per class, mean over seeds (error bars: seed std)",
                 fontsize=11)
    return fig


def draw_fewshot(methods: Sequence[Any], path: str) -> str:
    """Save :func:`fewshot_figure` as ``path`` (``report_fewshot.png``)."""
    return _save(fewshot_figure(methods), path)
