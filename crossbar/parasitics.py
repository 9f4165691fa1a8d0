"""The read with line parasitics: a solver of each tile's resistive network and the read model built on it.

A tile of ``X`` rows and ``P`` physical columns (a differential pair = two neighbouring columns) is a
resistive network: row ``i`` is driven at its first cell with the input voltage ``V_i``, each cell
``(i, c)`` of conductance ``G_ic`` connects its row node ``U_ic`` to its column node ``D_ic``, and
neighbouring nodes are joined by the wire resistance per cell pitch (``r_row`` along a row, ``r_col``
along a column); a column ends at its sense amplifier (a virtual ground) after its last row
(``peripherals/parasitics.py``). With ``I_ic = G_ic (U_ic - D_ic)`` the node voltages are

    U_ic = V_i - r_row * sum_k (min(c, k) + 1) I_ik        (the row wire carries the currents beyond c)
    D_ic = r_col * sum_m (X - max(i, m)) I_mc               (the column wire carries the currents above i)

so the cell currents solve ``(diag(1/G) + R) I = V`` with ``R`` symmetric positive semi-definite;
``R I`` is four cumulative sums, no matrix. ``"full"`` solves it by conjugate gradient with the
diagonal preconditioner (the preconditioned system's condition number is ``1 + lambda_max(G R)``,
about ``1 + r G N^2``: a few iterations at STO conductances), started from the first-order
currents; ``"first_order"`` is one correction of the ideal currents, ``I = G (V - R G V)``. Summed
down a column that correction is a fixed matrix (R is symmetric and splits into row and column
wires): the columns read ``V^T M`` with ``M = G (1 - R G)`` elementwise, ``R G`` the wire drop that
the conductances themselves would cause at unit drive. So the first-order read is the ideal read of
the effective weights ``M`` (:class:`FirstOrderParasiticMVM`: cached until the conductances change,
and read natively), and the full read solves per input (:class:`ParasiticMVM`). The network is linear, so the same solution holds for
amplitude-coded inputs and, by superposition (off rows held at 0 V), for pulse-width and bit-serial
inputs: the read charge is the solved currents times the drive time.

:class:`FirstOrderParasiticMVM` and :class:`ParasiticMVM` are read models
(:mod:`stoxbar.crossbar.read`): the configuration selects them by ``periphery.parasitics.mode``. Its outputs carry the straight-through gradient
of the ideal read. Validated against ngspice in ``tests/test_parasitics.py``.

May import: torch, stoxbar.core.validation, stoxbar.crossbar.{read,state}, stoxbar.peripherals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.core.validation import ConfigError

if TYPE_CHECKING:
    from stoxbar.crossbar.state import CrossbarState
    from stoxbar.peripherals.config import PeripheryConfig
    from stoxbar.peripherals.parasitics import Parasitics


def _rev_cumsum(x: Tensor, dim: int) -> Tensor:
    """Sum from each element to the end of ``dim`` (total - prefix + self: no flips, which copy on CPU)."""
    c = x.cumsum(dim)
    return c.narrow(dim, -1, 1) - c + x


def wire_coupling(i_cell: Tensor, r_row: float, r_col: float) -> Tensor:
    """``R I``: the voltage the wires drop at each cell, ``(U - D)`` deficit, for cell currents ``[..., X, P]`` (V)."""
    out = _rev_cumsum(i_cell, -1).cumsum(-1).mul_(r_row)  # row wires: V_i - U_ic
    return out.add_(_rev_cumsum(i_cell.cumsum(-2), -2), alpha=r_col)  # column wires: D_ic


def solve_currents(g: Tensor, v: Tensor, r_row: float, r_col: float, mode: str = "full", tol: float = 1e-7,
                   max_iter: int = 500, v_col: Optional[Tensor] = None, per_cell: bool = False) -> Tensor:
    """Cell currents ``[..., X, P]`` (A) of tiles of conductances ``g [..., X, P]`` (S, >= 0) whose rows are
    driven at ``v [..., X]`` (V) and whose column ends sit at ``v_col [..., P]`` (V; default 0: the sense
    amplifiers' virtual ground; a held bias drives them). Cells with ``g = 0`` carry none.
    ``per_cell``: ``v [..., X, P]`` is the line-voltage difference ``a_i - b_j`` each cell would see with
    ideal wires (any held bias matrix; the wires' drops are the same sums, ``U - D = V_ij - R I``).
    ``mode``: "first_order" | "full"."""
    if per_cell:
        drive = v
    else:
        drive = v.unsqueeze(-1) if v_col is None else v.unsqueeze(-1) - v_col.unsqueeze(-2)
    g, vv = torch.broadcast_tensors(g, drive)
    i0 = g * vv
    if mode == "first_order":
        return g * (vv - wire_coupling(i0, r_row, r_col))
    if mode != "full":
        raise ConfigError(f"parasitics.mode = {mode!r}: allowed values are ('first_order', 'full') for a solve")
    i0 = g * (vv - wire_coupling(i0, r_row, r_col))  # start from the first-order currents
    on = g > 0
    inv_g = torch.where(on, 1.0 / torch.where(on, g, torch.ones_like(g)), torch.zeros_like(g))
    x_n, p_n = g.shape[-2], g.shape[-1]
    diag_r = (r_row * torch.arange(1, p_n + 1, dtype=g.dtype, device=g.device)
              + r_col * torch.arange(x_n, 0, -1, dtype=g.dtype, device=g.device).unsqueeze(-1))
    precond = torch.where(on, 1.0 / (inv_g + diag_r), torch.zeros_like(g))  # 0: no unknown there

    def apply(i: Tensor) -> Tensor:
        return (i * inv_g + wire_coupling(i, r_row, r_col)) * on

    b = vv * on
    i = i0
    res = b - apply(i)
    z = res * precond
    p = z
    rz = (res * z).sum((-2, -1), keepdim=True)
    b_norm = b.square().sum((-2, -1), keepdim=True).sqrt().clamp_min(torch.finfo(g.dtype).tiny)
    for _ in range(max_iter):
        if bool((res.square().sum((-2, -1), keepdim=True).sqrt() <= tol * b_norm).all()):
            return i
        ap = apply(p)
        alpha = rz / (p * ap).sum((-2, -1), keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        i = i + alpha * p
        res = res - alpha * ap
        z = res * precond
        rz_new = (res * z).sum((-2, -1), keepdim=True)
        p = z + (rz_new / rz.clamp_min(torch.finfo(g.dtype).tiny)) * p
        rz = rz_new
    raise ConfigError(f"parasitics: the network solve did not reach tol = {tol:g} in max_iter = {max_iter} "
                      "iterations: raise parasitics.max_iter or parasitics.tol")


def held_bias_cells(state: "CrossbarState", held: Tensor, par: "Parasitics", addressing: str) -> Tensor:
    """The voltages ``[T, O, X]`` (V) the cells hold when the lines hold ``held [T, O, X]`` through wires
    of ``par``: each physical tile's network solved in full with the cells' bias currents (the
    long-term conductances plus any short-term increment present; per-chip conductances averaged over
    the chips), both columns of a pair at the pair's voltage, the pair's two cells averaged.
    Line schemes: rows driven at their first cell, columns held at their far end (where the sense
    amplifier sits), so ``U - D = V_ij - R I`` with both wires. ``per_cell``: the hold node sits at
    its cell and regulates the cell's top node (assumption), so only the column wire's drop counts."""
    r_row = 0.0 if addressing == "per_cell" else par.r_row_ohm
    out = []
    for (o0, o1), g in zip(_col_tiles(state), _physical_tiles(state, torch.float64)):
        g = g.mean(0)  # [T, X, 2 o]
        v = held[:, o0:o1, :].to(torch.float64).transpose(-1, -2).repeat_interleave(2, -1)  # [T, X, 2 o]
        i = solve_currents(g, v, r_row, par.r_col_ohm, "full", par.tol, par.max_iter, per_cell=True)
        cell = v - wire_coupling(i, r_row, par.r_col_ohm)
        out.append((0.5 * (cell[..., 0::2] + cell[..., 1::2])).transpose(-1, -2))
    return (torch.cat(out, -2) if len(out) > 1 else out[0]).to(held.dtype)


def pair_columns(g_pos: Tensor, g_neg: Tensor, g_st: Optional[Tensor]) -> Tensor:
    """Physical conductances ``[..., T, X, 2 O]`` of pairs ``[..., T, O, X]`` (G+ then G- of each output
    as neighbouring columns; a positive short-term increment sits on G+, a negative one on G-)."""
    gp, gn = g_pos, g_neg
    if g_st is not None:
        gp = gp + g_st.clamp_min(0)
        gn = gn + (-g_st).clamp_min(0)
    return torch.stack((gp.transpose(-1, -2), gn.transpose(-1, -2)), -1).flatten(-2)


def _col_tiles(state: "CrossbarState"):
    """(first, last) output of each column-tile: each physical tile has its own row wires."""
    b = state._col_bounds
    return [(b[j], b[j + 1]) for j in range(len(b) - 1)]


def _physical_tiles(state: "CrossbarState", dtype: torch.dtype):
    """Per column-tile j, the physical conductances ``[1 or B, T, X, 2 o]`` (``pair_columns``) in ``dtype``."""
    for o0, o1 in _col_tiles(state):
        g = pair_columns(state.g_pos[..., o0:o1, :].to(dtype), state.g_neg[..., o0:o1, :].to(dtype),
                         None if state.g_st is None else state.g_st[..., o0:o1, :].to(dtype))
        yield g.unsqueeze(0) if g.ndim == 3 else g


def first_order_weight(state: "CrossbarState", par: "Parasitics") -> Tensor:
    """Effective weights ``[(B,) T, O, X]`` (weight units) of the first-order wire drop: ``M = G (1 - R G)``
    per physical tile, ``(M+ - M-) / g_range`` per pair (module docstring)."""
    def compute(g_st: Optional[Tensor]) -> Tensor:
        out = []
        for o0, o1 in _col_tiles(state):
            g = pair_columns(state.g_pos[..., o0:o1, :], state.g_neg[..., o0:o1, :],
                             None if g_st is None else g_st[..., o0:o1, :])  # [(B,) T, X, 2 o]
            m = g * (1.0 - wire_coupling(g, par.r_row_ohm, par.r_col_ohm))
            out.append((m[..., 0::2] - m[..., 1::2]).transpose(-1, -2))
        w = torch.cat(out, -2) if len(out) > 1 else out[0]
        return w.div_(state.device_model.g_range_s)

    if state.g_st is None:  # the long-term state changes only when programmed: cache it
        return state._cached(f"wires:{par.r_row_ohm!r}:{par.r_col_ohm!r}", lambda: compute(None))
    return compute(state.g_st)


def line_power(g: Tensor, v: Tensor, i_cell: Tensor, r_row: float, r_col: float) -> Tuple[Tensor, Tensor]:
    """(power the row drivers deliver ``sum_i v_i I_i``, power in the cells ``sum G V_cell^2``), each
    ``[...]`` summed over the tile ``[..., X, P]``, of cell currents ``i_cell`` solved for row voltages
    ``v [..., X]`` (W; a row's current is the sum of its cells' currents). Their difference is the
    wires' I^2 R."""
    delivered = (v.unsqueeze(-1) * i_cell).sum((-2, -1))
    v_cell = v.unsqueeze(-1) - wire_coupling(i_cell, r_row, r_col)
    return delivered, (g * v_cell.square()).sum((-2, -1))


def first_order_line_power(g: Tensor, v: Tensor, r_row: float, r_col: float) -> Tuple[Tensor, Tensor]:
    """:func:`line_power` of the first-order model without a per-cell solve: the wires carry the ideal
    currents, so their I^2 R is ``r_row sum_i v_i^2 sum_k (sum_{j>=k} G_ij)^2`` (row segment k carries the
    cells beyond it) plus ``r_col sum_j sum_k (sum_{i<=k} v_i G_ij)^2`` (column segment k carries the rows
    above it), the drivers deliver the ideal power less it (``sum v G (v - R I)``, exact to this order)
    and the cells take the ideal power less twice it. Of ``g [..., X, P]`` and ``v [..., X]``: each
    ``[...]``; the column sum is one pass over the cells per vector (docs/peripherals-energy.md §6)."""
    row_load = _rev_cumsum(g, -1).square().sum(-1)  # [..., X]: per unit v_i^2
    v2 = v.square()
    ideal = (v2 * g.sum(-1)).sum(-1)
    wire = r_row * (v2 * row_load).sum(-1)
    wire = wire + r_col * (v.unsqueeze(-1) * g).cumsum(-2).square().sum((-2, -1))
    return ideal - wire, ideal - 2.0 * wire


PWM_QUADRATURE = 8  # midpoints over a PWM read window at which the wires' share is solved (docs/peripherals-energy.md §6)


def wire_drive(state: "CrossbarState", x_t: Tensor, rounds: int, io_pars: Any, periphery: "PeripheryConfig",
               drive: Tensor, wire: Tensor) -> None:
    """The read drive on wires (:meth:`TiledAnalogMVM.record_drive`): per tile, the drive the row drivers
    deliver, added to ``drive``, and the part the wires dissipate (delivered less ``sum G V_cell^2``),
    added to ``wire`` (S, in units of V_read^2 as :func:`stoxbar.crossbar.read.read_drive`).

    Amplitude reads (multibit DAC): exact, ``sum_i v_i I_i`` of the solved network. PWM reads: the row
    set that is on changes during the window (row i is on at ``V_read sign(x_i)`` while ``|x_i| > tau``),
    so the delivered and wire power are solved at ``PWM_QUADRATURE`` midpoints ``tau`` of the window
    and their ratios to the ideal power at the same points scale the exact ideal drive (exact at zero
    wire resistance). Bit-serial reads or other noise management: the ideal drive, wires not priced."""
    from aihwkit.simulator.parameters.enums import NoiseManagementType

    from stoxbar.crossbar.read import read_drive

    par, mode = periphery.parasitics, periphery.dac.mode
    if mode == "bit_serial" or io_pars.noise_management != NoiseManagementType.ABS_MAX:
        read_drive(state, x_t, rounds, io_pars, periphery, out=drive)
        return
    dt = torch.float64
    x = x_t.detach().to(dt)
    x = x / x.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(dt).tiny)  # [N, T, X] in [-1, 1]
    if mode == "multibit":
        v, scale = x, None
    else:  # pwm: the rows on at each quadrature point of the window
        tau = (torch.arange(PWM_QUADRATURE, dtype=dt, device=x.device) + 0.5) / PWM_QUADRATURE
        v = torch.sign(x) * (x.abs() > tau.view(-1, 1, 1, 1))  # [K, N, T, X]
        scale = read_drive(state, x_t, rounds, io_pars, periphery)  # the exact ideal drive per tile
    weight = (1.0 - 0.25 ** rounds) / 0.75  # multibit bound management: round r drives 1/4**r (read_drive)
    n_col_tiles = len(_col_tiles(state))
    for j, g in enumerate(_physical_tiles(state, dt)):
        if par.mode == "first_order":
            delivered, in_cells = first_order_line_power(g, v, par.r_row_ohm, par.r_col_ohm)
        else:
            i = solve_currents(g, v, par.r_row_ohm, par.r_col_ohm, par.mode, par.tol, par.max_iter)
            delivered, in_cells = line_power(g, v, i, par.r_row_ohm, par.r_col_ohm)
        lead = tuple(range(delivered.ndim - 1))  # sum over vectors (and quadrature points): [T]
        delivered, in_cells = delivered.sum(lead), in_cells.sum(lead)
        idx = torch.arange(len(delivered), device=drive.device) * n_col_tiles + j  # tile (t, j) at t * J + j
        if scale is None:
            d, w = weight * delivered, weight * (delivered - in_cells)
        else:
            ideal_q = (g * v.unsqueeze(-1).square()).sum(lead + (-2, -1))
            ratio = scale[idx.to(scale.device)].to(dt) / ideal_q.clamp_min(torch.finfo(dt).tiny)
            d, w = delivered * ratio, (delivered - in_cells) * ratio
        drive.index_add_(0, idx, d.to(drive.device))
        wire.index_add_(0, idx, w.to(drive.device))


class FirstOrderParasiticMVM(TiledAnalogMVM):
    """The read with the first-order wire drop: the ideal read of the effective weights (module docstring)."""

    @classmethod
    def record_drive(cls, state, x_t, rounds, io_pars, periphery, drive, wire) -> None:
        wire_drive(state, x_t, rounds, io_pars, periphery, drive, wire)

    @classmethod
    def array_weight(cls, state: "CrossbarState", periphery: "PeripheryConfig") -> Tensor:
        return first_order_weight(state, periphery.parasitics)


CHUNK_ELEMS = 1 << 18  # cell currents per solve (2 MiB in float64: cache-resident; measured 5x faster per input
# than 64 MiB chunks on a 256 x 512 tile): inputs are solved in chunks of this size


def transfer_weight(state: "CrossbarState", par: "Parasitics", chunk_elems: int = CHUNK_ELEMS) -> Tensor:
    """The full solve's transfer matrix as effective weights ``[T, O, X]`` (weight units): the network is
    linear in its row voltages, so column pair ``o`` of tile ``t`` reads ``sum_x W_tox v_tx`` with
    ``W[:, :, x]`` the outputs of a unit drive on row ``x`` alone (all row-tiles at once: they are
    separate networks). ``X`` solves per column-tile, in chunks of unit drives of at most
    ``chunk_elems`` cell currents; exact to the solver's ``tol``. For the long-term state only (no
    short-term increment)."""
    out = []
    for g in _physical_tiles(state, torch.float64):  # [1, T, X, 2 o]
        if g.shape[0] != 1:
            raise ConfigError("transfer_weight: one shared long-term state only (not per-chip conductances)")
        t_n, x_n = g.shape[-3], g.shape[-2]
        k = max(1, chunk_elems // g[0].numel())
        cols = []
        for s in range(0, x_n, k):
            e = torch.eye(x_n, dtype=torch.float64, device=g.device)[s:s + k]  # [k, X] unit drives
            i = solve_currents(g, e.unsqueeze(1).expand(-1, t_n, -1), par.r_row_ohm, par.r_col_ohm, "full",
                               par.tol, par.max_iter)
            col = i.sum(-2)  # [k, T, 2 o]
            cols.append(col[..., 0::2] - col[..., 1::2])
        out.append(torch.cat(cols, 0).permute(1, 2, 0))  # [T, o, X]
    w = torch.cat(out, 1) if len(out) > 1 else out[0]
    return w.div_(state.device_model.g_range_s).to(state.g_pos.dtype)


def _transfer_key(par: "Parasitics") -> str:
    """The crossbar state's cache key of the transfer matrix for the wires of ``par``."""
    return f"transfer:{par.r_row_ohm!r}:{par.r_col_ohm!r}:{par.tol!r}"


class ParasiticTransferMVM(TiledAnalogMVM):
    """The full solve through its cached transfer matrix (:func:`transfer_weight`): the ideal read of those
    effective weights, natively; what :class:`ParasiticMVM` delegates to once it pays (``for_state``)."""

    @classmethod
    def record_drive(cls, state, x_t, rounds, io_pars, periphery, drive, wire) -> None:
        wire_drive(state, x_t, rounds, io_pars, periphery, drive, wire)

    @classmethod
    def array_weight(cls, state: "CrossbarState", periphery: "PeripheryConfig") -> Tensor:
        par = periphery.parasitics
        return state._cached(_transfer_key(par), lambda: transfer_weight(state, par))


class ParasiticMVM(TiledAnalogMVM):
    """The read model with line parasitics solved in full (module docstring): each tile's currents per input,
    until the long-term state has served as many input vectors as a tile has rows; from then on (until it
    is reprogrammed) the reads go through the cached transfer matrix (:class:`ParasiticTransferMVM`), which
    costs those same ``X`` solves once: the classic break-even rule, at most twice the better choice's
    cost in hindsight. A state with a short-term increment (it changes every step) is always solved per
    input."""

    @classmethod
    def for_state(cls, state: "CrossbarState", periphery: "PeripheryConfig", vectors: int) -> type:
        if state.g_st is not None or state.per_chip:
            return cls
        hit = state._cache.get(_transfer_key(periphery.parasitics))
        if hit is not None and hit[0] == state._version:
            return ParasiticTransferMVM
        served = state._cache.get("transfer-served")
        n = (served[1] if served is not None and served[0] == state._version else 0) + vectors
        state._cache["transfer-served"] = (state._version, n)
        return ParasiticTransferMVM if n >= max(state.in_sizes) else cls

    @classmethod
    def record_drive(cls, state, x_t, rounds, io_pars, periphery, drive, wire) -> None:
        wire_drive(state, x_t, rounds, io_pars, periphery, drive, wire)

    @classmethod
    def read_physics(cls, state: "CrossbarState", periphery: "PeripheryConfig") -> Dict[str, Any]:
        physics = super().read_physics(state, periphery)
        physics["physics"] = (state, periphery.parasitics)
        return physics

    @classmethod
    def _matmul(cls, weight: Tensor, input_: Tensor, trans: bool = False, noise_var: Optional[Tensor] = None,
                physics: Optional[Tuple] = None) -> Tensor:
        ideal = super()._matmul(weight, input_, trans, noise_var=None)
        if physics is None or input_.ndim != 3:
            raise ConfigError("ParasiticMVM reads tiled inputs [B, T, X] of an STO crossbar state only")
        state, par = physics
        with torch.no_grad():
            out = parasitic_outputs(state, par, input_.detach())
        y = ideal + (out.to(ideal.dtype) - ideal).detach()  # the solved value, the ideal read's gradient
        if noise_var is not None:
            y = y + cls._noise(input_, noise_var, y)
        return y


def parasitic_outputs(state: "CrossbarState", par: "Parasitics", x: Tensor) -> Tensor:
    """Outputs ``[B, T, O]`` in weight units (column-pair current difference / g_range at unit voltage) of
    tiled inputs ``x [B, T, X]`` on ``state`` with the wires of ``par``; one solve per physical tile
    (row-tile x column-tile), in float64."""
    outs, x = [], x.to(torch.float64)
    for g in _physical_tiles(state, torch.float64):
        k = max(1, CHUNK_ELEMS // g[0].numel())  # inputs per solve: bounded memory for large batches
        cols = []
        for s in range(0, x.shape[0], k):
            gs = g if g.shape[0] == 1 else g[s:s + k]  # per-sample conductances follow their inputs
            i = solve_currents(gs, x[s:s + k], par.r_row_ohm, par.r_col_ohm, par.mode, par.tol, par.max_iter)
            cols.append(i.sum(-2))  # [b, T, 2 o]: the current into each sense amplifier
        col = torch.cat(cols, 0)
        outs.append((col[..., 0::2] - col[..., 1::2]) / state.device_model.g_range_s)
    return torch.cat(outs, -1) if len(outs) > 1 else outs[0]
