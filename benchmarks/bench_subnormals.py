"""Subnormal short-term state in the substrate's native step: this build against an older one, same process.

In play a decaying F cell whose decay factor is above 0.5 sticks at float32's smallest subnormal (1.4e-45 S:
1.4e-45 * lambda rounds back to itself) once no pulse refreshes it, and every operation on a subnormal takes
the CPU's slow path: ~4 % of the default agent's 340,224 cells (2 games) after 3,000 steps (docs/native.md §5).
The kernels now run with flush-to-zero (csrc/analog_mvm.h ``FlushSubnormals``). This times one
``fused.short_term_step_tiles`` of G games on the paper m-STPN's tiles (6 row-tiles of 443 rows, 64
columns, two stacked bias tables, 6 % nonzero presynaptic inputs, as in play) from the same state with a
fraction of its cells at +-1.4e-45 S, the installed build against ``--baseline-native`` (the build before the
change), interleaved; each call starts from a fresh copy of the state (the copy is not timed). Medians in ms.
``--census STEPS``: instead, the shipped agent plays 2 games on one chip for STEPS steps (greedy, sticky 0.25,
seed 0), once with the baseline's kernels and once with this build's, printing every 500 steps the fraction of
the chip's short-term cells (padding included) that are subnormal: where the fractions above come from.
Usage: ``python benchmarks/bench_subnormals.py --baseline-native OLD.so [--games 100] [--fractions 0,0.01,0.04]
[--repeats 15] [--threads 2] [--census 3000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import _kernels  # benchmarks/_kernels.py (the script's folder is on sys.path)

from stoxbar.core import native
from stoxbar.crossbar import fused
from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import dynamics, presets
from stoxbar.pong.chips import play_chips
from stoxbar.pong.env import EVAL_STICKY

ROWS = [443] * 5 + [441]  # the paper m-STPN's 2,656 inputs (2,592 conv features + 64 h) in row-tiles of <= 512
COLS = 64
SMALLEST_SUBNORMAL = float(torch.tensor(1.4e-45))


def inputs(games: int, fraction: float, seed: int = 0):
    """The step's arguments with ``fraction`` of the state's real cells at +-1.4e-45 S (the rest ~1e-9 S)."""
    dev = presets.sto_2024()
    g = torch.Generator().manual_seed(seed)
    t, x = len(ROWS), max(ROWS)
    rows = torch.tensor(ROWS)
    mask = (torch.arange(x)[None, :] < rows[:, None]).unsqueeze(1).float()  # [T, 1, X]
    lam = (0.9 + 0.099 * torch.rand(t, COLS, x, generator=g)) * mask
    per_st = torch.stack([torch.rand(t, COLS, x, generator=g) * 1e-3 * mask] * 2)
    scale = (torch.rand(t, COLS, x, generator=g) * 2 - 1) * 0.1 * mask
    f0 = (torch.rand(games, t, COLS, x, generator=g) * 2 - 1) * 1e-9 * mask
    stuck = (torch.rand(f0.shape, generator=g) < fraction) & (mask > 0)
    f0[stuck] = SMALLEST_SUBNORMAL * torch.sign(torch.rand(int(stuck.sum()), generator=g) - 0.5)
    u = torch.tanh(torch.randn(games, COLS, generator=g))
    v = torch.relu(torch.randn(games, t, x, generator=g)) * (torch.rand(games, t, x, generator=g) < 0.06)
    dg, _, thr = dynamics.short_term_tables(dev, f0)
    return f0, (rows, lam, per_st, scale, u, v, dev.g_range_s, thr, dg, dev.st_g_max_s)


def census(steps: int, module) -> None:
    """Play 2 games on one chip for ``steps`` steps with the kernels of ``module`` (None: this build), printing
    the fraction of the short-term state's cells that are subnormal every 500 steps."""
    from bench_play import chip_agent  # benchmarks/bench_play.py

    step = CrossbarState.decay_and_outer_update
    calls = [0]

    def counted(self, *a, **k):
        out = step(self, *a, **k)
        calls[0] += 1
        if calls[0] % 500 == 0:
            g = self.g_st
            sub = g.ne(0) & (g.abs() < torch.finfo(g.dtype).tiny)
            print(f"  step {calls[0]}: {float(sub.float().mean()):.2%} of {g.numel():,} cells subnormal, "
                  f"{float(g.ne(0).float().mean()):.1%} nonzero", flush=True)
        return out

    agent, periphery, ledger = chip_agent()
    CrossbarState.decay_and_outer_update = counted
    try:
        with _kernels.use(module):
            play_chips(agent, 2, 1, 0, True, steps, periphery, ledger, sticky=EVAL_STICKY)
    finally:
        CrossbarState.decay_and_outer_update = step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-native", required=True, help="an older build's _native*.so (the baseline)")
    ap.add_argument("--games", type=int, default=100)
    ap.add_argument("--fractions", default="0,0.01,0.04", help="fractions of cells stuck at the smallest subnormal")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--census", type=int, default=0, help="instead: count subnormal cells over this many play steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not native.available():
        raise SystemExit(f"native kernels not built: {native.why_unavailable()}")
    builds = {"this build": None, "baseline": _kernels.load(args.baseline_native)}
    if args.census:
        for name in ("baseline", "this build"):
            print(f"{name}:")
            census(args.census, builds[name])
        return
    print(f"short-term step of {args.games} games x {len(ROWS)} x {COLS} x {max(ROWS)} cells, {args.threads} threads, "
          f"median of {args.repeats} (interleaved)")
    print("| stuck subnormal cells | baseline ms | this build ms | ratio |")
    print("|---|---|---|---|")
    for fraction in (float(f) for f in args.fractions.split(",")):
        f0, rest = inputs(args.games, fraction)
        times = {name: [] for name in builds}
        state = torch.empty_like(f0)
        for _ in range(args.repeats):
            for name, module in builds.items():
                state.copy_(f0)
                with _kernels.use(module):
                    t0 = time.perf_counter()
                    fused.short_term_step_tiles(state, *rest, levels=False)
                    times[name].append(time.perf_counter() - t0)
        base, new = (statistics.median(times[k]) * 1e3 for k in ("baseline", "this build"))
        print(f"| {fraction:.0%} | {base:.1f} | {new:.1f} | {base / new:.2f}x |")


if __name__ == "__main__":
    main()
