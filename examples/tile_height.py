"""How tall may a tile be before its wires matter? (issue 17 point 6)

For tiles of N rows and 64 outputs (128 physical columns), at the default node's wire resistance
(32 nm, ``peripherals/parasitics.py``), with the conductances of random weights in the device's
window, this solves the tile's resistive network in full (``crossbar/parasitics.py``, validated
against ngspice) and reports

* the MVM error from the wires alone: ``||y - y_ideal|| / ||y_ideal||`` of one read of a random
  input (``stoxbar energy``'s ``ir_drop_rel_error``: the noise-free device, perfect converters);
* the held decay bias's error: the bias held on the row lines (``per_row`` addressing, columns at
  the 0 V reference) drives each cell's bias current through the wires, so the cells see less than
  their line's voltage; the max and RMS error of the cell voltages (V) and the resulting time-constant
  error ``max |tau(V_cell) / tau(V_line) - 1|`` through the device's own tau(V) law;

for ``sto_2024`` and for the same device 100x more conductive, and the tallest tile (of those
tried) within 1 % MVM error and within 5 % tau error. The bias is the device's mid-range bias
(assumption: a typical held bias; the error scales with it).

Usage: ``python examples/tile_height.py [--small]``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Dict, List

import torch

from stoxbar.crossbar.parasitics import solve_currents, wire_coupling
from stoxbar.devices import sto_2024
from stoxbar.peripherals import Parasitics, PeripheryConfig
from stoxbar.analysis.run import ir_drop_rel_error

HEIGHTS = (16, 32, 64, 128, 256, 512, 1024, 2048)
OUTPUTS = 64


def scaled(scale: float):
    d = sto_2024()
    return replace(d, g_min_s=d.g_min_s * scale, g_max_s=d.g_max_s * scale, lt_dg_s=d.lt_dg_s * scale,
                   st_g_max_s=d.st_g_max_s * scale)


def bias_error(device, rows: int, cols: int, par: Parasitics, seed: int = 0) -> Dict[str, float]:
    """Cell-voltage and tau errors of a mid-range bias held on the row lines of a rows x cols tile."""
    gen = torch.Generator().manual_seed(seed)
    g = device.g_min_s + torch.rand(rows, cols, generator=gen, dtype=torch.float64) * device.g_range_s
    v = 0.5 * (device.v_bias_min_v + device.v_bias_max_v)
    v_row = torch.full((rows,), v, dtype=torch.float64)
    i = solve_currents(g, v_row, par.r_row_ohm, par.r_col_ohm, "full", par.tol, par.max_iter)
    v_cell = v_row.unsqueeze(-1) - wire_coupling(i, par.r_row_ohm, par.r_col_ohm)
    err = (v_cell - v).abs()
    tau = torch.as_tensor(device.tau_s(v_cell.clamp(device.v_bias_min_v, device.v_bias_max_v)))
    return {"bias_err_max_v": float(err.max()), "bias_err_rms_v": float(err.square().mean().sqrt()),
            "tau_err_max": float((tau / float(device.tau_s(v)) - 1.0).abs().max())}


def run(small: bool = False) -> List[Dict[str, float]]:
    par = Parasitics(mode="full")
    rows_out = []
    for name, scale in (("sto_2024", 1.0), ("sto_2024 x100 G", 100.0)):
        dev = scaled(scale)
        for n in HEIGHTS[:4] if small else HEIGHTS:
            p = replace(PeripheryConfig(), parasitics=par).with_tile(n, OUTPUTS)
            row = {"device": name, "rows": n, "mvm_err": ir_drop_rel_error(n, OUTPUTS, dev, p)}
            row.update(bias_error(dev, n, 2 * OUTPUTS, par))
            rows_out.append(row)
    return rows_out


def limits(rows: List[Dict[str, float]], mvm: float = 0.01, tau: float = 0.05) -> Dict[str, Dict[str, int]]:
    """Per device, the tallest tile tried within ``mvm`` MVM error and within ``tau`` tau error (0: none)."""
    out: Dict[str, Dict[str, int]] = {}
    for r in rows:
        d = out.setdefault(r["device"], {"mvm": 0, "tau": 0})
        if r["mvm_err"] <= mvm:
            d["mvm"] = max(d["mvm"], int(r["rows"]))
        if r["tau_err_max"] <= tau:
            d["tau"] = max(d["tau"], int(r["rows"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="heights 16-128 only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = run(args.small)
    print("| device | rows | MVM error (wires alone) | bias error max (mV) | bias error RMS (mV) | tau error max |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['rows']} | {100 * r['mvm_err']:.3g} % | {1e3 * r['bias_err_max_v']:.3g} | "
              f"{1e3 * r['bias_err_rms_v']:.3g} | {100 * r['tau_err_max']:.3g} % |")
    for dev, lim in limits(rows).items():
        def say(n: int) -> str:
            return f"{n} rows" if n else "none of the heights tried"

        print(f"{dev}: tallest tile within 1 % MVM error: {say(lim['mvm'])}; within 5 % tau error: {say(lim['tau'])}")


if __name__ == "__main__":
    main()
