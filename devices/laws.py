"""Device laws as plain functions of their parameters (SI units): what :mod:`stoxbar.devices.fit` fits.

Short-term relaxation of a conductance trace ``G(t) = g_inf + dg0 * L(t)`` with the decay law ``L``:

* ``exp``    ``L = exp(-t / tau)``                                  (parameters g_inf, dg0, tau)
* ``kww``    ``L = exp(-(t / tau)**beta)``, 0 < beta <= 1 (stretched, Kohlrausch-Williams-Watts)
* ``biexp``  ``L = a exp(-t / tau1) + (1 - a) exp(-t / tau2)``, 0 < a < 1, tau1 < tau2

The bias law ``tau(V) = exp(c0 + c1 V)`` (log-linear, the form ``STODevice`` simulates), the
short-term increment ``dG(E) = a E**b``, the LTP/LTD soft bounds of the pulse-coordinate model and the long-term retention ``G(t) = g_inf + (g0 - g_inf)
exp(-(t / tau)**beta)`` (the form of :class:`stoxbar.devices.retention.RetentionModel`).
docs/device-physics.md §11 gives the formulas and where each comes from.

May import: numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

__all__ = ["Law", "DECAY_LAWS", "RETENTION_LAW", "LTP_LAW", "ltp_soft_bound", "decay_exp", "decay_kww", "decay_biexp", "tau_loglinear",
           "dg_power"]


def decay_exp(t, g_inf, dg0, tau):
    """``g_inf + dg0 exp(-t / tau)`` (S)."""
    return g_inf + dg0 * np.exp(-np.asarray(t) / tau)


def decay_kww(t, g_inf, dg0, tau, beta):
    """``g_inf + dg0 exp(-(t / tau)**beta)`` (S): stretched exponential."""
    return g_inf + dg0 * np.exp(-((np.asarray(t) / tau) ** beta))


def decay_biexp(t, g_inf, dg0, a, tau1, tau2):
    """``g_inf + dg0 (a exp(-t / tau1) + (1 - a) exp(-t / tau2))`` (S): two relaxation channels."""
    t = np.asarray(t)
    return g_inf + dg0 * (a * np.exp(-t / tau1) + (1.0 - a) * np.exp(-t / tau2))


def tau_loglinear(v, c0, c1):
    """``tau(V) = exp(c0 + c1 V)`` (s)."""
    return np.exp(c0 + c1 * np.asarray(v))


def ltp_soft_bound(n, g_min, g_max, nu, s):
    """LTP of the pulse-coordinate model (``STODevice``): ``G = g_min + (g_max - g_min) expm1(-nu p)/expm1(-nu)``
    after ``n`` pulses from ``g_min``, ``p = min(s n, 1)``; ``nu`` > 0 the nonlinearity, ``s`` the advance per pulse.
    LTD is the mirror image from ``g_max`` (fit it with ``g_max - G + g_min`` as the data)."""
    p = np.minimum(s * np.asarray(n, float), 1.0)
    return g_min + (g_max - g_min) * np.expm1(-nu * p) / np.expm1(-nu)


def dg_power(e, a, b):
    """``dG(E) = a E**b`` (S) for a pulse energy ``E`` (J)."""
    return a * np.asarray(e) ** b


@dataclass(frozen=True)
class Law:
    """A law to fit: its function of (x, *params), parameter names and units, and its starting point and
    bounds from the data (``guess(x, y) -> (p0, lower, upper)``)."""

    name: str
    fn: Callable[..., np.ndarray]
    params: Tuple[str, ...]
    units: Tuple[str, ...]
    guess: Callable[[np.ndarray, np.ndarray], Tuple[list, list, list]]


def _trace_scale(t: np.ndarray, g: np.ndarray) -> Tuple[float, float, float, float]:
    """(g_end, excess at t0, 1/e time, span): a starting point for a decaying trace."""
    g_end, dg = float(g[-1]), float(g[0] - g[-1])
    target = g_end + dg / np.e
    below = np.nonzero((g - target) * np.sign(dg or 1.0) <= 0)[0]
    t_e = float(t[below[0]]) if below.size and t[below[0]] > 0 else float(t[-1]) / 3
    return g_end, dg, max(t_e, float(t[-1]) * 1e-6), float(t[-1])


def _guess_exp(t, g):
    g_end, dg, t_e, span = _trace_scale(t, g)
    big = 10 * max(abs(g).max(), abs(dg))
    return [g_end, dg, t_e], [-big, -big, span * 1e-6], [big, big, span * 1e4]


def _guess_kww(t, g):
    p0, lo, hi = _guess_exp(t, g)
    return p0 + [0.7], lo + [0.05], hi + [1.0]


def _guess_biexp(t, g):
    p0, lo, hi = _guess_exp(t, g)
    return p0[:2] + [0.5, p0[2] / 3, p0[2] * 3], lo[:2] + [1e-3, lo[2], lo[2]], hi[:2] + [1 - 1e-3, hi[2], hi[2]]


def _guess_ltp(n, g):
    span = float(g.max() - g.min()) or float(abs(g).max())
    n_sat = float(n[np.argmax(g >= g.min() + 0.95 * span)]) or float(n.max())
    big = 10 * float(abs(g).max())
    return [float(g.min()), float(g.max()), 2.0, 1.0 / max(n_sat, 1.0)], [0.0, 0.0, 1e-3, 1e-6], [big, big, 20.0, 1.0]


LTP_LAW = Law("ltp_soft_bound", ltp_soft_bound, ("g_min_s", "g_max_s", "nu", "s"), ("S", "S", "", ""), _guess_ltp)

DECAY_LAWS = (
    Law("exp", decay_exp, ("g_inf_s", "dg0_s", "tau_s"), ("S", "S", "s"), _guess_exp),
    Law("kww", decay_kww, ("g_inf_s", "dg0_s", "tau_s", "beta"), ("S", "S", "s", ""), _guess_kww),
    Law("biexp", decay_biexp, ("g_inf_s", "dg0_s", "a", "tau1_s", "tau2_s"), ("S", "S", "", "s", "s"), _guess_biexp),
)
RETENTION_LAW = Law("retention_kww", decay_kww, ("g_inf_s", "dg0_s", "tau_s", "beta"), ("S", "S", "s", ""), _guess_kww)
