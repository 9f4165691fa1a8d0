"""Batched play (``stoxbar play --games G --chips C``) against the bare vector env, in one process.

Reports (issue 16, performance): the throughput of G games on C chips (agent steps per second:
the shipped agent, or ``--checkpoint``'s, on the STO chip, ledger and digital counting on, as ``stoxbar play``) over the
first ``--steps`` steps, the throughput of the bare ale-py vector env stepping the same G games with
random actions, and their ratio (goal >= 60 %: the emulator is the limit); repeats interleaved,
medians; and the time of 100 full games extrapolated from the measured throughput
(``--steps-per-game`` agent steps per game, default 2,623: ``stoxbar play --games 20 --chips 4``
played 52,453 steps, BENCHMARKS.md; the batch shrinking as games end is not modelled). With
``--full``, the measured wall time of G full games (goal: 100 games <= 3 min on 2 cores).
torch imports its compiler lazily at the first ``Tensor.float()`` of an agent step (~2 s, once per
process); it is imported before the timed windows so a short window measures the steps only.
``--fresh-read-weight`` adds, interleaved, the read as it was before the state's reused read buffer
(``CrossbarState.effective_weight(scratch=True)``): a fresh W + F tensor per read, the baseline of that
change in the same process.
``--per-slot-read`` adds, interleaved (and with ``--full`` the full games too), the read of each game slot's
own W + F (``TiledAnalogMVM.chip_read`` off: every slot's W + F formed in the reused buffer, then the
per-slot GEMMs), the baseline of the chip-form read in the same process.
``--keep-levels`` adds, interleaved, the play with the chip's short-term step writing its signed pulse levels
(the cell's ``record_levels``: what every step did before the step learned to skip them when only their
counts are used), the baseline of that change in the same process.
``--float`` plays the agent in float32 (no chip, no ledger: the ablation studies' float rows, ``agent.backend =
"float"``); ``--fresh-state`` adds, interleaved, that float play with a fresh F tensor per step (the cell's
``state_in_place`` off), the baseline of the in-place step in the same process.
``--env-threads 1,2`` measures the vector env with one and with two emulator threads, interleaved
(``stoxbar play --chips`` plays with one emulator thread per core).
``--baseline-native PATH`` adds, interleaved (and with ``--full`` the full games too), the same play with the
native kernels loaded from ``PATH`` (an older build's ``_native*.so``, e.g. ``git worktree add /tmp/old REV``
and ``python setup.py build_ext --inplace`` there): the baseline of a kernel change in the same process.
Usage: ``python benchmarks/bench_play.py [--games 100] [--chips 10] [--steps 100] [--repeats 2] [--full]
[--fresh-read-weight] [--per-slot-read] [--keep-levels] [--threads T] [--env-threads 1,2] [--baseline-native PATH]
[--checkpoint PATH] [--float [--fresh-state]]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (a one-off lazy import of torch's, kept out of the timed windows)

import _kernels  # benchmarks/_kernels.py (the script's folder is on sys.path)

from stoxbar.crossbar import EnergyLedger
from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong import chips as chips_mod
from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, chip_device, load_agent
from stoxbar.pong.chips import play_chips
from stoxbar.pong.env import EVAL_STICKY, make_pong_env
from stoxbar.pong.evaluate import build_analog_cell


def chip_agent(checkpoint: str = str(SHIPPED_CHECKPOINT), float_agent: bool = False):
    """(agent, periphery, ledger): ``checkpoint``'s agent (default: the shipped one) on its chip, attached to a
    fresh ledger (as ``stoxbar play``), or in float32 (``float_agent``: periphery and ledger None)."""
    agent, _ = load_agent(checkpoint)
    if float_agent:
        return agent, None, None
    periphery = PeripheryConfig()
    ledger = EnergyLedger()
    build_analog_cell(agent, chip_device(agent, checkpoint), periphery).attach(ledger, "stp")
    return agent, periphery, ledger


def batched(games: int, chips: int, steps: int, device: str, fresh_read_weight: bool = False,
            env_threads: int = 1, per_slot_read: bool = False, keep_levels: bool = False,
            checkpoint: str = str(SHIPPED_CHECKPOINT), float_agent: bool = False, fresh_state: bool = False) -> tuple:
    """(agent steps per second, result) of ``games`` games on ``chips`` chips for at most ``steps`` steps;
    ``fresh_read_weight``: each read builds a fresh W + F tensor (the read before its reused buffer);
    ``env_threads``: the vector env's emulator threads; ``per_slot_read``: the read without its chip form
    (each slot's W + F formed, as before it); ``keep_levels``: the short-term step writes its levels;
    ``float_agent``: the agent in float32; ``fresh_state``: its cell allocates F_new each step (no in-place step)."""
    agent, periphery, ledger = chip_agent(checkpoint, float_agent)
    agent.cell.record_levels = keep_levels
    saved = (TiledAnalogMVM.__dict__["array_weight"], TiledAnalogMVM.__dict__["chip_read"],
             chips_mod.state_in_place)
    if fresh_read_weight:
        TiledAnalogMVM.array_weight = classmethod(lambda cls, state, periphery: state.effective_weight())
    if fresh_read_weight or per_slot_read:
        TiledAnalogMVM.chip_read = classmethod(lambda cls, state, periphery: None)
    if fresh_state:
        chips_mod.state_in_place = lambda cell: contextlib.nullcontext()
    try:
        res = play_chips(agent, games, chips, 0, True, steps, periphery, ledger, sticky=EVAL_STICKY, device=device,
                         env_threads=env_threads)
    finally:
        TiledAnalogMVM.array_weight, TiledAnalogMVM.chip_read, chips_mod.state_in_place = saved
    return sum(res.steps) / res.wall_s, res


def bare(games: int, steps: int, env_threads: int = 1) -> float:
    """Env steps per second of the bare vector env stepping ``games`` games with random actions."""
    env = make_pong_env(games, seed=0, sticky=EVAL_STICKY, num_threads=env_threads)
    rng = np.random.default_rng(0)
    try:
        env.reset()
        t0 = time.perf_counter()
        for _ in range(steps):
            env.step(rng.integers(0, 6, games))
        return games * steps / (time.perf_counter() - t0)
    finally:
        env.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--games", type=int, default=100)
    ap.add_argument("--chips", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100, help="steps of the throughput window (games last longer)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torch-device", dest="device", default="cpu")
    ap.add_argument("--steps-per-game", type=float, default=2623.0,
                    help="agent steps of a full game for the extrapolation (BENCHMARKS.md: 52,453 steps / 20 games)")
    ap.add_argument("--full", action="store_true", help="also time the G full games")
    ap.add_argument("--fresh-read-weight", action="store_true",
                    help="also the read with a fresh W + F tensor per read (the baseline of the reused buffer)")
    ap.add_argument("--per-slot-read", action="store_true",
                    help="also the read of each slot's own W + F (the baseline of the chip-form read), interleaved")
    ap.add_argument("--keep-levels", action="store_true",
                    help="also the play whose short-term step writes its levels (the baseline of skipping them)")
    ap.add_argument("--env-threads", default="1",
                    help="emulator threads of the vector env, one or a comma list measured interleaved (e.g. 1,2)")
    ap.add_argument("--baseline-native", default=None,
                    help="also play with the native kernels of this older build's _native*.so (interleaved)")
    ap.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT),
                    help="the agent to play (default: the shipped one; e.g. a comparison run's checkpoint.pt, whose "
                         "dense encoder features take the short-term step's dense rows)")
    ap.add_argument("--float", dest="float_agent", action="store_true",
                    help="play the agent in float32 (no chip): the ablation studies' float rows")
    ap.add_argument("--fresh-state", action="store_true",
                    help="with --float: also the play whose cell allocates a fresh F per step (interleaved)")
    args = ap.parse_args()
    play = functools.partial(batched, checkpoint=args.checkpoint, float_agent=args.float_agent)
    base = _kernels.load(args.baseline_native) if args.baseline_native else None
    torch.set_num_threads(args.threads)
    env_threads = [int(x) for x in args.env_threads.split(",")]
    chip = {n: [] for n in env_threads}
    env = {n: [] for n in env_threads}
    fresh, old, slot, kept, fstate = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved
        for n in env_threads:
            env[n].append(bare(args.games, args.steps, n))
            chip[n].append(play(args.games, args.chips, args.steps, args.device, env_threads=n)[0])
        if base is not None:
            with _kernels.use(base):
                old.append(play(args.games, args.chips, args.steps, args.device, env_threads=env_threads[-1])[0])
        if args.per_slot_read:
            slot.append(play(args.games, args.chips, args.steps, args.device, env_threads=env_threads[-1],
                             per_slot_read=True)[0])
        if args.keep_levels:
            kept.append(play(args.games, args.chips, args.steps, args.device, env_threads=env_threads[-1],
                             keep_levels=True)[0])
        if args.fresh_read_weight:
            fresh.append(play(args.games, args.chips, args.steps, args.device, fresh_read_weight=True,
                              env_threads=env_threads[0])[0])
        if args.fresh_state:
            fstate.append(play(args.games, args.chips, args.steps, args.device, env_threads=env_threads[-1],
                               fresh_state=True)[0])
    for n in env_threads:
        c, e = statistics.median(chip[n]), statistics.median(env[n])
        kind = "float32, " if args.float_agent else ""
        print(f"{args.games} games on {args.chips} chips ({kind}{args.device}, {args.threads} torch thread(s), {n} "
              f"emulator thread(s)): {c:.0f} agent steps/s; bare vector env, random actions: {e:.0f} env steps/s; "
              f"ratio {100 * c / e:.1f} % (goal >= 60 %)  [runs: chips {[round(x) for x in chip[n]]}, "
              f"env {[round(x) for x in env[n]]}]")
        full_s = 100 * args.steps_per_game / c
        print(f"  100 full games (x {args.steps_per_game:.0f} agent steps) at {c:.0f} agent steps/s: ~{full_s:.0f} s "
              f"({full_s / 60:.1f} min; goal <= 180 s), extrapolated")
    if fresh:
        f, c = statistics.median(fresh), statistics.median(chip[env_threads[0]])
        print(f"fresh W + F tensor per read: {f:.0f} agent steps/s; the reused read buffer: {c / f:.2f}x that  "
              f"[runs: {[round(x) for x in fresh]}]")
    if slot:
        o, c = statistics.median(slot), statistics.median(chip[env_threads[-1]])
        print(f"per-slot read (each slot's W + F): {o:.0f} agent steps/s; the chip-form read: {c / o:.2f}x that  "
              f"[runs: {[round(x) for x in slot]}]")
    if kept:
        o, c = statistics.median(kept), statistics.median(chip[env_threads[-1]])
        print(f"short-term step writing its levels: {o:.0f} agent steps/s; without: {c / o:.2f}x that  "
              f"[runs: {[round(x) for x in kept]}]")
    if fstate:
        o, c = statistics.median(fstate), statistics.median(chip[env_threads[-1]])
        print(f"float cell with a fresh F per step: {o:.0f} agent steps/s; the in-place step: {c / o:.2f}x that  "
              f"[runs: {[round(x) for x in fstate]}]")
    if old:
        o, c = statistics.median(old), statistics.median(chip[env_threads[-1]])
        print(f"baseline kernels ({args.baseline_native}): {o:.0f} agent steps/s; these kernels: {c / o:.2f}x that  "
              f"[runs: {[round(x) for x in old]}]")
    if args.full:
        runs = ((("baseline kernels", base, False),) if base is not None else ()) + \
            ((("per-slot read", None, True),) if args.per_slot_read else ()) + \
            ((("fresh F per step", None, False),) if args.fresh_state else ()) + (("these kernels", None, False),)
        for label, module, per_slot in runs:
            with _kernels.use(module):
                t0 = time.perf_counter()
                _, res = play(args.games, args.chips, 27000, args.device, env_threads=env_threads[-1],
                              per_slot_read=per_slot, fresh_state=label == "fresh F per step")
                wall = time.perf_counter() - t0
            print(f"{args.games} full games on {args.chips} chips, {label}: {wall:.1f} s wall (goal <= 180 s for 100), "
                  f"{sum(res.steps)} agent steps, mean score {np.mean(res.scores):+.2f}, "
                  f"{sum(res.truncated)} cut at max steps")


if __name__ == "__main__":
    main()
