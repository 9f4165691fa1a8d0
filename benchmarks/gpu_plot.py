"""Figure of a ``benchmarks/gpu_measure.py`` file: the agent step's energy per game against the games
played at a time, eager and as a CUDA graph, beside the chip's ``system`` energy per game.

    python benchmarks/gpu_plot.py benchmarks/gpu/h200-2026-12-04.json --chip-j 0.928 --steps 2631 --out F.png

``--chip-j``: the chip's J per game (default: the 100-game acceptance run's ``system``, 0.928 J);
``--steps``: agent steps per game (default 2,631, the same run). Never overwrites ``--out``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import List, Optional


def figure(path: str, chip_j: float, steps: float) -> bytes:
    """PNG bytes of the figure (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stoxbar.core.fsio import read_json
    from stoxbar.peripherals.gpu_baseline import validate_measurement

    data = validate_measurement(read_json(path))
    rows = [r for r in data["results"] if r["workload"] == "agent_step"]
    if not rows:
        raise SystemExit(f"gpu_plot: {path}: no agent_step rows")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for mode, marker in (("eager", "o"), ("cuda_graph", "s")):
        pts = sorted((r.get("batch", 1), r["energy_j_per_step"] / r.get("batch", 1) * steps,
                      r["time_s_per_step"] * data["idle_power_w"] / r.get("batch", 1) * steps)
                     for r in rows if r["mode"] == mode)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=f"GPU board, {mode.replace('_', ' ')}")
            ax.plot([p[0] for p in pts], [p[1] - p[2] for p in pts], marker=marker, ls=":", alpha=0.6,
                    label=f"GPU above idle, {mode.replace('_', ' ')}")
    ax.axhline(chip_j, color="k", lw=1.2, label=f"STO chip, system ({chip_j:.3g} J)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("games played at a time on the GPU (batch)")
    ax.set_ylabel("energy per game [J]")
    ax.set_title(f"Pong m-STPN agent step, {data['gpu']['name']} (measured) vs the simulated chip\n"
                 f"{steps:,.0f} agent steps per game", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("measurement")
    p.add_argument("--chip-j", type=float, default=0.928, help="the chip's J per game")
    p.add_argument("--steps", type=float, default=2631.16, help="agent steps per game")
    p.add_argument("--out", default="gpu_vs_chip.png")
    args = p.parse_args(argv)
    for flag, v in (("--chip-j", args.chip_j), ("--steps", args.steps)):
        if not 0 < v < float("inf"):
            print(f"gpu_plot: {flag} = {v}: allowed range is (0, inf)")
            return 2
    if os.path.exists(args.out):
        print(f"gpu_plot: {args.out} exists: choose a new --out")
        return 2
    from stoxbar.core.fsio import atomic_write_bytes
    from stoxbar.core.validation import ConfigError

    try:
        atomic_write_bytes(args.out, figure(args.measurement, args.chip_j, args.steps))
    except ConfigError as exc:
        print(f"gpu_plot: {exc}")
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
