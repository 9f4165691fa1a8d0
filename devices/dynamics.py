"""Vectorised device dynamics on whole tensors (any leading batch dims, float32/float64).

Every function takes the device model as ``device`` (any
:class:`~stoxbar.devices.base.MemristiveDevice`, e.g. :class:`~stoxbar.devices.sto.STODevice`;
the torch device is always the one of the input tensors) and returns new tensors; inputs are
never modified. Energies are per element, in J, and never negative. The device-specific laws
(decay, bias law, long-term pulse response, d2d spread, read noise) are the device's methods;
this module adds the checks, the discretisation into pulse levels and the bookkeeping that are
the same for every device. The STO models are summarised below and in ``docs/device-physics.md``.

This module may import torch, :mod:`stoxbar.devices.base`, :mod:`stoxbar.devices.sto` and
:mod:`stoxbar.core.validation`.

Conventions
-----------
* ``g_st`` is the *signed* short-term increment of a differential pair: ``+`` lies on the G+
  device, ``-`` on the G- device. Its magnitude is bounded by ``device.st_g_max_s``.
* Short-term level indices are signed integers: ``0`` = no pulse, ``+k``/``-k`` = level ``k``
  (1-based, ascending as ``device.short_term_levels()``) on the G+/G- device.
* Long-term pulses ``n_pulses`` are signed integers: ``+n`` = n LTP pulses, ``-n`` = n LTD.

What is clipped, and why: the *simulated state* saturates at its physical bounds (long-term
window, short-term window) and *simulated read noise* cannot make a conductance negative.
Inputs outside their ranges (a conductance outside the window, a bias outside the device's range,
NaN) raise :class:`ConfigError` instead of being clamped. In float32 the window is the
float32-rounded window (e.g. ``g_max_s = 1e-7`` is stored as 1.0000000117e-7).

Models
------
* Decay: ``g_st * Lambda(dt, V_bias)`` with the device's ``decay_factor``; for STO the exact
  closed form ``exp(-dt / tau(V_bias))`` for any ``dt`` (no Euler steps), so two half-steps
  equal one full step.
* Bias energy over ``dt``: the exact integral of ``V**2 G(t)``,
  ``V**2 * (g_lt dt + |g_st| int_0^dt Lambda)`` (device ``decay_integral_s``; for STO
  ``tau (1 - exp(-dt/tau))``), additive over sub-intervals.
* Long-term pulses, pulse-coordinate model (NeuroSim-style): LTP moves the normalised state
  ``x = (g - g_min)/g_range`` along ``x(p) = expm1(-nu p)/expm1(-nu)``, ``p in [0, 1]``; LTD along
  the mirror curve. A pulse advances ``p`` by ``s`` (chosen so that the mean step at the window
  centre is ``lt_dg_s``, ``lt_up_down * lt_dg_s`` for LTD), times the device's d2d factor, with
  a relative c2c spread ``lt_c2c_std`` per pulse. n pulses advance ``p`` by
  ``s * d2d * (n + c2c sqrt(n) xi)``, the exact distribution of the sum of n Gaussian pulse
  advances, so any n is one closed-form update (to first order the c2c spread is a relative
  spread of each conductance step). ``p`` saturates at 0 and 1 (the window bounds).

May import: torch, stoxbar.core.validation, stoxbar.devices.{base,sto}.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices.sto import STODevice
from stoxbar.core.validation import ConfigError

__all__ = [
    "decay", "bias_energy_j", "quantise_short_term", "short_term_thresholds", "apply_short_term", "short_term_tables",
    "level_counts",
    "apply_long_term", "draw_d2d", "ltp_pulses_for", "STOArray",
]

Number = Union[float, Tensor]
_TOL = 1e-6  # relative round-off tolerance when checking that a state lies in its window


# -- small helpers ------------------------------------------------------------------------------
def _check_finite(name: str, x: Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"{name} contains NaN or inf: inputs to the STO device model must be finite")


def _check_dt(dt_s: Number) -> None:
    if torch.is_tensor(dt_s):
        if dt_s.numel() and (not bool(torch.isfinite(dt_s).all()) or float(dt_s.min()) < 0):
            raise ConfigError("dt_s holds a negative or non-finite value: allowed range is [0, inf) s")
    elif isinstance(dt_s, bool) or not isinstance(dt_s, (int, float)) or not math.isfinite(dt_s) or dt_s < 0:
        raise ConfigError(f"dt_s = {dt_s!r}: allowed range is [0, inf) s")


def _check_window(name: str, g: Tensor, lo: float, hi: float, scale: float) -> None:
    """Raise unless ``lo <= g <= hi`` up to round-off (``_TOL * scale``)."""
    if g.numel() == 0:
        return
    mn, mx = torch.aminmax(g.detach())
    mn, mx = float(mn), float(mx)
    tol = _TOL * scale
    if not (math.isfinite(mn) and math.isfinite(mx)) or mn < lo - tol or mx > hi + tol:
        raise ConfigError(f"{name} spans [{mn:.6g}, {mx:.6g}] S: allowed range is [{lo:g}, {hi:g}] S")


def _level_tables(device: MemristiveDevice, like: Tensor) -> Tuple[Tensor, Tensor]:
    """(dG table, energy table), each ``[L + 1]`` with entry 0 = no pulse, dtype/device of ``like``."""
    e, dg = device.short_term_levels()
    kw = dict(dtype=like.dtype if like.is_floating_point() else torch.get_default_dtype(), device=like.device)
    return torch.tensor((0.0,) + dg, **kw), torch.tensor((0.0,) + e, **kw)


def _as_tensor(x: Number, like: Tensor) -> Tensor:
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


# -- decay and bias -----------------------------------------------------------------------------
def decay(g_st: Tensor, v_bias: Number, dt_s: Number, device: MemristiveDevice) -> Tensor:
    """Short-term increment after ``dt_s`` seconds at bias ``v_bias`` (V): ``g_st Lambda(dt, V)``.

    Exact for any ``dt_s >= 0`` (float or tensor broadcastable with ``g_st``).
    """
    _check_dt(dt_s)
    return g_st * device.decay_factor(_as_tensor(dt_s, g_st), _as_tensor(v_bias, g_st))


def bias_energy_j(g_lt: Tensor, g_st: Tensor, v_bias: Number, dt_s: Number, device: MemristiveDevice,
                  reduce: bool = False) -> Tensor:
    """Energy (J) of holding ``v_bias`` for ``dt_s`` s on a device of conductance ``g_lt + |g_st(t)|``.

    Exact integral of the device's bias power ``P(G(t), V) = G(t) p(V)`` (``device.bias_power_w``,
    linear in G by the contract) with ``g_st`` decaying from its value at the interval start by the
    device's law: ``p(V) * (g_lt dt + |g_st| * device.decay_integral_s(dt, V))`` (ohmic, exponential:
    ``V**2 * (g_lt dt + |g_st| tau (1 - exp(-dt/tau)))``). Per element (broadcast of the inputs),
    or the total as a 0-d tensor with ``reduce=True``. Additive: E(dt1) + E(dt2 from the decayed
    state) == E(dt1 + dt2).
    """
    _check_dt(dt_s)
    like = g_lt if torch.is_tensor(g_lt) and g_lt.is_floating_point() else g_st
    v = _as_tensor(v_bias, like)
    dt = _as_tensor(dt_s, like)
    held_s = device.decay_integral_s(dt, v)  # integral of Lambda over [0, dt] (s)
    e = device.bias_power_w(1.0, v) * (g_lt * dt + g_st.abs() * held_s)  # p(V) in W/S
    return e.sum() if reduce else e


# -- short-term pulses --------------------------------------------------------------------------
def quantise_short_term(delta_g: Tensor, levels: Union[MemristiveDevice, Tensor], validate: bool = True,
                        thresholds: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Nearest short-term pulse for a requested signed increment ``delta_g``: the one quantiser.

    ``levels`` is the device (its short-term levels, ``delta_g`` in S) or a level table ``[L + 1]``
    in ``delta_g``'s unit (entry 0 = no pulse, then the positive ascending increments; e.g. weight
    units for a network's digital reference). Returns ``(level_idx int8, achieved change)``: ``|delta_g|``
    below half the smallest level gives 0 (no pulse: sparse updates); above, the nearest level
    (ties go up); requests beyond the largest level get the largest (one pulse per device per
    call). The achieved change is the level's nominal increment with the request's sign;
    ``apply_short_term`` then saturates the state at the short-term window. ``thresholds``:
    :func:`short_term_thresholds` of the table, if the caller keeps them. ``validate=False``
    skips the NaN/inf check (a pass over the request) for callers whose request is built from
    checked, finite values.
    """
    if validate:
        _check_finite("delta_g", delta_g)
    if not torch.is_tensor(levels):  # a device (any MemristiveDevice)
        dg_table, _ = _level_tables(levels, delta_g)
    else:
        dg_table = levels.to(delta_g.dtype)
    mids = short_term_thresholds(dg_table) if thresholds is None else thresholds.to(delta_g.dtype)
    idx = torch.bucketize(delta_g.abs().contiguous(), mids.contiguous(), out_int32=True, right=True)  # midpoints <= |dG|
    level = (idx * torch.sign(delta_g).to(torch.int32)).to(torch.int8)
    return level, torch.copysign(dg_table[idx.long()], delta_g) * (idx > 0)


