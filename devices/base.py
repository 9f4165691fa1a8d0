"""``MemristiveDevice``: what the crossbar substrate needs from a device model (the plug-in contract).

A device model is one module holding one frozen dataclass that subclasses ``MemristiveDevice``,
plus one preset (a function returning an instance, registered with
:func:`stoxbar.devices.presets.register_preset`). Nothing in ``crossbar/``, ``peripherals/`` or
the networks needs editing: they only use the attributes and methods listed here, all in SI units.
The physics behind each item, and the STO values, are in ``docs/device-physics.md``.

Attributes every device defines (dataclass fields or properties)
----------------------------------------------------------------
Window (long-term conductance of one device of a differential pair)
    ``g_min_s``, ``g_max_s`` (S); ``g_range_s = g_max_s - g_min_s`` is one weight unit.
Programming (long-term, non-volatile)
    ``lt_dg_s`` (S): conductance moved by one pulse of the idealised write-verify loop (the
    pulse count is ``|dG| / lt_dg_s``); ``lt_pulse_v`` (V) pulse amplitude (the write driver's
    rail); ``lt_pulse_energy_j`` (J) device energy of one long-term pulse.
    Methods :meth:`long_term_response` (open-loop pulse model) and :meth:`ltp_pulses_for`.
Read
    ``v_read_v`` (V): the read voltage (the DAC's; ``STORPUConfig`` checks they agree);
    :meth:`read_noise_var_s2` (the variance of one read of a device, S^2; the read noise is
    zero-mean Gaussian with that variance: default multiplicative, ``(read_noise_std G)^2``);
    :meth:`read_power_w` (power drawn by a device at a voltage while it is read).
Short-term increment (volatile)
    ``st_pulse_levels``: the discrete pulses as ``(amplitude V, width s)`` pairs;
    ``st_g_max_s`` (S): bound on the magnitude of the volatile increment;
    :meth:`st_pulse_energy_j` and :meth:`st_dg_s` map a pulse to its energy (J) and its
    conductance step (S); :meth:`short_term_levels` tabulates them (ascending energy).
Decay law and bias law
    ``v_bias_min_v``, ``v_bias_max_v`` (V): the bias range; ``tau_min_s``, ``tau_max_s`` (s):
    the range of the time constant; :meth:`tau_s` (bias law tau(V)), :meth:`v_bias_for_tau` (its
    inverse), :meth:`decay_factor` (Lambda(dt, V): the factor the volatile increment is
    multiplied by over ``dt``), :meth:`decay_integral_s` (the integral of Lambda over ``dt``, used
    for the bias energy), :meth:`tau_for_decay_factor` (the tau giving a wanted Lambda over dt:
    what a network uses to turn a learned decay into a bias).
Energies
    :meth:`bias_power_w` (static power of a held bias), :meth:`read_power_w`,
    ``lt_pulse_energy_j``, :meth:`st_pulse_energy_j`.

Where the simulator calls each law (so a device that overrides one is simulated and costed by it):
``decay_factor`` in every decay (``dynamics.decay``, the crossbar state's decay tables);
``decay_integral_s`` and ``bias_power_w`` in the bias energy (``dynamics.bias_energy_j``);
``read_noise_var_s2`` in every read (``CrossbarState.read_noise_var`` -> the read model);
``read_power_w`` in the cell-read energy (``crossbar.costs``); ``tau_for_decay_factor`` and
``v_bias_for_tau`` when a network turns a learned decay into a bias; the programming, pulse and
level laws in ``dynamics``. Two laws are structural, and :meth:`check_contract` verifies them:
the current through a device is proportional to its conductance state at a given voltage
(``I = G f(V)``: ``bias_power_w`` and ``read_power_w`` linear in G), which keeps the energy of a
decaying increment an exact integral; an ohmic device (``f(V) = V``) may be read with an
amplitude-coded DAC, a non-ohmic one with pulse-width or bit-serial inputs only (an amplitude-coded
input would make the MVM itself non-linear, which the read model does not simulate).

Decay modes: :meth:`decay_modes` writes the decay law as a sum of exponentials in ``t / tau(V)``
(default one mode, the exponential); the crossbar keeps one short-term state per mode, so any such
law decays exactly over any step.

Defaults supplied here (override when the device differs): exponential decay
``Lambda = exp(-dt / tau(V))`` (or the sum over :meth:`decay_modes`), ohmic bias and read power ``V**2 G``, multiplicative Gaussian read
noise, no device-to-device spread, discrete level tables.

May import: torch, numpy, stoxbar.core.validation.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass, replace
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from stoxbar.core.validation import ConfigError

__all__ = ["MemristiveDevice", "exp_", "expm1_", "log_"]


def exp_(x: Any) -> Any:
    """``exp`` of a float, numpy array or torch tensor (same type back)."""
    return torch.exp(x) if torch.is_tensor(x) else (np.exp(x) if isinstance(x, np.ndarray) else math.exp(x))


def expm1_(x: Any) -> Any:
    """``expm1`` of a float, numpy array or torch tensor (same type back)."""
    return torch.expm1(x) if torch.is_tensor(x) else (np.expm1(x) if isinstance(x, np.ndarray) else math.expm1(x))


def log_(x: Any) -> Any:
    """``log`` of a float, numpy array or torch tensor (same type back)."""
    return torch.log(x) if torch.is_tensor(x) else (np.log(x) if isinstance(x, np.ndarray) else math.log(x))


class MemristiveDevice:
    """Base class of memristive synapse models (see the module docstring for the contract).

    Subclasses are frozen dataclasses; the base holds no fields so that each device lists its own
    parameters (with units and sources in the field metadata, shown by ``stoxbar device``).
    Methods accept floats, numpy arrays or torch tensors unless they say otherwise.
    """

    #: fields that :meth:`without_noise` sets to 0 (the device's stochastic parameters)
    noise_fields: Tuple[str, ...] = ("read_noise_std",)

    # -- window -----------------------------------------------------------------------------
    @property
    def g_range_s(self) -> float:
        """Long-term window width ``g_max_s - g_min_s`` (S): one weight unit."""
        return self.g_max_s - self.g_min_s

    # -- programming (subclasses implement) -------------------------------------------------
    @property
    def lt_pulse_energy_j(self) -> float:
        """Device energy (J) of one long-term programming pulse."""
        raise NotImplementedError(f"{type(self).__name__} must define lt_pulse_energy_j")

    def lt_pulse_energy_at_j(self, v_v: float) -> float:
        """Device energy (J) of a long-term pulse's width at ``v_v`` (V) instead of ``lt_pulse_v``: what a
        half-selected cell of a programmed line takes. Default: ohmic, ``lt_pulse_energy_j (v / lt_pulse_v)**2``."""
        return self.lt_pulse_energy_j * (v_v / self.lt_pulse_v) ** 2

    def long_term_response(self, g: Tensor, n_pulses: Tensor, generator: Optional[torch.Generator] = None,
                           d2d: Optional[Tensor] = None) -> Tensor:
        """Long-term conductance (S) after ``n_pulses`` (signed float tensor: + LTP, - LTD) on ``g``.

        Called by :func:`stoxbar.devices.dynamics.apply_long_term`, which has already checked that
        ``g`` lies in the window and the pulse counts are whole; it keeps elements without pulses
        unchanged, clips the result to the window and books ``|n| * lt_pulse_energy_j``. ``d2d``:
        the per-device factors of :meth:`draw_d2d`; ``generator`` for cycle-to-cycle noise.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement long_term_response")

    def ltp_pulses_for(self, g_target: Tensor) -> Tensor:
        """LTP pulses (whole numbers >= 0) that take the mean device from ``g_min_s`` to ``g_target`` (S)."""
        raise NotImplementedError(f"{type(self).__name__} must implement ltp_pulses_for")

    def draw_d2d(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Tensor:
        """Per-device factors on the long-term step (drawn once per array); default: all 1 (no spread)."""
        return torch.ones(tuple(shape), dtype=dtype, device=tdevice)

    def draw_tau_d2d(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                     dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Optional[Tensor]:
        """Per-device factors on the decay time constant (each device's ``tau = f tau(V)``), drawn once
        per array; default None: every device has the bias law's tau. The decay laws are functions of
        ``t / tau``, so a factor ``f`` is the law at ``dt / f`` (and ``f`` times its integral)."""
        return None

    # -- short-term increment ---------------------------------------------------------------
    def st_dg_factor(self, g_s: Tensor, d2d: Optional[Tensor] = None) -> Optional[Tensor]:
        """Per-device factor on the short-term increment of a device whose long-term conductance is
        ``g_s`` (S), times its spread ``d2d`` (:meth:`draw_st_d2d`); default None: every device's
        increment is the level's ``st_dg_s(E)``."""
        return None

    def draw_st_d2d(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                    dtype: torch.dtype = torch.float32, tdevice: Optional[torch.device] = None) -> Optional[Tensor]:
        """Per-device factors on the short-term increment, drawn once per array; default None (no spread)."""
        return None

    def st_pulse_energy_j(self, v_pulse_v: Any, width_s: Any) -> Any:
        """Device energy (J) of a short-term pulse of amplitude ``v_pulse_v`` (V) and width ``width_s`` (s)."""
        raise NotImplementedError(f"{type(self).__name__} must implement st_pulse_energy_j")

    def st_dg_s(self, energy_j: Any) -> Any:
        """Short-term conductance increment (S) of a pulse that delivers ``energy_j`` (J)."""
        raise NotImplementedError(f"{type(self).__name__} must implement st_dg_s")

    def short_term_levels(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """(pulse energies J, increments dG S) of the discrete levels, ascending in energy.

        Level index ``k`` (1-based) of the substrate refers to the k-th entry.
        """
        e = sorted(float(self.st_pulse_energy_j(v, t)) for v, t in self.st_pulse_levels)
        return tuple(e), tuple(float(self.st_dg_s(x)) for x in e)

    def sorted_pulse_levels(self) -> Tuple[Tuple[float, float], ...]:
        """``st_pulse_levels`` in the order of :meth:`short_term_levels` (ascending energy)."""
        return tuple(sorted(self.st_pulse_levels, key=lambda lv: float(self.st_pulse_energy_j(*lv))))

    # -- bias law and decay law -------------------------------------------------------------
    def tau_s(self, v_bias: Any) -> Any:
        """Decay time constant (s) at bias ``v_bias`` (V); raises :class:`ConfigError` outside the bias range."""
        raise NotImplementedError(f"{type(self).__name__} must implement tau_s")

    def v_bias_for_tau(self, tau_s: Any) -> Any:
        """Bias (V) that sets the time constant ``tau_s`` (s): the inverse of :meth:`tau_s`."""
        raise NotImplementedError(f"{type(self).__name__} must implement v_bias_for_tau")

    def decay_modes(self) -> Tuple[Tuple[float, float], ...]:
        """The decay law as exponential modes ``((w_1, s_1), ...)``: ``Lambda(dt, V) = sum_k w_k exp(-dt / (s_k tau(V)))``.

        Weights > 0 summing to 1, scales > 0. Default: one mode ``((1.0, 1.0),)``, the exponential.
        A device with K > 1 modes (bi-exponential: two; stretched: :func:`stoxbar.devices.laws.kww_modes`)
        is simulated with one short-term state per mode, each decaying exactly, so the decay does not
        depend on the step size. A device that overrides :meth:`decay_factor` with another law and
        declares no modes is simulated step by step with ``Lambda(dt)`` per step: exact only for a law
        with ``Lambda(a + b) = Lambda(a) Lambda(b)``.
        """
        return ((1.0, 1.0),)

    def _single_exponential(self) -> bool:
        m = self.decay_modes()
        return len(m) == 1 and m[0] == (1.0, 1.0)

    def mode_decay_factors(self, dt_s: Any, v_bias: Any) -> list:
        """``[exp(-dt / (s_k tau(V)))]`` per mode of :meth:`decay_modes` (same type as the inputs)."""
        tau = self.tau_s(v_bias)
        return [exp_(-dt_s / (s * tau)) for _, s in self.decay_modes()]

    def mode_decay_integrals_s(self, dt_s: Any, v_bias: Any) -> list:
        """``[s_k tau (1 - exp(-dt / (s_k tau)))]`` (s) per mode: each mode's integral of its decay over ``dt``."""
        tau = self.tau_s(v_bias)
        return [-(s * tau) * expm1_(-dt_s / (s * tau)) for _, s in self.decay_modes()]

    def decay_factor(self, dt_s: Any, v_bias: Any) -> Any:
        """Lambda(dt, V): factor on the volatile increment after ``dt_s`` s at ``v_bias`` V (no checks on dt).

        Default: the modes of :meth:`decay_modes`, ``sum_k w_k exp(-dt / (s_k tau(V)))`` (one mode:
        ``exp(-dt / tau(V))``). A device with another law overrides this, :meth:`decay_integral_s` and
        :meth:`tau_for_decay_factor` together.
        """
        if self._single_exponential():
            return exp_(-dt_s / self.tau_s(v_bias))
        return sum(w * f for (w, _), f in zip(self.decay_modes(), self.mode_decay_factors(dt_s, v_bias)))

    def decay_integral_s(self, dt_s: Any, v_bias: Any) -> Any:
        """Integral of Lambda(t, V) over ``[0, dt_s]`` (s): how long the increment is 'held' (bias energy).

        Default: per mode ``s tau (1 - exp(-dt/(s tau)))``, weighted, written with ``expm1`` so it stays
        exact for ``dt << tau``.
        """
        if self._single_exponential():
            tau = self.tau_s(v_bias)
            return -tau * expm1_(-dt_s / tau)
        return sum(w * f for (w, _), f in zip(self.decay_modes(), self.mode_decay_integrals_s(dt_s, v_bias)))

    def tau_for_decay_factor(self, lam: Any, dt_s: Any) -> Any:
        """Time constant (s) whose :meth:`decay_factor` over ``dt_s`` is ``lam`` (0 < lam < 1).

        The inverse a network needs to turn a learned per-step decay Lambda into a bias:
        ``v_bias_for_tau(tau_for_decay_factor(lam, dt))``. One mode: ``-dt / log(lam)``; several:
        bisection in ``log tau`` (Lambda rises monotonically with tau), to float64 round-off.
        """
        if self._single_exponential():
            return -dt_s / log_(lam)
        lam_t = lam.detach().to(torch.float64) if torch.is_tensor(lam) else torch.as_tensor(lam, dtype=torch.float64)
        dt = torch.as_tensor(dt_s, dtype=torch.float64)
        lo = torch.log(dt).expand_as(lam_t) - 60.0
        hi = lo + 120.0
        for _ in range(120):
            mid = 0.5 * (lo + hi)
            f = sum(w * torch.exp(-dt / (s * torch.exp(mid))) for w, s in self.decay_modes())
            below = f < lam_t
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        tau = torch.exp(0.5 * (lo + hi))
        if torch.is_tensor(lam):
            return tau.to(dtype=lam.dtype if lam.is_floating_point() else torch.float64, device=lam.device)
        return tau.numpy() if isinstance(lam, np.ndarray) else float(tau)

    def decay_lambda(self, dt_s: Any, v_bias: Any) -> Any:
        """Lambda(dt, V) with ``dt_s`` checked to be finite and non-negative."""
        _check_nonneg_any("dt_s", dt_s, "s")
        return self.decay_factor(dt_s, v_bias)

    # -- energies ---------------------------------------------------------------------------
    def bias_power_w(self, g_s: Any, v_bias: Any) -> Any:
        """Static power (W) of bias ``v_bias`` (V) held on conductance ``g_s`` (S); default ohmic ``V**2 G``.

        Must be proportional to ``g_s`` (``I = G f(V)``; :meth:`check_contract`).
        """
        return v_bias * v_bias * g_s

    def read_power_w(self, g_s: Any, v_v: Any) -> Any:
        """Power (W) a device of conductance ``g_s`` (S) draws while read at ``v_v`` (V); default ohmic ``V**2 G``.

        Must be proportional to ``g_s``; the cell-read energy is this power times the time a cell is
        driven (the DAC's read window, weighted by the input's drive).
        """
        return v_v * v_v * g_s

    def is_ohmic(self) -> bool:
        """True if bias and read power follow ``V**2 G`` (checked at three voltages, rel 1e-9)."""
        vs = (0.25 * self.v_read_v, 0.5 * self.v_read_v, self.v_read_v)
        return all(math.isclose(float(law(1.0, v)), v * v, rel_tol=1e-9, abs_tol=0.0)
                   for law in (self.bias_power_w, self.read_power_w) for v in vs if v != 0)

    # -- read noise -------------------------------------------------------------------------
    def read_noise_var_s2(self, g_s: Tensor) -> Tensor:
        """Variance (S^2) of one read of devices at conductance ``g_s`` (S, a tensor): the read noise is
        zero-mean Gaussian with this variance per device. Default: multiplicative, ``(read_noise_std G)^2``."""
        s = self.read_noise_std
        return g_s * g_s * (s * s)

    # -- bookkeeping ------------------------------------------------------------------------
    def without_noise(self) -> "MemristiveDevice":
        """A copy with every field of :attr:`noise_fields` set to 0 (the mean device)."""
        return replace(self, **{k: 0.0 for k in self.noise_fields})

    def source(self, name: str) -> str:
        """Source of field ``name``: a ``notes`` override if the device has one, else the field's metadata."""
        over = dict(getattr(self, "notes", ()) or ())
        if name in over:
            return over[name]
        for f in fields(self):
            if f.name == name:
                return f.metadata.get("source", "")
        raise ConfigError(f"field {name!r}: not a field of {type(self).__name__}")

    def as_dict(self) -> Dict[str, Any]:
        """Field values by name (for JSON run records)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check_contract(self) -> None:
        """Raise :class:`ConfigError` naming the first missing or inconsistent part of the contract.

        Subclasses call it at the end of ``__post_init__``; it checks the shared fields (window,
        bias and tau ranges, levels) so every device is validated the same way.
        """
        if not is_dataclass(self):
            raise ConfigError(f"{type(self).__name__}: a device model must be a (frozen) dataclass")
        for name in ("name", "g_min_s", "g_max_s", "lt_dg_s", "lt_pulse_v", "v_read_v",
                     "read_noise_std", "st_pulse_levels", "st_g_max_s", "v_bias_min_v", "v_bias_max_v",
                     "tau_min_s", "tau_max_s"):
            if not hasattr(self, name):
                raise ConfigError(f"{type(self).__name__}: missing attribute {name!r} of the MemristiveDevice contract")
        for meth in ("lt_pulse_energy_j", "long_term_response", "ltp_pulses_for", "st_pulse_energy_j", "st_dg_s",
                     "tau_s", "v_bias_for_tau"):
            if getattr(type(self), meth) is getattr(MemristiveDevice, meth):
                raise ConfigError(f"{type(self).__name__}: does not implement {meth!r} of the MemristiveDevice "
                                  "contract (docs/device-physics.md §9)")
        if not 0.0 <= self.g_min_s < self.g_max_s:
            raise ConfigError(f"g_min_s = {self.g_min_s!r}, g_max_s = {self.g_max_s!r}: need 0 <= g_min_s < g_max_s (S)")
        if not 0.0 < self.tau_min_s < self.tau_max_s:
            raise ConfigError(f"tau_min_s = {self.tau_min_s!r}, tau_max_s = {self.tau_max_s!r}: "
                              "need 0 < tau_min_s < tau_max_s (s)")
        if not self.v_bias_min_v < self.v_bias_max_v:
            raise ConfigError(f"v_bias_min_v = {self.v_bias_min_v!r}, v_bias_max_v = {self.v_bias_max_v!r}: "
                              "need v_bias_min_v < v_bias_max_v (V)")
        if not 0.0 < self.lt_dg_s <= self.g_range_s:
            raise ConfigError(f"lt_dg_s = {self.lt_dg_s!r}: allowed range is (0, {self.g_range_s:g}] S")
        if not (isinstance(self.st_pulse_levels, tuple) and self.st_pulse_levels):
            raise ConfigError(f"st_pulse_levels = {self.st_pulse_levels!r}: must be a non-empty tuple of "
                              "(amplitude V, width s) pairs")
        e, dg = self.short_term_levels()
        if not all(x > 0 for x in e) or not all(d > 0 for d in dg):
            raise ConfigError(f"st_pulse_levels = {self.st_pulse_levels!r}: every level needs a positive energy and dG")
        for law in ("bias_power_w", "read_power_w"):  # I = G f(V): power linear in the conductance
            v = self.v_read_v if law == "read_power_w" else self.v_bias_max_v
            p1, p2 = float(getattr(self, law)(1e-6, v)), float(getattr(self, law)(3e-6, v))
            if not (math.isfinite(p1) and p1 >= 0 and math.isclose(p2, 3.0 * p1, rel_tol=1e-9, abs_tol=1e-300)):
                raise ConfigError(f"{type(self).__name__}.{law}: must be finite, >= 0 and proportional to the "
                                  f"conductance (I = G f(V)); got {p1:.4g} W at 1 uS and {p2:.4g} W at 3 uS, {v:g} V")
        if dg[-1] > self.st_g_max_s:
            raise ConfigError(f"st_g_max_s = {self.st_g_max_s!r}: allowed range is [{dg[-1]:g}, inf) S "
                              "(the largest short-term level's dG must fit the short-term window)")
        self._check_modes()

    def _check_modes(self) -> None:
        """The modes are positive weights summing to 1 with positive scales, and :meth:`decay_factor` is their sum."""
        modes = self.decay_modes()
        ok = isinstance(modes, tuple) and len(modes) >= 1 and all(
            isinstance(m, tuple) and len(m) == 2 and all(isinstance(x, float) and math.isfinite(x) for x in m)
            and m[0] > 0 and m[1] > 0 for m in modes)
        if not ok or not math.isclose(sum(m[0] for m in modes), 1.0, rel_tol=1e-9):
            raise ConfigError(f"{type(self).__name__}.decay_modes() = {modes!r}: must be a tuple of (weight, scale) "
                              "float pairs, weights > 0 summing to 1, scales > 0")
        if len(modes) == 1:
            return  # one mode: the crossbar decays F by decay_factor itself (any law, step by step)
        v = torch.tensor(self.v_bias_max_v, dtype=torch.float64)
        tau = float(self.tau_s(v))
        for dt in (0.1 * tau, tau, 10 * tau):
            want = sum(w * math.exp(-dt / (s * tau)) for w, s in modes)
            got = float(self.decay_factor(torch.tensor(dt, dtype=torch.float64), v))
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12):
                raise ConfigError(f"{type(self).__name__}: decay_factor({dt:g} s) = {got:.6g} but its decay_modes() "
                                  f"give {want:.6g}; a device's decay law and its modes must agree")


def _check_nonneg_any(name: str, x: Any, unit: str) -> None:
    if torch.is_tensor(x):
        bad = x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0)
    elif isinstance(x, np.ndarray):
        bad = x.size and (not bool(np.isfinite(x).all()) or float(x.min()) < 0)
    elif isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ConfigError(f"{name} = {x!r}: must be a number, numpy array or torch tensor")
    else:
        bad = not math.isfinite(x) or x < 0
    if bad:
        raise ConfigError(f"{name} holds a negative or non-finite value: allowed range is [0, inf) {unit}")
