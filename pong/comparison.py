"""The training comparison of issue 16: four agents x several seeds at one frame budget, resumable,
and its report (learning curves with the spread across seeds, frames to +18, final scores).

Agents (docs/stpn.md §9): ``mstpn`` (the paper's m-STPN), ``stp_only`` (no h feedback: the
synapses' short-term state is the only memory of the plastic layer), ``stpn`` (the float STPN),
``recurrent`` (Gamma fixed at 0: a plain recurrent network). Every run is an ordinary training run
(:func:`stoxbar.pong.a2c.train`) in ``ROOT/AGENT/seedS/train-*``, trained with sticky actions
(p = 0.25, the evaluation protocol, docs/stpn.md §8) and the collapse guard (stabilised A2C,
``rollback_drop``). :func:`run_comparison` trains the unfinished runs in turns of
``chunk_minutes``, the run with the fewest frames first, so that an interrupted session leaves every
run at a similar budget and the next session resumes all of them (``--first AGENT:SEED`` trains
chosen runs to the budget before the others; ``--workers N`` trains N runs at once, each in a worker
process of its own; ``ROOT/comparison.json`` holds the settings; a second call with other settings is
refused, but for the spike guard ``grad_spike``, which each run takes at its next turn).
:func:`comparison_report` reads the runs' ``episodes.csv`` (sampled actions, as in training) and writes one
figure and one table; greedy evaluation and the
ablation rows come from ``stoxbar play`` / ``stoxbar sweep plasticity_ablation --checkpoint`` on each run's
checkpoint (a study in ``ROOT/ablation/AGENT/seedS`` is added to the table: :func:`ablation_lines`).

May import: numpy, stoxbar.core.{fsio,procs,validation}, stoxbar.pong.{a2c,ablate,agent,checkpoint,env,scores}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from stoxbar.core import fsio, procs
from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range
from stoxbar.pong.a2c import (ALGO_DEFAULTS, TrainConfig, TrainingInterrupted, check_grad_spike, figure_bytes,
                              run_episodes, running_mean, train)
from stoxbar.pong.agent import ArchConfig
from stoxbar.pong.ablate import ABLATIONS
from stoxbar.pong.checkpoint import CheckpointError, load_checkpoint
from stoxbar.pong.env import EVAL_STICKY, FRAMESKIP
from stoxbar.pong.scores import format_interval, paired_summary, scores_by_seed

AGENTS: Dict[str, Dict[str, Any]] = {  # ArchConfig fields of each agent (docs/stpn.md §9)
    "mstpn": {},
    "stp_only": {"h_feedback": False},
    "stpn": {"cell": "stpn"},
    "recurrent": {"plastic": False},
}
TARGET_SCORE = 18.0  # "frames to reach +18" (issue 16)
SPIKE_FACTOR = 20.0  # a logged interval whose mean pre-clip gradient norm is this far above the run's median: a spike
SETTINGS = "comparison.json"
MAX_WORKERS = 16  # runs trained at once (--workers); assumption: no more than a machine's cores
WORKER_POLL_S = 1.0  # how often the driver looks at its workers
WORKER_INTERRUPTED = 130  # a worker's exit code after a signal (its checkpoint written), as stoxbar train's


@dataclass(frozen=True)
class ComparisonConfig:
    """What the comparison trains: ``agents`` x ``seeds`` runs of ``frames`` emulator frames each."""

    agents: Tuple[str, ...] = tuple(AGENTS)
    seeds: Tuple[int, ...] = (0, 1, 2)
    frames: float = 10e6  # per run (issue 16: >= 10 M)
    sticky: float = EVAL_STICKY  # training with the evaluation's sticky actions
    rollback_drop: float = 10.0  # collapse guard (assumption: a 10-point fall of the 10-game mean is a collapse)
    lr: float = 7e-4  # docs/stpn.md 5.4
    arch: str = "paper"
    hidden: int = 64  # cell units (ArchConfig)
    bottleneck: int = 256  # arch "bottleneck" only (ArchConfig)
    num_envs: int = 16  # docs/stpn.md 5.4
    algo: str = "a2c"  # "a2c" or "ppo" (docs/stpn.md §11: rollout, GAE lambda and grad clip then PPO's defaults)
    # the spike guard of every run (TrainConfig.grad_spike, docs/stpn.md §11.1); the one setting a comparison may
    # change as it goes: each run takes it at its next turn (its progress.csv logs what the guard skipped)
    grad_spike: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "agents", tuple(self.agents))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.agents:
            raise ConfigError("agents: empty; allowed: " + ", ".join(AGENTS))
        for a in self.agents:
            if a not in AGENTS:
                raise ConfigError(f"agents: {a!r} unknown; allowed: {', '.join(AGENTS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds = {list(self.seeds)}: give one or more distinct seeds")
        for s in self.seeds:
            check_int("seeds", s, 0, 2**31 - 1)
        check_range("frames", self.frames, FRAMESKIP, 1e10)
        check_range("rollback_drop", self.rollback_drop, 0.0, 42.0)
        check_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        ArchConfig(arch=self.arch, hidden=self.hidden, bottleneck=self.bottleneck)  # checks them
        check_int("num_envs", self.num_envs, 1, 1024)
        check_choice("algo", self.algo, tuple(ALGO_DEFAULTS))
        check_grad_spike(self.grad_spike)

    def train_config(self, agent: str, seed: int, runs_dir: Path, threads: int, env_threads: int,
                     max_minutes: float, group_threads: bool = False) -> TrainConfig:
        arch = ArchConfig(**{"arch": self.arch, "hidden": self.hidden, "bottleneck": self.bottleneck, **AGENTS[agent]})
        return TrainConfig(arch=arch, num_envs=self.num_envs, total_steps=int(self.frames // FRAMESKIP), lr=self.lr,
                           seed=seed,
                           threads=threads, env_threads=env_threads, max_minutes=max_minutes,
                           env_groups=2 if group_threads else 1, group_threads=group_threads,
                           runs_dir=str(runs_dir), sticky=self.sticky, rollback_drop=self.rollback_drop,
                           algo=self.algo, rollout_len=ALGO_DEFAULTS[self.algo]["rollout_len"],
                           gae_lambda=ALGO_DEFAULTS[self.algo]["gae_lambda"],
                           max_grad_norm=ALGO_DEFAULTS[self.algo]["max_grad_norm"], grad_spike=self.grad_spike)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(agents=list(self.agents), seeds=list(self.seeds))
        return d


def run_of(root: Path, agent: str, seed: int) -> Optional[Path]:
    """The training run directory of (agent, seed) under ``root`` (None before its first chunk)."""
    runs = sorted(p for p in (root / agent / f"seed{seed}").glob("train-*") if (p / "checkpoint.pt").is_file())
    return runs[-1] if runs else None


def _steps_done(run: Optional[Path]) -> int:
    return 0 if run is None else int(load_checkpoint(run / "checkpoint.pt")["counters"]["steps"])


def saved_settings(root: Path) -> Optional[ComparisonConfig]:
    """ROOT/comparison.json as a ComparisonConfig (None before the comparison's first start)."""
    path = Path(root) / SETTINGS
    if not path.exists():
        return None
    try:  # a comparison saved before a field existed has that field's default
        return ComparisonConfig(**fsio.read_json(path))
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{path}: not a comparison's settings ({exc})") from None


def _settings(root: Path, cfg: ComparisonConfig, echo: Callable[[str], None] = print) -> None:
    """Write ROOT/comparison.json the first time; later calls must use the same settings, but for
    ``grad_spike`` (written anew; each run takes it at its next turn)."""
    path = root / SETTINGS
    saved_cfg = saved_settings(root)
    if saved_cfg is not None:
        saved = saved_cfg.to_dict()
        if dict(saved, grad_spike=cfg.grad_spike) != cfg.to_dict():
            raise ConfigError(f"{path}: this comparison was started with other settings ({saved}); "
                              "continue it with those, or choose a new directory")
        if saved_cfg.grad_spike != cfg.grad_spike:
            fsio.atomic_write_json(path, cfg.to_dict(), overwrite=True)  # the settings file, not a result
            echo(f"comparison: grad_spike {saved_cfg.grad_spike:g} -> {cfg.grad_spike:g} (each run from its next turn)")
    else:
        root.mkdir(parents=True, exist_ok=True)
        fsio.atomic_write_json(path, cfg.to_dict())


def parse_runs(cfg: ComparisonConfig, names: Sequence[str]) -> List[Tuple[str, int]]:
    """``AGENT:SEED`` names (``--first``) as (agent, seed) pairs of the comparison ``cfg``."""
    runs = []
    for name in names:
        agent, _, seed = str(name).partition(":")
        if agent not in cfg.agents or not seed.isdigit() or int(seed) not in cfg.seeds:
            raise ConfigError(f"first: {name!r} is not a run of this comparison; allowed: AGENT:SEED with AGENT of "
                              f"{', '.join(cfg.agents)} and SEED of {', '.join(map(str, cfg.seeds))}")
        runs.append((agent, int(seed)))
    return runs


def run_comparison(root: Path, cfg: ComparisonConfig, chunk_minutes: float = 20.0, threads: int = 1,
                   env_threads: int = 1, echo: Callable[[str], None] = print, group_threads: bool = False,
                   first: Sequence[Tuple[str, int]] = (), workers: int = 1) -> bool:
    """Train the unfinished run with the fewest frames for ``chunk_minutes``, again and again, until
    all reach the budget (module docstring); returns True when all are finished. The runs in ``first``
    ((agent, seed) pairs) are trained to the budget before the others, in that order (a scheduling
    choice, not a setting: the runs and their budgets stay those of ``cfg``). A signal stops the
    run in progress with its checkpoint (:class:`stoxbar.pong.a2c.TrainingInterrupted` propagates).

    ``workers`` > 1: that many runs train at once, each in a worker process of its own (``threads``
    torch threads, one emulator group), the next run in the order above starting as soon as one
    ends its turn (:func:`_run_workers`)."""
    check_range("chunk_minutes", chunk_minutes, 0.0, None, lo_open=True)
    check_int("workers", workers, 1, MAX_WORKERS)
    if workers > 1 and group_threads:
        raise ConfigError(f"group_threads: with workers = {workers} each run trains in a process of its own; "
                          "give --workers or --group-threads, not both")
    root = Path(root)
    _settings(root, cfg, echo)
    if workers > 1:
        return _run_workers(root, cfg, chunk_minutes, threads, env_threads, echo, first, workers)
    while True:
        pick = _next_run(root, cfg, first, busy=())
        if pick is None:
            return True
        agent, seed, steps = pick
        echo(_turn_line(cfg, agent, seed, steps, chunk_minutes))
        _train_turn(root, cfg, agent, seed, threads, env_threads, chunk_minutes, group_threads)


def _train_turn(root: Path, cfg: ComparisonConfig, agent: str, seed: int, threads: int, env_threads: int,
                minutes: float, group_threads: bool = False) -> None:
    """Train run (agent, seed) for ``minutes``, resuming its run directory if it has one."""
    run = run_of(root, agent, seed)
    tc = cfg.train_config(agent, seed, root / agent / f"seed{seed}", threads, env_threads, minutes, group_threads)
    train(tc, resume=str(run) if run is not None else None, echo=lambda s: None, resume_overrides=("grad_spike",))


def _next_run(root: Path, cfg: ComparisonConfig, first: Sequence[Tuple[str, int]],
              busy: Sequence[Tuple[str, int]]) -> Optional[Tuple[str, int, int]]:
    """(agent, seed, steps done) of the run to train next among the unfinished runs not in ``busy``:
    the first-listed of ``first``, else the run furthest behind (ties: the listed order), so that
    sessions which stop at any point leave the runs at nearly equal budgets. None if there is none."""
    total = int(cfg.frames // FRAMESKIP)
    done = {(a, s): _steps_done(run_of(root, a, s)) for a in cfg.agents for s in cfg.seeds if (a, s) not in busy}
    todo = [k for k, n in done.items() if n < total]
    if not todo:
        return None
    key = next((k for k in first if k in todo), None) or min(todo, key=lambda k: done[k])
    return key[0], key[1], done[key]


def _turn_line(cfg: ComparisonConfig, agent: str, seed: int, steps: int, minutes: float) -> str:
    return (f"comparison: {agent} seed {seed}: {steps * FRAMESKIP / 1e6:.3g} of {cfg.frames / 1e6:.3g} M frames; "
            f"training {minutes:g} min")


class ComparisonInterrupted(TrainingInterrupted):
    """``run_comparison`` with workers stopped by SIGINT / SIGTERM after its runs in progress wrote their
    checkpoints (``runs``: (agent, seed) pairs)."""

    def __init__(self, signum: int, runs: Sequence[Tuple[str, int]]):
        self.run_dir, self.signum, self.update, self.runs = None, signum, None, list(runs)
        Exception.__init__(self, f"interrupted by {signal.Signals(signum).name}; the runs in progress ("
                                 + (", ".join(f"{a} seed {s}" for a, s in runs) or "none")
                                 + ") finished their update and saved their checkpoints")


def _run_workers(root: Path, cfg: ComparisonConfig, chunk_minutes: float, threads: int, env_threads: int,
                 echo: Callable[[str], None], first: Sequence[Tuple[str, int]], workers: int) -> bool:
    """``run_comparison`` with ``workers`` runs at once: each turn is ``python -m stoxbar.pong.comparison``
    reading its job (JSON on stdin: data, no code) and training one run for ``chunk_minutes``. Each
    worker has its own process group (Ctrl-C in a terminal reaches only this driver) and receives SIGINT
    if the driver dies (``kill -9`` included: it finishes its update and checkpoints). On SIGINT /
    SIGTERM the driver starts no new turn, passes SIGINT to its workers once, waits for their
    checkpoints and raises :class:`ComparisonInterrupted`; a second signal passes a second SIGINT (a
    worker then stops at once, losing the update in progress, as ``stoxbar train`` does)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    prctl, me = procs.pdeathsig(), os.getpid()
    running: Dict[Tuple[str, int], subprocess.Popen] = {}
    caught: List[int] = []
    stopped: List[Tuple[str, int]] = []

    def on_signal(signum, frame):
        caught.append(signum)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            while True:
                while len(running) < workers:
                    pick = _next_run(root, cfg, first, busy=tuple(running))
                    if pick is None:
                        break
                    agent, seed, steps = pick
                    job = {"root": str(root), "settings": cfg.to_dict(), "agent": agent, "seed": seed,
                           "threads": threads, "env_threads": env_threads, "minutes": chunk_minutes}
                    proc = subprocess.Popen([sys.executable, "-m", "stoxbar.pong.comparison"], stdin=subprocess.PIPE,
                                            env=env, process_group=0,
                                            preexec_fn=procs.child_setup(prctl, me, signal.SIGINT))
                    running[agent, seed] = proc
                    echo(_turn_line(cfg, agent, seed, steps, chunk_minutes) + f" (worker process {proc.pid})")
                    try:
                        proc.stdin.write(json.dumps(job).encode())
                        proc.stdin.close()
                    except BrokenPipeError:  # died at once: its exit code and message come next
                        pass
                if not running:
                    return True
                time.sleep(WORKER_POLL_S)
                for (agent, seed), proc in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del running[agent, seed]
                    if code == WORKER_INTERRUPTED:  # a signal sent to the worker itself: stop the others too
                        stopped.append((agent, seed))
                        caught.append(signal.SIGINT)
                        raise KeyboardInterrupt
                    if code != 0:
                        raise ConfigError(f"comparison: the worker training {agent} seed {seed} exited with code "
                                          f"{code} (its message above); its last checkpoint is kept")
        except KeyboardInterrupt:
            for proc in running.values():
                procs.signal_group(proc, signal.SIGINT)
            try:
                for proc in running.values():
                    proc.wait()
            except KeyboardInterrupt:  # a second signal: the workers stop at once
                for proc in running.values():
                    procs.signal_group(proc, signal.SIGINT)
                for proc in running.values():
                    proc.wait()
            raise ComparisonInterrupted(caught[0] if caught else signal.SIGINT, stopped + list(running)) from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for proc in running.values():  # an error above: no worker outlives the driver
            if proc.poll() is None:
                procs.signal_group(proc, signal.SIGINT)
                proc.wait()


def _worker_main() -> int:
    """One turn of :func:`_run_workers` (``python -m stoxbar.pong.comparison``, the job on stdin);
    exit 0 after the turn, 130 if interrupted (checkpoint written), 2 on a bad job."""
    try:
        job = json.loads(sys.stdin.read())
        cfg = ComparisonConfig(**job["settings"])
        agent, seed = job["agent"], int(job["seed"])
        if agent not in cfg.agents or seed not in cfg.seeds:
            raise ConfigError(f"job: {agent} seed {seed} is not a run of this comparison")
        _train_turn(Path(job["root"]), cfg, agent, seed, int(job["threads"]), int(job["env_threads"]),
                    float(job["minutes"]))
    except TrainingInterrupted:
        return WORKER_INTERRUPTED
    except (ConfigError, CheckpointError, OSError, ValueError, KeyError, TypeError) as exc:
        print(f"stoxbar train-comparison worker: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _curve(frames: np.ndarray, ret: np.ndarray, window: int, grid: np.ndarray
           ) -> Tuple[np.ndarray, Optional[float]]:
    """(running mean over ``window`` games of a run's (frames, return) on ``grid``, first frame where it
    reaches TARGET_SCORE)."""
    if len(ret) == 0:
        return np.full_like(grid, np.nan), None
    mean = running_mean(ret, window)
    f = frames[len(ret) - len(mean):]
    hit = np.nonzero(mean >= TARGET_SCORE)[0]
    on_grid = np.interp(grid, f, mean, left=np.nan, right=np.nan)
    return on_grid, (float(f[hit[0]]) if len(hit) else None)


def _mean_by(frames: np.ndarray, ret: np.ndarray, window: int, budget: float) -> float:
    last = ret[frames <= budget][-window:]
    return float(last.mean()) if len(last) else float("nan")


def mean_at_budget(run: Path, window: int, budget: float) -> float:
    """Mean return of the last ``window`` training games that ended by ``budget`` frames (nan if none)."""
    return _mean_by(*run_episodes(run), window, budget)


def gradient_spikes(run: Path) -> Tuple[int, int]:
    """(logged intervals whose mean pre-clip gradient norm exceeds SPIKE_FACTOR x the run's median, optimiser steps
    the spike guard skipped) of a run's progress.csv (docs/stpn.md §11.1; the skips are logged since session 26)."""
    path = run / "progress.csv"
    if not path.exists():
        return 0, 0
    rows = fsio.read_csv(path, required=("grad_norm",), torn_tail_ok=True)
    norms = np.array([fsio.csv_number(path, r, "grad_norm", i) for i, r in enumerate(rows, 2)])
    skips = sum(fsio.csv_number(path, r, "grad_skips", i) for i, r in enumerate(rows, 2) if r.get("grad_skips"))
    spikes = int((norms > SPIKE_FACTOR * np.median(norms)).sum()) if len(norms) else 0
    return spikes, int(skips)


def comparison_report(root: Path, window: int = 100, points: int = 200) -> Dict[str, Any]:
    """Learning curves (``window``-game mean vs frames: mean across seeds, band = min..max) into
    ROOT/comparison.png and a table into ROOT/comparison.md (both replaced); returns the numbers.

    Runs stopped at different frames are compared at the equal budget too: every run's ``window``-game
    mean at the fewest frames any run has done (``equal_budget_frames``; ``at_budget`` per agent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    saved = fsio.read_json(root / SETTINGS)
    cfg = ComparisonConfig(**saved)
    grid = np.linspace(0, cfg.frames, points)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    rows: Dict[str, Any] = {}
    runs = {(a, sd): run_of(root, a, sd) for a in cfg.agents for sd in cfg.seeds}
    done = {key: _steps_done(r) * FRAMESKIP for key, r in runs.items() if r is not None}  # frames
    budget = min(done.values(), default=0)
    for agent in cfg.agents:
        curves, finals, hits, frames_done = [], [], [], []
        at_budget, spikes = [], []
        for seed in cfg.seeds:
            run = runs[(agent, seed)]
            if run is None:
                continue
            frames, ret = run_episodes(run)
            on_grid, hit = _curve(frames, ret, window, grid)
            curves.append(on_grid)
            finals.append(float(ret[-window:].mean()) if len(ret) else float("nan"))
            hits.append(hit)
            frames_done.append(done[(agent, seed)])
            at_budget.append(_mean_by(frames, ret, window, budget))
            spikes.append(gradient_spikes(run))
        if not curves:
            continue
        c = np.array(curves)
        with np.errstate(all="ignore"):
            ok = np.isfinite(c).any(0)
            lo, hi = np.nanmin(np.where(ok, c, 0), 0), np.nanmax(np.where(ok, c, 0), 0)
            mid = np.nanmean(np.where(ok, c, 0), 0)
        line, = ax.plot(grid[ok], mid[ok], lw=2, label=f"{agent} ({len(curves)} seeds)")
        ax.fill_between(grid[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2)
        rows[agent] = {"seeds": len(curves), "frames_done": frames_done, "final_mean": float(np.mean(finals)),
                       "final_per_seed": finals, "frames_to_target": hits, "equal_budget_frames": budget,
                       "at_budget_per_seed": at_budget, "at_budget_mean": float(np.mean(at_budget)),
                       "gradient_spikes_per_seed": spikes}
    ax.axhline(TARGET_SCORE, color="k", ls=":", lw=1)
    ax.set_xlabel("emulator frames")
    ax.set_ylabel(f"mean return of the last {window} training games")
    ax.set_ylim(-21.5, 21.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"training comparison (sticky {cfg.sticky:g}; band: min..max over seeds)")
    fig.tight_layout()
    fsio.atomic_write_bytes(root / "comparison.png", figure_bytes(fig), overwrite=True)
    lines = [f"| agent | seeds | frames done (M) | final {window}-game mean (per seed) | {window}-game mean at the "
             f"equal budget of {budget / 1e6:.2f} M frames (per seed) | frames to +{TARGET_SCORE:g} (M) | gradient "
             f"spikes: logged intervals > {SPIKE_FACTOR:g}x the median norm / steps skipped (per seed) |",
             "|---|---|---|---|---|---|---|"]
    for agent, r in rows.items():
        hits = ", ".join("not reached" if h is None else f"{h / 1e6:.1f}" for h in r["frames_to_target"])
        lines.append(f"| {agent} | {r['seeds']} | {', '.join(f'{f / 1e6:.2f}' for f in r['frames_done'])} | "
                     f"{r['final_mean']:+.2f} ({', '.join(f'{v:+.1f}' for v in r['final_per_seed'])}) | "
                     f"{r['at_budget_mean']:+.2f} ({', '.join(f'{v:+.1f}' for v in r['at_budget_per_seed'])}) | "
                     f"{hits} | {', '.join(f'{n} / {k}' for n, k in r['gradient_spikes_per_seed'])} |")
    lines += ablation_lines(root, cfg)
    fsio.atomic_write_text(root / "comparison.md", "\n".join(lines) + "\n", overwrite=True)
    return rows


ABLATION_DIR = "ablation"  # ROOT/ablation/AGENT/seedS: a plasticity_ablation study of that run's checkpoint
# (ROOT/ablation/AGENT/seedS+NAME: a later study of the same checkpoint adding ablations, e.g. one added since)
ABLATION_COLUMNS = tuple(a for a in ABLATIONS if a != "none")


def _backend(row: Dict[str, str]) -> str:
    """A study table row's backend (``agent.backend``; empty for the chip rows, which do not set it)."""
    return row.get("agent.backend") or "chip"


def _ablation_rows(root: Path, cfg: ComparisonConfig) -> List[Dict[str, Any]]:
    """Every run's finished ablation study (ROOT/ablation/AGENT/seedS, ``stoxbar sweep plasticity_ablation
    --checkpoint RUN/checkpoint.pt --out ...``, with ``[paired]``) as one dict per backend: agent, seed,
    frames (of the checkpoint the study played, its sha256 checked), backend, the intact trial's table row,
    each ablation's paired row by name and (chip) the intact agent's chip - float cell (:func:`_chip_cost`).
    Studies in ``seedS+NAME`` of the same checkpoint (same sha256) add the ablations the first one lacks;
    the first study's row of an ablation wins."""
    out: List[Dict[str, Any]] = []
    for agent in cfg.agents:
        for seed in cfg.seeds:
            d = root / ABLATION_DIR / agent / f"seed{seed}"
            if not (d / "results.csv").is_file() or not (d / "paired.csv").is_file():
                continue
            meta = fsio.read_json(d / "study.json")
            sha = meta["identity"]["checkpoint_sha256"]
            run = run_of(root, agent, seed)
            frames = "an earlier checkpoint"  # the run has trained on since (its frames are not recorded)
            for ck in ([run / "checkpoint.pt"] if run is not None else []) + [Path(str(meta.get("checkpoint", "")))]:
                if ck.is_file() and fsio.file_sha256(ck) == sha:
                    frames = f"{int(load_checkpoint(ck)['counters']['steps']) * FRAMESKIP / 1e6:.2f}"
                    break
            dirs = [d] + [x for x in sorted(d.parent.glob(f"seed{seed}+*")) if (x / "paired.csv").is_file()
                          and fsio.read_json(x / "study.json")["identity"]["checkpoint_sha256"] == sha]
            res = [r for x in dirs for r in fsio.read_csv(x / "results.csv") if r["status"] == "ok"]
            paired = [r for x in dirs for r in fsio.read_csv(x / "paired.csv")]
            chip_cost = _chip_cost(dirs)
            for backend in dict.fromkeys(_backend(r) for r in res):
                intact = next((r for r in res if _backend(r) == backend and r["agent.ablate"] == "none"), None)
                if intact is None:
                    continue
                diffs: Dict[str, Dict[str, str]] = {}
                for r in paired:
                    if _backend(r) == backend:
                        diffs.setdefault(r["agent.ablate"], r)
                out.append({"agent": agent, "seed": seed, "frames": frames, "backend": backend, "intact": intact,
                            "diffs": diffs, "chip_cost": chip_cost if backend == "chip" else "-"})
    return out


def ablation_lines(root: Path, cfg: ComparisonConfig) -> List[str]:
    """The report's ablation rows (:func:`_ablation_rows`): per run and backend its intact greedy score and
    each ablation's paired score difference (ablated - intact, 95 % CI), the chip row also the intact
    agent's chip - float difference; then, where an agent has ablation studies of two or more seeds, the
    across-seeds table (:func:`across_seeds_lines`); [] when no run has one."""
    rows = _ablation_rows(root, cfg)
    if not rows:
        return []
    table = []
    for row in rows:
        i = row["intact"]
        cells = [format_interval(i["score_mean"], i["score_ci95_lower"], i["score_ci95_upper"])
                 + f" ({i['games']} games)"]
        for name in ABLATION_COLUMNS:
            r = row["diffs"].get(name)
            cells.append("-" if r is None else format_interval(r["diff_mean"], r["diff_ci95_lower"],
                                                               r["diff_ci95_upper"]))
        cells.append(row["chip_cost"])
        table.append(f"| {row['agent']} | {row['seed']} | {row['frames']} | {row['backend']} | "
                     + " | ".join(cells) + " |")
    return ["", "Ablation rows (`plasticity_ablation` on each run's checkpoint: greedy, sticky 0.25, the same game "
            "seeds in every row; each ablation's paired score difference to the intact agent, ablated - intact, "
            "bootstrap 95 % CI; `ablation/AGENT/seedS/`; chip - float: the intact agent on the chip against the "
            "same agent in float32 over the same game seeds, what the chip itself costs):", "",
            "| agent | seed | frames (M) | backend | intact score [95 % CI] | "
            + " | ".join(ABLATION_COLUMNS) + " | chip - float |",
            "|---|---|---|---|---|" + "---|" * (len(ABLATION_COLUMNS) + 1), *table] + across_seeds_lines(rows)


def across_seeds_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Each agent's ablations across its seeds (agents with ablation studies of >= 2 seeds, per backend):
    the mean of the seeds' intact scores and of each ablation's paired differences, and in how many seeds
    the ablation cost points / gained points with its 95 % CI clear of 0 (``k worse, j better of n``).
    Whether an agent *kind* needs a component is a question about its seeds, not about one run."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["agent"], row["backend"]), []).append(row)
    table = []
    for (agent, backend), runs in groups.items():
        if len(runs) < 2:
            continue
        intact = [float(r["intact"]["score_mean"]) for r in runs]
        cells = [f"{np.mean(intact):+.2f} ({', '.join(f'{v:+.2f}' for v in intact)})"]
        for name in ABLATION_COLUMNS:
            got = [r["diffs"][name] for r in runs if name in r["diffs"]]
            if not got:
                cells.append("-")
                continue
            worse = sum(float(g["diff_ci95_upper"]) < 0 for g in got)
            better = sum(float(g["diff_ci95_lower"]) > 0 for g in got)
            cells.append(f"{np.mean([float(g['diff_mean']) for g in got]):+.2f} "
                         f"({worse} worse, {better} better of {len(got)})")
        table.append(f"| {agent} | {backend} | {', '.join(str(r['seed']) for r in runs)} | " + " | ".join(cells) + " |")
    if not table:
        return []
    return ["", "Across seeds (agents with ablation studies of two or more seeds): the mean of the seeds' intact "
            "scores (each seed's) and of each ablation's paired difference; k worse / j better: the seeds whose "
            "95 % CI of the difference lies below / above 0 (the rest: not measurable at 100 games):", "",
            "| agent | backend | seeds | intact score, mean (per seed) | " + " | ".join(ABLATION_COLUMNS) + " |",
            "|---|---|---|---|" + "---|" * len(ABLATION_COLUMNS), *table]


def _intact_games(dirs: Sequence[Path]) -> Dict[str, Dict[int, float]]:
    """backend -> (env seed -> score) of the first ok intact (``agent.ablate = none``) trial record of each
    backend in the study directories ``dirs`` (their ``trials/*.json``, read once, as data)."""
    games: Dict[str, Dict[int, float]] = {}
    for x in dirs:
        for path in sorted((x / "trials").glob("*.json")):
            if path.name.startswith(".tmp-"):
                continue
            rec = fsio.read_json(path)
            params = rec.get("params") if isinstance(rec, dict) else None
            if not (isinstance(params, dict) and rec.get("status") == "ok" and params.get("agent.ablate") == "none"
                    and rec.get("per_game")):
                continue
            backend = _backend(params)
            if backend in games:
                continue
            try:
                games[backend] = scores_by_seed(rec["per_game"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: per_game is not a list of games with env_seed and score "
                                  f"({type(exc).__name__}: {exc}); the record is damaged") from None
    return games


def _chip_cost(dirs: Sequence[Path]) -> str:
    """The report's chip - float cell: the intact agent's paired score difference, chip minus float, over
    the game seeds both played (mean and bootstrap 95 % CI, better / worse / equal games); "-" without both."""
    games = _intact_games(dirs)
    chip, flt = games.get("chip", {}), games.get("float", {})
    seeds = sorted(set(chip) & set(flt))
    if not seeds:
        return "-"
    st = paired_summary([chip[s] for s in seeds], [flt[s] for s in seeds])
    return (format_interval(st["mean"], st["ci95"]["lower"], st["ci95"]["upper"])
            + f" ({st['better']} / {st['worse']} / {st['equal']})")


def main_args(p) -> None:
    """Options of ``stoxbar train-comparison`` (added to ``p``)."""
    d = ComparisonConfig()
    p.add_argument("root", help="comparison directory (created; an existing one is continued with its settings)")
    p.add_argument("--agents", nargs="+", default=list(d.agents), help=f"agents, of: {', '.join(AGENTS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=list(d.seeds), help="training seeds")
    p.add_argument("--frames", type=float, default=d.frames, help="emulator frames per run")
    p.add_argument("--algo", default=d.algo, choices=list(ALGO_DEFAULTS),
                   help="training algorithm of every run (a new comparison directory per algorithm)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the algorithm's, stoxbar train -h)")
    p.add_argument("--chunk-minutes", type=float, default=20.0, help="minutes per run before the next one's turn")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--env-threads", type=int, default=1, help="emulator threads")
    p.add_argument("--group-threads", action="store_true",
                   help="two emulator groups, each with its own thread (stoxbar train --env-groups 2 --group-threads)")
    p.add_argument("--workers", type=int, default=1,
                   help=f"runs trained at once, each in a process of its own with --threads torch threads and one "
                        f"emulator group (1-{MAX_WORKERS}; 2 on a 2-core machine: 1.2-1.4x the frames per hour of "
                        f"--group-threads, BENCHMARKS.md)")
    p.add_argument("--first", nargs="+", default=[], metavar="AGENT:SEED",
                   help="train these runs to the budget before the others, in this order (e.g. stp_only:0); "
                        "without it, the run with the fewest frames goes next")
    p.add_argument("--grad-spike", type=float, default=None, metavar="FACTOR",
                   help="every run's spike guard (stoxbar train --grad-spike; docs/stpn.md §11.1): the one setting "
                        "an existing comparison may change, each run taking it at its next turn (default: the "
                        "comparison's own; 0, off, for a new one)")
    p.add_argument("--report-only", action="store_true", help="only (re)write comparison.png / comparison.md")


def run_main(args) -> List[str]:
    """Run parsed ``stoxbar train-comparison`` options; returns the lines to print."""
    root = Path(args.root)
    if not args.report_only:
        lr = ALGO_DEFAULTS[args.algo]["lr"] if args.lr is None else args.lr
        saved = saved_settings(root)
        spike = args.grad_spike if args.grad_spike is not None else (saved.grad_spike if saved is not None else 0.0)
        cfg = ComparisonConfig(agents=tuple(args.agents), seeds=tuple(args.seeds), frames=args.frames,
                               algo=args.algo, lr=lr, grad_spike=spike)
        run_comparison(root, cfg, args.chunk_minutes, args.threads, args.env_threads, echo=print,
                       group_threads=args.group_threads, first=parse_runs(cfg, args.first), workers=args.workers)
    elif not (root / SETTINGS).is_file():
        raise ConfigError(f"{root}: not a training comparison (no {SETTINGS})")
    rows = comparison_report(root)
    return [f"wrote {root / 'comparison.png'} and {root / 'comparison.md'}"] + [
        f"{a}: final {r['final_mean']:+.2f} over {r['seeds']} seeds" for a, r in rows.items()]


if __name__ == "__main__":  # a worker of run_comparison(workers > 1)
    sys.exit(_worker_main())
