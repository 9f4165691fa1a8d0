"""Study throughput: 8 points on 1 vs 2 local workers, and Ray's per-point overhead over the local pool.

One process runs the same 8-point study (real trials: untrained paper-architecture m-STPN, 150
agent steps of Pong on the default STO chip each, one process per trial) three times into fresh
directories: local pool with 1 worker, local pool with 2 workers, local Ray instance with 2 CPUs
(started by the study, then already running). Reports wall times, the 2-vs-1 speed-up and
(Ray - local, 2 workers) / 8 per point. Usage:
``python benchmarks/bench_sweep.py [--points 8] [--steps 150]`` on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
from pathlib import Path

from stoxbar.studies import load_study
from stoxbar.studies.runner import run_study

STUDY = """
name = "bench"
seeds = [0]
[base]
checkpoint = "random"
[[grid]]
"periphery.adc.bits" = {bits}
[metrics]
games = 1
max_steps = {steps}
greedy = false
mvm_error_samples = 0
"""


def timed(study_file: Path, out: Path, **kw) -> float:
    study = load_study(str(study_file), str(out))
    t0 = time.perf_counter()
    counts = run_study(study, progress=False, **kw)
    wall = time.perf_counter() - t0
    if counts["ok"] != counts["trials"]:
        raise RuntimeError(f"benchmark study had failures: {counts}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    bits = list(range(3, 3 + args.points))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(textwrap.dedent(STUDY.format(bits=bits, steps=args.steps)))
        t1 = timed(path, Path(tmp) / "w1", workers=1)
        t2 = timed(path, Path(tmp) / "w2", workers=2)
        tr = timed(path, Path(tmp) / "ray", workers=2, ray_address="local")
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a running instance is reused
        try:
            tw = timed(path, Path(tmp) / "ray-warm", workers=2, ray_address="local")
        finally:
            ray.shutdown()
    n = args.points
    print(f"study of {n} points ({args.steps} agent steps of analog Pong each), cores: {os.cpu_count()}")
    print(f"{'backend':<28}{'wall s':>10}{'s / point':>12}")
    for name, t in (("local pool, 1 worker", t1), ("local pool, 2 workers", t2), ("Ray (local), 2 workers", tr),
                    ("Ray, already running", tw)):
        print(f"{name:<28}{t:>10.1f}{t / n:>12.2f}")
    print(f"speed-up 2 workers vs 1: {t1 / t2:.2f}x")
    print(f"Ray overhead vs local pool (2 workers): {(tr - t2) / n:+.2f} s per point incl. Ray start/stop, "
          f"{(tw - t2) / n:+.2f} s per point on a running instance")


if __name__ == "__main__":
    main()
