"""``stoxbar report``: one self-contained HTML page from a study directory or a play report.

The page carries the tables, the figures (embedded as PNG data), the configuration, the software
versions and the commands that made the results, so it can be handed on as a single file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from stoxbar.studies.metrics import unit_of
from stoxbar.pong.checkpoint import atomic_write_bytes
from stoxbar.studies.table import read_table
from stoxbar.validation import ConfigError

SUMMARY_METRICS = ("score_mean", "energy_synapse_only_j_per_game", "energy_array_j_per_game",
                   "energy_system_j_per_game", "gpu_ratio_system", "gpu_ratio_latency_system",
                   "gpu_ratio_dedicated_system", "energy_array_j_per_step",
                   "latency_mvm_s_per_step", "area_m2", "mvm_rel_error", "wall_s_per_step")
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
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}" title="{html.escape(path.name)}">'


def _page(title: str, sections: List[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def study_page(run_dir: Path) -> str:
    """HTML of a study directory (study.json, results.csv, plots/, invocations.jsonl)."""
    meta = json.loads((run_dir / "study.json").read_text())
    ident = meta["identity"]
    table = read_table(run_dir / "results.csv") if (run_dir / "results.csv").exists() else []
    varied = meta["varied"]
    ok = [r for r in table if r["status"] == "ok"]
    failed = [r for r in table if r["status"] != "ok"]
    metrics = [m for m in dict.fromkeys((*meta.get("plot_metrics", ()), *SUMMARY_METRICS))
               if any(r.get(m, "") != "" for r in ok)]
    by_point: Dict[str, List[Dict[str, Any]]] = {}
    for r in ok:
        by_point.setdefault(r["point_id"], []).append(r)
    summary = []
    for rs in by_point.values():
        means = [sum(float(r[m]) for r in rs) / len(rs) if all(r.get(m, "") != "" for r in rs) else "" for m in metrics]
        summary.append([*(rs[0][p] for p in varied), len(rs), *means])
    header = [*varied, "seeds", *(f"{m} [{unit_of(m)[0]}]" for m in metrics)]
    log = run_dir / "invocations.jsonl"
    invocations = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    sections = [
        f"<p>{html.escape(meta.get('description', ''))}</p>",
        f"<p>{len(table)} trials ({len(ok)} ok, {len(failed)} failed) over {len(by_point)} points; "
        f"checkpoint <code>{html.escape(meta['checkpoint'])}</code> (sha256 "
        f"<code>{ident['checkpoint_sha256'][:16] or '-'}</code>), device preset "
        f"<code>{html.escape(ident['device'])}</code>; full table: <code>results.csv</code> "
        f"(units in <code>columns.csv</code>).</p>",
        "<h2>Results (mean over seeds)</h2>", _table(header, summary),
        "<h2>Figures</h2>", "".join(_img(p) for p in sorted((run_dir / "plots").glob("*.png")))
        if (run_dir / "plots").exists() else "<p>none</p>",
    ]
    if failed:
        sections += ["<h2>Failed trials</h2>", _table(["trial", *varied, "seed", "error"],
                                                      [[r["trial_id"], *(r[p] for p in varied), r["seed"], r["error"]]
                                                       for r in failed])]
    sections += ["<h2>Study file</h2>", f"<pre>{html.escape(meta['source'])}</pre>",
                 "<h2>Commands</h2>", "<pre>" + html.escape("\n".join(
                     " ".join(inv["command"]) + f"    # {inv['time']}, {inv['backend']}, {inv['workers']} workers"
                     for inv in invocations)) + "</pre>",
                 "<h2>Versions</h2>", _table(["package", "version"], sorted(meta["versions"].items()))]
    return _page(f"stoxbar study: {ident['name']}", sections)


def play_page(report_path: Path) -> str:
    """HTML of a ``stoxbar play --json`` report."""
    rep = json.loads(report_path.read_text())
    games = rep["games"]
    energy = rep["energy"]
    tiers = rep.get("gpu_tiers") or {"roofline": energy["gpu_baseline"]}  # older reports: roofline only
    tiers = {t: tiers[t] for t in ("roofline", "latency", "dedicated") if t in tiers}
    rows = [[name, e["total_j"] / games] + [g["total_j"] / e["total_j"] if e["total_j"] > 0 else ""
                                            for g in tiers.values()]
            for name, e in energy.items() if not name.startswith("gpu")]
    rows += [[f"GPU {t}", g["total_j"] / games] + [""] * len(tiers) for t, g in tiers.items()]
    sections = [
        f"<p>Mode <b>{html.escape(rep['mode'])}</b>, checkpoint <code>{html.escape(rep['checkpoint'])}</code>, "
        f"device preset <code>{html.escape(str(rep['device_preset']))}</code>, {rep['synapses']} synapses.</p>",
        "<h2>Score</h2>", _table(["game", "score (agent - opponent)"], list(enumerate(rep["score"]["per_game"], 1))),
        f"<p>mean {rep['score']['mean']:+.2f} over {games} games, {rep['agent_steps']} agent steps = "
        f"{rep['simulated_seconds']:.1f} s of play simulated in {rep['wall_seconds']:.1f} s.</p>",
        "<h2>Energy per game</h2>", _table(["boundary", "J per game"] + [f"GPU {t} / this" for t in tiers], rows),
    ]
    if "system" in energy:
        tot = energy["system"]["total_j"]
        comps = sorted(energy["system"]["by_component"].items(), key=lambda kv: -kv[1])
        sections += ["<h3>System energy by component</h3>",
                     _table(["component", "J per game", "share %"], [[c, j / games, 100 * j / tot] for c, j in comps])]
    sections += ["<h2>Configuration</h2>", f"<pre>{html.escape(json.dumps(rep.get('arch', {}), indent=2))}\n"
                 f"{html.escape(str(rep.get('periphery', '')))}</pre>",
                 "<h2>GPU baseline assumptions</h2>",
                 f"<pre>{html.escape(json.dumps(energy['gpu_baseline'].get('assumptions', {}), indent=2))}</pre>"]
    if "command" in rep:
        sections += ["<h2>Command</h2>", f"<pre>{html.escape(' '.join(rep['command']))}</pre>"]
    if "versions" in rep:
        sections += ["<h2>Versions</h2>", _table(["package", "version"], sorted(rep["versions"].items()))]
    return _page(f"stoxbar play: {report_path.name}", sections)


def write_report(run: str, out: Optional[str] = None) -> Path:
    """Write the report of ``run`` (study dir, play JSON, or a dir holding one); never overwrites."""
    path = Path(run)
    if path.is_dir() and (path / "study.json").exists():
        text, default = study_page(path), path / "report.html"
    elif path.is_file() and path.suffix == ".json":
        text, default = play_page(path), path.with_suffix(".html")
    elif path.is_dir() and len(list(path.glob("*.json"))) == 1:
        target = next(path.glob("*.json"))
        text, default = play_page(target), target.with_suffix(".html")
    else:
        raise ConfigError(f"report {run!r}: expected a study directory (with study.json), a play report (.json) "
                          "or a directory holding one play report")
    dest = Path(out) if out else default
    if out is None:
        n = 2
        while dest.exists():
            dest = default.with_name(f"{default.stem}-{n}{default.suffix}")
            n += 1
    elif dest.exists():
        raise FileExistsError(f"{dest} exists: reports are never overwritten; choose a new path")
    atomic_write_bytes(dest, text.encode())
    return dest
