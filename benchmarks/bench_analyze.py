"""``analyze`` on a 784-256-10 MLP at batch 64 vs the plain analog forward of the same model.

One process, interleaved repeats, medians. Baseline: ``model(x)`` of the converted model (STO
tiles, no ledger attached) under ``torch.no_grad``. Measured: ``analyze(model, x)`` (ledger, the
dispatch-mode op counter, programming and the report). Goal: ratio <= 3 (issue 9).
Usage: ``python benchmarks/bench_analyze.py [--repeats N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


def build(seed: int = 0) -> nn.Module:
    from aihwkit.nn.conversion import convert_to_analog

    from stoxbar.crossbar import STORPUConfig

    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return convert_to_analog(mlp, STORPUConfig()).eval()


def measure(repeats: int = 20, batch: int = 64) -> dict:
    from stoxbar import analyze

    model = build()
    x = torch.rand(batch, 784)
    plain, analyzed = [], []
    with torch.no_grad():
        model(x)
    analyze(model, x)  # warm-up of both paths
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
        t1 = time.perf_counter()
        analyze(model, x)
        t2 = time.perf_counter()
        plain.append(t1 - t0)
        analyzed.append(t2 - t1)
    p, a = statistics.median(plain), statistics.median(analyzed)
    return {"plain_forward_ms": 1e3 * p, "analyze_ms": 1e3 * a, "ratio": a / p}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = measure(args.repeats)
    print(f"784-256-10 MLP, batch 64, {args.threads} thread(s): plain analog forward {r['plain_forward_ms']:.3f} ms, "
          f"analyze {r['analyze_ms']:.3f} ms, ratio {r['ratio']:.2f}x (goal <= 3x)")


if __name__ == "__main__":
    main()
