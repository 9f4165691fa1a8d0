"""Up to 1,000 chips at once: the batched-chips simulation on a CUDA GPU against the CPU, and whole games.

Issue 16, point 3: "where CUDA exists, a benchmark of 1,000 chips". Parts, each appended to ``--out``
(JSON) as soon as it finishes, so a run stopped at its time limit keeps what it measured:

1. ``sim``: the shipped agent's batched greedy step as ``stoxbar play --chips C`` runs it (encoder,
   the analog STP layer on C chip instances programmed with their own draws, heads; the ledger and
   the digital op counting on) on frames recorded from the C games' own vector env (``--frames`` steps
   of random actions, replayed cyclically: a step's cost does not depend on the frames beyond the
   pulses they cause), no emulator in the timed loop. Per device (``--devices``: CPU with
   ``--cpu-threads`` torch threads, CUDA) and per chip count (``--chips``): agent steps per second
   (games x steps / s) and ms per batched step, after ``--warmup`` untimed steps (CUDA synchronised
   before and after the window). Also the energy per agent step at each boundary (and per component)
   from each run's ledger: the same model on both devices, so they must agree (on the H200 to 0.08 %,
   BENCHMARKS.md).
2. ``play``: ``play_chips`` (the loop of ``stoxbar play --chips``) with G = C games on C chips on
   ``--play-device`` for ``--play-steps`` steps with ``--env-threads`` emulator threads, beside the
   bare vector env stepping the same G games with random actions; ratio (the emulator bound).
   ``setup_s``: the part of the call before the first step (programming, and the G emulators'
   construction and seeded reset: ale-py rebuilds each emulator's colour palette on both, 0.16 s per
   game on the quiet project VM, mostly one game after another; BENCHMARKS.md).
3. ``full`` (``--full``): G full games on C chips on ``--play-device``: wall time, the score
   statistics (``score_summary``: mean, bootstrap 95 % CI, min), games cut at ``--max-steps``, and
   the energy per game at each boundary with its spread across games.

Without CUDA (``torch.cuda.is_available()`` false) the CUDA rows are skipped with the reason printed.
Usage: ``python benchmarks/bench_chips_cuda.py --out FILE.json [--chips 10,100,1000] [--devices cpu,cuda]
[--steps 50] [--cpu-steps 10] [--play-steps 300] [--env-threads 16] [--full]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Dict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_play import bare, chip_agent  # noqa: E402  (the same agent set-up and bare env as bench_play)

from stoxbar.core import native
from stoxbar.crossbar import flush_events
from stoxbar.pong.accounting import StepCounter, boundaries
from stoxbar.pong.chips import check_games_chips, energy_per_game, play_chips
from stoxbar.pong.env import EVAL_STICKY, make_pong_env
from stoxbar.pong.scores import score_summary


def record_frames(games: int, steps: int, env_threads: int) -> torch.Tensor:
    """[steps, games, ...] uint8 frames of ``games`` Pong games (sticky, noop starts) under random actions."""
    env = make_pong_env(games, seed=0, sticky=EVAL_STICKY, num_threads=env_threads)
    rng = np.random.default_rng(0)
    try:
        frames = [env.reset()]
        for _ in range(steps - 1):
            frames.append(env.step(rng.integers(0, 6, games))[0])
    finally:
        env.close()
    return torch.from_numpy(np.stack(frames))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sim(frames: torch.Tensor, chips: int, device: str, steps: int, warmup: int, seed: int = 0) -> Dict[str, Any]:
    """Time ``steps`` batched agent steps of ``frames.shape[1]`` games on ``chips`` chips on ``device``
    (``seed``: the chips' programming draws and the read noise)."""
    games = frames.shape[1]
    per_chip = check_games_chips(games, chips)
    dev = torch.device(device)
    torch.manual_seed(seed)  # the read noise draws from the global stream (of ``device``; CUDA's too)
    agent, periphery, ledger = chip_agent()
    agent.to(dev)
    t0 = time.perf_counter()
    agent.cell.program_chips(chips, per_chip, torch.Generator(device=dev).manual_seed(seed))
    sync(dev)
    program_s = time.perf_counter() - t0
    frames_dev = frames.to(dev)  # copied once: the timed loop is the step, not the host-to-device copy of a recording
    gen = torch.Generator(device=dev).manual_seed(seed)
    digital = StepCounter(agent, periphery.digital)
    state = agent.initial_state(games)
    with torch.no_grad(), digital:
        for t in range(warmup):
            _, state = agent.act(frames_dev[t % len(frames_dev)], state, greedy=True, generator=gen)
        sync(dev)
        t0 = time.perf_counter()
        for t in range(warmup, warmup + steps):
            _, state = agent.act(frames_dev[t % len(frames_dev)], state, greedy=True, generator=gen)
        sync(dev)
        wall = time.perf_counter() - t0
    flush_events(agent)
    digital.book(ledger)
    n = games * (warmup + steps)  # the ledger holds the warm-up steps too
    bounds = boundaries(ledger)
    per_step = {name: float(b["total_j"]) / n for name, b in bounds.items()}
    by_component = {c: float(j) / n for c, j in bounds["system"]["by_component"].items()}
    out = {"device": device, "games": games, "chips": chips, "steps": steps, "warmup": warmup, "seed": seed,
           "agent_steps_per_s": games * steps / wall, "ms_per_batched_step": 1e3 * wall / steps,
           "program_s": program_s, "energy_per_agent_step_j": per_step,
           "system_per_agent_step_by_component_j": by_component}
    if dev.type == "cuda":
        out["cuda_max_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
        torch.cuda.reset_peak_memory_stats(dev)
    return out


def play(games: int, chips: int, device: str, steps: int, env_threads: int) -> Dict[str, Any]:
    """``play_chips`` for at most ``steps`` steps beside the bare env (agent steps/s, env steps/s, ratio)."""
    agent, periphery, ledger = chip_agent()
    t0 = time.perf_counter()
    res = play_chips(agent, games, chips, 0, True, steps, periphery, ledger, sticky=EVAL_STICKY, device=device,
                     env_threads=env_threads)
    setup_s = time.perf_counter() - t0 - res.wall_s  # programming, the emulators' construction and seeded reset
    chip_rate = sum(res.steps) / res.wall_s
    env_rate = bare(games, steps, env_threads)
    return {"device": device, "games": games, "chips": chips, "steps": steps, "env_threads": env_threads,
            "agent_steps_per_s": chip_rate, "setup_s": setup_s, "bare_env_steps_per_s": env_rate,
            "ratio_to_env": chip_rate / env_rate}


def full(games: int, chips: int, device: str, max_steps: int, env_threads: int) -> Dict[str, Any]:
    """``games`` full games on ``chips`` chips: wall time, score statistics, energy per game."""
    agent, periphery, ledger = chip_agent()
    t0 = time.perf_counter()
    res = play_chips(agent, games, chips, 0, True, max_steps, periphery, ledger, sticky=EVAL_STICKY,
                     device=device, env_threads=env_threads)
    wall = time.perf_counter() - t0
    return {"device": device, "games": games, "chips": chips, "env_threads": env_threads, "wall_s": wall,
            "play_wall_s": res.wall_s, "agent_steps": sum(res.steps), "score": score_summary(res.scores),
            "truncated_games": sum(res.truncated), "chip_means": res.chip_means(),
            "energy_per_game_j": energy_per_game(res.ledger, games),
            "energy_per_game_spread_j": res.energy_spread(), "per_game": res.per_game(0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON written (atomically) after each part")
    ap.add_argument("--chips", default="10,100,1000", help="chip counts of the sim part (one game per chip)")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per sim run on CUDA")
    ap.add_argument("--cpu-steps", type=int, default=10, help="timed steps per sim run on the CPU")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--frames", type=int, default=16, help="recorded steps replayed by the sim part")
    ap.add_argument("--cpu-threads", type=int, default=os.cpu_count())
    ap.add_argument("--play-device", default="cuda")
    ap.add_argument("--play-steps", type=int, default=300)
    ap.add_argument("--play-chips", type=int, default=1000)
    ap.add_argument("--env-threads", type=int, default=os.cpu_count())
    ap.add_argument("--full", action="store_true", help="also play --play-chips full games (one per chip)")
    ap.add_argument("--max-steps", type=int, default=27000)
    args = ap.parse_args()
    torch.set_num_threads(args.cpu_threads)
    cuda = torch.cuda.is_available()
    report: Dict[str, Any] = {
        "schema": "stoxbar.bench_chips_cuda/1", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": args.cpu_threads,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "native_cpu_kernels": native.why_unavailable() or "loaded", "args": vars(args), "sim": [], "play": None, "full": None}

    def save() -> None:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.out)

    def attempt(part: str, fn, *a) -> Any:
        """``fn(*a)``, or None with the error kept in the report (one broken part does not lose the others)."""
        try:
            return fn(*a)
        except Exception as err:  # noqa: BLE001 - a benchmark records what broke and goes on
            import traceback

            report.setdefault("errors", []).append({"part": part, "args": [str(x) for x in a[1:]],
                                                    "error": traceback.format_exc()})
            save()
            print(f"{part} failed: {type(err).__name__}: {err}", flush=True)
            return None

    devices = [d for d in args.devices.split(",") if d != "cuda" or cuda]
    if not cuda:
        print("no CUDA device: the CUDA rows are skipped")
    torch.zeros(1).float()  # torch's lazy compiler import, out of the timed windows
    for chips in [int(c) for c in args.chips.split(",")]:
        frames = record_frames(chips, args.frames, args.env_threads)
        for device in devices:
            steps = args.cpu_steps if device == "cpu" else args.steps
            row = attempt("sim", sim, frames, chips, device, steps, args.warmup)
            if row is None:
                continue
            report["sim"].append(row)
            save()
            print(f"sim {chips:5d} chips on {device:4s}: {row['agent_steps_per_s']:9.0f} agent steps/s, "
                  f"{row['ms_per_batched_step']:8.2f} ms per batched step, programming {row['program_s']:.2f} s, "
                  f"system {row['energy_per_agent_step_j']['system']:.3e} J per agent step", flush=True)
    if args.play_device != "cuda" or cuda:
        p = report["play"] = attempt("play", play, args.play_chips, args.play_chips, args.play_device,
                                     args.play_steps, args.env_threads)
        save()
        if p is not None:
            print(f"play {p['games']} games on {p['chips']} chips ({p['device']}, {p['env_threads']} emulator threads): "
                  f"{p['agent_steps_per_s']:.0f} agent steps/s; bare env {p['bare_env_steps_per_s']:.0f} env steps/s; "
                  f"ratio {100 * p['ratio_to_env']:.1f} %", flush=True)
        if args.full:
            f = report["full"] = attempt("full", full, args.play_chips, args.play_chips, args.play_device,
                                         args.max_steps, args.env_threads)
            save()
            if f is None:
                return
            s = f["score"]
            print(f"full {f['games']} games on {f['chips']} chips: {f['wall_s']:.1f} s wall, {f['agent_steps']} agent "
                  f"steps, score mean {s['mean']:+.2f} 95 % CI [{s['ci95']['lower']:+.2f}, {s['ci95']['upper']:+.2f}], "
                  f"min {s['min']:+.0f}, {f['truncated_games']} cut; system "
                  f"{f['energy_per_game_j']['system']:.3f} J per game", flush=True)


if __name__ == "__main__":
    main()
