"""Device laws as plain functions of their parameters (SI units): what :mod:`stoxbar.devices.fit` fits.

Short-term relaxation of a conductance trace ``G(t) = g_inf + dg0 * L(t)`` with the decay law ``L``:

* ``exp``    ``L = exp(-t / tau)``                                  (parameters g_inf, dg0, tau)
* ``kww``    ``L = exp(-(t / tau)**beta)``, 0 < beta <= 1 (stretched, Kohlrausch-Williams-Watts)
* ``biexp``  ``L = a exp(-t / tau1) + (1 - a) exp(-t / tau2)``, 0 < a < 1, tau1 < tau2

The bias law ``tau(V) = exp(c0 + c1 V)`` (log-linear, the form ``STODevice`` simulates), the
short-term increment ``dG(E) = a E**b``, the LTP/LTD soft bounds of the pulse-coordinate model and the long-term retention ``G(t) = g_inf + (g0 - g_inf)
exp(-(t / tau)**beta)`` (the form of :class:`stoxbar.devices.retention.RetentionModel`).
docs/device-physics.md §11 gives the formulas and where each comes from.

A simulated decay law is a sum of exponential *modes* in ``t / tau(V)`` (``MemristiveDevice.decay_modes``),
so the state of each mode decays exactly over any step and results do not depend on the step size:
the exponential is one mode, the bi-exponential two, and the stretched exponential the series of
:func:`kww_modes` (its error bound ``KWW_MODE_TOL`` is tested).

May import: numpy, scipy (inside :func:`kww_modes`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

__all__ = ["Law", "DECAY_LAWS", "RETENTION_LAW", "LTP_LAW", "ltp_soft_bound", "decay_exp", "decay_kww", "decay_biexp", "tau_loglinear",
           "dg_power", "kww_modes", "KWW_MODE_TOL", "KWW_BETA_MIN", "KWW_MAX_MODES",
           "pchip_slopes"]

#: largest |exp(-x**beta) - sum_k w_k exp(-x / s_k)| over all x >= 0 that :func:`kww_modes` accepts
KWW_MODE_TOL = 2e-3
#: smallest stretching exponent simulated (below it the series needs more than KWW_MAX_MODES modes)
KWW_BETA_MIN = 0.3
#: most modes a stretched exponential may use (each is one more short-term state per cell)
KWW_MAX_MODES = 12
_KWW_BETA_ONE = 0.999  # beta above this: one mode (|exp(-x**0.999) - exp(-x)| < KWW_MODE_TOL)


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


@functools.lru_cache(maxsize=64)
def pchip_slopes(x: Tuple[float, ...], y: Tuple[float, ...]) -> Tuple[float, ...]:
    """Knot slopes of the monotone piecewise-cubic Hermite interpolant (PCHIP, Fritsch-Carlson; the rule of
    ``scipy.interpolate.PchipInterpolator``) through strictly increasing ``x``: interior slopes the weighted
    harmonic mean of the neighbouring secants (0 where they differ in sign), end slopes the one-sided
    three-point estimate kept to the data's direction. Two points: the straight line."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    h, d = np.diff(xa), np.diff(ya) / np.diff(xa)
    if len(xa) == 2:
        return (float(d[0]), float(d[0]))
    m = np.zeros_like(xa)
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same = d[:-1] * d[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        m[1:-1] = np.where(same, (w1 + w2) / (w1 / d[:-1] + w2 / d[1:]), 0.0)

    def end(h0, h1, d0, d1):
        e = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(e) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(e) > abs(3 * d0):
            return 3 * d0
        return e

    m[0] = end(h[0], h[1], d[0], d[1])
    m[-1] = end(h[-1], h[-2], d[-1], d[-2])
    return tuple(float(v) for v in m)


def ltp_soft_bound(n, g_min, g_max, nu, s):
    """LTP of the pulse-coordinate model (``STODevice``): ``G = g_min + (g_max - g_min) expm1(-nu p)/expm1(-nu)``
    after ``n`` pulses from ``g_min``, ``p = min(s n, 1)``; ``nu`` > 0 the nonlinearity, ``s`` the advance per pulse.
    LTD is the mirror image from ``g_max`` (fit it with ``g_max - G + g_min`` as the data)."""
    p = np.minimum(s * np.asarray(n, float), 1.0)
    return g_min + (g_max - g_min) * np.expm1(-nu * p) / np.expm1(-nu)


def dg_power(e, a, b):
    """``dG(E) = a E**b`` (S) for a pulse energy ``E`` (J)."""
    return a * np.asarray(e) ** b


def _mode_sum(x: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        return np.exp(-x[:, None] / s[None, :]) @ w


def kww_max_error(beta: float, modes: Tuple[Tuple[float, float], ...]) -> float:
    """Largest |KWW - mode series| on a dense log grid of ``x = t / tau`` over 21 decades (and at 0)."""
    w = np.array([m[0] for m in modes])
    s = np.array([m[1] for m in modes])
    x = np.concatenate([[0.0], np.logspace(-14, 7, 20000)])
    return float(np.abs(_mode_sum(x, s, w) - np.exp(-x ** beta)).max())


@functools.lru_cache(maxsize=64)
def kww_modes(beta: float) -> Tuple[Tuple[float, float], ...]:
    """The stretched exponential ``exp(-x**beta)`` (``x = t / tau``) as ``((weight, scale), ...)`` with
    ``sum_k weight_k exp(-x / scale_k)`` within ``KWW_MODE_TOL`` of it for every ``x >= 0``; weights
    positive, summing to 1 (the series starts at 1, as the law).

    KWW is completely monotone for 0 < beta <= 1 (a positive mixture of exponentials), so a short
    positive series approximates it uniformly. Fitted once per beta (deterministic): the fewest modes
    (2..KWW_MAX_MODES) whose least-squares fit (log-spaced start, non-negative weights by NNLS, then
    scales and weights refined together) meets the tolerance on x in [(1e-3)**(1/beta)/10,
    (ln 1e6)**(1/beta) 3]; beyond that range both sides are within 1e-3 of 1 or of 0.
    """
    from scipy.optimize import least_squares, nnls

    beta = float(beta)
    if not KWW_BETA_MIN <= beta <= 1.0:
        raise ValueError(f"beta = {beta!r}: allowed range is [{KWW_BETA_MIN}, 1]")
    if beta >= _KWW_BETA_ONE:
        return ((1.0, 1.0),)
    lo, hi = 1e-3 ** (1.0 / beta), np.log(1e6) ** (1.0 / beta)
    x = np.logspace(np.log10(lo) - 1, np.log10(hi) + 0.5, 400)
    y = np.exp(-x ** beta)
    for k in range(2, KWW_MAX_MODES + 1):
        s0 = np.logspace(np.log10(lo), np.log10(hi), k)
        w0, _ = nnls(np.vstack([np.exp(-x[:, None] / s0), 1e3 * np.ones(k)]), np.append(y, 1e3))
        w0 = np.maximum(w0, 1e-6)

        def unpack(p):
            ls = np.clip(p[:k], -60.0, 60.0)
            w = np.exp(p[k:] - p[k:].max())
            return np.exp(ls), w / w.sum()

        def resid(p):
            return _mode_sum(x, *unpack(p)) - y

        fit = least_squares(resid, np.concatenate([np.log(s0), np.log(w0 / w0.sum())]), method="lm", max_nfev=4000)
        s, w = unpack(fit.x)
        keep = w > 1e-9  # a vanishing mode is no state worth keeping
        s, w = s[keep], w[keep] / w[keep].sum()
        modes = tuple(sorted((float(wi), float(si)) for wi, si in zip(w, s)))
        if kww_max_error(beta, modes) <= KWW_MODE_TOL:
            return modes
    raise ValueError(f"beta = {beta!r}: no series of <= {KWW_MAX_MODES} modes within {KWW_MODE_TOL}")


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
