"""Figures of a study, drawn from its tidy table (``results.csv``) and its units (``columns.csv``).

* ``METRIC_vs_PARAM.png`` for every varied parameter and plotted metric: mean over seeds with the
  min-max spread as error bars; in a two-parameter grid, one line per value of the other one; the
  y axis names the metric's column. Several ``[[grid]]`` groups plotted against the same
  parameter get one file each (``METRIC_vs_PARAM_gridN.png``, the group's constants in the title).
* ``summary.csv`` (beside ``results.csv``): per point and plotted metric, n, mean, std, 95 % CI
  (Student t over seeds) and min.
* ``pareto.png`` (when the study names ``[plots] pareto = [x, y]``): every point's mean x
  (minimised, e.g. energy) against mean y (maximised, e.g. score), the Pareto front joined.
* ``breakdown.png`` (``[plots] breakdown = true``): each component's share of the system energy.

Read as a reader would: axis labels are the column's description with a human unit (area in
mm^2, energy in pJ/nJ/uJ, time in ns/us/ms: :func:`display_unit`), numbers sort as numbers
(legends, axes, bars), an axis whose positive values span >= 1.5 decades is logarithmic (base 2
for powers of two such as tile sizes), there is no offset notation, a y range narrower than 2 %
of its level is widened to that (so 2.9230 vs 2.9235 does not fill the plot), and categorical x
values get markers without joining lines (docs/reliability.md §6).
Every PNG is written atomically (:mod:`stoxbar.core.fsio`).

May import: stoxbar.core.fsio, stoxbar.studies.{spec,table,units}; matplotlib, numpy, scipy.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from stoxbar.core.fsio import atomic_write_bytes
from stoxbar.studies.units import unit_of
from stoxbar.studies.spec import Study, point_id
from stoxbar.studies.table import read_table

DEFAULT_METRICS = ("score_mean", "energy_array_j_per_game", "mvm_rel_error")
LOG_DECADES = 1.5  # an axis of positive values spanning this many decades (or more) is logarithmic
MIN_REL_SPAN = 0.02  # a linear y range narrower than this fraction of its level is widened
_PREFIXES = ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, ""))


def read_units(out: Path) -> Dict[str, Tuple[str, str]]:
    """column -> (unit, description) from ``out/columns.csv`` ({} if absent)."""
    path = Path(out) / "columns.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {r["column"]: (r["unit"], r["description"]) for r in csv.DictReader(fh)}


def display_unit(unit: str, values: Sequence[float]) -> Tuple[str, float]:
    """(human unit, factor to multiply SI values by) for values in ``unit`` (e.g. m^2 -> mm^2)."""
    mags = [abs(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v != 0]
    if not mags:
        return unit, 1.0
    typical = float(np.median(mags))
    if unit == "m^2":  # chip areas: mm^2, or um^2 for a small block
        return ("mm^2", 1e6) if typical >= 1e-8 else ("um^2", 1e12)
    if unit in ("J", "s", "W", "A", "V", "F", "S"):
        for scale, prefix in reversed(_PREFIXES):
            if typical >= scale:
                return prefix + unit, 1.0 / scale
        return "f" + unit, 1e15
    return unit, 1.0


def _short(description: str) -> str:
    return description.split(":", 1)[0].split(" (", 1)[0].split(", ", 1)[0].strip()


def axis_label(column: str, unit: str, units: Dict[str, Tuple[str, str]], named: bool = False) -> str:
    """``description [unit]`` of a column (the raw name for parameters, which are paths); ``named``:
    ``description (column) [unit]``, so a metric axis names the table column it plots."""
    import textwrap

    desc = units.get(column, unit_of(column))[1]
    name = column if (not desc or desc == "parameter") else _short(desc)
    if named and name != column:
        name = f"{name} ({column})"
    text = f"{name} [{unit}]" if unit and unit != "1" else name
    return "\n".join(textwrap.wrap(text, 42)) or text  # a long description on two lines, not off the figure


def sort_key(value: Any) -> Tuple[int, Any]:
    """Numbers by value, then everything else as text (so 128 < 1024 < 2048)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _numeric(values: List[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def spans_decades(values: Sequence[float]) -> bool:
    vals = [v for v in values if math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and math.log10(max(vals) / min(vals)) >= LOG_DECADES


def _powers_of_two(values: Sequence[Any]) -> bool:
    return all(float(v).is_integer() and int(v) > 0 and int(v) & (int(v) - 1) == 0 for v in values)


def no_offset(axis) -> None:
    from matplotlib.ticker import ScalarFormatter

    fmt = axis.get_major_formatter()
    if isinstance(fmt, ScalarFormatter):
        fmt.set_useOffset(False)


def _widen(ax, lo: float, hi: float) -> None:
    """Linear y: at least MIN_REL_SPAN of the level, so a 0.1 % difference looks like one."""
    level = max(abs(lo), abs(hi))
    if level > 0 and hi - lo < MIN_REL_SPAN * level:
        mid = 0.5 * (lo + hi)
        ax.set_ylim(mid - 0.5 * MIN_REL_SPAN * level, mid + 0.5 * MIN_REL_SPAN * level)


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue(), overwrite=True)  # derived from the table: redrawn each run
    return path


def _label_of_point(varied: Sequence[str], key: Sequence[Any]) -> str:
    return ", ".join(f"{p.split('.')[-1]}={v}" for p, v in zip(varied, key) if v != "")


def _values_by_point(table: List[Dict[str, Any]], params: Sequence[str], metric: str
                     ) -> Dict[Tuple[Any, ...], List[float]]:
    groups: Dict[Tuple[Any, ...], List[float]] = defaultdict(list)
    for row in table:
        v = row.get(metric, "")
        if row["status"] == "ok" and v != "":
            groups[tuple(row[p] for p in params)].append(float(v))
    return groups


def point_means(table: List[Dict[str, Any]], params: Sequence[str], metric: str
                ) -> Dict[Tuple[Any, ...], Tuple[float, float, float]]:
    """(mean, min, max) of ``metric`` over seeds for each combination of ``params`` (ok rows only).

    min <= mean <= max exactly (the mean of equal values can round past them; it is clipped)."""
    out = {}
    for k, v in _values_by_point(table, params, metric).items():
        lo, hi = float(np.min(v)), float(np.max(v))
        out[k] = (min(max(float(np.mean(v)), lo), hi), lo, hi)
    return out


def point_stats(table: List[Dict[str, Any]], params: Sequence[str], metric: str
                ) -> Dict[Tuple[Any, ...], Dict[str, float]]:
    """Per combination of ``params``: n, mean, std (ddof 1), 95 % CI of the mean over seeds (Student t;
    zero width for one seed or equal values) and min of ``metric`` (ok rows only)."""
    from scipy import stats

    out = {}
    for k, v in _values_by_point(table, params, metric).items():
        x = np.asarray(v, dtype=np.float64)
        mean = min(max(float(x.mean()), float(x.min())), float(x.max()))
        std = float(x.std(ddof=1)) if x.size > 1 else 0.0
        half = float(stats.t.ppf(0.975, x.size - 1) * std / np.sqrt(x.size)) if x.size > 1 and std > 0 else 0.0
        out[k] = {"n": int(x.size), "mean": mean, "std": std, "ci95_lower": mean - half, "ci95_upper": mean + half,
                  "min": float(x.min())}
    return out


def point_ci(table: List[Dict[str, Any]], params: Sequence[str], metric: str
             ) -> Dict[Tuple[Any, ...], Tuple[float, float]]:
    """95 % CI (lower, upper) of ``metric``'s mean at each combination of ``params``: over seeds
    (:func:`point_stats`) where a point has several, else the trial's own interval over its games
    (``X_ci95_lower`` / ``X_ci95_upper`` of a metric ``X_mean``, e.g. the score's bootstrap CI) where the
    table has it, else zero width. Always contains the mean (non-negative error bars)."""
    stats = point_stats(table, params, metric)
    prefix = metric[:-len("_mean")] if metric.endswith("_mean") else None
    own = {}
    if prefix is not None:
        lo_k, hi_k = f"{prefix}_ci95_lower", f"{prefix}_ci95_upper"
        for row in table:
            if row["status"] == "ok" and row.get(lo_k, "") != "" and row.get(hi_k, "") != "":
                own[tuple(row[p] for p in params)] = (float(row[lo_k]), float(row[hi_k]))
    out = {}
    for k, st in stats.items():
        lo, hi = own[k] if st["n"] == 1 and k in own else (st["ci95_lower"], st["ci95_upper"])
        out[k] = (min(lo, st["mean"]), max(hi, st["mean"]))
    return out


def summary_rows(study: Study, table: List[Dict[str, Any]], metrics: Sequence[str]) -> List[Dict[str, Any]]:
    """One row per point and metric: the varied parameters, then n, mean, std, ci95_lower, ci95_upper, min
    over seeds (:func:`point_stats`)."""
    varied = list(study.varied)
    rows = []
    for metric in metrics:
        for key, st in sorted(point_stats(table, varied, metric).items(),
                              key=lambda kv: tuple(sort_key(v) for v in kv[0])):
            rows.append({**dict(zip(varied, key)), "metric": metric, **st})
    return rows


def write_summary(study: Study, table: List[Dict[str, Any]], metrics: Sequence[str], out: Path) -> Optional[Path]:
    """``out/summary.csv``: :func:`summary_rows` (None if there is nothing to summarise)."""
    rows = summary_rows(study, table, metrics)
    if not rows:
        return None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path = Path(out) / "summary.csv"
    atomic_write_bytes(path, buf.getvalue().encode(), overwrite=True)  # derived from the table: rewritten
    return path


def pareto_front(points: List[Tuple[float, float]]) -> List[int]:
    """Indices of the points not dominated (x smaller is better, y larger is better), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -np.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def make_plots(study: Study, out: Path) -> List[Path]:
    """Draw the study's figures into ``out/plots``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_table(out / "results.csv")
    if not table:
        return []
    units = read_units(out)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    metrics = [m for m in (study.plot_metrics or DEFAULT_METRICS) if any(r.get(m, "") != "" for r in table)]
    written = []
    groups: Dict[str, List[str]] = defaultdict(list)
    members: Dict[str, set] = defaultdict(set)
    for group, params in study.points:
        members[group].add(point_id(params))
        for k in params:
            if k not in groups[group]:
                groups[group].append(k)
    plans = []
    for group, params in groups.items():
        rows = [r for r in table if r["point_id"] in members[group]]
        constant = [p for p in params if len({str(r[p]) for r in rows}) == 1]
        params = [p for p in params if p not in constant]  # constant in this group: no axis
        title = study.name + "".join(f", {p.split('.')[-1]}={rows[0][p]}" for p in constant if rows)
        for p in params:
            others = [q for q in params if q != p]
            plans.append((group, rows, p, others[0] if len(others) == 1 else None, title))
    # several groups plotting against the same parameter (e.g. square tiles as one grid per size) each get
    # their own file, named by the group, instead of overwriting one another
    shared = {p for _, _, p, _, _ in plans if sum(1 for q in plans if q[2] == p) > 1}
    for group, rows, p, series_key, title in plans:
        for metric in metrics:
            name = f"{metric}_vs_{p}" + (f"_{group}" if p in shared else "")
            path = _metric_plot(plt, rows, p, series_key, metric, title, plots, units, name)
            if path is not None:
                written.append(path)
    summary = write_summary(study, table, metrics, out)
    if summary is not None:
        written.append(summary)
    if study.pareto:
        written += _pareto(study, table, plots, plt, units)
    if study.breakdown:
        written += _breakdown(study, table, plots, plt)
    return written


def _metric_plot(plt, rows, p: str, series_key, metric: str, title: str, plots: Path,
                 units: Optional[Dict[str, Tuple[str, str]]] = None, name: Optional[str] = None):
    """``plots/NAME.png`` (default METRIC_vs_P) of :func:`metric_figure`; None if no data."""
    fig = metric_figure(plt, rows, p, series_key, metric, title, units)
    if fig is None:
        return None
    path = _save(fig, plots / f"{name or f'{metric}_vs_{p}'}.png")
    plt.close(fig)
    return path


def metric_figure(plt, rows, p: str, series_key, metric: str, title: str,
                  units: Optional[Dict[str, Tuple[str, str]]] = None):
    """Figure of ``metric`` vs parameter ``p`` (one line per value of ``series_key``); None if no data."""
    units = units or {}
    keys = [p] + ([series_key] if series_key else [])
    stats = point_means(rows, keys, metric)
    if not stats:
        return None
    ci = point_ci(rows, keys, metric)
    y_unit, y_f = display_unit(units.get(metric, unit_of(metric))[0], [v[0] for v in stats.values()])
    x_all = sorted({k[0] for k in stats}, key=sort_key)
    categorical = not _numeric(x_all)
    x_unit, x_f = (units.get(p, unit_of(p))[0], 1.0) if categorical else display_unit(
        units.get(p, unit_of(p))[0], x_all)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series = sorted({k[1] for k in stats}, key=sort_key) if series_key else [None]
    for s in series:
        pts = sorted(((k[0], v) for k, v in stats.items() if series_key is None or k[1] == s),
                     key=lambda kv: sort_key(kv[0]))
        xs = [x for x, _ in pts]
        x_plot = [x_all.index(x) for x in xs] if categorical else [x * x_f for x in xs]
        mean = np.array([v[0] for _, v in pts]) * y_f
        err = np.array([[v[0] - ci[(x,) if series_key is None else (x, s)][0] for x, v in pts],
                        [ci[(x,) if series_key is None else (x, s)][1] - v[0] for x, v in pts]]) * y_f
        ax.errorbar(x_plot, mean, yerr=err, marker="o", capsize=3, linestyle="none" if categorical else "-",
                    label=f"{series_key.split('.', 1)[-1]} = {s}" if series_key else None)
    if categorical:
        labels = [str(x) for x in x_all]
        long = sum(len(t) for t in labels) > 40  # would overlap side by side at this width
        ax.set_xticks(range(len(x_all)), labels, rotation=30 if long else 0, ha="right" if long else "center",
                      fontsize=8 if long else None)
        ax.set_xlim(-0.5, len(x_all) - 0.5)
    elif _powers_of_two(x_all) and max(x_all) >= 4 * min(x_all):  # tile sizes, shares: evenly spaced
        ax.set_xscale("log", base=2)
        ax.set_xticks([x * x_f for x in x_all], [f"{x:g}" for x in x_all])
        ax.minorticks_off()
    elif spans_decades(x_all):
        ax.set_xscale("log")
    ax.set_xlabel(axis_label(p, x_unit, units))
    ax.set_ylabel(axis_label(metric, y_unit, units, named=True))
    lows = [min(v[1], ci[k][0]) * y_f for k, v in stats.items()]
    highs = [max(v[2], ci[k][1]) * y_f for k, v in stats.items()]
    if spans_decades(lows + highs):
        ax.set_yscale("log")
    else:
        _widen(ax, min(lows), max(highs))
    no_offset(ax.xaxis)
    no_offset(ax.yaxis)
    if series_key:
        ax.legend(fontsize=7)
    ax.set_title(f"{title}:\nmean, bars = 95 % CI (over seeds, or over a trial's games)", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _breakdown(study: Study, table, plots: Path, plt) -> List[Path]:
    """Stacked bars: each component's share of the system energy per game, one bar per point."""
    comps = sorted({k for r in table for k in r if k.startswith("energy_system.") and r[k] != ""})
    if not comps:
        return []
    varied = list(study.varied)
    means = {c: point_means(table, varied, c) for c in comps}
    keys = sorted({k for m in means.values() for k in m}, key=lambda k: tuple(sort_key(v) for v in k))
    totals = np.array([sum(means[c].get(k, (0.0,))[0] for c in comps) for k in keys])
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(keys) + 2.2))
    left = np.zeros(len(keys))
    for i, c in enumerate(comps):
        share = np.array([means[c].get(k, (0.0,))[0] for k in keys]) / np.where(totals > 0, totals, 1)
        ax.barh(range(len(keys)), share, left=left, color=plt.cm.tab20(i % 20),
                label=c.split(".", 1)[1][:-len("_j_per_game")])
        left += share
    ax.set_yticks(range(len(keys)), [_label_of_point(varied, k) for k in keys], fontsize=7)
    ax.invert_yaxis()  # first point on top, as the table reads
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of system energy per game")
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title(f"{study.name}: where the joules go (means over seeds)", fontsize=8)
    fig.tight_layout()
    path = _save(fig, plots / "breakdown.png")
    plt.close(fig)
    return [path]


def _pareto(study: Study, table, plots: Path, plt, units: Optional[Dict[str, Tuple[str, str]]] = None
            ) -> List[Path]:
    units = units or {}
    x_m, y_m = study.pareto
    sx, sy = point_means(table, list(study.varied), x_m), point_means(table, list(study.varied), y_m)
    keys = sorted((k for k in sx if k in sy), key=lambda k: tuple(sort_key(v) for v in k))
    if not keys:
        return []
    x_unit, x_f = display_unit(units.get(x_m, unit_of(x_m))[0], [sx[k][0] for k in keys])
    y_unit, y_f = display_unit(units.get(y_m, unit_of(y_m))[0], [sy[k][0] for k in keys])
    pts = [(sx[k][0] * x_f, sy[k][0] * y_f) for k in keys]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="0.6", s=18, label="points")
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", c="C3", label="Pareto front")
    for i in front:
        ax.annotate(_label_of_point(study.varied, keys[i]), pts[i], fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(axis_label(x_m, x_unit, units))
    ax.set_ylabel(axis_label(y_m, y_unit, units))
    if spans_decades([p[0] for p in pts]):
        ax.set_xscale("log")
    if spans_decades([p[1] for p in pts]):
        ax.set_yscale("log")
    else:
        _widen(ax, min(p[1] for p in pts), max(p[1] for p in pts))
    no_offset(ax.xaxis)
    no_offset(ax.yaxis)
    ax.legend(fontsize=7)
    ax.set_title(f"{study.name}: {y_m} (maximised) vs {x_m} (minimised), means over seeds", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = _save(fig, plots / "pareto.png")
    plt.close(fig)
    return [path]