def short_term_thresholds(dg_table: Tensor) -> Tensor:
    """Decision thresholds ``[L]`` of :func:`quantise_short_term` for a level table ``[L + 1]``
    (entry 0 = no pulse): half the smallest level, then the midpoints of neighbouring levels."""
    return torch.cat([dg_table[1:2] / 2, (dg_table[1:-1] + dg_table[2:]) / 2])


def short_term_tables(device: MemristiveDevice, like: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(dG table S, energy table J, decision thresholds S) of the short-term pulses, dtype/device of ``like``.

    The tables are ``[L + 1]`` (entry 0 = no pulse); the thresholds ``[L]`` are those of
    :func:`quantise_short_term` (:func:`short_term_thresholds`).
    """
    dg_table, e_table = _level_tables(device, like)
    return dg_table, e_table, short_term_thresholds(dg_table)


def level_counts(level_idx: Tensor, n_levels: int) -> Tensor:
    """Pulses per level (both signs) of each batch element, ``[B, L]``, from signed level indices ``[B, ...]``."""
    k = level_idx.abs().reshape(level_idx.shape[0], -1).long()
    if k.is_cuda:
        return _level_counts_bincount(k, n_levels)
    counts = torch.zeros(k.shape[0], n_levels + 1, dtype=torch.int64, device=k.device)
    return counts.scatter_add_(1, k, torch.ones_like(k))[:, 1:]


def _level_counts_bincount(k: Tensor, n_levels: int) -> Tensor:
    """:func:`level_counts` of level magnitudes ``k [B, N]`` (int64) as one bincount: on a GPU a
    scatter-add onto L + 1 bins serialises on its atomics (measured on an H200: 123 us of a 250 us
    agent step at batch 1, docs/paper-energy.md §2.3), a bincount keeps per-block histograms. On
    a CPU the scatter-add stays: 1.2-4.3x faster than a bincount at 10-64 chips."""
    b = k.shape[0]
    offset = torch.arange(b, device=k.device).unsqueeze(1) * (n_levels + 1)
    return torch.bincount((k + offset).reshape(-1), minlength=b * (n_levels + 1)).view(b, n_levels + 1)[:, 1:]


def apply_short_term(g_st: Tensor, level_idx: Tensor, device: MemristiveDevice, validate: bool = True,
                     dg_scale: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """Fire the short-term pulses ``level_idx`` (signed, 0 = none) on the state ``g_st`` (S).

    Returns ``(new g_st, energy_j)``: the state saturates at ``+-st_g_max_s`` (a device near the
    top of its short-term window cannot rise further); every fired pulse costs its level's energy
    ``V**2 G_pulse t`` (J), per element. ``g_st`` must lie in the window; ``|level_idx| <= L``.
    ``validate=False`` skips those two checks (two extra passes over the state) for callers whose
    state only ever comes from this function and whose levels come from ``quantise_short_term``.
    ``dg_scale``: per-device factors (G+ device, G- device) on the level's increment
    (``device.st_dg_factor``: its dependence on the device's conductance and its spread), broadcast
    against ``g_st``; the pulse and its energy are the level's.
    """
    m = device.st_g_max_s
    if validate:
        _check_short_term_inputs(g_st, level_idx, device)
    dg_table, e_table = _level_tables(device, g_st)
    a = level_idx.abs().long()
    dg = dg_table[a]
    if dg_scale is None:
        new = (g_st + torch.where(level_idx < 0, -dg, dg)).clamp(-m, m)
    else:
        new = (g_st + torch.where(level_idx < 0, -dg * dg_scale[1], dg * dg_scale[0])).clamp(-m, m)
    return new, e_table[a]


def _check_short_term_inputs(g_st: Tensor, level_idx: Tensor, device: MemristiveDevice) -> None:
    """Raise unless ``level_idx`` is an integer tensor of valid levels and ``g_st`` is in its window."""
    if level_idx.is_floating_point() or level_idx.is_complex():
        raise ConfigError(f"level_idx dtype {level_idx.dtype}: must be an integer tensor")
    m = device.st_g_max_s
    _check_window("g_st", g_st, -m, m, m)
    n_levels = len(device.st_pulse_levels)
    if level_idx.numel():
        lo, hi = torch.aminmax(level_idx)
        if int(lo) < -n_levels or int(hi) > n_levels:
            raise ConfigError(f"level_idx spans [{int(lo)}, {int(hi)}]: allowed range is "
                              f"[-{n_levels}, {n_levels}] (0 = no pulse)")


# -- long-term pulses ---------------------------------------------------------------------------
def draw_d2d(shape: Sequence[int], device: MemristiveDevice, generator: Optional[torch.Generator] = None,
             dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Tensor:
    """Per-device step factors (draw once per array): the device's ``draw_d2d`` (STO: lognormal,
    mean 1, relative std ``lt_d2d_std``, so a device's LTP pulse never depresses on average)."""
    return device.draw_d2d(shape, generator, dtype, tdevice)


def lt_pulse_coordinate_step(device: STODevice) -> Tuple[float, float]:
    """(LTP, LTD) pulse-coordinate advance per pulse of an STO device (its pulse-coordinate model)."""
    return device.lt_pulse_coordinate_step()


def ltp_pulses_for(g_target: Tensor, device: MemristiveDevice) -> Tensor:
    """LTP pulses (whole numbers, >= 0) that take the *mean* device from ``g_min`` to ``g_target`` (S).

    Inverts the device's long-term pulse model (no d2d, no c2c): open-loop programming fires this
    many pulses and lets the spread fall where it may.
    """
    _check_window("g_target", g_target, device.g_min_s, device.g_max_s, device.g_range_s)
    return device.ltp_pulses_for(g_target)


def apply_long_term(g: Tensor, n_pulses: Tensor, device: MemristiveDevice,
                    generator: Optional[torch.Generator] = None,
                    d2d: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Apply ``n_pulses`` (signed integers: + LTP, - LTD) to long-term conductances ``g`` (S).

    Returns ``(new g, energy_j)``; the new state always lies in ``[g_min_s, g_max_s]``, and
    elements with no pulse are returned unchanged. ``d2d``: per-device step factors from
    :func:`draw_d2d` (None = 1). Energy per element: ``|n| * device.lt_pulse_energy_j``.
    See the module docstring for the model.
    """
    if n_pulses.is_floating_point():
        if not bool((n_pulses == n_pulses.round()).all()):
            raise ConfigError("n_pulses holds non-integer values: pulses are counted in whole numbers")
    elif n_pulses.is_complex() or n_pulses.dtype == torch.bool:
        raise ConfigError(f"n_pulses dtype {n_pulses.dtype}: must be an integer tensor")
    _check_window("g", g, device.g_min_s, device.g_max_s, device.g_range_s)
    n = n_pulses.to(g.dtype)
    new = device.long_term_response(g, n, generator, d2d)
    new = torch.where(n != 0, new.clamp(device.g_min_s, device.g_max_s), g)
    return new, n.abs() * device.lt_pulse_energy_j


# -- a small state class ------------------------------------------------------------------------
class STOArray:
    """An array of single STO devices: long-term ``g_lt``, short-term ``g_st``, bias, d2d factors.

    Each element is one physical device with conductance ``g_lt + g_st``; its short-term increment
    is non-negative here (a lone device has no pair partner, so negative level indices raise).
    Differential pairs (signed ``g_st``) are the crossbar's business and use the functions above.
    Methods return energies in J as Python floats (totals over the array).
    """

    def __init__(self, shape: Sequence[int], device: MemristiveDevice, *, dtype: torch.dtype = torch.float32,
                 generator: Optional[torch.Generator] = None, g_init_s: Optional[Number] = None,
                 v_bias: Optional[Number] = None):
        self.device = device
        self.generator = generator
        shape = tuple(int(s) for s in shape)
        g0 = device.g_min_s if g_init_s is None else g_init_s
        self.g_lt = torch.broadcast_to(torch.as_tensor(g0, dtype=dtype), shape).clone()
        _check_window("g_init_s", self.g_lt, device.g_min_s, device.g_max_s, device.g_range_s)
        self.g_st = torch.zeros(shape, dtype=dtype)
        self.v_bias = torch.full(shape, device.v_bias_min_v, dtype=dtype)
        if v_bias is not None:
            self.set_bias(v_bias)
        self.d2d = draw_d2d(shape, device, generator, dtype)

    def set_bias(self, v_bias: Number) -> None:
        """Hold ``v_bias`` (V, scalar or broadcastable); raises outside the device's bias range."""
        v = torch.broadcast_to(torch.as_tensor(v_bias, dtype=self.g_lt.dtype), self.g_lt.shape).clone()
        self.device.tau_s(v)  # validates the range
        self.v_bias = v

    def tau_s(self) -> Tensor:
        """Per-device decay time constant (s) at the held bias."""
        return self.device.tau_s(self.v_bias)

    def conductance(self) -> Tensor:
        """Noise-free device conductance ``g_lt + g_st`` (S)."""
        return self.g_lt + self.g_st

    def pulse_short_term(self, level_idx: Tensor) -> float:
        """Fire short-term pulses (level indices >= 0); returns their device energy (J)."""
        if level_idx.numel() and int(level_idx.min()) < 0:
            raise ConfigError("level_idx < 0: a single device only takes potentiating short-term pulses")
        self.g_st, e = apply_short_term(self.g_st, level_idx, self.device)
        return float(e.sum())

    def update_short_term(self, delta_g: Tensor) -> Tuple[Tensor, float]:
        """Quantise a requested increment (S, >= 0) to pulses and fire them: (level_idx, energy J)."""
        level, _ = quantise_short_term(delta_g, self.device)
        return level, self.pulse_short_term(level)

    def pulse_long_term(self, n_pulses: Tensor) -> float:
        """Apply signed LTP/LTD pulse counts; returns their device energy (J)."""
        self.g_lt, e = apply_long_term(self.g_lt, n_pulses, self.device, self.generator, self.d2d)
        return float(e.sum())

    def decay(self, dt_s: Number) -> float:
        """Let ``dt_s`` seconds pass at the held bias: returns the bias energy (J); ``g_st`` decays."""
        e = bias_energy_j(self.g_lt, self.g_st, self.v_bias, dt_s, self.device, reduce=True)
        self.g_st = decay(self.g_st, self.v_bias, dt_s, self.device)
        return float(e)
