"""The short-term step of a substrate: decay for dt, then a requested change discretised to pulses.

One generic operation, written once per backend:

* :func:`short_term_change` -- the torch implementation (functional, any device, autograd with a
  straight-through quantiser when the request needs a gradient);
* the native kernel ``short_term_step`` of ``csrc/kernels.cpp`` (maths in ``csrc/short_term.h``),
  one pass over the state instead of ~20 torch passes, built at install (:mod:`stoxbar.core.native`).

Maths, per cell of a tiled state ``F [B, T, O, X]`` (S, or weight units with ``g_range = 1``)::

    request  d  = ((scale * u) * v) * g_range            scale [T, O, X], u [B, O], v [B, T, X]
    level    k  = #{m : |d| >= thresholds[m]}, signed level sign(d) k   (one quantiser:
                  :func:`stoxbar.devices.dynamics.quantise_short_term`)
    update   F' = clamp(F * lam + sign(d) dg_table[k], -g_max, g_max)

Both backends do the same operations in the same precision (the kernel is built with
``-ffp-contract=off``), so F and the levels are bit-identical; the energy sums differ by float
round-off only (the kernel accumulates in double). :func:`short_term_step` is the substrate's
entry (in place, with energies and counts); a client's digital reference of the same network can
use :func:`short_term_change` with ``g_range = 1`` (weight units), so both run the same maths.
May import: torch, stoxbar.core.native, stoxbar.devices.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from stoxbar.core import native
from stoxbar.devices import dynamics


def available() -> bool:
    """True if the native kernel is loaded (else :func:`short_term_step` runs the torch path)."""
    return native.available()


def short_term_change(F: Tensor, lam: Tensor, scale: Tensor, u: Tensor, v: Tensor, g_range: float,
                      thresholds: Tensor, dg_table: Tensor, g_max: float) -> Tuple[Tensor, Tensor]:
    """Torch implementation of the step (see module docstring); returns ``(F', signed level int8)``.

    Shapes as in the module docstring (``lam``, ``scale`` broadcast against ``F``); ``F`` is not
    modified. If the request carries a gradient, the quantiser passes it straight through
    (forward Q(d), backward identity); otherwise the result is exactly Q(d).
    """
    d = scale.unsqueeze(0) * u[:, None, :, None]
    d = d * v[:, :, None, :]
    if g_range != 1.0:
        d = d * g_range
    level, q = dynamics.quantise_short_term(d.detach(), dg_table, validate=False, thresholds=thresholds)
    if d.requires_grad:
        q = d + (q - d).detach()
    return torch.clamp(F * lam + q, -g_max, g_max), level


def _row_mask(rows: Tensor, x: int) -> Optional[Tensor]:
    """``[T, 1, X]`` mask of each tile's real rows, or None when no tile is padded."""
    if bool((rows == x).all()):
        return None
    return (torch.arange(x, device=rows.device) < rows.to(torch.long)[:, None]).unsqueeze(1)


@torch.no_grad()
def short_term_step_tiles(g_st: Tensor, rows: Tensor, lam: Tensor, per_st: Optional[Tensor], scale: Tensor,
                          u: Tensor, v: Tensor, g_range: float, thresholds: Tensor, dg_table: Tensor, g_max: float,
                          levels: bool = True) -> Tuple[Optional[Tensor], Tensor, Tensor, Optional[Tensor]]:
    """Decay ``g_st [B, T, O, X]`` (S, in place) by ``lam``, then pulse the requested change, per row-tile.

    The request is ``scale [T, O, X] * u [B, O] * v [B, T, X] * g_range`` (S), quantised with
    ``thresholds [L]`` to the levels of ``dg_table [L + 1]`` (S) and saturated at ``+-g_max``;
    ``rows [T]`` (int64) are each tile's real rows (pad rows are never pulsed). ``per_st`` (J/S
    per cell, None: no bias held) gives the bias energy of the interval, from F at its start; a
    stacked ``per_st [S, T, O, X]`` (S <= 2: the load and what a rail delivers) gives ``[B, T, S]``
    in the same pass.
    Returns (signed level int8 [B, T, O, X], ``[B, T, L]`` number of cells of each chip and
    row-tile with ``|request| >= threshold m``, column sums ``sum_o |F|`` [B, T, X] (S) after the
    step, bias energy per chip and row-tile [B, T] float64 J, or None without ``per_st``). Runs
    the native kernel for a contiguous float32/float64 CPU state, else the torch path (same F,
    levels and counts). ``levels=False``: no level tensor (None; the native pass writes none), for a
    caller that needs the counts only.
    """
    b, t, o, x = g_st.shape
    if native.usable(g_st) and g_st.is_contiguous():
        dt = g_st.dtype
        lam, scale, u, v, thresholds, dg_table = (
            a if a.dtype == dt and a.is_contiguous() else a.to(dt).contiguous()
            for a in (lam, scale, u, v, thresholds, dg_table))
        if per_st is not None and not (per_st.dtype == dt and per_st.is_contiguous()):
            per_st = per_st.to(dt).contiguous()
        level, ge, col, e_bias = native.extension().short_term_step(
            g_st, rows if rows.dtype == torch.long else rows.to(torch.long), lam, per_st, scale, u, v,
            float(g_range), thresholds, dg_table, float(g_max), bool(levels))
        return level if levels else None, ge, col, None if per_st is None else e_bias
    if per_st is None:
        e_bias = None
    elif per_st.dim() == 4:  # stacked tables [S, T, O, X]: [B, T, S]
        a = g_st.abs()
        e_bias = torch.stack([(a * p).sum((2, 3), dtype=torch.float64) for p in per_st], -1)
    else:
        e_bias = (g_st.abs() * per_st).sum((2, 3), dtype=torch.float64)
    mask = _row_mask(rows, x)
    if mask is not None:
        scale = scale * mask
    new, level = short_term_change(g_st, lam, scale, u, v, g_range, thresholds, dg_table, g_max)
    g_st.copy_(new)
    counts = dynamics.level_counts(level.reshape(b * t, o * x), thresholds.numel()).view(b, t, -1)
    ge = counts.flip(-1).cumsum(-1).flip(-1)  # cells with |request| >= threshold m
    return level if levels else None, ge, g_st.abs().sum(2), e_bias


def short_term_step(g_st: Tensor, rows: Tensor, lam: Tensor, per_st: Optional[Tensor], scale: Tensor, u: Tensor,
                    v: Tensor, g_range: float, thresholds: Tensor, dg_table: Tensor, g_max: float,
                    by_tile: bool = False, levels: bool = True) -> Tuple[Optional[Tensor], Tensor, Tensor, object]:
    """:func:`short_term_step_tiles` summed over row-tiles: (level, ``[B, L]`` cells with ``|request| >=
    threshold m``, column sums [B, T, X], bias energy J of all chips and tiles, 0 without ``per_st``).

    ``by_tile=True`` returns :func:`short_term_step_tiles`' per-(chip, row-tile) figures unsummed; ``levels``:
    as there.
    """
    out = short_term_step_tiles(g_st, rows, lam, per_st, scale, u, v, g_range, thresholds, dg_table, g_max, levels)
    if by_tile:
        return out
    level, ge, col, e_bias = out
    return level, ge.sum(1), col, 0.0 if e_bias is None else float(e_bias.sum())
