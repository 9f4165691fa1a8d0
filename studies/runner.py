"""Run a study: every trial in its own process, resumable, interruptible, locally or on a Ray cluster.

Output directory layout (``study.output``)::

    study.json          identity, study file text, versions (written once; a resume must match it)
    invocations.jsonl   one line per ``stoxbar sweep`` run: command, backend, counts (append-only)
    trials/ID.json      one record per finished trial (status ok or failed, metrics or error)
    trials/failed/      earlier failed attempts of trials that were retried (kept, never overwritten)
    results.csv         the tidy table (one row per point x seed), ``columns.csv`` its units
    paired.csv          with [paired]: each point's games against its reference point's (studies.paired)
    plots/*.png         figures made from the table
    .stoxbar.lock       advisory lock held while a sweep runs here (stoxbar.core.fsio.DirLock)

Every file is written atomically (:mod:`stoxbar.core.fsio`); a crash can only leave ``.tmp-*`` files,
which a resume ignores and removes. No symbolic link is written through (``trials/``,
``trials/failed/`` and the append-only ``invocations.jsonl`` are refused if they are links).
Each trial record carries the sha256 of its own content (``sha256``) and is validated when read
(:func:`~stoxbar.studies.records.record_problem`: finite metrics, non-negative energies, a status that fits the content); a
record that fails is named and never tabulated (docs/reliability.md §7). A second sweep into a directory in use is refused at once,
naming the holder. The directory is proved writable before any trial runs.

Resume: trials whose record says ``ok`` are never recomputed; failed and missing ones run again.
Local backend: the driver keeps ``workers`` worker processes (``python -m stoxbar.studies.worker``)
busy, one process per trial, so a crash or a timeout costs only that trial. Each worker runs in
its own process group (Ctrl-C in a terminal reaches only the driver) and is tied to the driver's
life (``PR_SET_PDEATHSIG``: a ``kill -9`` of the driver kills its workers too); on any exit the
driver kills the groups of the workers still running. SIGINT / SIGTERM: no new trial starts, the
running ones are stopped (they rerun on resume), the finished records and the table are kept,
and :class:`StudyInterrupted` is raised (``stoxbar sweep`` exits 130); a second signal stops at once.
Ray backend (``ray_address``): one Ray task per trial (``max_calls=1``: a fresh worker
process each), results come back to this process, which alone writes the directory.

Design: docs/reliability.md §4.

May import: stoxbar.core.{fsio,procs,compat}, stoxbar.studies.{spec,records,worker,table,plots,paired}.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from stoxbar.core import fsio, procs
from stoxbar.core.compat import versions
from stoxbar.studies.records import CHECKSUM_KEY, load_records, read_study_meta, record_checksum, record_problem
from stoxbar.studies.spec import Metrics, Study, StudyError, Trial
from stoxbar.studies.paired import write_paired
from stoxbar.studies.table import write_table
from stoxbar.studies.worker import RESULT_PREFIX

KILL_GRACE_S = 2.0  # SIGTERM -> SIGKILL delay when stopping running workers
POLL_S = 0.01


class StudyInterrupted(Exception):
    """A sweep was stopped by SIGINT / SIGTERM; finished records are kept (``counts``, ``signum``)."""

    def __init__(self, signum: int, counts: Dict[str, int]):
        self.signum, self.counts = signum, counts
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {counts['ok']} ok and {counts['failed']} "
                         f"failed trials kept, {counts['not_run']} not run (run the same command again to resume)")


class _Signals:
    """SIGINT / SIGTERM -> ``signum`` set (first), KeyboardInterrupt (second); main thread only."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def job_for(study: Study, trial: Trial, threads: int = 1) -> Dict[str, Any]:
    """The plain-JSON job a worker needs for ``trial``."""
    return {"study": study.name, "trial": trial.to_dict(), "checkpoint": study.checkpoint,
            "device_preset": study.device_preset, "base": study.base, "metrics": asdict(study.metrics),
            "threads": threads, "task": study.task, "task_args": dict(study.task_args)}


def _prepare(study: Study, out: Path) -> None:
    """Create ``out`` with study.json, or check that it holds this same study."""
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "study.json"
    if meta.exists() or meta.is_symlink():
        saved = read_study_meta(out)["identity"]
        if isinstance(saved.get("metrics"), dict):  # a field added to Metrics since: that study ran at its default
            saved["metrics"] = {**json.loads(json.dumps(asdict(Metrics()))), **saved["metrics"]}
        mine = json.loads(json.dumps(study.identity()))
        diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if diff:
            raise StudyError(f"{out} holds another study (differs in {diff}); resume only the same study there, "
                             "or choose a new output directory")
        return
    fsio.atomic_write_json(meta, {"identity": study.identity(), "checkpoint": study.checkpoint,
                                  "description": study.description,
                                  "source": study.source, "seeds": list(study.seeds), "varied": list(study.varied),
                                  "plot_metrics": list(study.plot_metrics), "pareto": list(study.pareto),
                                  "trials": len(study.trials()),
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()})


