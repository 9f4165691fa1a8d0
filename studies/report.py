"""``stoxbar report``: one self-contained HTML page from a study directory or a play report.

The page carries the tables, the figures (embedded as PNG data; a play report's figures are drawn
from its numbers here), the configuration, the software versions and the commands that made the
results, so it can be handed on as a single file. Boundaries read synapse_only -> array -> system,
then the GPU baseline tiers roofline -> latency -> dedicated; values are shown in human units (as the plots: :func:`stoxbar.studies.plots.display_unit`);
games stopped at ``--max-steps`` are flagged. Never overwrites a file (:mod:`stoxbar.core.fsio`).

May import: stoxbar.core.fsio, stoxbar.core.validation, stoxbar.pong.scores, stoxbar.studies.{plots,records,units};
matplotlib.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from stoxbar.core.fsio import (atomic_write_bytes, check_new_file, free_name, lock_holder, read_csv_header, read_json,
                               read_jsonl)
from stoxbar.studies.units import unit_of
from stoxbar.studies.plots import display_unit, no_offset, spans_decades
from stoxbar.studies.records import read_study_meta, scan_records
from stoxbar.core.validation import ConfigError

SUMMARY_METRICS = ("score_mean", "energy_synapse_only_j_per_game", "energy_array_j_per_game",
                   "energy_system_j_per_game", "gpu_ratio_system", "gpu_ratio_latency_system",
                   "gpu_ratio_dedicated_system", "digital_ratio_system", "energy_array_j_per_step",
                   "latency_mvm_s_per_step", "area_m2", "mvm_rel_error", "wall_s_per_step")
BOUNDARY_ORDER = ("synapse_only", "array", "system", "gpu_baseline")  # inner -> outer, then the baseline
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
         "text-align:right}th{background:#eee}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}"
         "img{max-width:48%;margin:4px;border:1px solid #ddd}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: List[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path) -> str:
    return _img_bytes(path.read_bytes(), path.name)


def _img_bytes(png: bytes, name: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}" title="{html.escape(name)}">'


def _pre(value: Any) -> str:
    """A preformatted block: text as it is (its line breaks kept), anything else as indented JSON."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2)
    return f"<pre>{html.escape(text)}</pre>"


def ordered_boundaries(energy: Dict[str, Any]) -> List[str]:
    """The energy report's boundaries, synapse_only -> array -> system -> gpu_baseline, then any others."""
    return [b for b in BOUNDARY_ORDER if b in energy] + sorted(b for b in energy if b not in BOUNDARY_ORDER)


