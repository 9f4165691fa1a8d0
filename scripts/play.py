"""``stoxbar play``: the m-STPN agent plays Pong on the simulated STO chip; score and energy.

The shipped checkpoint's STP layer is programmed onto STO tiles (``STORPUConfig`` with the
default device and periphery presets); every agent step runs DAC -> tiles -> ADC, the short-term
pulses and the decay over the real step period, and books the energy. ``--digital`` plays the
same checkpoint in float for comparison.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from stoxbar.scripts.energy import add_periphery_arguments, periphery_from_args
from stoxbar.validation import ConfigError

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "stpn" / "checkpoints" / "pong_mstpn" / "checkpoint.pt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stoxbar play``."""
    p.add_argument("--games", type=int, default=1, help="number of games (played one after another)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="agent checkpoint (.pt)")
    p.add_argument("--preset", default=None, help="device preset (default: the checkpoint's)")
    add_periphery_arguments(p)
    p.add_argument("--digital", action="store_true", help="play in float (no chip) for comparison")
    p.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-steps", type=int, default=27000, help="agent steps per game at most (108k frames)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: the per-step tensors are small; more threads mostly wait)")
    p.add_argument("--json", default=None, help="write the report here (never overwrites)")


def build_analog_cell(agent, device, periphery):
    """Swap the agent's digital m-STPN cell for the analog one with the same parameters."""
    from stoxbar.stpn.analog import AnalogMSTPNCell

    cell = agent.cell
    analog = AnalogMSTPNCell(cell.n_in, cell.hidden, device, cell.dt_s, periphery)
    analog.load_state_dict(cell.state_dict(), strict=False)
    analog.program()
    agent.cell = analog
    return analog


def play_game(agent, env, max_steps: int, greedy: bool, gen: torch.Generator, on_step=None) -> tuple[float, int]:
    """One game on a 1-env vector env; returns (agent points - opponent points, agent steps)."""
    obs = env.reset()
    state = agent.initial_state(1)
    score, steps = 0.0, 0
    with torch.no_grad():
        while steps < max_steps:
            actions, state = agent.act(obs, state, greedy=greedy, generator=gen)
            obs, reward, done, _ = env.step(actions)
            score += float(reward[0])
            steps += 1
            if on_step is not None:
                on_step()
            if bool(done[0]):
                break
    return score, steps


def main(args: argparse.Namespace) -> int:
    """Run ``stoxbar play``."""
    from tqdm import tqdm

    from stoxbar.crossbar import EnergyLedger, write_json_atomic
    from stoxbar.devices import presets
    from stoxbar.stpn.accounting import boundaries, gpu_baseline, record_digital_step
    from stoxbar.stpn.checkpoint import load_agent
    from stoxbar.stpn.env import STEP_PERIOD_S, make_pong_env

    if args.games < 1:
        raise ConfigError(f"--games = {args.games}: allowed range is [1, inf)")
    if args.json and os.path.exists(args.json):
        raise FileExistsError(f"{args.json} exists: reports are never overwritten; choose a new path")
    if not os.path.exists(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint} not found; train one with `stoxbar train`")
    if args.threads < 1:
        raise ConfigError(f"--threads = {args.threads}: allowed range is [1, inf)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    agent, ckpt = load_agent(args.checkpoint)
    arch = agent.arch
    if arch.cell != "mstpn" and not args.digital:
        raise ConfigError(f"checkpoint cell = {arch.cell!r}: only an m-STPN maps onto the STO chip (use --digital)")
    device = presets.get_preset(args.preset or arch.device_preset)
    periphery = periphery_from_args(args)
    ledger = EnergyLedger()
    extra = arch.n_in * 2592 if arch.arch == "bottleneck" else 0
    if not args.digital:
        build_analog_cell(agent, device, periphery).attach(ledger, "stp")

    gen = torch.Generator().manual_seed(args.seed)
    scores, steps_total, t0 = [], 0, time.perf_counter()
    bar = tqdm(total=args.games, desc="playing on the STO chip" if not args.digital else "playing (float)",
               unit="game")
    for game in range(args.games):
        env = make_pong_env(1, seed=args.seed + game)
        try:
            step = (lambda: record_digital_step(ledger, periphery.digital, arch.n_in, arch.hidden, arch.n_actions,
                                                extra)) if not args.digital else None
            score, steps = play_game(agent, env, args.max_steps, args.greedy, gen, step)
        finally:
            env.close()
        scores.append(score)
        steps_total += steps
        bar.update(1)
        bar.set_postfix(score=score)
    bar.close()
    wall = time.perf_counter() - t0
    sim_s = steps_total * STEP_PERIOD_S
    report = {
        "checkpoint": str(args.checkpoint), "arch": arch.to_dict(), "mode": "digital" if args.digital else "analog",
        "device_preset": args.preset or arch.device_preset, "score": {"per_game": scores, "mean": float(np.mean(scores))},
        "games": args.games, "agent_steps": steps_total, "simulated_seconds": sim_s, "wall_seconds": wall,
        "synapses": arch.n_synapses, "energy": {},
    }
    if not args.digital:
        report["energy"] = boundaries(ledger)
    report["energy"]["gpu_baseline"] = gpu_baseline(arch.n_in, arch.hidden, arch.n_actions, steps_total,
                                                    extra_encoder_macs=extra)
    _print(report)
    if args.json:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _print(report: dict) -> None:
    s = report["score"]
    print(f"\nscore per game {s['per_game']}  mean {s['mean']:+.2f}   ({report['mode']}, {report['agent_steps']} agent "
          f"steps = {report['simulated_seconds']:.1f} s of play in {report['wall_seconds']:.1f} s wall)")
    energy, games = report["energy"], report["games"]
    gpu = energy["gpu_baseline"]["total_j"]
    print(f"{'boundary':<14}{'J per game':>14}{'vs GPU':>10}")
    for name, e in energy.items():
        ratio = gpu / e["total_j"] if e["total_j"] > 0 else float("inf")
        print(f"{name:<14}{e['total_j'] / games:>14.4g}{ratio:>9.1f}x")
    if "system" in energy:
        print("\nsystem energy by component (J per game, share):")
        tot = energy["system"]["total_j"]
        for comp, j in sorted(energy["system"]["by_component"].items(), key=lambda kv: -kv[1]):
            print(f"  {comp:<24}{j / games:>12.4g}{100 * j / tot:>8.1f}%")
