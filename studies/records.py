"""A study's trial records on disk: what a valid record is, and reading them (the runner writes them).

``trials/ID.json`` holds one finished trial (status ok or failed, metrics or error) with the sha256 of
its own content (``sha256``); :func:`record_problem` says why a record is not valid (finite metrics,
non-negative energies, a status that fits the content), :func:`scan_records` reads them all without
raising on damage, :func:`load_records` refuses a damaged one by name, :func:`read_study_meta` reads a
study's ``study.json`` (docs/reliability.md §7). Used by the runner, the table and the report; it
imports none of them.

May import: stoxbar.core.fsio, stoxbar.studies.spec.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from stoxbar.core import fsio
from stoxbar.studies.spec import StudyError

CHECKSUM_KEY = "sha256"
RECORD_KEYS = frozenset({"trial_id", "point_id", "group", "params", "seed", "study", "host", "pid", "started",
                         "versions", "status", "metrics", "per_game", "error", "traceback", CHECKSUM_KEY})
# "per_game": a Pong trial's per-game records (game seed, chip, score, agent steps, cut short), for paired
# comparisons between points that play the same game seeds (studies.metrics.pong_metrics)


def record_checksum(record: Dict[str, Any]) -> str:
    """sha256 of a trial record's content (every key but ``sha256``), as canonical JSON."""
    body = {k: v for k, v in record.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _is_energy(name: str) -> bool:
    return name.startswith("energy") or name.endswith("_j") or "_j_per_" in name


def record_problem(rec: Any, stem: Optional[str] = None) -> Optional[str]:
    """Why ``rec`` is not a valid trial record (None if it is); ``stem``: its file name's stem."""
    if not isinstance(rec, dict):
        return f"a {type(rec).__name__}, not a trial record"
    tid = rec.get("trial_id")
    if not isinstance(tid, str) or not tid:
        return "no trial_id"
    if stem is not None and tid != stem:
        return f"trial_id {tid!r} does not match the file name"
    unknown = sorted(set(rec) - RECORD_KEYS)
    if unknown:  # also a damaged key name (a record written before records had a sha256 has none of these)
        return f"unknown key(s) {unknown[:3]}"
    if CHECKSUM_KEY in rec:
        try:
            ok = rec[CHECKSUM_KEY] == record_checksum(rec)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            return "its sha256 does not match its content (the file was changed after it was written)"
    if not isinstance(rec.get("params", {}), dict):
        return "params is not a table"
    status = rec.get("status")
    if status == "ok":
        metrics = rec.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            return "status ok but no metrics"
        for k, v in metrics.items():
            if isinstance(v, bool) or isinstance(v, str):
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"metric {k} = {v!r} is not a finite number"
            if _is_energy(k) and v < 0:
                return f"energy {k} = {v!r} is negative"
        if rec.get("error"):
            return "status ok but an error is recorded"
        games = rec.get("per_game", [])
        if not isinstance(games, list) or not all(isinstance(g, dict) for g in games):
            return "per_game is not a list of per-game tables"
    elif status == "failed":
        if not isinstance(rec.get("error"), str) or not rec["error"]:
            return "status failed but no error message"
    else:
        return f"status = {status!r} (expected 'ok' or 'failed')"
    return None


def scan_records(out: Path) -> Tuple[Dict[str, Dict[str, Any]], Dict[Path, str]]:
    """(valid records by trial id, {path: why} of the damaged ones) in ``out/trials``; never raises for damage."""
    records, bad = {}, {}
    trials = Path(out) / "trials"
    for path in sorted(trials.glob("*.json")) if trials.is_dir() else []:
        if fsio.is_temp(path):
            continue
        try:
            rec = fsio.read_json(path)
        except (fsio.ConfigError, OSError) as exc:
            bad[path] = str(exc).replace(f"{path}: ", "").split("; the file is damaged")[0]
            continue
        why = record_problem(rec, path.stem)
        if why is None:
            records[rec["trial_id"]] = rec
        else:
            bad[path] = why
    return records, bad


def load_records(out: Path) -> Dict[str, Dict[str, Any]]:
    """Finished trial records in ``out/trials`` by trial id (temporary ``.tmp-*`` files are ignored).

    A damaged or invalid record is a :class:`StudyError` naming it (it is never tabulated)."""
    records, bad = scan_records(out)
    if bad:
        path, why = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more damaged records)" if len(bad) > 1 else ""
        raise StudyError(f"{path}: {why}{more}; the record is damaged - move it away to rerun that trial")
    return records


def read_study_meta(out: Path) -> Dict[str, Any]:
    """``out/study.json``, checked to be what :func:`_prepare` writes (StudyError naming the file otherwise)."""
    meta_path = Path(out) / "study.json"
    meta = fsio.read_json(meta_path)
    ident = meta.get("identity") if isinstance(meta, dict) else None
    names = [meta.get(k, []) for k in ("varied", "plot_metrics", "pareto")] if isinstance(meta, dict) else [None]
    if (not isinstance(ident, dict) or not isinstance(ident.get("name"), str)
            or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in names)
            or not isinstance(meta.get("description", ""), str)
            or not isinstance(meta.get("varied", []), list) or not all(isinstance(v, str) for v in meta.get("varied", []))
            or not isinstance(meta.get("source", ""), str) or not isinstance(meta.get("checkpoint", ""), str)
            or not isinstance(meta.get("versions", {}), dict)
            or not isinstance(meta.get("trials", 0), int) or isinstance(meta.get("trials", 0), bool)):
        raise StudyError(f"{meta_path}: not a stoxbar study.json (identity, varied, source, checkpoint, versions); "
                         "the file is damaged - restore it, or run the study into a new directory")
    return meta
