"""Long-term programming of a crossbar state: write-verify / open-loop programming to a target,
and the pulsed LTP/LTD in-situ update (docs/aihwkit-support.md §2-3).

Functions on a :class:`~stoxbar.crossbar.state.CrossbarState`; they change the conductances and
return what physically happened (pulses, device energy). Booking the events is the caller's job
(the simulator tile, crossbar/tile.py). Training modes (``STORPUConfig.update_mode``) and what
happens to weights that outgrow the conductance window (``STORPUConfig.weight_overflow``) are
named here.

A device whose class sets ``continuous_long_term = True`` (the ``ideal`` preset,
:class:`~stoxbar.devices.presets.IdealSTODevice`) lands every program and pulsed update on its
target exactly; pulses are still counted with the nominal step ``lt_dg_s`` (costs).

May import: torch, stoxbar.devices, stoxbar.core.validation, stoxbar.crossbar.state.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from stoxbar.crossbar.state import CrossbarState, is_continuous
from stoxbar.devices import dynamics
from stoxbar.core.validation import ConfigError

UPDATE_MODES = ("program_after_step", "pulsed")
"""How training reaches the conductances (``STORPUConfig.update_mode``)."""

WEIGHT_OVERFLOW = ("remap", "clip")
"""What happens to trained weights past the conductance window, |w| > 1 (``STORPUConfig.weight_overflow``):
``"remap"`` rescales the overflowing output rows into the window and moves the factor into the
digital output scales (the layer computes the same function, like aihwkit's remap); ``"clip"``
clamps them to the window (the device's bound, like aihwkit's ``clip``)."""


def device_field(device, name: str, needed_for: str) -> float:
    """``device.<name>``, or a ConfigError naming the field a plug-in device lacks for ``needed_for``."""
    value = getattr(device, name, None)
    if value is None:
        raise ConfigError(f"device {type(device).__name__} has no field {name!r}: {needed_for} needs it "
                          "(see docs/aihwkit-support.md §3)")
    return value


def write_verify_tolerance_s(device) -> float:
    """Acceptance band (S) of write-verify: ``|g - target| <= lt_c2c_std * lt_dg_s``.

    Assumption (docs/aihwkit-support.md §3): the verify loop accepts a device once it is within one
    pulse's cycle-to-cycle spread of its target, so the residual error is uniform in the band
    (std ``tol / sqrt(3)``). Ideal device (no c2c): exact.
    """
    return device_field(device, "lt_c2c_std", "write-verify training") * device.lt_dg_s


@torch.no_grad()
def program_target(st: CrossbarState, target: Tensor, mode: str,
                   unchanged: Optional[Tensor] = None) -> Tuple[float, float]:
    """Program ``target [d, x]`` (|w| <= 1) onto a one-tile state; returns (pulses, J).

    ``write_verify``: exact landing (``CrossbarState.program``), then the device of each pair
    that carries the weight (the other is reset to ``g_min``) keeps a residual error uniform in
    the acceptance band (:func:`write_verify_tolerance_s`), drawn anew except where ``unchanged``
    (``[d, x]`` bool) is true. ``open_loop``: reset and the mean device's pulses, with the
    device's d2d and c2c spread (``CrossbarState.program``).
    """
    dev = st.device_model
    tol = write_verify_tolerance_s(dev) if mode == "write_verify" else 0.0
    dtype = st.g_pos.dtype
    pulses, energy = st.program(target, mode)
    if tol > 0:
        # residual of the carrying device, added in place through 0/1 side factors (no torch.where,
        # slow on CPU, and few temporaries); the same draw in the same order as before
        new = target.to(dtype).unsqueeze(0)
        err = torch.rand_like(new).mul_(2).sub_(1).mul_(tol)
        if unchanged is not None:
            err.masked_fill_(unchanged.unsqueeze(0), 0.0)
        sign = torch.sign(new)
        side = sign.clamp_min(0)  # 1 where w > 0: G+ carries the weight
        st.g_pos.addcmul_(side, err).clamp_(dev.g_min_s, dev.g_max_s)
        torch.clamp_max(sign, 0, out=side)  # -1 where w < 0: G- carries it
        st.g_neg.addcmul_(side, err, value=-1.0).clamp_(dev.g_min_s, dev.g_max_s)
        st.invalidate()
    return pulses, energy


@torch.no_grad()
def pulsed_update(st: CrossbarState, target: Tensor, d2d: Optional[Tuple[Tensor, Tensor]]
                  ) -> Tuple[float, float, Tuple[Tensor, Tensor]]:
    """Move the device toward ``target [d, x]`` with LTP/LTD pulses; returns (pulses, J, d2d factors).

    Pulse counts come from the nominal step (``lt_dg_s`` for LTP, ``lt_up_down * lt_dg_s``
    for LTD) by stochastic rounding; each pair moves one device: toward positive weight, LTD
    on G- while it holds weight, else LTP on G+ (mirror for negative). The response is the
    device's own (state-dependent steps, d2d factors drawn once per device and kept by the
    caller, c2c spread). A continuous device lands on ``target`` (the same pulses are counted).
    """
    dev = st.device_model
    mask = st.mask.expand_as(st.g_pos)
    dw = (st.tiled_weight(target.to(st.g_pos.dtype)) - st.weights()) * mask
    if d2d is not None and d2d[0].device != st.g_pos.device:
        d2d = tuple(d.to(st.g_pos.device) for d in d2d)
    if d2d is None or d2d[0].shape != st.g_pos.shape:
        d2d = (dynamics.draw_d2d(st.g_pos.shape, dev, None, st.g_pos.dtype, st.g_pos.device),
               dynamics.draw_d2d(st.g_pos.shape, dev, None, st.g_pos.dtype, st.g_pos.device))
    eps = 1e-6 * dev.g_range_s
    pos_holds = st.g_pos > dev.g_min_s + eps
    neg_holds = st.g_neg > dev.g_min_s + eps
    up, down = dw > 0, dw < 0
    dg = dw.abs() * dev.g_range_s
    u = torch.rand_like(dg)  # stochastic rounding (one draw; each device uses one of the two counts)
    n_ltp = torch.floor(dg / dev.lt_dg_s + u)
    n_ltd = torch.floor(dg / (dev.lt_dg_s * device_field(dev, "lt_up_down", "pulsed training")) + u)
    zero = torch.zeros_like(dg)
    n_pos = torch.where(up & ~neg_holds, n_ltp, torch.where(down & pos_holds, -n_ltd, zero)) * mask
    n_neg = torch.where(down & ~pos_holds, n_ltp, torch.where(up & neg_holds, -n_ltd, zero)) * mask
    if is_continuous(dev):
        pulses = float(n_pos.abs().sum() + n_neg.abs().sum())
        st.program(target, "write_verify")  # lands exactly (its own pulse count is not this update's)
        return pulses, pulses * dev.lt_pulse_energy_j, d2d
    pulses, energy = 0.0, 0.0
    for g, n, k in ((st.g_pos, n_pos, d2d[0]), (st.g_neg, n_neg, d2d[1])):
        sel = n != 0  # only pulsed devices move (and draw c2c noise)
        if not bool(sel.any()):
            continue
        new, e = dynamics.apply_long_term(g[sel], n[sel], dev, None, k[sel])
        g[sel] = new
        pulses += float(n.abs().sum())
        energy += float(e.sum())
    st.invalidate()
    return pulses, energy, d2d


@torch.no_grad()
def overflow_factors(weight: Tensor, per_row: bool) -> Optional[Tensor]:
    """The factors that bring a tile's weights ``[d, x]`` back into the window, or None if none is past it.

    ``per_row``: ``max(1, max_j |w_ij|)`` per output row ``[d]`` (column-wise output scales);
    else one factor ``[1]``, the peak of the whole tile (a layer-wise scale keeps its shape).
    """
    lo, hi = torch.aminmax(weight, dim=1) if per_row else torch.aminmax(weight.reshape(1, -1), dim=1)
    peak = torch.maximum(hi, lo.neg_())  # no |w| temporary (this runs after every training step)
    if not bool((peak > 1.0).any()):
        return None
    return peak.clamp_min_(1.0)
