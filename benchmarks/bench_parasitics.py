"""Read time of a 512x512 STO layer with line parasitics, as ratios against the ideal read in the same process.

Configurations (``periphery.parasitics.mode``): off (the ideal read), first_order (effective weights
``G (1 - R G)``, cached, read natively), full (the network solved per input by conjugate gradient:
the first X = 512 input vectors after programming), full via its transfer matrix (what ``full``
switches to after that: X unit-drive solves once, cached, read natively; the one-time build is
timed separately), each at STO conductances and for a device 100x more conductive. Interleaved repeats, median per
configuration. Goals (issue 17): first_order <= 1.5x, full <= 5x the ideal read at STO conductances.
Usage: ``python benchmarks/bench_parasitics.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from aihwkit.nn import AnalogLinear

from stoxbar.crossbar import STORPUConfig
from stoxbar.crossbar.parasitics import ParasiticMVM, ParasiticTransferMVM
from stoxbar.devices import sto_2024
from stoxbar.peripherals import Parasitics, PeripheryConfig


def _layer(mode: str, scale: float) -> AnalogLinear:
    d = sto_2024()
    d = replace(d, g_min_s=d.g_min_s * scale, g_max_s=d.g_max_s * scale, lt_dg_s=d.lt_dg_s * scale,
                st_g_max_s=d.st_g_max_s * scale)
    p = replace(PeripheryConfig(), parasitics=Parasitics(mode=mode))
    layer = AnalogLinear(512, 512, bias=False, rpu_config=STORPUConfig(device=d, periphery=p))
    layer.eval()
    layer.set_weights(torch.rand(512, 512) * 2 - 1)
    return layer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = {f"{mode}, {name}": _layer(mode, scale) for scale, name in ((1.0, "STO"), (100.0, "100x G"))
              for mode in ("off", "first_order", "full")}
    builds = {}
    for scale, name in ((1.0, "STO"), (100.0, "100x G")):  # full, past its break-even: the transfer matrix
        layer = _layer("full", scale)
        tile = layer.analog_module
        with torch.no_grad():  # what the 512th input vector after programming does: 512 unit-drive solves, cached
            t0 = time.perf_counter()
            ParasiticTransferMVM.array_weight(tile.state, tile.rpu_config.periphery)
            builds[name] = time.perf_counter() - t0
        assert ParasiticMVM.for_state(tile.state, tile.rpu_config.periphery, 1) is ParasiticTransferMVM
        layers[f"full (transfer), {name}"] = layer
    print("| batch | configuration | median ms | ratio vs ideal read (same device) |\n|---|---|---|---|")
    for batch in (1, 16):
        x = torch.rand(batch, 512)
        times = {k: [] for k in layers}
        with torch.no_grad():
            for layer in layers.values():
                layer(x)
            for _ in range(args.repeats):
                for k, layer in layers.items():
                    t0 = time.perf_counter()
                    layer(x)
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        for k, ms in med.items():
            base = med["off, " + k.split(", ")[1]]
            print(f"| {batch} | {k} | {ms:.3f} | {ms / base:.1f} |")
        if batch == 1:
            for name, sec in builds.items():
                print(f"| 1 | full: one-time transfer build, {name} | {sec * 1e3:.1f} | "
                      f"{sec * 1e3 / med['off, ' + name]:.0f} ideal reads, "
                      f"{sec * 1e3 / med['full, ' + name]:.0f} per-input solves |")


if __name__ == "__main__":
    main()
