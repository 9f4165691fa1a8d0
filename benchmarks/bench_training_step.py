"""One AnalogSGD training step of a 784-256-10 MLP at batch 64: STO program-after-step vs stock aihwkit.

Configs (same IO non-idealities from the periphery for every analog config):

* ``aihwkit TorchInferenceRPUConfig``: the stock torch tile, hardware-aware training (the baseline).
* ``STORPUConfig program_after_step``: the default; after every step the updated weights are
  programmed through the device model (write-verify with residual, pulses and energy booked).
* ``STORPUConfig pulsed``: in-situ LTP/LTD pulses through the device response.
* ``STORPUConfig program_after_step, ledger on``: the same with the energy ledger attached.
* ``STORPUConfig, programming skipped``: the STO step with ``sync_device`` switched off (the
  conductances never change): isolates what program-after-step itself adds.

Ratios are measured in one process, interleaved (round-robin repeats, median per config), so the
machine load affects all configs alike. The issue's goal: program-after-step <= 2x the aihwkit step.
Usage: ``python benchmarks/bench_training_step.py [--repeats N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import TorchInferenceRPUConfig

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger
from stoxbar.peripherals import PeripheryConfig


def _mlp(cfg) -> nn.Module:
    torch.manual_seed(0)
    return AnalogSequential(AnalogLinear(784, 256, rpu_config=cfg), nn.ReLU(), AnalogLinear(256, 10, rpu_config=cfg))


def _setups():
    io = PeripheryConfig().io_parameters()
    stock = TorchInferenceRPUConfig()
    stock.forward = io
    stock.mapping.max_input_size = stock.mapping.max_output_size = 512
    stock.mapping.weight_scaling_omega = 1.0
    models = {
        "aihwkit TorchInferenceRPUConfig": _mlp(stock),
        "STORPUConfig program_after_step": _mlp(STORPUConfig()),
        "STORPUConfig pulsed": _mlp(STORPUConfig(update_mode="pulsed")),
    }
    skip = _mlp(STORPUConfig())  # the same STO step with the device programming switched off
    for tile in skip.analog_tiles():
        tile.sync_device = lambda: None  # the tile module's (remap, then the simulator tile's)
        tile.tile.sync_device = lambda: None
    models["STORPUConfig, programming skipped (reference)"] = skip
    on = _mlp(STORPUConfig())
    attach_ledger(on, EnergyLedger())
    models["STORPUConfig program_after_step, ledger on"] = on
    return {name: (m, AnalogSGD(m.parameters(), lr=0.01)) for name, m in models.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setups = _setups()
    x = torch.rand(64, 784)
    target = torch.randint(0, 10, (64,))
    loss_fn = nn.CrossEntropyLoss()

    def step(model, opt):
        opt.zero_grad()
        loss_fn(model(x), target).backward()
        opt.step()

    times = {name: [] for name in setups}
    for model, opt in setups.values():
        for _ in range(3):
            step(model, opt)
    for _ in range(args.repeats):
        for name, (model, opt) in setups.items():
            t0 = time.perf_counter()
            step(model, opt)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["aihwkit TorchInferenceRPUConfig"])
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"784-256-10 MLP, batch 64, AnalogSGD step, {args.threads} thread(s), {args.repeats} interleaved repeats, "
          f"load average {load} on {os.cpu_count()} CPUs")
    ref = statistics.median(times["STORPUConfig, programming skipped (reference)"])
    print("| config | median ms | ratio vs aihwkit step | ratio vs STO step without programming |\n|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.2f} | {med / base:.2f} | {med / ref:.2f} |")


if __name__ == "__main__":
    main()
