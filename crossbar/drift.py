"""Drift of a programmed crossbar state: the long-term retention law and the short-term decay
(aihwkit's ``program_analog_weights`` / ``drift_analog_weights`` workflow, docs/retention.md).

:func:`snapshot` keeps the state right after programming (t = 0) with each device's retention
time constant; :func:`drift` sets the state to what it is ``t`` seconds later:

* long-term: ``g(t) = g_min + (g(0) - g_min) exp(-(t/tau_ij)^beta)``
  (:class:`~stoxbar.devices.retention.RetentionModel`);
* short-term: ``F(t) = F(0) exp(-t / tau(V_bias))`` (the device's own decay).

May import: torch, stoxbar.devices, stoxbar.core.validation, stoxbar.crossbar.state.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices import dynamics
from stoxbar.devices.retention import RetentionModel
from stoxbar.core.validation import check_range


class Programmed(NamedTuple):
    """The state at t = 0 of a drift experiment, and each device's retention time constant."""

    g_pos: Tensor
    g_neg: Tensor
    g_st: Optional[Tensor]
    tau: Tensor
    g_modes: Optional[Tensor] = None  # F's part per decay mode (a device with several modes)


@torch.no_grad()
def snapshot(st: CrossbarState, retention: RetentionModel) -> Programmed:
    """Keep ``st`` as programmed now (t = 0), drawing the devices' retention time constants."""
    return Programmed(st.g_pos.clone(), st.g_neg.clone(), None if st.g_st is None else st.g_st.clone(),
                      retention.draw_tau(st.g_pos.shape, st.g_pos.dtype).to(st.g_pos.device),
                      None if st.g_modes is None else st.g_modes.clone())


@torch.no_grad()
def drift(st: CrossbarState, programmed: Programmed, retention: RetentionModel, t_s: float) -> None:
    """Set ``st`` to its state ``t_s`` seconds after ``programmed`` (absolute time, like aihwkit's)."""
    check_range("t_inference", t_s, 0.0, None, unit="s")
    g_pos0, g_neg0, g_st0, tau, modes0 = (None if v is None else v.to(st.g_pos.device) for v in programmed)
    dev = st.device_model
    m = st.mask.to(st.g_pos.dtype)
    st.g_pos.copy_(retention.relax(g_pos0, dev.g_min_s, t_s, tau) * m)
    st.g_neg.copy_(retention.relax(g_neg0, dev.g_min_s, t_s, tau) * m)
    if modes0 is not None and st.g_modes is not None and st.g_modes.shape == modes0.shape:
        t = torch.as_tensor(t_s, dtype=st.v_bias.dtype)
        lams = torch.stack(dev.mode_decay_factors(t if st.tau_factor is None else t / st.tau_factor, st.v_bias))
        st.g_modes.copy_(modes0 * lams.unsqueeze(1))  # each mode decays exactly from t = 0
        st.g_st.copy_(st.g_modes.sum(0))
    elif g_st0 is not None and st.g_st is not None and st.g_st.shape == g_st0.shape:
        st.g_st.copy_(dynamics.decay(g_st0, st.v_bias, t_s if st.tau_factor is None else t_s / st.tau_factor, dev))
    st.invalidate()
