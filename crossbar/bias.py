"""Bias addressing: which decay-bias matrices a crossbar can hold, and the projection onto them.

A passive crossbar sets the voltage across cell (i, j) with its two lines: ``V_ij = a_i - b_j``
(row line i at ``a_i``, column line j at ``b_j``). ``periphery.bias_addressing`` says how the
lines (or the cells) are driven (docs/peripherals-energy.md §8):

* ``per_cell``: an access transistor and a held control voltage per cell (a 1T1C sample-and-hold,
  DRAM-like) set each cell's bias from one rail; any matrix in the device's range is held exactly.
* ``row_col``: every row and every physical column has a driver; ``V_ij = a_i - b_j``.
* ``per_row``: one voltage per row line, the columns at the bias reference (0 V): ``V_ij = a_i``.
* ``per_column``: one voltage per physical column line, the rows at 0 V: ``V_ij = -b_j``.
* ``global``: one voltage for the whole tile.

Decision (issue 17): :func:`project` *projects* a requested matrix onto the scheme and reports the
residual (it does not refuse), because a trained agent's biases are a request the chip realises as
well as it can; the residual is returned to the caller (``CrossbarState.set_bias`` keeps it in
``bias_report``). The projection is the least-squares fit in volts per physical tile (a row line
spans one tile's columns, a column line one tile's rows); since ``log tau`` is linear in V for the
STO law, it is also the least-squares fit in ``log tau``. A projected value outside the device's
window (possible for ``row_col`` only: the additive fit of values in a box can leave the box) is
brought to the window's edge and that change is part of the reported residual (``clipped`` counts
the cells). Optional quantised rails (``periphery.bias_rails_v``): every line (or cell) takes the
nearest rail after the projection; the rails' error is part of the residual too.

Differential pairs: G+ and G- of one synapse are two physical columns with their own drivers; the
simulator holds one bias per synapse, so both columns of a pair are driven to the same ``b_j``.

May import: torch, stoxbar.core.validation, stoxbar.peripherals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import Tensor

from stoxbar.core.validation import ConfigError, check_choice

from stoxbar.peripherals.drivers import BIAS_ADDRESSINGS as SCHEMES


@dataclass(frozen=True)
class BiasReport:
    """What a projection did: RMS and max |requested - held| over the real cells (V), cells clipped."""

    scheme: str
    rms_residual_v: float
    max_residual_v: float
    clipped: int
    # with line parasitics: what the wires take from the held voltages (line voltage - cell voltage, V),
    # and the largest relative change of tau it causes (crossbar/parasitics.py held_bias_cells)
    wire_drop_max_v: float = 0.0
    wire_drop_rms_v: float = 0.0
    wire_tau_err_max: float = 0.0
    # the same two maxima per physical tile k = i * J + j (row-tile i, column-tile j)
    wire_drop_max_v_per_tile: Tuple[float, ...] = ()
    wire_tau_err_max_per_tile: Tuple[float, ...] = ()


def _masked_mean(v: Tensor, m: Tensor, dims: Tuple[int, ...]) -> Tensor:
    return (v * m).sum(dims, keepdim=True) / m.sum(dims, keepdim=True).clamp_min(1)


def _fit_block(v: Tensor, m: Tensor, scheme: str) -> Tensor:
    """Least-squares fit of one column-tile block ``v [T, O, X]`` (real cells where ``m``) to ``scheme``."""
    if scheme == "global":
        return _masked_mean(v, m, (1, 2)).expand_as(v)
    if scheme == "per_row":  # one value per row line (input x), shared by the block's columns
        return _masked_mean(v, m, (1,)).expand_as(v)
    if scheme == "per_column":  # one value per column line (output o), shared by the tile's real rows
        return _masked_mean(v, m, (2,)).expand_as(v)
    # row_col: V = a_x - b_o. Every column has the same real rows, so the LS fit is the two-way
    # additive (ANOVA) decomposition: mean + row effect + column effect.
    mu = _masked_mean(v, m, (1, 2))
    row = _masked_mean(v, m, (1,)) - mu
    col = _masked_mean(v, m, (2,)) - mu
    return mu + row + col


def quantise_to_rails(v: Tensor, rails_v: Sequence[float]) -> Tensor:
    """Nearest rail (V) for every element of ``v`` (ties to the lower rail)."""
    r = torch.as_tensor(sorted(rails_v), dtype=v.dtype, device=v.device)
    idx = (v.unsqueeze(-1) - r).abs().argmin(-1)
    return r[idx]


def project(v: Tensor, mask: Tensor, col_bounds: Sequence[int], scheme: str, rails_v: Sequence[float],
            v_min: float, v_max: float) -> Tuple[Tensor, BiasReport]:
    """The bias matrix ``scheme`` can hold nearest ``v`` (tiled ``[T, O, X]``, V) and the residual.

    ``mask [T, 1, X]`` marks real rows, ``col_bounds`` the column-tile edges along O. Pad cells
    keep their value (they are no cells). Rails, when given, are applied after the fit.
    """
    check_choice("bias_addressing", scheme, SCHEMES)
    m = mask.to(v.dtype).expand_as(v)
    out = v.clone()
    if scheme != "per_cell":
        for j in range(len(col_bounds) - 1):
            s = slice(col_bounds[j], col_bounds[j + 1])
            out[:, s, :] = _fit_block(v[:, s, :], m[:, s, :], scheme)
    if rails_v:
        out = quantise_to_rails(out, rails_v)
    clipped = int((((out < v_min) | (out > v_max)) & mask.expand_as(v)).sum())
    out = out.clamp(v_min, v_max)  # reported: ``clipped`` and the residual below
    out = torch.where(mask.expand_as(v), out, v)
    r = (out - v)[mask.expand_as(v)].double()
    rep = BiasReport(scheme, float(r.pow(2).mean().sqrt()) if r.numel() else 0.0,
                     float(r.abs().max()) if r.numel() else 0.0, clipped)
    return out, rep


def check_rails(rails_v: Sequence[float], v_min: float, v_max: float) -> None:
    """Rails must lie in the device's bias window (a rail outside it could never be held)."""
    for k, r in enumerate(rails_v):
        if not (v_min <= r <= v_max):
            raise ConfigError(f"bias_rails_v[{k}] = {r!r} V: allowed range is [{v_min:g}, {v_max:g}] V "
                              "(the device's bias window)")