def _save(out: Path, record: Dict[str, Any]) -> Dict[str, Any]:
    """Write a trial record atomically; an earlier failed attempt is moved to trials/failed/."""
    why = record_problem(record)
    if why is not None:  # a worker's record that cannot be trusted fails its trial, with the reason
        record = {k: v for k, v in record.items() if k not in ("metrics", CHECKSUM_KEY)}
        record.update(status="failed", error=f"InvalidRecord: {why}")
    record = {**record, CHECKSUM_KEY: record_checksum(record)}
    path = out / "trials" / f"{record['trial_id']}.json"
    if path.exists() or path.is_symlink():
        failed = fsio.check_not_link(out / "trials" / "failed", "study output directory")
        failed.mkdir(exist_ok=True)
        n = len(list(failed.glob(f"{record['trial_id']}.*.json")))
        shutil.move(path, failed / f"{record['trial_id']}.{n}.json")
    fsio.atomic_write_json(path, record)
    return record


def _failed(job: Dict[str, Any], error: str) -> Dict[str, Any]:
    return {**job["trial"], "study": job["study"], "status": "failed", "error": error}


# -- local backend -------------------------------------------------------------------------------
def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    procs.signal_group(proc, sig)


class _Running:
    __slots__ = ("proc", "job", "t0", "out", "err")

    def __init__(self, proc, job, t0, out, err):
        self.proc, self.job, self.t0, self.out, self.err = proc, job, t0, out, err


def _result_of(r: _Running) -> Dict[str, Any]:
    r.out.seek(0)
    r.err.seek(0)
    stdout = r.out.read().decode(errors="replace")
    stderr = r.err.read().decode(errors="replace")
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                return json.loads(line[len(RESULT_PREFIX):])
            except ValueError as exc:  # a truncated line from a killed worker fails this trial only
                return _failed(r.job, f"WorkerError: unreadable result line ({exc})")
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    return _failed(r.job, f"WorkerError: worker process exited with code {r.proc.returncode}: {tail}")


