"""``STODevice``: the physics of one SrTiO3 (STO) memristor, in SI units.

One frozen, validated dataclass holds every device parameter. Each field's metadata carries its
display unit, the scale to that unit and the source of the default value (``describe()`` in
``stoxbar.devices.figures`` prints them). The defaults are the ``sto_2024`` preset: values from
``docs/paper.md`` (Weilenmann et al., Nat. Commun. 15, 2024) where the paper states them, the rest
marked "assumption" with the reasoning.

Models (all assumptions about *form* are documented here and in ``dynamics.py``):

* Long-term state ``g`` (S) lives in the window ``[g_min_s, g_max_s]``. Signed weights map onto
  differential pairs, ``w = (G+ - G-) / g_range_s``.
* LTP/LTD step response: a pulse-coordinate model (NeuroSim-style exponential saturation, or a
  lookup table of the measured curve: ``lt_table``, ``lt_table_ltd``).
  Normalised state ``x = (g - g_min)/g_range``; LTP follows ``x(p) = expm1(-nu p)/expm1(-nu)``
  along a pulse coordinate ``p in [0, 1]``, LTD the mirror image. ``nu = lt_nonlinearity`` is
  ``ln(step at g_min / step at g_max)`` for LTP (0 = linear). The mean step at the window centre
  is ``lt_dg_s`` for LTP and ``lt_up_down * lt_dg_s`` for LTD. Lookup-table device: ``lt_table`` =
  ``(x_0 = 0, x_1, ..., x_N = 1)``, the normalised conductance after n LTP pulses from ``g_min``; the
  curve ``x(p)`` is the piecewise-linear interpolation through ``(n / N, x_n)`` and a pulse advances
  ``p`` by ``1 / N``; ``lt_table_ltd`` the same for the depth ``(g_max - G) / g_range`` after n LTD
  pulses from ``g_max`` (empty: the mirror of LTP, advance ``lt_up_down / N``). d2d and c2c act on
  the advance as for the analytic curve; ``lt_dg_s`` stays the write-verify loop's nominal step.
* Short-term increment per pulse: ``dG = st_a * E**st_b`` with the pulse energy
  ``E = V**2 * st_pulse_conductance_s * t`` (J). Pulses come in a few discrete (V, t) levels.
* Decay of the short-term increment: ``F(t) = F(0) L(t / tau)``, ``tau`` set by the bias, with the
  law ``decay_law``: ``exp`` (``L = exp(-x)``, the ``sto_2024`` assumption), ``kww`` (stretched,
  ``exp(-x**decay_beta)``, simulated as the mode series of ``laws.kww_modes``) or ``biexp``
  (``a exp(-x) + (1 - a) exp(-x / r)``, ``a = decay_weight``, ``r = decay_tau_ratio``); the
  crossbar keeps one short-term state per mode (``decay_modes``), so the decay is exact over any step.
  ``tau`` depends on the bias as:
  ``log(tau)`` linear in ``V_bias`` between ``(v_bias_min_v, tau_min_s)`` and
  ``(v_bias_max_v, tau_max_s)`` (or reversed, ``tau_increases_with_bias=False``); or tabulated,
  ``tau_table`` = ((V, tau), ...): ``log(tau)`` the monotone cubic (PCHIP) through the points, its
  inverse solved on the cubic (bisection, then one Newton step that carries the gradient).
* Bias power ``V_bias**2 * G`` (ohmic), read energy ``V_read**2 * G * t_read``.

May import: torch, numpy, stoxbar.core.validation, stoxbar.devices.{base,laws}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices.laws import KWW_BETA_MIN, kww_modes, pchip_slopes
from stoxbar.core.validation import ConfigError, check_order, check_range

__all__ = ["STODevice", "MAX_ST_LEVELS"]

MAX_ST_LEVELS = 16  # at most 16 discrete short-term levels (the short-term kernel keeps 16 counters)
_REL_TOL = 1e-6  # round-off tolerance (relative) when checking tau / V_bias against their ranges

# Paper facts (docs/paper.md §1): 4.3 nW per synapse at zero weight with 0.6 V bias (ohmic -> G).
PAPER_BIAS_POWER_W = 4.3e-9
PAPER_V_BIAS_MAX_V = 0.6


_SI_UNIT = {"nS": "S", "us": "s", "ns": "s", "s": "s", "V": "V"}


def _p(default: Any, unit: str, scale: float, source: str, lo: float | None = None,
       hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Any:
    """Dataclass field with display unit/scale, allowed range and source in its metadata."""
    meta = {"unit": unit, "scale": scale, "source": source, "lo": lo, "hi": hi,
            "lo_open": lo_open, "hi_open": hi_open}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class STODevice(MemristiveDevice):
    """Physics of an STO memristor synapse (SI units; defaults = the ``sto_2024`` preset).

    The first implementation of :class:`~stoxbar.devices.base.MemristiveDevice`; the model and
    its sources are described in ``docs/device-physics.md``.
    ``notes`` maps field names to source strings that override the defaults' sources (presets
    use it so that ``describe()`` shows where *their* values come from).
    """

    noise_fields: ClassVar[Tuple[str, ...]] = ("read_noise_std", "lt_c2c_std", "lt_d2d_std", "tau_d2d_std",
                                                "st_d2d_std")

    name: str = field(default="sto_2024", metadata={"unit": "", "scale": 1.0, "source": "preset name"})

    # -- long-term conductance window ---------------------------------------------------------
    g_min_s: float = _p(PAPER_BIAS_POWER_W / PAPER_V_BIAS_MAX_V**2, "nS", 1e9,
                        "docs/paper.md §1: 4.3 nW at 0.6 V, zero weight -> 4.3 nW / 0.36 V^2 = 11.9 nS "
                        "(derived, ohmic)", 0.0, 1e-3)
    g_max_s: float = _p(100e-9, "nS", 1e9, "docs/paper.md §1: low-conductance regime 'below ~100 nS'",
                        0.0, 1e-3, lo_open=True)

    # -- long-term plasticity (LTP/LTD) -------------------------------------------------------
    lt_dg_s: float = _p(1e-9, "nS", 1e9, "assumption: ~88 mean steps across the 88 nS window "
                        "(~6.5 bit), typical of interface-type oxide memristors", 0.0, 1e-3, lo_open=True)
    lt_up_down: float = _p(1.2, "", 1.0, "assumption: LTD step / LTP step at the window centre; "
                           "mild asymmetry, LTD slightly steeper (not in the paper)", 0.0, 100.0, lo_open=True)
    lt_nonlinearity: float = _p(2.0, "", 1.0, "assumption: ln(LTP step at g_min / step at g_max) = 2 "
                                "(step shrinks 7.4x toward the bound), NeuroSim-style saturation", 0.0, 20.0)
    lt_table: Tuple[float, ...] = field(default=(), metadata={
        "unit": "(G - g_min)/g_range", "scale": 1.0, "source": "empty: the analytic curve of lt_nonlinearity "
        "(assumption); else the measured LTP curve after 0..N pulses from g_min (lookup-table device)"})
    lt_table_ltd: Tuple[float, ...] = field(default=(), metadata={
        "unit": "(g_max - G)/g_range", "scale": 1.0, "source": "empty: LTD mirrors LTP (lt_up_down); else the "
        "measured LTD curve after 0..M pulses from g_max"})
    lt_c2c_std: float = _p(0.3, "rel", 1.0, "assumption: relative cycle-to-cycle spread per pulse "
                           "(aihwkit-style dw_min_std ~0.3)", 0.0, 5.0)
    lt_d2d_std: float = _p(0.3, "rel", 1.0, "assumption: relative device-to-device spread of the step; "
                           "docs/paper.md §1 names d2d variability as a limit, so not small", 0.0, 5.0)
    lt_pulse_v: float = _p(3.0, "V", 1.0, "assumption: non-volatile switching needs larger pulses than "
                           "the 1-2 V short-term pulses", 0.0, 20.0, lo_open=True)
    lt_pulse_width_s: float = _p(10e-6, "us", 1e6, "assumption (paper's pulse table not available)",
                                 0.0, 1.0, lo_open=True)
    lt_pulse_conductance_s: float = _p(100e-9, "nS", 1e9, "assumption: conductance under a long-term "
                                       "pulse ~ top of the window (E = V^2 G t)", 0.0, 1e-3, lo_open=True)

    # -- short-term plasticity: power law dG = st_a * E**st_b ---------------------------------
    st_a: float = _p(2e-9 / (1e-12) ** 0.5, "S/J^b", 1.0, "assumption: dG = 2 nS (2.3% of the long-term "
                     "window) at E = 1 pJ; docs/paper.md §1 gives the power-law form, not a, b", 0.0, None, lo_open=True)
    st_b: float = _p(0.5, "", 1.0, "assumption: sub-linear exponent 0.5 (docs/paper.md §1: power law, "
                     "b not available)", 0.0, 3.0, lo_open=True)
    st_g_exponent: float = _p(0.0, "", 1.0, "assumption: the increment does not depend on the device's "
                              "conductance (0); otherwise dG(E, G) = st_a E^b (G / g_max_s)^st_g_exponent", -3.0, 3.0)
    st_d2d_std: float = _p(0.0, "rel", 1.0, "assumption: no data on the device-to-device spread of the short-term "
                           "increment; 0 = every device gets the level's dG", 0.0, 5.0)
    st_pulse_levels: Tuple[Tuple[float, float], ...] = field(
        default=((1.0, 10e-6), (1.0, 20e-6), (2.0, 10e-6), (2.0, 20e-6)),
        metadata={"unit": "(V, us)", "scale": 1.0, "source": "assumption: two write rails (1 V, 2 V) x two "
                  "widths (10, 20 us) -> 0.5, 1, 2, 4 pJ; docs/paper.md §1: a few fixed pulse sizes"})
    st_pulse_conductance_s: float = _p(50e-9, "nS", 1e9, "assumption: conductance under a 1-2 V write pulse "
                                       "~ mid window (used for E = V^2 G t)", 0.0, 1e-3, lo_open=True)
    st_g_max_s: float = _p(20e-9, "nS", 1e9, "assumption: volatile increment saturates at ~20% of the "
                           "long-term window (5-14 pulses)", 0.0, 1e-3, lo_open=True)

    # -- decay: tau(V_bias) -------------------------------------------------------------------
    tau_min_s: float = _p(0.1, "s", 1.0, "assumption: shortest time constant, low end of the ~0.1-1 s "
                          "range docs/paper.md §1 suggests (not reported)", 0.0, 1e15, lo_open=True)
    tau_max_s: float = _p(100.0, "s", 1.0, "docs/paper.md §1: longest short-term time constant ~100 s",
                          0.0, 1e15, lo_open=True)
    v_bias_min_v: float = _p(0.0, "V", 1.0, "assumption: unbiased device relaxes fastest (tau_min at 0 V)",
                             0.0, 10.0)
    v_bias_max_v: float = _p(PAPER_V_BIAS_MAX_V, "V", 1.0, "docs/paper.md §1: 0.6 V, the paper's worst-case "
                             "bias held on every synapse", 0.0, 10.0, lo_open=True)
    tau_increases_with_bias: bool = field(default=True, metadata={
        "unit": "", "scale": 1.0, "source": "assumption: a larger bias holds the volatile state longer "
        "(tau_max at v_bias_max_v); log(tau) linear in V_bias between the ends (assumption)"})

    decay_law: str = field(default="exp", metadata={
        "unit": "", "scale": 1.0, "source": "assumption: single-exponential relaxation (docs/paper.md §1 gives "
        "time constants, not the law's form); 'kww' or 'biexp' from a fit of measured traces (stoxbar fit)"})
    decay_beta: float = _p(1.0, "", 1.0, "stretching exponent of decay_law = 'kww' (1 with the other laws)",
                           KWW_BETA_MIN, 1.0)
    decay_weight: float = _p(1.0, "", 1.0, "weight a of the tau(V) mode of decay_law = 'biexp' (1 with the "
                             "other laws)", 0.0, 1.0, lo_open=True)
    decay_tau_ratio: float = _p(1.0, "", 1.0, "slow / fast time constant of decay_law = 'biexp' (1 with the "
                                "other laws)", 1.0, 1e6)

    tau_d2d_std: float = _p(0.0, "rel", 1.0, "assumption: no data on the device-to-device spread of STO's "
                            "time constant; 0 = every device follows tau(V) (set it to study the spread)", 0.0, 5.0)
    tau_table: Tuple[Tuple[float, float], ...] = field(default=(), metadata={
        "unit": "(V, s)", "scale": 1.0, "source": "empty: log-linear tau(V) between the range's ends "
        "(assumption); else measured (V_bias, tau) points, log(tau) interpolated by PCHIP (monotone)"})

    # -- read ---------------------------------------------------------------------------------
    v_read_v: float = _p(0.6, "V", 1.0, "assumption: read at the bias level the paper holds on every "
                         "synapse (non-disturbing); = peripherals DAC default", 0.0, 10.0, lo_open=True)
    t_read_s: float = _p(100e-9, "ns", 1e9, "ISAAC read cycle 100 ns (docs/peripherals-energy.md §1)",
                         0.0, 1.0, lo_open=True)
    read_noise_std: float = _p(0.01, "rel", 1.0, "assumption: 1% relative read noise (sub-100 nS "
                               "interface device, 100 ns integration)", 0.0, 1.0)

    notes: Tuple[Tuple[str, str], ...] = field(default=(), metadata={
        "unit": "", "scale": 1.0, "source": "per-field source notes overriding the defaults' sources"})

    # -- validation ---------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name = {self.name!r}: must be a non-empty string")
        for f in fields(self):
            m = f.metadata
            if "lo" in m:
                check_range(f.name, getattr(self, f.name), m["lo"], m["hi"], lo_open=m["lo_open"],
                            hi_open=m["hi_open"], unit=_SI_UNIT.get(m["unit"], ""))
        self._check_decay_law()
        self._check_lt_tables()
        self._check_tau_table()
        if not isinstance(self.tau_increases_with_bias, bool):
            raise ConfigError(f"tau_increases_with_bias = {self.tau_increases_with_bias!r}: must be True or False")
        check_order("g_min_s", self.g_min_s, "g_max_s", self.g_max_s)
        check_order("tau_min_s", self.tau_min_s, "tau_max_s", self.tau_max_s)
        check_order("v_bias_min_v", self.v_bias_min_v, "v_bias_max_v", self.v_bias_max_v)
        check_range("lt_dg_s", self.lt_dg_s, 0.0, self.g_range_s, lo_open=True, unit="S (<= g_max_s - g_min_s)")
        self._check_levels()
        self._check_notes()
        self.check_contract()

    def _check_decay_law(self) -> None:
        laws_ = ("exp", "kww", "biexp")
        if self.decay_law not in laws_:
            raise ConfigError(f"decay_law = {self.decay_law!r}: allowed values are {laws_}")
        unused = {"kww": ("decay_weight", "decay_tau_ratio"), "biexp": ("decay_beta",),
                  "exp": ("decay_beta", "decay_weight", "decay_tau_ratio")}[self.decay_law]
        for name in unused:
            if getattr(self, name) != 1.0:
                raise ConfigError(f"{name} = {getattr(self, name)!r}: not used by decay_law = {self.decay_law!r}; "
                                  "allowed: 1.0 (or choose the law that uses it)")

    def _check_lt_tables(self) -> None:
        for name in ("lt_table", "lt_table_ltd"):
            tab = getattr(self, name)
            if tab == ():
                continue
            ok = isinstance(tab, tuple) and 3 <= len(tab) <= MAX_LT_TABLE and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in tab)
            if not ok:
                raise ConfigError(f"{name}: must be 3..{MAX_LT_TABLE} finite numbers (normalised conductance after "
                                  f"0, 1, ..., N pulses), got {_short(tab)}")
            if not (tab[0] == 0.0 and tab[-1] == 1.0):
                raise ConfigError(f"{name}: must start at 0 and end at 1 (the window's ends), got {tab[0]!r} .. {tab[-1]!r}")
            drop = next((k for k in range(1, len(tab)) if tab[k] < tab[k - 1]), None)
            if drop is not None:
                raise ConfigError(f"{name}[{drop}] = {tab[drop]!r} < {name}[{drop - 1}] = {tab[drop - 1]!r}: a pulse "
                                  "train must not move the conductance back (allowed: non-decreasing)")
        if self.lt_table_ltd and not self.lt_table:
            raise ConfigError("lt_table_ltd is given without lt_table: give the LTP table too (or neither)")
        if self.lt_table and self.lt_nonlinearity != 0.0:
            raise ConfigError(f"lt_nonlinearity = {self.lt_nonlinearity!r}: not used with lt_table (the table is the "
                              "curve); allowed: 0")

    def _lt_knots(self, like: Tensor, ltd: bool) -> Tuple[Tensor, Tensor]:
        """(pulse coordinate p_n = n / N, normalised x_n) of the LTP table, or of the LTD one (LTP's mirror if none)."""
        tab = self.lt_table_ltd if ltd and self.lt_table_ltd else self.lt_table
        x = torch.tensor(tab, dtype=like.dtype, device=like.device)
        return torch.linspace(0.0, 1.0, len(tab), dtype=like.dtype, device=like.device), x

    def _check_tau_table(self) -> None:
        tab = self.tau_table
        if tab == ():
            return
        ok = isinstance(tab, tuple) and len(tab) >= 2 and all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                         and math.isfinite(x) for x in p) for p in tab)
        if not ok:
            raise ConfigError(f"tau_table = {tab!r}: must be 2 or more (V_bias V, tau s) pairs of finite numbers")
        v = [float(p[0]) for p in tab]
        tau = [float(p[1]) for p in tab]
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ConfigError(f"tau_table biases {v}: must increase strictly (V)")
        if not (math.isclose(v[0], self.v_bias_min_v, abs_tol=1e-12) and math.isclose(v[-1], self.v_bias_max_v, abs_tol=1e-12)):
            raise ConfigError(f"tau_table biases span [{v[0]:g}, {v[-1]:g}] V: must span the bias range "
                              f"[{self.v_bias_min_v:g}, {self.v_bias_max_v:g}] V (v_bias_min_v, v_bias_max_v)")
        up = all(b > a for a, b in zip(tau, tau[1:]))
        if not (up or all(b < a for a, b in zip(tau, tau[1:]))) or min(tau) <= 0:
            raise ConfigError(f"tau_table time constants {tau}: must be > 0 and strictly monotone in the bias (s)")
        if up != self.tau_increases_with_bias:
            raise ConfigError(f"tau_table time constants {'rise' if up else 'fall'} with the bias: set "
                              f"tau_increases_with_bias = {up}")
        if not (math.isclose(min(tau), self.tau_min_s, rel_tol=1e-9) and math.isclose(max(tau), self.tau_max_s, rel_tol=1e-9)):
            raise ConfigError(f"tau_table time constants span [{min(tau):g}, {max(tau):g}] s: must equal "
                              f"[tau_min_s, tau_max_s] = [{self.tau_min_s:g}, {self.tau_max_s:g}] s")

    def _table_knots(self) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
        """(V knots, log tau knots, PCHIP slopes) of ``tau_table``."""
        v = tuple(float(p[0]) for p in self.tau_table)
        y = tuple(math.log(float(p[1])) for p in self.tau_table)
        return v, y, pchip_slopes(v, y)

    def decay_modes(self) -> Tuple[Tuple[float, float], ...]:
        """The decay law's exponential modes ((weight, tau factor), ...): one for ``exp``, two for ``biexp``,
        the series of :func:`stoxbar.devices.laws.kww_modes` for ``kww`` (within its tested tolerance)."""
        if self.decay_law == "kww":
            return kww_modes(self.decay_beta)
        if self.decay_law == "biexp" and self.decay_weight < 1.0:
            return ((float(self.decay_weight), 1.0), (float(1.0 - self.decay_weight), float(self.decay_tau_ratio)))
        return ((1.0, 1.0),)

    def _check_levels(self) -> None:
        levels = self.st_pulse_levels
        if not isinstance(levels, tuple):
            raise ConfigError(f"st_pulse_levels = {levels!r}: must be a tuple of (amplitude V, width s) pairs")
        if not 1 <= len(levels) <= MAX_ST_LEVELS:
            raise ConfigError(f"st_pulse_levels = {levels!r}: must hold 1..{MAX_ST_LEVELS} levels, got {len(levels)}")
        for k, lv in enumerate(levels):
            if not isinstance(lv, tuple) or len(lv) != 2:
                raise ConfigError(f"st_pulse_levels[{k}] = {lv!r}: must be a (amplitude V, width s) tuple")
            check_range(f"st_pulse_levels[{k}] amplitude", lv[0], 0.0, 20.0, lo_open=True, unit="V")
            check_range(f"st_pulse_levels[{k}] width", lv[1], 0.0, 1.0, lo_open=True, unit="s")
        energies, dgs = self.short_term_levels()
        for k in range(1, len(energies)):
            if not energies[k] > energies[k - 1] * (1 + 1e-12):
                raise ConfigError(f"st_pulse_levels = {levels!r}: two levels have the same pulse energy "
                                  f"{energies[k]:.4g} J; allowed: distinct energies")
        if dgs[-1] > self.st_g_max_s:
            raise ConfigError(f"st_g_max_s = {self.st_g_max_s!r}: allowed range is [{dgs[-1]:g}, 0.001] S "
                              f"(the largest short-term level's dG must fit the short-term window)")

    def _check_notes(self) -> None:
        names = {f.name for f in fields(self)}
        if not isinstance(self.notes, tuple):
            raise ConfigError(f"notes = {self.notes!r}: must be a tuple of (field name, source) pairs")
        for item in self.notes:
            if not (isinstance(item, tuple) and len(item) == 2 and item[0] in names and isinstance(item[1], str)):
                raise ConfigError(f"notes entry {item!r}: must be (field name, source string); "
                                  f"allowed field names are {sorted(names)}")

    @property
    def lt_pulse_energy_j(self) -> float:
        """Device energy of one long-term pulse, ``V**2 * G * t`` (J)."""
        return self.lt_pulse_v**2 * self.lt_pulse_conductance_s * self.lt_pulse_width_s

    # -- short-term power law -----------------------------------------------------------------
    def st_pulse_energy_j(self, v_pulse_v: Any, width_s: Any) -> Any:
        """Energy of a short-term pulse, ``V**2 * st_pulse_conductance_s * t`` (J)."""
        return v_pulse_v**2 * self.st_pulse_conductance_s * width_s

    def st_dg_s(self, energy_j: Any) -> Any:
        """Short-term conductance increment for a pulse of ``energy_j`` (S): ``st_a * E**st_b``."""
        return self.st_a * energy_j**self.st_b

    def st_dg_factor(self, g_s: Tensor, d2d: Optional[Tensor] = None) -> Optional[Tensor]:
        """``(G / g_max_s)**st_g_exponent`` times the device's spread ``d2d``; None when neither applies."""
        f = None if self.st_g_exponent == 0.0 else (g_s.clamp_min(1e-30) / self.g_max_s) ** self.st_g_exponent
        if d2d is not None:
            f = d2d if f is None else f * d2d
        return f

    def draw_st_d2d(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                    dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Optional[Tensor]:
        """Per-device factors on the short-term increment: lognormal, mean 1, relative std ``st_d2d_std``."""
        return _lognormal(self.st_d2d_std, shape, generator, dtype, tdevice)

    # -- decay law ----------------------------------------------------------------------------
    @property
    def _log_tau_ratio(self) -> float:
        return math.log(self.tau_max_s / self.tau_min_s)

    def tau_s(self, v_bias: Any) -> Any:
        """Decay time constant (s) at bias ``v_bias`` (V): float, numpy array or torch tensor.

        ``log(tau)`` is linear in ``V_bias`` on ``[v_bias_min_v, v_bias_max_v]`` (assumption).
        Raises :class:`ConfigError` for a bias outside that range (beyond round-off) or NaN.
        """
        lo, hi = self.v_bias_min_v, self.v_bias_max_v
        _check_in_range("v_bias", v_bias, lo, hi, _REL_TOL * max(hi, 1.0), "V")
        if self.tau_table:
            return _exp(_hermite(v_bias, *self._table_knots())[0])
        frac = _clip01((v_bias - lo) / (hi - lo))
        if not self.tau_increases_with_bias:
            frac = 1.0 - frac
        return self.tau_min_s * _exp(frac * self._log_tau_ratio)

    def v_bias_for_tau(self, tau_s: Any) -> Any:
        """Bias voltage (V) that sets the decay time constant ``tau_s`` (s); inverse of ``tau_s``.

        Accepts float, numpy array or torch tensor. Raises :class:`ConfigError` if ``tau_s`` is
        outside ``[tau_min_s, tau_max_s]`` (beyond a 1e-6 relative round-off tolerance) or NaN.
        """
        _check_in_range("tau_s", tau_s, self.tau_min_s, self.tau_max_s, None, "s")
        if self.tau_table:
            return _hermite_inverse(_log(tau_s), *self._table_knots())
        frac = _clip01(_log(tau_s / self.tau_min_s) / self._log_tau_ratio)
        if not self.tau_increases_with_bias:
            frac = 1.0 - frac
        return self.v_bias_min_v + frac * (self.v_bias_max_v - self.v_bias_min_v)

    def decay_lambda(self, dt_s: Any, v_bias: Any) -> Any:
        """Decay factor over ``dt_s`` seconds, ``Lambda(dt, V_bias)`` (``exp(-dt / tau(V_bias))`` for ``exp``)."""
        _check_nonneg("dt_s", dt_s, "s")
        return self.decay_factor(dt_s, v_bias)

    lambda_for = decay_lambda  # alias named in the shared spec

    # -- long-term pulses (pulse-coordinate model, see the module docstring) -------------------
    def lt_pulse_coordinate_step(self) -> Tuple[float, float]:
        """(LTP, LTD) pulse-coordinate advance per pulse, so the mean centre steps are the device's
        (lookup table: ``1 / N`` per pulse, LTD ``1 / M`` or ``lt_up_down / N`` when it mirrors LTP)."""
        if self.lt_table:
            s_up = 1.0 / (len(self.lt_table) - 1)
            return s_up, (1.0 / (len(self.lt_table_ltd) - 1) if self.lt_table_ltd else s_up * self.lt_up_down)
        nu = self.lt_nonlinearity
        centre_slope = 1.0 if nu < 1e-6 else (nu / 2) / math.tanh(nu / 2)  # dx/dp at x = 1/2
        s_up = self.lt_dg_s / self.g_range_s / centre_slope
        return s_up, s_up * self.lt_up_down

    def draw_d2d(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Tensor:
        """Per-device step factors: lognormal, mean 1, relative std ``lt_d2d_std`` (always positive)."""
        f = _lognormal(self.lt_d2d_std, shape, generator, dtype, tdevice)
        return torch.ones(tuple(shape), dtype=dtype, device=tdevice) if f is None else f

    def draw_tau_d2d(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                     dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Optional[Tensor]:
        """Per-device time-constant factors: lognormal, mean 1, relative std ``tau_d2d_std`` (None when 0)."""
        return _lognormal(self.tau_d2d_std, shape, generator, dtype, tdevice)

    def ltp_pulses_for(self, g_target: Tensor) -> Tensor:
        """LTP pulses (whole numbers >= 0) taking the mean device from ``g_min`` to ``g_target`` (S)."""
        x = ((g_target - self.g_min_s) / self.g_range_s).clamp(0.0, 1.0)
        if self.lt_table:
            p, xk = self._lt_knots(x, ltd=False)
            return torch.round(_interp(x, xk, p) * (len(self.lt_table) - 1))
        nu = self.lt_nonlinearity
        if nu < 1e-6:
            return torch.round(x * self.g_range_s / self.lt_dg_s)
        s_up, _ = self.lt_pulse_coordinate_step()
        p = -torch.log1p(x * math.expm1(-nu)) / nu
        return torch.round(p / s_up)

    def long_term_response(self, g: Tensor, n_pulses: Tensor, generator: Optional[torch.Generator] = None,
                           d2d: Optional[Tensor] = None) -> Tensor:
        """Conductance after ``n_pulses`` (float, signed) along the LTP/LTD pulse-coordinate curves.

        n pulses advance the pulse coordinate by ``s * d2d * (n + c2c sqrt(n) xi)``; see the module
        docstring of :mod:`stoxbar.devices.dynamics`. Not yet clipped to the window.
        """
        mag = n_pulses.abs()
        up = n_pulses > 0
        adv = mag
        if self.lt_c2c_std > 0:
            shape = g.shape if n_pulses.shape == g.shape else torch.broadcast_tensors(g, n_pulses)[0].shape
            xi = torch.randn(shape, generator=generator, dtype=g.dtype, device=g.device)
            adv = mag + self.lt_c2c_std * mag.sqrt() * xi
        if d2d is not None:
            adv = adv * d2d.to(g.dtype)
        if self.lt_table:
            return self._table_response(g, adv, up)
        nu = self.lt_nonlinearity
        if nu < 1e-6:  # linear: work in conductance units (exact n * lt_dg_s without noise)
            return g + torch.where(up, adv * self.lt_dg_s, adv * (-self.lt_dg_s * self.lt_up_down))
        s_up, s_dn = self.lt_pulse_coordinate_step()
        g_min, rng = self.g_min_s, self.g_range_s
        em = math.expm1(-nu)  # < 0
        x = ((g - g_min) / rng).clamp(0.0, 1.0)  # clamp: round-off only (window checked by the caller)
        u = torch.where(up, x, 1.0 - x)  # distance travelled along the LTP (or mirrored LTD) curve
        p0 = -torch.log1p(u * em) / nu
        p1 = (p0 + torch.where(up, adv * s_up, adv * s_dn)).clamp(0.0, 1.0)
        u1 = torch.expm1(-nu * p1) / em
        return g_min + torch.where(up, u1, 1.0 - u1) * rng

    def _table_response(self, g: Tensor, adv: Tensor, up: Tensor) -> Tensor:
        """Lookup-table device: the pulse coordinate of ``g`` on its curve, advanced by ``adv`` pulses."""
        s_up, s_dn = self.lt_pulse_coordinate_step()
        g_min, rng = self.g_min_s, self.g_range_s
        x = ((g - g_min) / rng).clamp(0.0, 1.0)
        u = torch.where(up, x, 1.0 - x)
        p_up, x_up = self._lt_knots(g, ltd=False)
        p_dn, x_dn = self._lt_knots(g, ltd=True)
        p0 = torch.where(up, _interp(u, x_up, p_up), _interp(u, x_dn, p_dn))
        p1 = (p0 + torch.where(up, adv * s_up, adv * s_dn)).clamp(0.0, 1.0)
        u1 = torch.where(up, _interp(p1, p_up, x_up), _interp(p1, p_dn, x_dn))
        return g_min + torch.where(up, u1, 1.0 - u1) * rng


MAX_LT_TABLE = 100_000  # pulses in a lookup-table curve


def _lognormal(s: float, shape: Sequence[int], generator: Optional[torch.Generator], dtype: torch.dtype,
               tdevice: Optional[torch.device]) -> Optional[Tensor]:
    """Lognormal factors, mean 1, relative std ``s`` (always positive); None for ``s == 0``."""
    if s == 0:
        return None
    sig = math.sqrt(math.log1p(s * s))
    xi = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=tdevice)
    return torch.exp(sig * xi - 0.5 * sig * sig)


def _short(tab: Any) -> str:
    text = repr(tab)
    return text if len(text) <= 80 else text[:77] + "..."


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of ``(xp, fp)`` at ``x`` (``xp`` non-decreasing; a flat run of
    ``xp`` maps to its last point: the plateau's end), clipped to the ends."""
    i = torch.searchsorted(xp, x.detach().contiguous(), right=True).sub(1).clamp(0, len(xp) - 2)
    x0, x1 = xp[i], xp[i + 1]
    h = x1 - x0
    t = torch.where(h > 0, (x - x0) / torch.where(h > 0, h, torch.ones_like(h)), torch.zeros_like(x)).clamp(0.0, 1.0)
    return fp[i] + t * (fp[i + 1] - fp[i])


# -- array helpers (float / numpy / torch) ------------------------------------------------------
def _hermite(x: Any, xk: Sequence[float], yk: Sequence[float], mk: Sequence[float], seg: Any = None) -> Tuple[Any, Any]:
    """(value, derivative) of the cubic Hermite interpolant with knots ``xk``, values ``yk``, slopes ``mk``
    at ``x`` (float, numpy array or torch tensor; clipped to the knots' span), on segment ``seg`` if given."""
    if torch.is_tensor(x):
        kx = torch.tensor(xk, dtype=x.dtype, device=x.device)
        ky = torch.tensor(yk, dtype=x.dtype, device=x.device)
        km = torch.tensor(mk, dtype=x.dtype, device=x.device)
        i = torch.searchsorted(kx, x.detach().contiguous(), right=True).sub(1).clamp(0, len(xk) - 2) if seg is None else seg
    else:
        kx, ky, km = np.asarray(xk), np.asarray(yk), np.asarray(mk)
        i = np.clip(np.searchsorted(kx, x, side="right") - 1, 0, len(xk) - 2) if seg is None else seg
    h = kx[i + 1] - kx[i]
    t = _clip01((x - kx[i]) / h)
    t2, t3 = t * t, t * t * t
    val = (2 * t3 - 3 * t2 + 1) * ky[i] + (t3 - 2 * t2 + t) * h * km[i] + (3 * t2 - 2 * t3) * ky[i + 1] \
        + (t3 - t2) * h * km[i + 1]
    der = (6 * t2 - 6 * t) / h * (ky[i] - ky[i + 1]) + (3 * t2 - 4 * t + 1) * km[i] + (3 * t2 - 2 * t) * km[i + 1]
    if not torch.is_tensor(x) and np.ndim(x) == 0:
        return float(val), float(der)
    return val, der


def _hermite_inverse(y: Any, xk: Sequence[float], yk: Sequence[float], mk: Sequence[float]) -> Any:
    """The ``x`` in the knots' span where the monotone Hermite interpolant equals ``y`` (float, numpy or
    torch). Bisection on the segment to float64 round-off, then one Newton step written with ``y`` so a
    tensor's gradient is the inverse's, ``dx/dy = 1 / f'(x)``."""
    rising = yk[-1] > yk[0]
    order = yk if rising else tuple(reversed(yk))
    yt = (y.detach().to(torch.float64) if torch.is_tensor(y) else torch.as_tensor(np.asarray(y, float)))
    ky = torch.tensor(order, dtype=torch.float64)
    j = torch.searchsorted(ky, yt.contiguous(), right=True).sub(1).clamp(0, len(yk) - 2)
    seg = j if rising else len(yk) - 2 - j
    kx = torch.tensor(xk, dtype=torch.float64)
    lo, hi = kx[seg], kx[seg + 1]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f, _ = _hermite(mid, xk, yk, mk, seg)
        left = (f < yt) if rising else (f > yt)
        lo, hi = torch.where(left, mid, lo), torch.where(left, hi, mid)
    x0 = 0.5 * (lo + hi)
    if torch.is_tensor(y):
        x0 = x0.to(y.dtype if y.is_floating_point() else torch.float64).to(y.device)
        f, d = _hermite(x0, xk, yk, mk, seg.to(y.device))
        d = torch.where(d.abs() > 1e-12, d, torch.full_like(d, 1e-12))
        return x0 + (y - f.detach()) / d.detach()
    return float(x0) if np.ndim(y) == 0 else x0.numpy()



def _exp(x: Any) -> Any:
    return torch.exp(x) if torch.is_tensor(x) else (np.exp(x) if isinstance(x, np.ndarray) else math.exp(x))


def _log(x: Any) -> Any:
    return torch.log(x) if torch.is_tensor(x) else (np.log(x) if isinstance(x, np.ndarray) else math.log(x))


def _clip01(x: Any) -> Any:
    if torch.is_tensor(x):
        return x.clamp(0.0, 1.0)
    if isinstance(x, np.ndarray):
        return np.clip(x, 0.0, 1.0)
    return min(max(x, 0.0), 1.0)


def _minmax(x: Any) -> Tuple[float, float, bool]:
    """(min, max, all finite) of a float, numpy array or tensor."""
    if torch.is_tensor(x):
        if x.numel() == 0:
            return 0.0, 0.0, True
        x = x.detach()  # a range check of a value that carries a gradient (e.g. a learned time constant)
        return float(x.min()), float(x.max()), bool(torch.isfinite(x).all())
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return 0.0, 0.0, True
        return float(x.min()), float(x.max()), bool(np.isfinite(x).all())
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ConfigError(f"value {x!r}: must be a number, numpy array or torch tensor")
    return float(x), float(x), math.isfinite(x)


def _check_in_range(name: str, x: Any, lo: float, hi: float, abs_tol: float | None, unit: str) -> None:
    """Raise unless all of ``x`` lies in [lo, hi] up to round-off (abs, or 1e-6 relative if None)."""
    mn, mx, finite = _minmax(x)
    tol_lo = abs_tol if abs_tol is not None else _REL_TOL * abs(lo)
    tol_hi = abs_tol if abs_tol is not None else _REL_TOL * abs(hi)
    if not finite or mn < lo - tol_lo or mx > hi + tol_hi:
        shown = f"{mn:g}" if mn == mx else f"[{mn:g}, {mx:g}]"
        if not finite:
            shown = "NaN/inf"
        raise ConfigError(f"{name} = {shown}: allowed range is [{lo:g}, {hi:g}] {unit}")


def _check_nonneg(name: str, x: Any, unit: str) -> None:
    mn, mx, finite = _minmax(x)
    if not finite or mn < 0:
        raise ConfigError(f"{name} = {mn if finite else 'NaN/inf'}: allowed range is [0, inf) {unit}")
