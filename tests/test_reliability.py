"""Issue 12: interrupts, locks, atomic writes, bad input and honest plots (real processes, real signals).

* fsio: atomic writes never overwrite unless asked and leave no temp file; a DirLock refuses a
  second holder naming the first, and is free again once its holder is killed with SIGKILL.
* sweeps: SIGINT to a running ``stoxbar sweep`` keeps the finished trials, runs no queued one,
  ends the running worker and exits 130 (while it runs, a second sweep into the same directory is
  refused at once); SIGKILL of the driver leaves no worker alive; a resume ignores and removes a
  stray ``.tmp-*`` file and names a damaged record; an unwritable output directory is refused
  before any trial runs.
* training: a snapshot resume branches into a new run (the parent untouched, the parent recorded);
  a run directory held by another process is refused at once.
* the CLI: every bad input of the issue -> exit 2, one ``stoxbar CMD: error:`` line, no traceback.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from stoxbar.core import fsio
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, CheckpointError, load_agent, save_checkpoint
from stoxbar.scripts.cli import main
from stoxbar.studies import load_study
from stoxbar.studies.records import load_records
from stoxbar.studies.runner import run_study
from stoxbar.core.validation import ConfigError

PY = sys.executable
TINY = ArchConfig(arch="bottleneck", cell="mstpn", hidden=8, bottleneck=16)
STATIC = """
name = "static"
seeds = [0]
[base]
checkpoint = "random"
[[grid]]
"periphery.tile_rows" = {rows}
[metrics]
games = 0
mvm_error_samples = 0
"""


def _env() -> dict:
    """This process's environment with the directory that holds the ``stoxbar`` package on the path."""
    import stoxbar

    root = str(Path(stoxbar.__file__).parent.parent)  # not resolved: the package dir may be a symlink
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def _study_file(tmp_path: Path, rows=(256, 512), name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(STATIC.format(rows=list(rows))))
    return path


