"""Agent-step time of the paper's m-STPN: analog (STO tiles, ledger on) vs digital, and game speed.

One process, interleaved repeats, medians. Reports: ms per agent step (batch 1) for the digital
m-STPN agent and the analog one (also with its reads through aihwkit's Python ``AnalogMVM``,
``TiledAnalogMVM.use_native = False``), their ratio (goal: analog within 2x), and simulated game
speed vs real time (one agent step = 4 frames = 66.7 ms of play; goal >= 5x real time).
Usage: ``python benchmarks/bench_stpn.py [--steps N] [--aihwkit-path]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch

from stoxbar.crossbar import EnergyLedger
from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig
from stoxbar.pong.evaluate import build_analog_cell
from stoxbar.pong.accounting import StepCounter
from stoxbar.pong.agent import ArchConfig, PongAgent
from stoxbar.pong.env import STEP_PERIOD_S


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--aihwkit-path", action="store_true",
                    help="also time the analog agent with its reads through aihwkit's Python AnalogMVM")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch = ArchConfig()
    digital = PongAgent(arch).eval()
    analog = copy.deepcopy(digital)
    ledger = EnergyLedger()
    periphery = PeripheryConfig()
    build_analog_cell(analog, presets.sto_2024(), periphery).attach(ledger, "stp")
    obs = torch.randint(0, 256, (1, 1, 84, 84), dtype=torch.uint8)
    ref = copy.deepcopy(digital)
    ledgers = {"analog": ledger, "analog, aihwkit read path": EnergyLedger()}
    build_analog_cell(ref, presets.sto_2024(), periphery).attach(ledgers["analog, aihwkit read path"], "stp")
    agents = {"digital": digital, "analog": analog}
    if args.aihwkit_path:
        agents["analog, aihwkit read path"] = ref
    states = {k: a.initial_state(1) for k, a in agents.items()}
    times = {k: [] for k in agents}
    params = {"digital": digital.step_params()}
    counters = {k: StepCounter(a, periphery.digital) for k, a in agents.items() if k != "digital"}
    with torch.no_grad(), contextlib.ExitStack() as stack:
        for c in counters.values():  # the digital work of every analog step, counted once per shape
            stack.enter_context(c)
        for i in range(args.steps + 5):
            for name, agent in agents.items():
                TiledAnalogMVM.use_native = name != "analog, aihwkit read path"
                t0 = time.perf_counter()
                _, _, states[name] = agent(obs, states[name], params.get(name))
                if i >= 5:
                    times[name].append(time.perf_counter() - t0)
    TiledAnalogMVM.use_native = True
    for name, c in counters.items():
        c.book(ledgers[name])
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print("| agent (paper arch, batch 1) | ms per agent step | x real time |\n|---|---|---|")
    for k, ms in med.items():
        print(f"| {k} m-STPN | {ms:.2f} | {STEP_PERIOD_S * 1e3 / ms:.1f} |")
    print(f"| analog / digital | {med['analog'] / med['digital']:.2f} | |")
    if args.aihwkit_path:
        print(f"| analog (aihwkit read path) / digital | {med['analog, aihwkit read path'] / med['digital']:.2f} | |")


if __name__ == "__main__":
    main()
