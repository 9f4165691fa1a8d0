"""``TiOxTaOyDevice``: the volatile Ti/TiOx/TaOy/Pt dynamic memristor of Zhong et al. (Nat. Commun. 12, 408, 2021).

A second device through the plug-in contract (docs/device-physics.md §12). What the paper reports
(Fig. 1e-f, the only values taken from it): a write pulse of 3.0 V for 1 ms raises the conductance,
read pulses of 1.9 V for 10 us probe it, and the current relaxes as a *single exponential* with
characteristic time 400 us. Everything else is an assumption, stated in each field's source.

What differs from STO, as physics: the time constant is the device's own and is **not set by a
bias** (the paper reports one relaxation time, measured between read pulses). ``tau_s(V)`` is the
constant 400 us on the whole bias range, and :meth:`v_bias_for_tau` accepts that one time constant
only: a learned per-synapse decay (Lambda = exp(-dt/tau) per client step, e.g. dt = 1/15 s) cannot be
realised on it. A client that asks for a longer tau gets the device's range (as for any narrower
device), and exp(-66.7 ms / 400 us) = e^-167: every short-term increment has vanished before the
next step of such a client (docs/device-physics.md §12 says what this means for the game agent).

May import: torch, numpy, stoxbar.core.validation, stoxbar.devices.{base,sto}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stoxbar.core.validation import ConfigError
from stoxbar.devices.sto import STODevice, _minmax

__all__ = ["TiOxTaOyDevice", "ZHONG_TAU_S", "zhong_2021"]

#: Zhong et al. 2021, Fig. 1f: the current decay fits a single exponential with t0 = 400 us
ZHONG_TAU_S = 400e-6
# the contract asks tau_min_s < tau_max_s; a bias-independent device spans a vanishing range
_TAU_SPAN = 1e-9


@dataclass(frozen=True)
class TiOxTaOyDevice(STODevice):
    """A volatile device whose relaxation time is fixed by the material, not by a bias (module docstring)."""

    def tau_s(self, v_bias: Any) -> Any:
        """The device's one time constant ``tau_min_s`` (s) at every bias in range (not bias-controlled)."""
        t = super().tau_s(v_bias)  # checks the bias range; the span is tau_min_s (1 + 1e-9)
        return t * 0.0 + self.tau_min_s

    def v_bias_for_tau(self, tau_s: Any) -> Any:
        """``v_bias_min_v`` for the device's own time constant; any other tau is a :class:`ConfigError`."""
        lo, hi, finite = _minmax(tau_s)
        if not finite or not (math.isclose(lo, self.tau_min_s, rel_tol=1e-6)
                              and math.isclose(hi, self.tau_min_s, rel_tol=1e-6)):
            shown = f"{lo:g}" if lo == hi else f"[{lo:g}, {hi:g}]"
            raise ConfigError(f"tau_s = {shown} s: device {self.name!r} relaxes with its own time constant "
                              f"{self.tau_min_s:g} s, not set by a bias (Zhong et al. 2021); allowed: {self.tau_min_s:g} s "
                              "only (a learned per-synapse decay cannot be realised on this device)")
        return tau_s * 0.0 + self.v_bias_min_v


def zhong_2021() -> TiOxTaOyDevice:
    """Ti/TiOx/TaOy/Pt dynamic memristor (Zhong et al., Nat. Commun. 12, 408, 2021); sources per field."""
    z = "Zhong et al., Nat. Commun. 12, 408 (2021), Fig. 1e-f: "
    a = "assumption (not reported by Zhong et al. 2021): "
    g_write = 2e-6
    e_write = 3.0 ** 2 * g_write * 1e-3  # J: V^2 G t of the one write pulse
    dg_write = 2e-6
    notes = {
        "name": "preset name",
        "g_min_s": a + "relaxed conductance 1 uS (uA-level read currents at 1.9 V)",
        "g_max_s": a + "10 uS top of the usable window",
        "lt_dg_s": a + "the device is volatile; a nominal 0.1 uS step so the contract holds (long-term weights "
                       "on it would need refreshing: programming costs of this device are not meaningful)",
        "lt_up_down": a + "symmetric", "lt_nonlinearity": a + "linear", "lt_c2c_std": a + "no data",
        "lt_d2d_std": a + "no data", "lt_pulse_v": z + "the 3.0 V write amplitude",
        "lt_pulse_width_s": z + "the 1 ms write width", "lt_pulse_conductance_s": a + "2 uS under the pulse",
        "st_a": a + f"dG = 2 uS for the 3.0 V, 1 ms write pulse (E = {e_write:.3g} J), with st_b",
        "st_b": a + "sub-linear 0.5, as for sto_2024",
        "st_pulse_levels": z + "one write pulse, 3.0 V x 1 ms",
        "st_pulse_conductance_s": a + "2 uS under the write pulse (E = V^2 G t)",
        "st_g_max_s": a + "the increment saturates at 5 uS (half the window)",
        "tau_min_s": z + "single-exponential current decay, t0 = 400 us",
        "decay_law": z + "the current decays as a single exponential",
        "tau_max_s": "= tau_min_s (1 + 1e-9): the contract's range; the time constant is not bias-controlled",
        "v_bias_min_v": a + "no bias held (0 V); the relaxation is the device's own",
        "v_bias_max_v": a + "0.1 V nominal upper end; tau does not depend on it",
        "v_read_v": z + "1.9 V read pulses", "t_read_s": z + "10 us read pulses",
        "read_noise_std": a + "1% relative read noise, as for sto_2024",
    }
    return TiOxTaOyDevice(
        name="zhong_2021", g_min_s=1e-6, g_max_s=10e-6, lt_dg_s=0.1e-6, lt_up_down=1.0, lt_nonlinearity=0.0,
        lt_c2c_std=0.0, lt_d2d_std=0.0, lt_pulse_v=3.0, lt_pulse_width_s=1e-3, lt_pulse_conductance_s=g_write,
        st_a=dg_write / e_write ** 0.5, st_b=0.5, st_pulse_levels=((3.0, 1e-3),), st_pulse_conductance_s=g_write,
        st_g_max_s=5e-6, tau_min_s=ZHONG_TAU_S, tau_max_s=ZHONG_TAU_S * (1 + _TAU_SPAN), v_bias_min_v=0.0,
        v_bias_max_v=0.1, tau_increases_with_bias=True, v_read_v=1.9, t_read_s=10e-6, read_noise_std=0.01,
        notes=tuple(notes.items()))
