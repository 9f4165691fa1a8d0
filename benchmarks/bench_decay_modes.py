"""One short-term step (decay for the agent's 1/15 s, then the outer-product update) of the Pong STP layer's
state (2720 x 64 on 512-row tiles, 20 chips' short-term states) for each decay law, against the exponential.

Configs: ``exp`` (one mode: the fused native pass), ``biexp`` (two modes), ``kww beta 0.5`` and ``kww beta
0.3`` (7 and 11 modes: ``laws.kww_modes``), and ``exp + tau spread`` with per-chip time constants
(``tau_d2d_std = 0.3``: one Lambda per chip). Several modes or per-chip factors run the decay per mode in
torch, then one fused pass with Lambda = 1 (``CrossbarState._unfused_decay_and_update``).

Ratios are measured in one process, interleaved (round-robin repeats, median per config), so machine load
affects all configs alike. No goal is set by an issue; the ratio is what a K-mode device costs.
Usage: ``python benchmarks/bench_decay_modes.py [--repeats N] [--threads T] [--chips B]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import presets

DT_S = 4 / 60


def _state(dev, chips: int) -> CrossbarState:
    gen = torch.Generator().manual_seed(0)
    st = CrossbarState([544] * 5, 64, dev)  # 2720 inputs on 5 row-tiles (aihwkit's balanced split of 512-row tiles)
    w = torch.rand(64, 2720, generator=gen) * 2 - 1
    if dev.tau_d2d_std > 0:
        st.program_chips(w * 0.5, chips=chips, slots_per_chip=1, generator=gen)
    else:
        st.program(w * 0.5, generator=gen)
    st.set_batch(chips)
    st.set_bias(torch.rand(64, 2720, generator=gen) * 0.6)
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chips", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = presets.sto_2024()
    configs = {
        "exp (fused)": base,
        "biexp (2 modes)": replace(base, decay_law="biexp", decay_weight=0.5, decay_tau_ratio=10.0),
        "kww beta 0.5": replace(base, decay_law="kww", decay_beta=0.5),
        "kww beta 0.3": replace(base, decay_law="kww", decay_beta=0.3),
        "exp + tau spread (per chip)": replace(base, tau_d2d_std=0.3),
    }
    gen = torch.Generator().manual_seed(1)
    states = {k: _state(d, args.chips) for k, d in configs.items()}
    st0 = next(iter(states.values()))
    scale = torch.rand(st0.v_bias.shape, generator=gen) * 0.05 * st0.mask
    u = torch.randn(args.chips, 64, generator=gen)
    v = torch.randn(args.chips, st0.tiles, st0.rows, generator=gen)
    times = {k: [] for k in configs}
    for _ in range(args.repeats):
        for name, st in states.items():
            st.decay_and_outer_update(DT_S, scale, u, v)  # warm (caches)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                st.decay_and_outer_update(DT_S, scale, u, v)
            times[name].append((time.perf_counter() - t0) / args.steps)
    ref = statistics.median(times["exp (fused)"])
    print(f"short-term step of a 2720 x 64 layer, {args.chips} chips, {args.threads} thread(s), median of "
          f"{args.repeats} x {args.steps} steps")
    for name, ts in times.items():
        modes = len(configs[name].decay_modes())
        print(f"  {name:<30} modes {modes:>2}  {1e3 * statistics.median(ts):8.2f} ms/step  "
              f"{statistics.median(ts) / ref:5.2f}x exp")


if __name__ == "__main__":
    main()
