"""Agent steps per second of the Pong m-STPN's A2C training loop: today's loop vs both cores.

Configs (paper architecture, m-STPN, 16 envs x 20-step rollouts, the real loop: emulators,
forward, BPTT, Adam; ``pong.a2c.measure_throughput``):

* ``baseline``: 1 torch thread, 1 emulator thread, one synchronous emulator group (the loop as it
  was before emulator groups existed; issue 16 measured 842 agent steps/s on a quiet machine);
* ``2 threads``: 2 torch threads, one group;
* ``2 groups``: 1 torch thread, two asynchronous emulator groups (each group's emulation overlaps
  the other group's forward pass);
* ``2 threads + 2 groups``: both;
* ``2 group threads``: two groups, each rolled out and back-propagated by its own Python thread
  (one intra-op thread each; the native kernels release the GIL).

Ratios are measured in one process, interleaved (round-robin repeats, median per config), so the
machine load affects all configs alike. The issue's goal: >= 2x the baseline, using both cores.
Usage: ``python benchmarks/bench_pong_training.py [--repeats N] [--updates U]``.
"""

from __future__ import annotations

import argparse
import os
import statistics

from stoxbar.pong.a2c import measure_throughput
from stoxbar.pong.agent import ArchConfig

CONFIGS = {
    "baseline (1 thread, 1 group)": dict(threads=1, env_groups=1),
    "2 threads, 1 group": dict(threads=2, env_groups=1),
    "1 thread, 2 groups": dict(threads=1, env_groups=2),
    "2 threads, 2 groups": dict(threads=2, env_groups=2),
    "2 group threads": dict(threads=1, env_groups=2, group_threads=True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="round-robin repeats per config")
    ap.add_argument("--updates", type=int, default=15, help="timed updates per measurement (320 steps each)")
    args = ap.parse_args()
    arch = ArchConfig()
    runs = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, kw in CONFIGS.items():
            runs[name].append(measure_throughput(arch, updates=args.updates, warmup=2, env_threads=1, **kw)["steps_per_s"])
    base = statistics.median(runs["baseline (1 thread, 1 group)"])
    print(f"Pong m-STPN A2C training, {os.cpu_count()} CPUs, median of {args.repeats} interleaved runs "
          f"of {args.updates} updates")
    print(f"{'config':32s} {'steps/s':>9s} {'vs baseline':>12s}  runs")
    for name, v in runs.items():
        m = statistics.median(v)
        print(f"{name:32s} {m:9.0f} {m / base:11.2f}x  {' '.join(f'{x:.0f}' for x in v)}")


if __name__ == "__main__":
    main()