def gpu_tiers_of(rep: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The baseline tiers of a play report, GPU roofline -> latency -> dedicated -> measured (by batch), then the
    digital accelerator (older reports: roofline)."""
    tiers = rep.get("gpu_tiers") or {"roofline": rep["energy"]["gpu_baseline"]}
    measured = sorted((t for t in tiers if t.startswith("measured_b") and t[len("measured_b"):].isdigit()),
                      key=lambda t: int(t[len("measured_b"):]))
    return {t: tiers[t] for t in ("roofline", "latency", "dedicated", *measured, "digital") if t in tiers}


def tier_label(tier: str) -> str:
    """A baseline tier's display name: "GPU latency", ..., "GPU measured, batch 1", "digital accelerator"."""
    if tier.startswith("measured_b"):
        return f"GPU measured, batch {tier[len('measured_b'):]}"
    return "digital accelerator" if tier == "digital" else f"GPU {tier}"


def _barh_png(plt, names: List[str], values: List[float], colors: Any, xlabel: str, title: str,
              height: float, fontsize: Optional[float] = None) -> bytes:
    """One horizontal bar chart of energies (J) in a human unit, log axis where they span decades, as PNG."""
    unit, f = display_unit("J", [v for v in values if v > 0])
    fig, ax = plt.subplots(figsize=(6, height * len(names) + 1.4))
    ax.barh(range(len(names)), [v * f for v in values], color=colors)
    ax.set_yticks(range(len(names)), names, fontsize=fontsize)
    ax.invert_yaxis()
    if spans_decades(values):
        ax.set_xscale("log")
    else:
        no_offset(ax.xaxis)
    ax.set_xlabel(f"{xlabel} [{unit}]")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def play_figures(rep: Dict[str, Any]) -> List[Tuple[str, bytes]]:
    """PNG figures of a play report: energy per game by boundary and GPU tier, system energy by component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energy, games = rep["energy"], rep["games"]
    tiers = gpu_tiers_of(rep)
    names = [b for b in ordered_boundaries(energy) if not b.startswith("gpu")]
    per_game = [energy[b]["total_j"] / games for b in names] + [g["total_j"] / games for g in tiers.values()]
    names += [tier_label(t) for t in tiers]
    colors = ["C0"] * (len(names) - len(tiers)) + ["0.5"] * len(tiers)
    out = [("energy_by_boundary.png", _barh_png(
        plt, names, per_game, colors, "energy per game",
        "energy per game by boundary; GPU baselines (modelled at batch 1, measured) and the digital accelerator in grey", 0.45))]
    if "system" in energy and energy["system"]["total_j"] > 0:
        comps = sorted(energy["system"]["by_component"].items(), key=lambda kv: -kv[1])
        out.append(("system_by_component.png", _barh_png(
            plt, [c for c, _ in comps], [j / games for _, j in comps], "C1", "system energy per game",
            "system energy by component", 0.3, fontsize=7)))
    return out


def _page(title: str, sections: List[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def _record_row(rec: Dict[str, Any], varied: Sequence[str]) -> Dict[str, Any]:
    """A table row (as in results.csv) from a validated trial record."""
    params = rec.get("params", {})
    row = {"trial_id": rec["trial_id"], "point_id": rec.get("point_id", rec["trial_id"]), "seed": rec.get("seed", ""),
           "status": rec["status"], "error": rec.get("error", "")}
    row.update({p: params.get(p, "") for p in varied})
    row.update(rec.get("metrics", {}) if rec["status"] == "ok" else {})
    return row


def study_status(run_dir: Path) -> str:
    """One line: how many of the study's trials are done (ok, failed), running or missing, and damaged records."""
    meta = read_study_meta(run_dir)
    records, bad = scan_records(run_dir)
    ok = sum(r["status"] == "ok" for r in records.values())
    total = meta.get("trials")
    holder = lock_holder(run_dir)
    text = f"{len(records)} trials done ({ok} ok, {len(records) - ok} failed)"
    left = None if not total else max(total - len(records), 0)
    if total:
        text = f"{len(records)} of {total} trials done ({ok} ok, {len(records) - ok} failed)"
    if holder is not None:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" if holder else "another process"
        text += (f"; {left} running or queued: a sweep is running now ({who})" if left is not None
                 else f"; a sweep is running now ({who})")
    elif left:
        text += f"; {left} missing: the last sweep stopped before them (run the same command again to resume)"
    if bad:
        text += f"; {len(bad)} damaged record(s) not tabulated: " + ", ".join(
            f"{p.name} ({why})" for p, why in list(bad.items())[:3]) + (" ..." if len(bad) > 3 else "")
    return text


def study_page(run_dir: Path) -> str:
    """HTML of a study directory (study.json, trials/*.json, plots/, invocations.jsonl).

    The table is made from the trial records themselves (valid ones only; a damaged one is listed by
    name), so a running or interrupted study is reported as far as it got."""
    meta = read_study_meta(run_dir)
    ident = meta["identity"]
    records, bad = scan_records(run_dir)
    varied = meta.get("varied", [])
    table = [_record_row(r, varied) for _, r in sorted(records.items())]
    ok = [r for r in table if r["status"] == "ok"]
    failed = [r for r in table if r["status"] != "ok"]
    metrics = [m for m in dict.fromkeys((*meta.get("plot_metrics", ()), *SUMMARY_METRICS))
               if isinstance(m, str) and any(r.get(m, "") != "" for r in ok)]
    by_point: Dict[str, List[Dict[str, Any]]] = {}
    for r in ok:
        by_point.setdefault(r["point_id"], []).append(r)
    summary = []
    for rs in by_point.values():
        means = [sum(float(r[m]) for r in rs) / len(rs)
                 if all(isinstance(r.get(m), (int, float)) and not isinstance(r.get(m), bool) for r in rs) else ""
                 for m in metrics]
        summary.append([*(rs[0][p] for p in varied), len(rs), *means])
    header = [*varied, "seeds"]
    for j, m in enumerate(metrics):  # human units per column (area in mm^2, energies in pJ..J)
        col = len(varied) + 1 + j
        unit, f = display_unit(unit_of(m)[0], [r[col] for r in summary if r[col] != ""])
        header.append(f"{m} [{unit}]" if unit else m)
        for r in summary:
            if r[col] != "":
                r[col] *= f
    log = run_dir / "invocations.jsonl"
    invocations = read_jsonl(log) if log.exists() else []
    sections = [
        f"<p>{html.escape(str(meta.get('description', '')))}</p>",
        f"<p><b>{html.escape(study_status(run_dir))}</b></p>",
        f"<p>{len(table)} trials ({len(ok)} ok, {len(failed)} failed) over {len(by_point)} points; "
        f"checkpoint <code>{html.escape(meta.get('checkpoint', ''))}</code> (sha256 "
        f"<code>{html.escape(str(ident.get('checkpoint_sha256', ''))[:16]) or '-'}</code>), device preset "
        f"<code>{html.escape(str(ident.get('device', '')))}</code>; full table: <code>results.csv</code> "
        f"(units in <code>columns.csv</code>).</p>",
        "<h2>Results (mean over seeds)</h2>", _table(header, summary),
        "<h2>Figures</h2>", "".join(_img(p) for p in sorted((run_dir / "plots").glob("*.png")))
        if (run_dir / "plots").exists() else "<p>none</p>",
    ]
    paired = run_dir / "paired.csv"
    if paired.is_file():  # studies.paired: each point's games against its reference point's
        head, prows = read_csv_header(paired)
        sections += ["<h2>Paired against the reference point (score difference per game, same game seeds)</h2>",
                     _table(head, prows)]
    if failed:
        sections += ["<h2>Failed trials</h2>", _table(["trial", *varied, "seed", "error"],
                                                      [[r["trial_id"], *(r[p] for p in varied), r["seed"], r["error"]]
                                                       for r in failed])]
    if bad:
        sections += ["<h2>Damaged trial records (not tabulated)</h2>",
                     _table(["file", "problem"], [[str(p.relative_to(run_dir)), why] for p, why in bad.items()])]
    sections += ["<h2>Study file</h2>", f"<pre>{html.escape(meta.get('source', ''))}</pre>",
                 "<h2>Commands</h2>", "<pre>" + html.escape("\n".join(
                     " ".join(map(str, inv.get("command", []) if isinstance(inv.get("command"), list) else []))
                     + f"    # {inv.get('time', '?')}, {inv.get('backend', '?')}, {inv.get('workers', '?')} workers"
                     + (f", interrupted by {inv['interrupted']}" if inv.get("interrupted") else "")
                     for inv in invocations)) + "</pre>",
                 "<h2>Versions</h2>", _table(["package", "version"], sorted(meta.get("versions", {}).items()))]
    return _page(f"stoxbar study: {ident['name']}", sections)


MARKDOWN_SCORE = ("games", "score_mean", "score_ci95", "score_std", "score_min")


def _md_num(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}g}" if _number(v) else "-"


