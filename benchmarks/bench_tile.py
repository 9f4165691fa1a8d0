"""Forward time of one 64x2656 layer: STORPUConfig vs aihwkit's stock tiles vs float, ledger on/off.

STORPUConfig runs twice: with the native read (``TiledAnalogMVM.use_native``, the default) and
through aihwkit's Python ``AnalogMVM`` (the reference it is tested bit-identical to).

Ratios are measured in one process, interleaved (round-robin repeats, median per config), so
machine load affects all configs alike; the minimum per config is printed too (the run least
disturbed by other load; aihwkit's C++ tile suffers most from load). Usage: ``python benchmarks/bench_tile.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig

from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger
from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.peripherals import PeripheryConfig


def _layers(io):
    stock_torch = TorchInferenceRPUConfig()
    stock_torch.forward = io
    stock_cpp = InferenceRPUConfig()
    stock_cpp.forward = io
    sto = STORPUConfig()
    layers = {name: AnalogLinear(2656, 64, bias=False, rpu_config=cfg)
              for name, cfg in (("aihwkit C++ InferenceRPUConfig", stock_cpp),
                                ("aihwkit torch TorchInferenceRPUConfig", stock_torch),
                                ("stoxbar STORPUConfig (ledger off)", sto))}
    on = AnalogLinear(2656, 64, bias=False, rpu_config=STORPUConfig())
    attach_ledger(on, EnergyLedger())
    layers["stoxbar STORPUConfig (ledger on)"] = on
    for layer in layers.values():
        layer.eval()
    return layers


def _aihwkit_path(layer, x):
    TiledAnalogMVM.use_native = False
    try:
        return layer(x)
    finally:
        TiledAnalogMVM.use_native = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    io = PeripheryConfig().io_parameters()  # the same IO non-idealities for every analog config
    layers = _layers(io)
    w = torch.rand(64, 2656) * 2 - 1
    for layer in layers.values():
        layer.set_weights(w)
    print("| batch | config | median ms | ratio vs float | ratio vs aihwkit C++ | min ms | min ratio vs C++ |\n"
          "|---|---|---|---|---|---|---|")
    for batch in (1, 16):
        x = torch.rand(batch, 2656) * 2 - 1
        runs = {"float matmul": lambda: x @ w.T}
        runs.update({name: (lambda layer=layer: layer(x)) for name, layer in layers.items()})
        runs["stoxbar STORPUConfig (ledger off, aihwkit AnalogMVM path)"] = (
            lambda layer=layers["stoxbar STORPUConfig (ledger off)"]: _aihwkit_path(layer, x))
        times = {name: [] for name in runs}
        with torch.no_grad():
            for fn in runs.values():
                for _ in range(5):
                    fn()
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(v) * 1e3 for name, v in times.items()}
        low = {name: min(v) * 1e3 for name, v in times.items()}  # least disturbed by other load
        cpp = "aihwkit C++ InferenceRPUConfig"
        for name, ms in med.items():
            print(f"| {batch} | {name} | {ms:.3f} | {ms / med['float matmul']:.1f} | {ms / med[cpp]:.2f} | "
                  f"{low[name]:.3f} | {low[name] / low[cpp]:.2f} |")
        over = med["stoxbar STORPUConfig (ledger on)"] / med["stoxbar STORPUConfig (ledger off)"] - 1
        print(f"| {batch} | ledger overhead | {100 * over:+.1f}% | | |")


def event_overhead(repeats: int = 300, batch: int = 1) -> float:
    """Event recording + costing + booking as a fraction of the 64x2656 tile forward (ledger off).

    Two identical layers, one with a ledger attached, timed interleaved in one process (median).
    """
    w = torch.rand(64, 2656) * 2 - 1
    off, on = (AnalogLinear(2656, 64, bias=False, rpu_config=STORPUConfig()) for _ in range(2))
    attach_ledger(on, EnergyLedger())
    times = {"off": [], "on": []}
    x = torch.rand(batch, 2656) * 2 - 1
    with torch.no_grad():
        for name, layer in (("off", off), ("on", on)):
            layer.eval()
            layer.set_weights(w)
            for _ in range(10):
                layer(x)
        for _ in range(repeats):
            for name, layer in (("off", off), ("on", on)):
                t0 = time.perf_counter()
                layer(x)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    over = med["on"] / med["off"] - 1
    print(f"events + cost model at batch {batch}: forward {med['off'] * 1e3:.3f} ms, with ledger "
          f"{med['on'] * 1e3:.3f} ms: {100 * over:+.1f}%")
    return over


if __name__ == "__main__":
    main()
    for b in (1, 16):
        event_overhead(batch=b)
