"""The tidy table of a study: one row per point x seed, one column per parameter and metric.

``results.csv`` (and ``results.parquet`` when pandas + pyarrow are installed) with the columns
``study, trial_id, point_id, group, seed, status, error``, then the varied parameters (dotted
paths), then the metrics; ``columns.csv`` gives every column's unit and meaning. Both are derived
from ``trials/*.json`` and rewritten (atomically) after every run of the study.

May import: stoxbar.core.fsio, stoxbar.studies.{records,spec,units}.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from stoxbar.core.fsio import atomic_write_bytes, read_csv
from stoxbar.studies.units import UNITS, unit_of
from stoxbar.studies.records import load_records
from stoxbar.studies.spec import Study

ID_COLUMNS = ("study", "trial_id", "point_id", "group", "seed", "status", "error")


def rows(study: Study, out: Path) -> Tuple[List[str], List[Dict[str, Any]]]:
    """(columns, rows) of the study's finished trials, in the study's trial order."""
    records = load_records(out)
    table, metric_cols = [], {}
    for trial in study.trials():
        rec = records.get(trial.trial_id)
        if rec is None:
            continue
        row = {"study": study.name, "trial_id": trial.trial_id, "point_id": trial.point_id, "group": trial.group,
               "seed": trial.seed, "status": rec["status"], "error": rec.get("error", "")}
        row.update({k: trial.params.get(k, "") for k in study.varied})
        for k, v in rec.get("metrics", {}).items():
            metric_cols[k] = None
            row[k] = v
        table.append(row)
    known = [k for k in UNITS if k in metric_cols]
    rest = sorted(k for k in metric_cols if k not in UNITS)
    return [*ID_COLUMNS, *study.varied, *known, *rest], table


def write_table(study: Study, out: Path) -> Path:
    """Write results.csv, columns.csv (and results.parquet if possible); returns the CSV path."""
    columns, table = rows(study, out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    path = out / "results.csv"
    atomic_write_bytes(path, buf.getvalue().encode(), overwrite=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["column", "unit", "description"])
    for c in columns:
        w.writerow([c, *unit_of(c)] if c not in ID_COLUMNS else [c, "", "identifier"])
    atomic_write_bytes(out / "columns.csv", buf.getvalue().encode(), overwrite=True)
    try:
        import pandas as pd

        parquet = io.BytesIO()
        pd.DataFrame(table, columns=columns).to_parquet(parquet)
        atomic_write_bytes(out / "results.parquet", parquet.getvalue(), overwrite=True)
    except ImportError:
        pass
    return path


def read_table(path: Path) -> List[Dict[str, Any]]:
    """results.csv as dicts with numbers parsed (empty cells stay ""); damage is a ConfigError naming the file."""
    def parse(v: str) -> Any:
        if v == "":
            return v
        try:
            return json.loads(v) if v in ("true", "false") else float(v) if any(c in v for c in ".eE") else int(v)
        except ValueError:
            return v

    return [{k: parse(v) for k, v in row.items()} for row in read_csv(path, required=("trial_id", "status"))]