def _md_fixed(v: Any) -> str:
    return f"{v:.2f}" if _number(v) else "-"


def _md_signed(v: Any) -> str:
    return f"{v:+.2f}" if _number(v) else "-"


def _point_key(params: Dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _grid_order(source: str) -> Dict[str, int]:
    """Each ``[[grid]]`` point's position in the study file (its tables in order, each full factorial in
    the order its values are listed), keyed by :func:`_point_key`; {} for a file that does not parse."""
    import itertools
    import tomllib

    try:
        grids = tomllib.loads(source).get("grid", [])
    except (tomllib.TOMLDecodeError, TypeError):
        return {}
    order: Dict[str, int] = {}
    for grid in grids if isinstance(grids, list) else [grids]:
        if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
            continue
        for combo in itertools.product(*grid.values()):
            order.setdefault(_point_key(dict(zip(grid, combo))), len(order))
    return order


def study_markdown(run_dir: Path) -> str:
    """A GitHub-markdown table of a study directory, one row per trial (point x seed), as a study's notes
    quote it: the varied parameters, the games, the score's mean, 95 % CI, std and min, with ``[paired]``
    the score difference to the reference point (mean, 95 % CI, better / worse / equal games,
    ``paired.csv``), the agent steps per game and the study's plotted metrics other than the score (in
    the plots' human units, named in the header). With several seeds a second table pools each point's games
    over its seeds (:func:`_pooled_markdown`). Trials that failed are listed under the tables."""
    meta = read_study_meta(run_dir)
    records, bad = scan_records(run_dir)
    varied = list(meta.get("varied", []))
    order = _grid_order(meta.get("source", ""))
    recs = sorted(records.values(), key=lambda r: (order.get(_point_key(r.get("params", {})), len(order)),
                                                     r.get("seed", 0), r["trial_id"]))
    rows = [_record_row(r, varied) for r in recs]
    ok = [r for r in rows if r["status"] == "ok"]
    seeds = len({r["seed"] for r in ok}) > 1
    paired: Dict[str, Dict[str, str]] = {}
    if (run_dir / "paired.csv").is_file():
        head, prows = read_csv_header(run_dir / "paired.csv")
        paired = {dict(zip(head, r))["trial_id"]: dict(zip(head, r)) for r in prows}
    extra = [m for m in dict.fromkeys(("steps_per_game", *meta.get("plot_metrics", ())))
             if isinstance(m, str) and not m.startswith("score_") and any(_number(r.get(m)) for r in ok)]
    header = [*varied, *(["seed"] if seeds else []), "games", "mean", "95 % CI", "std", "min"]
    if paired:
        from stoxbar.pong.scores import format_interval  # lazily, as below: importing stoxbar.pong imports torch

        header += ["paired diff, 95 % CI", "better / worse / equal"]
    factors = []
    for m in extra:
        unit, f = display_unit(unit_of(m)[0], [r.get(m) for r in ok])
        factors.append(f)
        header.append(f"{m} [{unit}]" if unit not in ("", "1") else m)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in ok:
        cells = [str(r[p]) if r[p] != "" else "default" for p in varied] + ([str(r["seed"])] if seeds else [])
        lo, hi = r.get("score_ci95_lower"), r.get("score_ci95_upper")
        cells += [_md_num(r.get("games")), _md_signed(r.get("score_mean")),
                  f"[{_md_signed(lo)}, {_md_signed(hi)}]", _md_fixed(r.get("score_std")), _md_num(r.get("score_min"))]
        if paired:
            d = paired.get(r["trial_id"])
            cells += ([format_interval(d["diff_mean"], d["diff_ci95_lower"], d["diff_ci95_upper"]),
                       f"{d['better']} / {d['worse']} / {d['equal']}"]
                      if d else ["", ""])
        cells += [_md_num(r[m] * f if _number(r.get(m)) else None) for m, f in zip(extra, factors)]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] != "ok"]
    text = "\n".join(lines) + "\n"
    if seeds:
        text += "\n" + _pooled_markdown(recs, records, varied, paired, extra, factors,
                                          header[len(header) - len(extra):])
    if failed or bad:
        text += "\nNot tabulated: " + "; ".join(
            [f"{r['trial_id']} failed ({r['error']})" for r in failed]
            + [f"{p.name} damaged ({why})" for p, why in bad.items()]) + "\n"
    return text


