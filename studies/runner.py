"""Run a study: every trial in its own process, resumable, locally or on a Ray cluster.

Output directory layout (``study.output``)::

    study.json          identity, study file text, versions (written once; a resume must match it)
    invocations.jsonl   one line per ``stoxbar sweep`` run: command, backend, counts (append-only)
    trials/ID.json      one record per finished trial (status ok or failed, metrics or error)
    trials/failed/      earlier failed attempts of trials that were retried (kept, never overwritten)
    results.csv         the tidy table (one row per point x seed), ``columns.csv`` its units
    plots/*.png         figures made from the table

Resume: trials whose record says ``ok`` are never recomputed; failed and missing ones run again.
Local backend: a thread pool keeps ``workers`` worker processes (``python -m
stoxbar.studies.worker``) busy, one process per trial, so a crash or a timeout costs only that
trial. Ray backend (``ray_address``): one Ray task per trial (``max_calls=1``: a fresh worker
process each), results come back to this process, which alone writes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from stoxbar.crossbar.ledger import write_json_atomic
from stoxbar.studies.spec import Study, StudyError, Trial
from stoxbar.compat import versions
from stoxbar.studies.worker import RESULT_PREFIX


def job_for(study: Study, trial: Trial, threads: int = 1) -> Dict[str, Any]:
    """The plain-JSON job a worker needs for ``trial``."""
    return {"study": study.name, "trial": trial.to_dict(), "checkpoint": study.checkpoint,
            "device_preset": study.device_preset, "base": study.base, "metrics": asdict(study.metrics),
            "threads": threads, "task": study.task, "task_args": dict(study.task_args)}


def load_records(out: Path) -> Dict[str, Dict[str, Any]]:
    """Finished trial records in ``out/trials`` by trial id."""
    records = {}
    for path in sorted((out / "trials").glob("*.json")):
        with open(path) as fh:
            rec = json.load(fh)
        records[rec["trial_id"]] = rec
    return records


def _prepare(study: Study, out: Path) -> None:
    """Create ``out`` with study.json, or check that it holds this same study."""
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "study.json"
    if meta.exists():
        with open(meta) as fh:
            saved = json.load(fh)["identity"]
        mine = json.loads(json.dumps(study.identity()))
        diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if diff:
            raise StudyError(f"{out} holds another study (differs in {diff}); resume only the same study there, "
                             "or choose a new output directory")
        return
    write_json_atomic(meta, {"identity": study.identity(), "checkpoint": study.checkpoint,
                             "description": study.description,
                             "source": study.source, "seeds": list(study.seeds), "varied": list(study.varied),
                             "plot_metrics": list(study.plot_metrics), "pareto": list(study.pareto),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()})


def _save(out: Path, record: Dict[str, Any]) -> None:
    """Write a trial record atomically; an earlier failed attempt is moved to trials/failed/."""
    path = out / "trials" / f"{record['trial_id']}.json"
    if path.exists():
        failed = out / "trials" / "failed"
        failed.mkdir(exist_ok=True)
        n = len(list(failed.glob(f"{record['trial_id']}.*.json")))
        shutil.move(path, failed / f"{record['trial_id']}.{n}.json")
    write_json_atomic(path, record)


def _failed(job: Dict[str, Any], error: str) -> Dict[str, Any]:
    return {**job["trial"], "study": job["study"], "status": "failed", "error": error}


def run_local(jobs: List[Dict[str, Any]], workers: int, timeout_s: Optional[float]) -> Iterator[Dict[str, Any]]:
    """Run each job in its own worker process, ``workers`` at a time; yield records as they finish."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def one(job: Dict[str, Any]) -> Dict[str, Any]:
        try:
            proc = subprocess.run([sys.executable, "-m", "stoxbar.studies.worker"], input=json.dumps(job),
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return _failed(job, f"TimeoutError: trial exceeded {timeout_s} s")
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX):])
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return _failed(job, f"WorkerError: worker process exited with code {proc.returncode}: {tail}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()


def run_ray(jobs: List[Dict[str, Any]], address: str, workers: int) -> Iterator[Dict[str, Any]]:
    """Run each job as a Ray task in a fresh worker process; yield records as they finish.

    ``address``: "local" starts a local Ray instance with ``workers`` CPUs, anything else
    (``auto``, ``ray://host:10001``, ``host:6379``) connects to that cluster, whose workers
    must have stoxbar installed (a checkpoint path must exist on them too).
    """
    try:
        import ray
    except ImportError:
        raise StudyError("--ray needs the ray package: pip install 'ray>=2.9'") from None
    from stoxbar.studies.worker import run_trial

    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_calls=1)(run_trial)
        pending = {task.remote(job): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                yield ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its trial only
                yield _failed(job, f"{type(exc).__name__}: {exc}")
    finally:
        if started_here:
            ray.shutdown()


def run_study(study: Study, workers: int = 1, ray_address: Optional[str] = None, timeout_s: Optional[float] = None,
              progress: bool = True, command: Optional[List[str]] = None,
              on_record: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, int]:
    """Run the missing and failed trials of ``study``, then write the table and plots.

    Returns counts: ``trials``, ``skipped`` (already ok), ``ok`` and ``failed`` (this run).
    """
    from tqdm import tqdm

    from stoxbar.studies.plots import make_plots
    from stoxbar.studies.table import write_table

    if workers < 1:
        raise StudyError(f"workers = {workers}: allowed range is [1, inf)")
    if timeout_s is not None and (timeout_s <= 0 or ray_address):
        raise StudyError(f"timeout = {timeout_s}: must be > 0 s, and is supported by the local backend only")
    out = Path(study.output)
    _prepare(study, out)
    (out / "trials").mkdir(exist_ok=True)
    done = {k for k, r in load_records(out).items() if r.get("status") == "ok"}
    trials = study.trials()
    jobs = [job_for(study, t) for t in trials if t.trial_id not in done]
    counts = {"trials": len(trials), "skipped": len(trials) - len(jobs), "ok": 0, "failed": 0}
    bar = tqdm(total=len(jobs), desc=f"study {study.name}", unit="trial", disable=not progress)
    records = run_ray(jobs, ray_address, workers) if ray_address else run_local(jobs, workers, timeout_s)
    for rec in records:
        _save(out, rec)
        counts["ok" if rec["status"] == "ok" else "failed"] += 1
        bar.update(1)
        bar.set_postfix(ok=counts["ok"], failed=counts["failed"])
        if on_record is not None:
            on_record(rec)
    bar.close()
    write_table(study, out)
    make_plots(study, out)
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command or sys.argv,
            "backend": f"ray:{ray_address}" if ray_address else "local", "workers": workers, **counts}
    with open(out / "invocations.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    return counts
