"""Figures of a study, drawn from its tidy table (``results.csv``).

* ``METRIC_vs_PARAM.png`` for every varied parameter and plotted metric: mean over seeds with the
  min-max spread as error bars; in a two-parameter grid, one line per value of the other one.
* ``pareto.png`` (when the study names ``[plots] pareto = [x, y]``): every point's mean x
  (minimised, e.g. energy) against mean y (maximised, e.g. score), the Pareto front joined.
* ``breakdown.png`` (``[plots] breakdown = true``): each component's share of the system energy.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from stoxbar.studies.metrics import unit_of
from stoxbar.studies.spec import Study, point_id
from stoxbar.studies.table import read_table

DEFAULT_METRICS = ("score_mean", "energy_array_j_per_game", "mvm_rel_error")


def _label(column: str) -> str:
    unit = unit_of(column)[0]
    return f"{column} [{unit}]" if unit and unit != "1" else column


def point_means(table: List[Dict[str, Any]], params: Sequence[str], metric: str
                ) -> Dict[Tuple[Any, ...], Tuple[float, float, float]]:
    """(mean, min, max) of ``metric`` over seeds for each combination of ``params`` (ok rows only)."""
    groups: Dict[Tuple[Any, ...], List[float]] = defaultdict(list)
    for row in table:
        v = row.get(metric, "")
        if row["status"] == "ok" and v != "":
            groups[tuple(row[p] for p in params)].append(float(v))
    return {k: (float(np.mean(v)), float(np.min(v)), float(np.max(v))) for k, v in groups.items()}


def pareto_front(points: List[Tuple[float, float]]) -> List[int]:
    """Indices of the points not dominated (x smaller is better, y larger is better), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -np.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def _numeric(values: List[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def make_plots(study: Study, out: Path) -> List[Path]:
    """Draw the study's figures into ``out/plots``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_table(out / "results.csv")
    if not table:
        return []
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
    for group, params in groups.items():
        rows = [r for r in table if r["point_id"] in members[group]]
        params = [p for p in params if len({str(r[p]) for r in rows}) > 1]  # constant in this group: no axis
        for p in params:
            others = [q for q in params if q != p]
            series_key = others[0] if len(others) == 1 else None
            for metric in metrics:
                path = _metric_plot(plt, rows, p, series_key, metric, study.name, plots)
                if path is not None:
                    written.append(path)
    if study.pareto:
        written += _pareto(study, table, plots, plt)
    if study.breakdown:
        written += _breakdown(study, table, plots, plt)
    return written


def _metric_plot(plt, rows, p: str, series_key, metric: str, title: str, plots: Path):
    """``metric`` vs parameter ``p`` (one line per value of ``series_key``); None if no data."""
    keys = [p] + ([series_key] if series_key else [])
    stats = point_means(rows, keys, metric)
    if not stats:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series = sorted({k[1] for k in stats}, key=str) if series_key else [None]
    for s in series:
        pts = sorted(((k[0], v) for k, v in stats.items() if series_key is None or k[1] == s),
                     key=lambda kv: (str(type(kv[0])), kv[0]))
        xs = [x for x, _ in pts]
        x_plot = xs if _numeric(xs) else list(range(len(xs)))
        mean = np.array([v[0] for _, v in pts])
        err = np.array([[v[0] - v[1] for _, v in pts], [v[2] - v[0] for _, v in pts]])
        ax.errorbar(x_plot, mean, yerr=err, marker="o", capsize=3,
                    label=f"{series_key} = {s}" if series_key else None)
        if not _numeric(xs):
            ax.set_xticks(x_plot, [str(x) for x in xs])
    ax.set_xlabel(_label(p))
    ax.set_ylabel(_label(metric))
    if metric.startswith(("energy_", "mvm_rel")) and all(v[1] > 0 for v in stats.values()):
        ax.set_yscale("log")
    if series_key:
        ax.legend(fontsize=7)
    ax.set_title(f"{title}: mean over seeds, bars = min..max", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = plots / f"{metric}_vs_{p}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _breakdown(study: Study, table, plots: Path, plt) -> List[Path]:
    """Stacked bars: each component's share of the system energy per game, one bar per point."""
    comps = sorted({k for r in table for k in r if k.startswith("energy_system.") and r[k] != ""})
    if not comps:
        return []
    varied = list(study.varied)
    means = {c: point_means(table, varied, c) for c in comps}
    keys = sorted({k for m in means.values() for k in m}, key=str)
    totals = np.array([sum(means[c].get(k, (0.0,))[0] for c in comps) for k in keys])
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(keys) + 2.2))
    left = np.zeros(len(keys))
    for i, c in enumerate(comps):
        share = np.array([means[c].get(k, (0.0,))[0] for k in keys]) / np.where(totals > 0, totals, 1)
        ax.barh(range(len(keys)), share, left=left, color=plt.cm.tab20(i % 20), label=c.split(".", 1)[1][:-len("_j_per_game")])
        left += share
    ax.set_yticks(range(len(keys)), [", ".join(f"{p.split('.')[-1]}={v}" for p, v in zip(varied, k)) for k in keys],
                  fontsize=7)
    ax.set_xlabel("share of system energy per game")
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title(f"{study.name}: where the joules go (means over seeds)", fontsize=8)
    fig.tight_layout()
    path = plots / "breakdown.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _pareto(study: Study, table, plots: Path, plt) -> List[Path]:
    x_m, y_m = study.pareto
    sx, sy = point_means(table, list(study.varied), x_m), point_means(table, list(study.varied), y_m)
    keys = [k for k in sx if k in sy]
    if not keys:
        return []
    pts = [(sx[k][0], sy[k][0]) for k in keys]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="0.6", s=18, label="points")
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", c="C3", label="Pareto front")
    for i in front:
        ax.annotate(", ".join(f"{p.split('.')[-1]}={v}" for p, v in zip(study.varied, keys[i])), pts[i],
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(_label(x_m))
    ax.set_ylabel(_label(y_m))
    if all(p[0] > 0 for p in pts):
        ax.set_xscale("log")
    ax.legend(fontsize=7)
    ax.set_title(f"{study.name}: {y_m} vs {x_m} (means over seeds)", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = plots / "pareto.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
