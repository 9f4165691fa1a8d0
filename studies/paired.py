"""Paired comparisons of a study's points: each point's games against its reference point's, game by game.

A study with ``[paired] reference = { PARAM = VALUE, ... }`` (studies.spec) pairs every trial with
the trial of the same study seed whose parameters are the same but for PARAM = VALUE: its
reference point (e.g. each ablation against the intact agent of the same backend). Where the study
has no such point (grid groups that vary different parameters: e.g. a law with its own parameters
against another law's point), the reference point is the study's one point with PARAM = VALUE (none,
or several: no row). Both played
the same game seeds (game ``i`` has env seed ``seed + i`` at every point of a study seed,
studies.metrics.pong_metrics), so their per-game scores (the trial records' ``per_game``) pair up
by env seed, and the paired difference has a narrower interval than two unpaired means' (the
games' shared spread cancels). ``paired.csv`` (beside ``results.csv``; derived from the records,
rewritten with the table): one row per trial with a reference, the varied parameters, the study
seed, the reference point's id, then :func:`stoxbar.pong.scores.paired_summary` of score minus
reference score (``diff_mean``, ``diff_std``, ``diff_ci95_lower``, ``diff_ci95_upper``,
``diff_min``, ``diff_max``, ``better``, ``worse``, ``equal``, ``pairs``). A trial whose reference
is missing or failed, or whose records carry no per-game scores (records written before they
did), has no row.

May import: stoxbar.core.fsio, stoxbar.pong.scores, stoxbar.studies.{records,spec}.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, List, Optional

from stoxbar.core.fsio import atomic_write_bytes
from stoxbar.pong.scores import paired_summary, scores_by_seed
from stoxbar.studies.records import load_records
from stoxbar.studies.spec import Study, point_id

def _scores(rec: Optional[Dict[str, Any]]) -> Optional[Dict[int, float]]:
    """env seed -> score of an ok record's games (None if it has none)."""
    if rec is None or rec.get("status") != "ok" or not rec.get("per_game"):
        return None
    return scores_by_seed(rec["per_game"])


def paired_rows(study: Study, out: Path) -> List[Dict[str, Any]]:
    """The rows of ``paired.csv`` (module docstring), in the study's trial order; [] without ``[paired]``."""
    if not study.paired:
        return []
    reference = dict(study.paired)
    records = load_records(out)
    trials = study.trials()
    points = {t.point_id: t.params for t in trials}
    # the one point holding the reference values, for a trial whose own reference point is not in the study
    holders = [pid for pid, p in points.items() if all(k in p and p[k] == v for k, v in reference.items())]
    rows = []
    for trial in trials:
        ref_params = {**trial.params, **reference}
        if ref_params == trial.params:
            continue  # the reference point itself
        ref_point = point_id(ref_params)
        if ref_point not in points:  # e.g. a point of another grid group, varying other parameters
            if len(holders) != 1:
                continue  # no point, or several: no reference to pair with
            ref_point = holders[0]
        mine, ref = _scores(records.get(trial.trial_id)), _scores(records.get(f"{ref_point}-s{trial.seed}"))
        if mine is None or ref is None:
            continue
        seeds = sorted(set(mine) & set(ref))
        if not seeds:
            continue
        st = paired_summary([mine[s] for s in seeds], [ref[s] for s in seeds])
        rows.append({"trial_id": trial.trial_id, "point_id": trial.point_id,
                     **{k: trial.params.get(k, "") for k in study.varied}, "seed": trial.seed,
                     "reference_point_id": ref_point, "pairs": st["n"], "diff_mean": st["mean"],
                     "diff_std": st["std"], "diff_ci95_lower": st["ci95"]["lower"],
                     "diff_ci95_upper": st["ci95"]["upper"], "diff_min": st["min"], "diff_max": st["max"],
                     "better": st["better"], "worse": st["worse"], "equal": st["equal"]})
    return rows


def write_paired(study: Study, out: Path) -> Optional[Path]:
    """Write ``out/paired.csv`` (:func:`paired_rows`); None (nothing written) without rows."""
    rows = paired_rows(study, out)
    if not rows:
        return None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path = Path(out) / "paired.csv"
    atomic_write_bytes(path, buf.getvalue().encode(), overwrite=True)  # derived from the records: rewritten
    return path
