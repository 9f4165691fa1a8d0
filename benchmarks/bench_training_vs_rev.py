"""The training goal side by side with an older revision's code (issue 16: ">= 2x today's agent steps per
second, side by side with today's code", `stoxbar train --arch paper --cell mstpn --benchmark 40` with 1 torch
and 1 emulator thread, 842 agent steps/s when the issue was filed).

An older revision cannot share a process with this tree (other modules, another native build), so each
config is its own process: the older revision's baseline (its checkout first on PYTHONPATH, its native
kernels built there), this tree's baseline (1 torch thread, 1 emulator group) and this tree's two-core loop
(`--env-groups 2 --group-threads`), run round-robin, medians per config. Set-up of the older checkout
(the folder must be named ``stoxbar``: the repository root is the package)::

    git worktree add /tmp/old/stoxbar REV
    (cd /tmp/old/stoxbar && python setup.py build_ext --inplace)
    python benchmarks/bench_training_vs_rev.py --old-src /tmp/old [--rounds 3] [--updates 40]

Run it with nothing else on the machine (training paused): each process measures its own loop only.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

TRAIN = ["train", "--arch", "paper", "--cell", "mstpn"]
CONFIGS = {
    "older revision, 1 torch thread, 1 emulator group (the issue's baseline)": ("old", ["--threads", "1"]),
    "this tree, 1 torch thread, 1 emulator group": ("new", ["--threads", "1"]),
    "this tree, 2 group threads (--env-groups 2 --group-threads)": ("new", ["--env-groups", "2",
                                                                              "--group-threads"]),
}


def run(which: str, extra: list, updates: int, old_src: str) -> float:
    """Agent steps/s that one `stoxbar train --benchmark` process reports."""
    code = "import sys; from stoxbar.scripts.cli import main; sys.argv = ['stoxbar'] + sys.argv[1:]; main()"
    env = dict(os.environ)
    if which == "old":
        env["PYTHONPATH"] = old_src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code, *TRAIN, "--benchmark", str(updates), *extra], env=env,
                         capture_output=True, text=True, cwd=old_src if which == "old" else None)
    m = re.search(r"([\d.]+) agent steps/s", out.stdout)
    if out.returncode or not m:
        raise SystemExit(f"{which} {extra}: exit {out.returncode}: {(out.stderr or out.stdout).strip()[-400:]}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-src", required=True, help="folder holding the older checkout as stoxbar/")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--updates", type=int, default=40)
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.old_src, "stoxbar", "__init__.py")):
        raise SystemExit(f"--old-src {args.old_src!r}: no stoxbar/ package there (see the module docstring)")
    runs = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, (which, extra) in CONFIGS.items():
            runs[name].append(run(which, extra, args.updates, args.old_src))
            print(f"  {name}: {runs[name][-1]:.0f} agent steps/s", flush=True)
    base = statistics.median(runs[next(iter(CONFIGS))])
    w = max(map(len, runs))
    print(f"A2C training loop, paper m-STPN, {args.updates} updates, median of {args.rounds} rounds")
    print(f"{'config':{w}s} {'steps/s':>8s} {'vs older':>9s}  runs")
    for name, v in runs.items():
        m = statistics.median(v)
        print(f"{name:{w}s} {m:8.0f} {m / base:8.2f}x  {' '.join(f'{x:.0f}' for x in v)}")


if __name__ == "__main__":
    main()