def _pooled_markdown(recs: List[Dict[str, Any]], records: Dict[str, Dict[str, Any]], varied: Sequence[str],
                     paired: Dict[str, Dict[str, str]], extra: Sequence[str], factors: Sequence[float],
                     extra_header: Sequence[str]) -> str:
    """The per-point table of a study with several seeds: each point's games over all its seeds pooled (score
    mean, bootstrap 95 % CI, std, min over every (seed, game)); with ``[paired]`` the difference to the
    reference point over the same (seed, game) pairs (the reference's records named in ``paired.csv``); the other
    metrics as the mean over the point's seeds. Points whose records carry no per-game scores are left out."""
    from stoxbar.pong.scores import format_interval, paired_summary, score_summary, scores_by_seed

    points: Dict[str, List[Dict[str, Any]]] = {}
    for r in recs:
        if r["status"] == "ok" and r.get("per_game"):
            points.setdefault(r.get("point_id", r["trial_id"]), []).append(r)
    header = [*varied, "seeds", "games", "mean", "95 % CI", "std", "min"]
    if paired:
        header += ["paired diff, 95 % CI", "better / worse / equal"]
    lines = ["Pooled over the seeds (every game of a point; paired over the same seed and game):", "",
             "| " + " | ".join([*header, *extra_header]) + " |", "|" + "---|" * (len(header) + len(extra_header))]
    for trials in points.values():
        games = {(t["seed"], k): v for t in trials for k, v in scores_by_seed(t["per_game"]).items()}
        keys = sorted(games)
        st = score_summary([games[k] for k in keys])
        params = trials[0].get("params", {})
        cells = [str(params[p]) if p in params else "default" for p in varied]
        cells += [str(len(trials)), str(len(keys)), _md_signed(st["mean"]),
                  f"[{_md_signed(st['ci95']['lower'])}, {_md_signed(st['ci95']['upper'])}]", _md_fixed(st["std"]),
                  _md_num(st["min"])]
        if paired:
            refs = {t["seed"]: records.get(f"{paired[t['trial_id']]['reference_point_id']}-s{t['seed']}")
                    for t in trials if t["trial_id"] in paired}
            ref = {(sd, k): v for sd, rr in refs.items() if rr and rr.get("per_game")
                   for k, v in scores_by_seed(rr["per_game"]).items()}
            common = [k for k in keys if k in ref]
            if common:
                d = paired_summary([games[k] for k in common], [ref[k] for k in common])
                cells += [format_interval(d["mean"], d["ci95"]["lower"], d["ci95"]["upper"]),
                          f"{d['better']} / {d['worse']} / {d['equal']}"]
            else:
                cells += ["", ""]
        for m, f in zip(extra, factors):
            vals = [t["metrics"][m] for t in trials if _number(t.get("metrics", {}).get(m))]
            cells.append(_md_num(sum(vals) / len(vals) * f) if vals else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_play_report(rep: Any, path: Path) -> None:
    """ConfigError naming ``path`` and the first field that is not what ``stoxbar play --json`` writes."""
    def bad(field: str, why: str) -> ConfigError:
        return ConfigError(f"report {path}: not a `stoxbar play --json` report ({field} {why})")

    if not isinstance(rep, dict):
        raise bad("the file", f"holds a {type(rep).__name__}, not an object")
    for key in ("games", "energy", "steps_per_game", "score", "mode", "checkpoint", "synapses", "agent_steps",
                "simulated_seconds", "wall_seconds"):
        if key not in rep:
            raise bad(key, "is missing")
    games = rep["games"]
    if not isinstance(games, int) or isinstance(games, bool) or games < 1:
        raise bad("games", f"= {games!r}: must be an integer >= 1")
    for key in ("synapses", "agent_steps"):
        if not isinstance(rep[key], int) or isinstance(rep[key], bool) or rep[key] < 0:
            raise bad(key, f"= {rep[key]!r}: must be an integer >= 0")
    for key in ("simulated_seconds", "wall_seconds"):
        if not _number(rep[key]) or rep[key] < 0:
            raise bad(key, f"= {rep[key]!r}: must be a finite number >= 0")
    for key in ("mode", "checkpoint"):
        if not isinstance(rep[key], str):
            raise bad(key, "must be text")
    score = rep["score"]
    if (not isinstance(score, dict) or not _number(score.get("mean")) or not isinstance(score.get("per_game"), list)
            or len(score["per_game"]) != games or not all(_number(v) for v in score["per_game"])):
        raise bad("score", f"must hold mean and per_game ({games} finite numbers)")
    steps = rep["steps_per_game"]
    if not isinstance(steps, list) or len(steps) != games or not all(isinstance(v, int) and v >= 0 for v in steps):
        raise bad("steps_per_game", f"must be {games} integers >= 0")
    cut = rep.get("truncated_games", [])
    if not isinstance(cut, list) or not all(isinstance(v, int) and 0 <= v < games for v in cut):
        raise bad("truncated_games", f"must be game indices in [0, {games})")
    energy = rep["energy"]
    if not isinstance(energy, dict) or "gpu_baseline" not in energy:
        raise bad("energy", "must be an object with a gpu_baseline")
    tiers = rep.get("gpu_tiers") or {"roofline": energy["gpu_baseline"]}
    if not isinstance(tiers, dict):
        raise bad("gpu_tiers", "must be an object")
    for where, block in [*(("energy." + k, v) for k, v in energy.items()), *(("gpu_tiers." + k, v) for k, v in tiers.items())]:
        if not isinstance(block, dict) or not _number(block.get("total_j")) or block["total_j"] < 0:
            raise bad(where, "must hold total_j, a finite energy >= 0")
    if "system" in energy:
        comps = energy["system"].get("by_component")
        if not isinstance(comps, dict) or not all(_number(v) and v >= 0 for v in comps.values()):
            raise bad("energy.system.by_component", "must map components to finite energies >= 0")


def play_page(report_path: Path) -> str:
    """HTML of a ``stoxbar play --json`` report (checked by :func:`check_play_report` first)."""
    rep = read_json(report_path)
    check_play_report(rep, report_path)
    try:
        return _play_page(rep, report_path)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:  # a field of the wrong kind
        raise ConfigError(f"report {report_path}: not a `stoxbar play --json` report "
                          f"({type(exc).__name__}: {exc})") from None


def _play_page(rep: Dict[str, Any], report_path: Path) -> str:
    games = rep["games"]
    energy = rep["energy"]
    steps = rep["steps_per_game"]
    tiers = gpu_tiers_of(rep)
    names = [b for b in ordered_boundaries(energy) if not b.startswith("gpu")]
    unit, f = display_unit("J", [energy[b]["total_j"] / games for b in names if energy[b]["total_j"] > 0])
    rows = [[name, energy[name]["total_j"] / games * f]
            + [f"{g['total_j'] / energy[name]['total_j']:.4g}" if energy[name]["total_j"] > 0 else "n/a"
               for g in tiers.values()] for name in names]
    rows += [[tier_label(t), g["total_j"] / games * f] + [""] * len(tiers) for t, g in tiers.items()]
    max_steps = rep.get("max_steps")
    cut = rep.get("truncated_games", [])
    score_rows = [[i, s, n, "yes (stopped at --max-steps)" if (i - 1) in cut else ""]
                  for i, (s, n) in enumerate(zip(rep["score"]["per_game"], steps), 1)]
    sections = [
        f"<p>Mode <b>{html.escape(rep['mode'])}</b>, checkpoint <code>{html.escape(rep['checkpoint'])}</code>, "
        f"device preset <code>{html.escape(str(rep['device_preset']))}</code>, {rep['synapses']} synapses.</p>",
        "<h2>Score</h2>", _table(["game", "score (agent - opponent)", "agent steps", "cut short"], score_rows),
        f"<p>mean {rep['score']['mean']:+.2f} over {games} games, {rep['agent_steps']} agent steps = "
        f"{rep['simulated_seconds']:.1f} s of play simulated in {rep['wall_seconds']:.1f} s.</p>",
    ]
    if cut:
        sections.append(f"<p><b>{len(cut)} of {games} games were cut short</b> at --max-steps {max_steps}: "
                        "their scores and energies are of partial games.</p>")
    sections += ["<h2>Energy per game</h2>",
                 _table(["boundary", f"{unit} per game"] + [f"{tier_label(t)} / this" for t in tiers], rows),
                 "<h2>Figures</h2>", "".join(_img_bytes(png, name) for name, png in play_figures(rep))]
    if "system" in energy:
        tot = energy["system"]["total_j"]
        comps = sorted(energy["system"]["by_component"].items(), key=lambda kv: -kv[1])
        cu, cf = display_unit("J", [j / games for _, j in comps if j > 0])
        sections += ["<h3>System energy by component</h3>",
                     _table(["component", f"{cu} per game", "share %"],
                            [[c, j / games * cf, 100 * j / tot if tot > 0 else 0.0] for c, j in comps])]
    sections += ["<h2>Configuration</h2>", _pre(rep.get("arch", {})), _pre(rep.get("periphery", "")),
                 "<h2>GPU baseline assumptions</h2>", _pre(energy["gpu_baseline"].get("assumptions", {}))]
    if "command" in rep:
        sections += ["<h2>Command</h2>", f"<pre>{html.escape(' '.join(rep['command']))}</pre>"]
    if "versions" in rep:
        sections += ["<h2>Versions</h2>", _table(["package", "version"], sorted(rep["versions"].items()))]
    return _page(f"stoxbar play: {report_path.name}", sections)


def write_report(run: str, out: Optional[str] = None, markdown: bool = False) -> Path:
    """Write the report of ``run`` (study dir, play JSON, or a dir holding one); never overwrites.
    ``markdown``: a study's table as markdown (:func:`study_markdown`) instead of the HTML page."""
    path = Path(run)
    if out:
        check_new_file(out, "--out")  # before any work
    if markdown and not (path.is_dir() and (path / "study.json").exists()):
        raise ConfigError(f"report {run!r} --markdown: expected a study directory (with study.json); a play "
                          "report has only the HTML page")
    if markdown:
        text, default = study_markdown(path), path / "report.md"
    elif path.is_dir() and (path / "study.json").exists():
        text, default = study_page(path), path / "report.html"
    elif path.is_file() and path.suffix == ".json":
        text, default = play_page(path), path.with_suffix(".html")
    elif path.is_dir() and len(list(path.glob("*.json"))) == 1:
        target = next(path.glob("*.json"))
        text, default = play_page(target), target.with_suffix(".html")
    else:
        raise ConfigError(f"report {run!r}: expected a study directory (with study.json), a play report (.json) "
                          "or a directory holding one play report")
    dest = check_new_file(out, "--out") if out else free_name(default)
    atomic_write_bytes(dest, text.encode())
    return dest