def run_local(jobs: List[Dict[str, Any]], workers: int, timeout_s: Optional[float],
              stop: Optional[_Signals] = None) -> Iterator[Dict[str, Any]]:
    """Run each job in its own worker process, ``workers`` at a time; yield records as they finish.

    Stops launching once ``stop.signum`` is set, then stops the running workers (no record).
    Whatever ends this generator (exhaustion, close, an exception), no worker outlives it.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    prctl, me = procs.pdeathsig(), os.getpid()
    queue, running = deque(jobs), []  # type: ignore[var-annotated]

    def launch(job: Dict[str, Any]) -> _Running:
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        proc = subprocess.Popen([sys.executable, "-m", "stoxbar.studies.worker"], stdin=subprocess.PIPE,
                                stdout=out, stderr=err, env=env, process_group=0,
                                preexec_fn=procs.child_setup(prctl, me))
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except BrokenPipeError:  # died at once: its exit code and stderr tell why
            pass
        return _Running(proc, job, time.monotonic(), out, err)

    def finish(r: _Running) -> None:
        running.remove(r)
        r.out.close()
        r.err.close()

    try:
        while queue or running:
            if stop is not None and stop.signum is not None:
                break
            while queue and len(running) < workers:
                running.append(launch(queue.popleft()))
            progressed = False
            for r in list(running):
                if r.proc.poll() is not None:
                    rec = _result_of(r)
                    finish(r)
                    progressed = True
                    yield rec
                elif timeout_s is not None and time.monotonic() - r.t0 > timeout_s:
                    _kill_group(r.proc)
                    r.proc.wait()
                    finish(r)
                    progressed = True
                    yield _failed(r.job, f"TimeoutError: trial exceeded {timeout_s} s")
            if not progressed:
                time.sleep(POLL_S)
        if running:  # interrupted: ask the workers to stop, then make sure
            for r in running:
                _kill_group(r.proc, signal.SIGTERM)
            deadline = time.monotonic() + KILL_GRACE_S
            while any(r.proc.poll() is None for r in running) and time.monotonic() < deadline:
                time.sleep(POLL_S)
    finally:
        for r in list(running):
            if r.proc.returncode is None:  # not reaped yet, so its pid (= group id) is still its own
                _kill_group(r.proc)
            r.proc.wait()
            finish(r)


# -- Ray backend ---------------------------------------------------------------------------------
def run_ray(jobs: List[Dict[str, Any]], address: str, workers: int,
            stop: Optional[_Signals] = None) -> Iterator[Dict[str, Any]]:
    """Run each job as a Ray task in a fresh worker process; yield records as they finish.

    ``address``: "local" starts a local Ray instance with ``workers`` CPUs, anything else
    (``auto``, ``ray://host:10001``, ``host:6379``) connects to that cluster, whose workers
    must have stoxbar installed (a checkpoint path must exist on them too). Pending tasks are
    cancelled when ``stop.signum`` is set or the generator is closed.
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
    pending: Dict[Any, Dict[str, Any]] = {}
    try:
        task = ray.remote(num_cpus=1, max_calls=1)(run_trial)
        pending = {task.remote(job): job for job in jobs}
        while pending and (stop is None or stop.signum is None):
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
            if not done:
                continue
            job = pending.pop(done[0])
            try:
                rec = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its trial only
                rec = _failed(job, f"{type(exc).__name__}: {exc}")
            yield rec
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort: shutdown ends them anyway
                pass
        if started_here:
            ray.shutdown()


# -- a study -------------------------------------------------------------------------------------
def _append_line(path: Path, line: Dict[str, Any]) -> None:
    with fsio.open_append(path, "study log") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def run_study(study: Study, workers: int = 1, ray_address: Optional[str] = None, timeout_s: Optional[float] = None,
              progress: bool = True, command: Optional[List[str]] = None,
              on_record: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, int]:
    """Run the missing and failed trials of ``study``, then write the table and plots.

    Returns counts: ``trials``, ``skipped`` (already ok), ``ok`` and ``failed`` (this run).
    Raises :class:`StudyInterrupted` after SIGINT / SIGTERM (records and table kept), and
    :class:`~stoxbar.core.fsio.LockedError` if another sweep holds the output directory.
    """
    from tqdm import tqdm

    from stoxbar.studies.plots import make_plots  # matplotlib: imported when a sweep ends, not at import

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StudyError(f"workers = {workers!r}: allowed range is [1, inf)")
    if timeout_s is not None and (ray_address or not isinstance(timeout_s, (int, float))
                                  or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise StudyError(f"timeout = {timeout_s}: must be a finite number > 0 s, and is supported by the local "
                         "backend only")
    out = Path(study.output)
    fsio.check_writable_dir(out, "study output directory")
    command = command or list(sys.argv)
    with fsio.DirLock(out, "study output directory", command):
        _prepare(study, out)
        fsio.check_not_link(out / "trials", "study output directory")
        for sub in ("trials/failed", "plots"):
            fsio.check_not_link(out / sub, "study output directory")
        fsio.check_not_link(out / "invocations.jsonl", "study log")
        fsio.check_writable_dir(out / "trials", "study output directory")
        fsio.clean_temp(out)
        fsio.clean_temp(out / "trials")
        done = {k for k, r in load_records(out).items() if r.get("status") == "ok"}
        trials = study.trials()
        jobs = [job_for(study, t) for t in trials if t.trial_id not in done]
        counts = {"trials": len(trials), "skipped": len(trials) - len(jobs), "ok": 0, "failed": 0}
        bar = tqdm(total=len(jobs), desc=f"study {study.name}", unit="trial", disable=not progress)
        with _Signals() as stop:
            records = (run_ray(jobs, ray_address, workers, stop) if ray_address
                       else run_local(jobs, workers, timeout_s, stop))
            try:
                for rec in records:
                    rec = _save(out, rec)
                    counts["ok" if rec["status"] == "ok" else "failed"] += 1
                    bar.update(1)
                    bar.set_postfix(ok=counts["ok"], failed=counts["failed"])
                    if on_record is not None:
                        on_record(rec)
                    if stop.signum is not None:
                        break
            finally:
                records.close()  # stops and reaps every worker still running
                bar.close()
            signum = stop.signum
        write_table(study, out)
        write_paired(study, out)
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
                "backend": f"ray:{ray_address}" if ray_address else "local", "workers": workers, **counts}
        if signum is not None:
            counts = {**counts, "not_run": len(jobs) - counts["ok"] - counts["failed"]}
            _append_line(out / "invocations.jsonl", {**line, "interrupted": signal.Signals(signum).name,
                                                     "not_run": counts["not_run"]})
            raise StudyInterrupted(signum, counts)
        make_plots(study, out)
        _append_line(out / "invocations.jsonl", line)
    return counts
