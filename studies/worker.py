"""Run one study trial; never raises (a failure becomes a record with its error).

``run_trial(job)`` is what a local worker process (``python -m stoxbar.studies.worker``, job as
JSON on stdin, record as one ``STOXBAR_RESULT {...}`` line on stdout) and a Ray task both call.
A job is plain JSON: the trial (id, params, seed), the study's base configuration and metrics,
and for a study over another task its entry point and arguments (``task``, ``task_args``).

May import: stoxbar.core.compat, stoxbar.pong, stoxbar.studies.{metrics,spec}.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import traceback
from typing import Any, Dict

from stoxbar.core.compat import versions

RESULT_PREFIX = "STOXBAR_RESULT "


def _finite(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """JSON-safe metrics: a non-finite number is an error, not a silent NaN in the table."""
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"non-finite metric(s) {bad}: {[metrics[k] for k in bad]}")
    return metrics


def run_trial(job: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one trial (see module docstring); returns its record (status ok or failed)."""
    import torch

    from stoxbar.studies.metrics import measure, measure_task
    from stoxbar.studies.spec import Metrics, build_point
    from stoxbar.pong.agent import ArchConfig
    from stoxbar.pong.checkpoint import load_checkpoint

    trial = job["trial"]
    record: Dict[str, Any] = {**trial, "study": job["study"], "host": platform.node(), "pid": os.getpid(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
    try:
        torch.set_num_threads(int(job.get("threads", 1)))
        if job.get("task"):
            cfg = build_point(None, job["device_preset"], job["base"], trial["params"])
            record["metrics"] = _finite(measure_task(job["task"], job.get("task_args", {}), cfg, trial["seed"]))
            record["status"] = "ok"
            return record
        ckpt = None if job["checkpoint"] == "random" else load_checkpoint(job["checkpoint"])
        arch = ArchConfig() if ckpt is None else ArchConfig.from_dict(dict(ckpt["arch"]))
        cfg = build_point(arch, job["device_preset"], job["base"], trial["params"])
        games: list = []
        record["metrics"] = _finite(measure(ckpt, cfg, Metrics(**job["metrics"]), trial["seed"], games))
        if games:
            record["per_game"] = games
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a trial's failure is data, the study goes on
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
    return record


def main() -> int:
    """Worker process: job JSON on stdin -> result line on stdout."""
    job = json.loads(sys.stdin.read())
    record = run_trial(job)
    sys.stdout.write(RESULT_PREFIX + json.dumps(record, allow_nan=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