def _wait(cond, timeout_s: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _children(pid: int, needle: str = "stoxbar.studies.worker") -> list:
    """Live processes whose parent is ``pid`` and whose command line contains ``needle``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and needle in cmd:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an exited process waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- fsio ------------------------------------------------------------------------------------------
def test_atomic_writes_never_overwrite_unless_asked_and_leave_no_temp(tmp_path):
    p = tmp_path / "a.json"
    fsio.atomic_write_json(p, {"x": 1})
    with pytest.raises(FileExistsError, match="never overwritten"):
        fsio.atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 1}
    fsio.atomic_write_json(p, {"x": 3}, overwrite=True)
    assert json.loads(p.read_text()) == {"x": 3}
    with pytest.raises(ValueError):
        fsio.atomic_write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.json"]  # no temp file, no half file
    (tmp_path / ".tmp-a.json.abc").write_text("{")
    assert fsio.is_temp(tmp_path / ".tmp-a.json.abc") and not fsio.is_temp(p)
    assert [q.name for q in fsio.clean_temp(tmp_path)] == [".tmp-a.json.abc"]


def test_dir_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [PY, "-c", "import sys, time; from stoxbar.core.fsio import DirLock; DirLock(sys.argv[1], 'run').acquire(); "
                   "print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**_env(), "STOXBAR_SKIP_AIHWKIT_CHECK": "1"})
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(fsio.LockedError, match=rf"in use by pid {holder.pid} on "):
            fsio.DirLock(tmp_path, "run").acquire()
        assert time.monotonic() - t0 < 1.0  # refused at once, not after a wait
        holder.send_signal(signal.SIGKILL)  # a crash: no cleanup runs, the lock file stays
        holder.wait()
        assert (tmp_path / fsio.LOCK_NAME).exists()
        with fsio.DirLock(tmp_path, "run") as lock:  # the kernel released the dead holder's lock
            assert lock.holder()["pid"] == os.getpid()
            with pytest.raises(fsio.LockedError):  # also a second lock in the same process
                fsio.DirLock(tmp_path, "run").acquire()
        fsio.DirLock(tmp_path, "run").acquire().release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# -- sweeps ----------------------------------------------------------------------------------------
def test_sigint_keeps_finished_trials_stops_queued_ones_and_exits_130(tmp_path, capsys):
    study = _study_file(tmp_path, rows=(128, 256, 512, 1024, 2048))
    out = tmp_path / "out"
    proc = subprocess.Popen([PY, "-m", "stoxbar.scripts.cli", "sweep", str(study), "--out", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait(lambda: f'"pid": {proc.pid},' in fsio.DirLock(out).path.read_text()
              if fsio.DirLock(out).path.exists() else False, 120, "the sweep to lock its directory")
        # a second sweep into the same directory is refused at once, naming the first
        assert main(["sweep", str(study), "--out", str(out), "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("stoxbar sweep: error: study output directory")
        assert f"in use by pid {proc.pid}" in err[0]
        _wait(lambda: list((out / "trials").glob("p*.json")), 120, "the first finished trial")
        running = _wait(lambda: _children(proc.pid), 30, "the next worker")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted by SIGINT" in stderr
    recs = load_records(out)
    assert 1 <= len(recs) <= 2 and all(r["status"] == "ok" for r in recs.values())  # finished ones kept
    assert not any(_alive(pid) for pid in running)  # the running worker was ended
    line = json.loads((out / "invocations.jsonl").read_text().splitlines()[-1])
    assert line["interrupted"] == "SIGINT" and line["not_run"] == 5 - len(recs)
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(recs)  # the table of what finished
    assert not list(out.rglob(".tmp-*"))
    # the rest runs on resume, nothing twice
    counts = run_study(load_study(str(study), str(out)), workers=2, progress=False)
    assert counts == {"trials": 5, "skipped": len(recs), "ok": 5 - len(recs), "failed": 0}


def test_sigkill_of_the_driver_leaves_no_worker(tmp_path):
    study = _study_file(tmp_path, rows=(128, 256, 512, 1024))
    proc = subprocess.Popen([PY, "-m", "stoxbar.scripts.cli", "sweep", str(study), "--out", str(tmp_path / "out"),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        workers = _wait(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 120, "two workers")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait(lambda: not any(_alive(pid) for pid in workers), 10, "the workers to die with their driver")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _children(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_resume_ignores_and_cleans_stray_temp_files_and_names_a_damaged_record(tmp_path):
    study = load_study(str(_study_file(tmp_path)), str(tmp_path / "out"))
    assert run_study(study, progress=False)["ok"] == 2
    trials = study.output / "trials"
    first = sorted(trials.glob("p*.json"))[0]
    first.unlink()  # a crash in the middle of writing this record left only its temp file
    (trials / f".tmp-{first.name}.x1y2").write_text('{"trial_id": "half')
    (study.output / ".tmp-results.csv.zz").write_text("half")
    assert run_study(study, progress=False) == {"trials": 2, "skipped": 1, "ok": 1, "failed": 0}
    assert not list(study.output.rglob(".tmp-*"))
    first.write_text("{not json")  # a record damaged by hand: named, not a bare JSONDecodeError
    with pytest.raises(Exception, match=rf"{first.name}: not valid JSON"):
        run_study(study, progress=False)


def test_sweep_lock_and_unwritable_output_are_refused_before_any_trial(tmp_path):
    study = load_study(str(_study_file(tmp_path)), str(tmp_path / "out"))
    with fsio.DirLock(study.output, "study output directory"):
        with pytest.raises(fsio.LockedError, match=rf"in use by pid {os.getpid()}"):
            run_study(study, progress=False)
    assert not (study.output / "trials").exists()  # refused before anything ran
    if not os.access("/sys/kernel", os.W_OK) or os.geteuid() == 0:  # sysfs: not writable, even for root
        ro = load_study(str(_study_file(tmp_path)), "/sys/kernel/stoxbar-out")
        with pytest.raises(ConfigError, match="not writable"):
            run_study(ro, progress=False)


# -- training --------------------------------------------------------------------------------------
def _rows(path: Path) -> list:
    with open(path, newline="") as fh:
        return [int(r["update"]) for r in csv.DictReader(fh)]


def test_snapshot_resume_branches_into_a_new_run_and_a_busy_run_is_refused(tmp_path):
    from stoxbar.pong.a2c import TrainConfig, train

    cfg = TrainConfig(arch=TINY, num_envs=2, rollout_len=5, total_steps=40, checkpoint_every=2, log_every=1,
                      snapshot_every=1, runs_dir=str(tmp_path), seed=5)
    run = train(cfg, echo=lambda s: None)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".pt", ".csv")}
    snap = run / "checkpoint-u0000002.pt"
    branch = train(TrainConfig(arch=TINY, total_steps=60), resume=str(snap), echo=lambda s: None)
    assert branch != run and branch.parent == run.parent
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".pt", ".csv")} == before  # parent untouched
    assert _rows(branch / "progress.csv") == [1, 2, 3, 4, 5, 6]  # parent's rows to the snapshot, then its own
    parent = json.loads((branch / "config.json").read_text())["parent"]
    assert parent["update"] == 2 and parent["checkpoint"] == str(snap.resolve())
    assert torch.load(branch / "checkpoint.pt", weights_only=True)["counters"]["update"] == 6
    # another process holds the run: a resume is refused at once, naming it
    holder = subprocess.Popen(
        [PY, "-c", "import sys, time; from stoxbar.core.fsio import DirLock; DirLock(sys.argv[1], 'training run', "
                   "['stoxbar', 'train', '--resume', sys.argv[1]]).acquire(); print('locked', flush=True); "
                   "time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**_env(), "STOXBAR_SKIP_AIHWKIT_CHECK": "1"})
    try:
        assert holder.stdout.readline().strip() == "locked"
        progress = (run / "progress.csv").read_bytes()
        with pytest.raises(fsio.LockedError, match=rf"training run {run} is in use by pid {holder.pid}.*--resume"):
            train(TrainConfig(arch=TINY, total_steps=80), resume=str(run), echo=lambda s: None)
        assert (run / "progress.csv").read_bytes() == progress  # nothing cut, nothing appended
    finally:
        holder.kill()
        holder.wait()


def test_checkpoint_whose_arch_disagrees_with_its_weights(tmp_path):
    agent = PongAgent(TINY)
    path = save_checkpoint(tmp_path / "ck.pt", agent)
    ckpt = torch.load(path, weights_only=True)
    ckpt["arch"]["hidden"] = 16
    torch.save(ckpt, tmp_path / "liar.pt")
    with pytest.raises(CheckpointError, match=r"liar\.pt: weight shapes do not match its architecture"):
        load_agent(tmp_path / "liar.pt")


# -- the CLI: every bad input of the issue --------------------------------------------------------
def _bad_inputs(tmp: Path) -> dict:
    """name -> (argv, text the one error line must contain); files the cases need are made here."""
    tmp.mkdir(parents=True, exist_ok=True)
    taken = tmp / "taken.png"
    taken.write_bytes(b"x")
    (tmp / "taken.json").write_text("{}")
    agent = PongAgent(TINY)
    good = save_checkpoint(tmp / "tiny.pt", agent)
    ckpt = torch.load(good, weights_only=True)
    ckpt["arch"]["hidden"] = 16
    torch.save(ckpt, tmp / "liar.pt")

    def study(name: str, body: str) -> str:
        p = tmp / f"{name}.toml"
        p.write_text(textwrap.dedent(f'name = "{name}"\nseeds = [0]\n' + body))
        return str(p)

    static = "[base]\ncheckpoint = \"random\"\n[metrics]\ngames = 0\nmvm_error_samples = 0\n"
    ok = study("ok", static + '[[grid]]\n"periphery.tile_rows" = [256]\n')
    sweep = ["sweep", ok, "--out", str(tmp / "sw")]
    return {
        "play --max-steps -5": (["play", "--max-steps", "-5"], "--max-steps = -5"),
        "play --games 0": (["play", "--games", "0"], "--games = 0"),
        "play --json unwritable": (["play", "--json", "/sys/kernel/stoxbar.json"], "--json"),
        "play --json taken": (["play", "--json", str(tmp / "taken.json")], "exists"),
        "play --json no dir": (["play", "--json", str(tmp / "no" / "r.json")], "does not exist"),
        "play --checkpoint liar": (["play", "--checkpoint", str(tmp / "liar.pt")], "weight shapes do not match"),
        "play --tile 0x5": (["play", "--tile", "0x5", "--max-steps", "1"], "--tile = '0x5'"),
        "play --gpu-measured missing": (["play", "--gpu-measured", str(tmp / "no.json")], "--gpu-measured"),
        "play --gpu-measured not one": (["play", "--gpu-measured", str(tmp / "taken.json")], "measurement schema"),
        "energy --plot taken": (["energy", "--layer", "8x8", "--plot", str(taken)], "never overwritten"),
        "energy --tile 0x5": (["energy", "--tile", "0x5"], "--tile = '0x5'"),
        "energy --adc-bits 1": (["energy", "--adc-bits", "1"], "--adc-bits 1: adc.bits = 1"),
        "energy --dt 1e300": (["energy", "--dt", "1e300"], "--dt = 1e+300"),
        "energy --dt nan": (["energy", "--dt", "nan"], "--dt = nan"),
        "energy --preset": (["energy", "--preset", "nope"], "--device = 'nope'"),
        "device --out taken": (["device", "--out", str(taken)], "never overwritten"),
        "report missing": (["report", str(tmp / "missing")], "expected a study directory"),
        "report bad json": (["report", str(tmp / "taken.json")], "not a `stoxbar play --json` report"),
        "compare missing": (["compare", str(tmp / "missing.json"), str(tmp / "taken.json")],
                            "missing.json: no such file (expected a JSON file)"),
        "compare a directory": (["compare", str(tmp), str(tmp / "taken.json")], ": a directory, not a JSON file"),
        "sweep --timeout nan": ([*sweep, "--timeout", "nan"], "argument --timeout"),
        "sweep --timeout -1": ([*sweep, "--timeout", "-1"], "argument --timeout"),
        "sweep --workers 0": ([*sweep, "--workers", "0"], "argument --workers: 0"),
        "sweep no such study": (["sweep", str(tmp / "nope.toml")], "no such file"),
        "sweep read-only out": (["sweep", ok, "--out", "/sys/kernel/stoxbar-out"], "not writable"),
        "sweep random [0, inf]": (["sweep", study("inf", static + '[random]\nn = 2\n"device.read_noise_std" = '
                                                  "{ uniform = [0.0, inf] }\n"), "--dry-run"],
                                  "need finite numbers"),
        "sweep unknown plot metric": (["sweep", study("pm", static + '[[grid]]\n"periphery.tile_rows" = [256]\n'
                                                      '[plots]\nmetrics = ["score_maen"]\n'), "--dry-run"],
                                      "unknown metric 'score_maen'"),
        "sweep plot metric never measured": (["sweep", study("nm", static + '[[grid]]\n"periphery.tile_rows" = [256]\n'
                                                             '[plots]\nmetrics = ["score_mean"]\n'), "--dry-run"],
                                             "'score_mean' needs [metrics] games >= 1"),
        "sweep 10^6 points": (["sweep", study("huge", static + "[[grid]]\n" + "".join(
            f'"periphery.{k}" = {list(range(1, 101))}\n' for k in ("tile_rows", "tile_cols", "adc.share"))),
            "--dry-run"], "1000000 trials is more than the limit of 10000; "),
        "sweep base checkpoint liar": (["sweep", study("liar", f'[base]\ncheckpoint = "{tmp / "liar.pt"}"\n'
                                                       '[[grid]]\n"periphery.tile_rows" = [256]\n'), "--dry-run"],
                                       "weight shapes do not match"),
        "train --resume missing": (["train", "--resume", str(tmp / "no-run")], "no such run directory"),
        "train --envs 0": (["train", "--envs", "0"], "num_envs = 0"),
        "curves missing run": (["curves", str(tmp / "no-run"), "--out", str(tmp / "c.png")], "not a training run"),
    }


CASES = ["play --max-steps -5", "play --games 0", "play --json unwritable", "play --json taken", "play --json no dir",
         "play --checkpoint liar", "play --tile 0x5", "energy --plot taken", "energy --tile 0x5",
         "energy --adc-bits 1", "energy --dt 1e300", "energy --dt nan", "energy --preset", "device --out taken",
         "report missing", "report bad json", "compare missing", "compare a directory", "sweep --timeout nan", "sweep --timeout -1", "sweep --workers 0",
         "sweep no such study", "sweep read-only out", "sweep random [0, inf]", "sweep unknown plot metric", "sweep plot metric never measured",
         "sweep 10^6 points", "sweep base checkpoint liar", "train --resume missing", "train --envs 0",
         "curves missing run"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", CASES)
def test_every_bad_input_is_one_line_exit_2_no_traceback(case, bad_inputs, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    argv, needle = bad_inputs[case]
    t0 = time.monotonic()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        rc = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    cmd = argv[0]
    assert rc == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith(f"stoxbar {cmd}: error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert not list(tmp_path.iterdir())  # no energy.png, device.png or report in the CWD
    assert time.monotonic() - t0 < 60  # refused before the work, not after it


def test_debug_shows_the_traceback_and_version(capsys, tmp_path):
    assert main(["energy", "--tile", "0x5", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("stoxbar energy: error: --tile")
    proc = subprocess.run([PY, "-m", "stoxbar.scripts.cli", "--version"], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0 and proc.stdout.startswith("stoxbar 0.") and "torch" in proc.stdout


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.exists(), reason="no shipped checkpoint")
def test_play_flags_games_cut_short_and_never_prints_inf(tmp_path, capsys):
    js = tmp_path / "p.json"
    assert main(["play", "--max-steps", "4", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "cut short at --max-steps 4" in text and "inf" not in text
    rep = json.loads(js.read_text())
    assert rep["truncated_games"] == [0] and rep["max_steps"] == 4
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("boundary"))
    assert [line.split()[0] for line in lines[head + 1:head + 4]] == ["synapse_only", "array", "system"]
    assert main(["report", str(js)]) == 0
    page = (tmp_path / "p.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "cut short" in page and "\\n" not in page
    order = [page.index(f"<td>{b}</td>") for b in ("synapse_only", "array", "system", "GPU roofline")]
    assert set(rep["gpu_tiers"]) == {"roofline", "latency", "dedicated", "measured_b1", "measured_b256", "digital"}
    assert "GPU measured, NVIDIA H200, 1 game at a time" in text and "<td>GPU measured, batch 256</td>" in page
    assert order == sorted(order)


# -- plots, read as a reader would ---------------------------------------------------------------
def _rows_for(param, values, metric, ys, series=None):
    rows = []
    for i, (x, y) in enumerate(zip(values, ys)):
        r = {"status": "ok", param: x, metric: y}
        if series:
            r[series[0]] = series[1][i]
        rows.append(r)
    return rows


def test_plots_use_human_units_numeric_order_log_axes_and_no_offsets():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stoxbar.studies.plots import display_unit, metric_figure, sort_key

    assert display_unit("m^2", [2.5e-7, 1.1e-6]) == ("mm^2", 1e6)
    assert display_unit("J", [3e-9, 5e-9])[0] == "nJ" and display_unit("s", [2e-4])[0] == "us"
    assert sorted([2048, 128, 1024, "x"], key=sort_key) == [128, 1024, 2048, "x"]
    # area vs tile rows, one line per tile_cols: mm^2, a log2 x axis, the legend in numeric order
    rows_ = [128, 256, 1024, 2048] * 3
    cols = [1024] * 4 + [128] * 4 + [2048] * 4
    rows = _rows_for("periphery.tile_rows", rows_, "area_m2", [1e-6 * (1 + i) for i in range(12)],
                     ("periphery.tile_cols", cols))
    fig = metric_figure(plt, rows, "periphery.tile_rows", "periphery.tile_cols", "area_m2", "t")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "STP layer area (area_m2) [mm^2]" and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"tile_cols = {c}" for c in (128, 1024, 2048)]
    plt.close(fig)
    # 2.9230 vs 2.9235: no offset, and the 0.02 % difference is not blown up to the full height
    rows = _rows_for("periphery.adc.bits", [4, 6], "score_mean", [2.9230, 2.9235])
    fig = metric_figure(plt, rows, "periphery.adc.bits", None, "score_mean", "t")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    lo, hi = ax.get_ylim()
    assert hi - lo >= 0.02 * 2.9235 * 0.999
    plt.close(fig)
    # energies over decades: a log y axis; categorical x: markers, no joining line
    rows = _rows_for("periphery.dac.mode", ["pwm", "bit_serial", "multibit"], "energy_array_j_per_game",
                     [1e-9, 1e-6, 1e-8])
    fig = metric_figure(plt, rows, "periphery.dac.mode", None, "energy_array_j_per_game", "t")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert all(line.get_linestyle() in ("None", "none", "") for line in ax.get_lines() if len(line.get_xdata()) > 1)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bit_serial", "multibit", "pwm"]
    plt.close(fig)


def test_study_size_limit_has_an_explicit_override(tmp_path, capsys):
    path = _study_file(tmp_path, rows=(128, 256, 512))
    with pytest.raises(ConfigError, match=r"3 trials is more than the limit of 2.*--max-trials 3"):
        load_study(str(path), max_trials=2)
    assert len(load_study(str(path), max_trials=3).trials()) == 3
    assert main(["sweep", str(path), "--dry-run", "--max-trials", "3"]) == 0
    assert main(["sweep", str(path), "--dry-run", "--max-trials", "2"]) == 2
    assert "--max-trials 3" in capsys.readouterr().err


def test_energy_writes_nothing_into_the_cwd_by_default_and_device_never_overwrites(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["energy", "--layer", "8x8"]) == 0
    assert not list(tmp_path.iterdir())  # no energy.png unless --plot asks for one
    assert main(["device"]) == 0 and main(["device"]) == 0  # the default name is never reused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device-2.png", "device.png"]
    assert "wrote device-2.png" in capsys.readouterr().out


def test_an_unreadable_worker_result_line_fails_that_trial_only():
    """A truncated result line (a worker killed mid-write) becomes a failed record, not a driver crash."""
    import io
    import types

    from stoxbar.studies import runner

    out = io.BytesIO(f"{runner.RESULT_PREFIX}{{\"status\": \"ok\", \"metr".encode())
    proc = types.SimpleNamespace(returncode=-9)
    job = {"trial": {"id": "p0-s0", "point": "p0", "seed": 0, "params": {}}, "study": "s"}
    rec = runner._result_of(runner._Running(proc, job, 0.0, out, io.BytesIO(b"")))
    assert rec["status"] == "failed" and "unreadable result line" in rec["error"]
