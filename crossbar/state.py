"""Physical state of a layer's STO crossbar tiles, held in one tiled layout.

A layer of ``out`` x ``in`` synapses is split into T row-tiles (aihwkit's balanced split of the
inputs, e.g. 2656 -> 6 x 443/442); every tensor is laid out ``[T, O, X]`` with X the largest
tile height, pad rows masked out (they are no cells: zero conductance, zero energy).

* ``g_pos``, ``g_neg`` [T, O, X] (S): long-term conductances of the differential pair; the
  signed weight is ``w = (G+ - G-) / g_range`` in [-1, 1].
* ``g_st`` [B, T, O, X] (S) or None: signed short-term increment F, one chip state per batch
  element (per environment). A positive value sits on the G+ device, a negative one on G-; both
  decay with the pair's time constant, so the signed value decays exactly exponentially.
* ``v_bias`` [T, O, X] (V): decay-control bias per synapse, ``tau = device.tau_s(v_bias)``.

All operations are vectorised over tiles; the energy of what they do is returned in joules so
the caller (tile or array) can book it in the ledger. ``hebbian_step`` (decay, then Hebbian
pulses) runs as one fused pass over F (:mod:`~stoxbar.crossbar.fused`) where a C compiler exists.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from stoxbar.crossbar import fused
from stoxbar.devices import dynamics
from stoxbar.devices.sto import STODevice
from stoxbar.validation import ConfigError, check_choice


def check_finite(name: str, value: Tensor) -> None:
    """Raise ``ConfigError`` if ``value`` holds NaN or inf (never let it spread)."""
    if not torch.isfinite(value).all():
        raise ConfigError(f"{name} contains NaN or inf: inputs to an STO tile must be finite")


class CrossbarState(nn.Module):
    """Conductance state of T row-tiles sharing ``out`` columns (see module docstring)."""

    def __init__(self, in_sizes: Sequence[int], out_size: int, device: STODevice, dtype: torch.dtype = torch.float32,
                 out_sizes: Optional[Sequence[int]] = None):
        super().__init__()
        self.out_sizes: List[int] = list(out_sizes) if out_sizes is not None else [int(out_size)]
        self.device_model = device
        self.in_sizes: List[int] = list(in_sizes)
        self.out_size = int(out_size)
        t, x = len(self.in_sizes), max(self.in_sizes)
        self.tiles, self.rows = t, x
        mask = torch.zeros(t, 1, x, dtype=torch.bool)
        index = []
        for i, n in enumerate(self.in_sizes):
            mask[i, 0, :n] = True
            index.extend(range(i * x, i * x + n))
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("row_sizes", torch.tensor(self.in_sizes, dtype=torch.long), persistent=False)
        self.padded = sum(self.in_sizes) != t * x
        g0 = device.g_min_s * mask.to(dtype).expand(t, self.out_size, x)
        self.register_buffer("g_pos", g0.clone())
        self.register_buffer("g_neg", g0.clone())
        # pad rows hold a valid (minimum) bias value; they have no conductance, so no energy
        self.register_buffer("v_bias", torch.full((t, self.out_size, x), device.v_bias_min_v, dtype=dtype))
        self.g_st: Optional[Tensor] = None
        self._st_cols: Optional[Tuple[Tensor, int, Tensor]] = None  # (g_st, its version, sum_o |g_st|)
        self.hold_bias = False
        self._cache: dict = {}
        self._version = 0  # bumped whenever conductances or biases are (re)programmed
        self._views: List["CrossbarState"] = []  # per-tile views of this state (tile arrays)

    # -- layout ------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        """Physical devices (two per synapse: differential pair)."""
        return 2 * self.out_size * sum(self.in_sizes)

    def to_tiled(self, x: Tensor) -> Tensor:
        """``[B, in]`` -> ``[B, T, X]`` with zero pad rows."""
        if not self.padded:
            return x.reshape(x.shape[0], self.tiles, self.rows)
        out = x.new_zeros(x.shape[0], self.tiles * self.rows)
        out[:, self.index] = x
        return out.view(x.shape[0], self.tiles, self.rows)

    def from_tiled(self, w: Tensor) -> Tensor:
        """``[..., T, O, X]`` -> ``[..., O, in]`` (drops pad rows)."""
        lead = w.shape[:-3]
        flat = w.movedim(-3, -2).reshape(*lead, self.out_size, self.tiles * self.rows)
        return flat[..., self.index] if self.padded else flat

    def tiled_weight(self, w: Tensor) -> Tensor:
        """``[..., O, in]`` -> ``[..., T, O, X]`` with zero pad rows."""
        lead = w.shape[:-2]
        flat = w.new_zeros(*lead, self.out_size, self.tiles * self.rows)
        if self.padded:
            flat[..., self.index] = w
        else:
            flat.copy_(w)
        return flat.view(*lead, self.out_size, self.tiles, self.rows).movedim(-2, -3)

    # -- long-term weights ---------------------------------------------------------------
    def weights(self) -> Tensor:
        """Long-term weights ``[T, O, X]`` in weight units (pads are 0); cached until reprogrammed."""
        return self._cached("weights", lambda: (self.g_pos - self.g_neg) / self.device_model.g_range_s)

    @torch.no_grad()
    def program(self, weight: Tensor, mode: str = "write_verify",
                generator: Optional[torch.Generator] = None) -> Tuple[float, float]:
        """Program ``weight [O, in]`` (weight units, |w| <= 1) onto the pairs.

        One side of each pair sits at ``g_min``, the other carries ``|w| * g_range``.
        ``mode="write_verify"``: every device lands on its target (idealised closed loop),
        counting ``|dG| / lt_dg_s`` pulses per device. ``mode="open_loop"``: both devices are
        reset to ``g_min`` and receive the LTP pulses the mean device needs
        (:func:`~stoxbar.devices.dynamics.ltp_pulses_for`), with d2d factors (drawn per device)
        and c2c spread (:func:`~stoxbar.devices.dynamics.apply_long_term`): a programming error.
        Returns (number of long-term pulses, their device energy in J).
        """
        check_finite("weight", weight)
        check_choice("programming", mode, ("write_verify", "open_loop"))
        w_abs = float(weight.abs().max()) if weight.numel() else 0.0
        if w_abs > 1.0 + 1e-6:
            raise ConfigError(
                f"weight max |w| = {w_abs:.4g}: allowed range is [-1, 1] (the conductance window); "
                "set mapping.weight_scaling_omega > 0 so aihwkit rescales weights digitally"
            )
        dev = self.device_model
        w = self.tiled_weight(weight.to(self.g_pos.dtype).clamp(-1.0, 1.0))  # clamp: float round-off only
        m = self.mask.to(w.dtype)
        new_pos = (dev.g_min_s + w.clamp_min(0) * dev.g_range_s) * m
        new_neg = (dev.g_min_s + (-w).clamp_min(0) * dev.g_range_s) * m
        if mode == "open_loop":
            pulses, energy = 0.0, 0.0
            g0 = torch.full_like(new_pos, dev.g_min_s)
            for target in (new_pos, new_neg):
                n = dynamics.ltp_pulses_for(torch.where(self.mask, target, g0), dev)
                d2d = dynamics.draw_d2d(target.shape, dev, generator, target.dtype)
                g, e = dynamics.apply_long_term(g0, n, dev, generator, d2d)
                target.copy_(g * m)
                pulses += float(n.sum())
                energy += float(e.sum())
        else:
            delta = (new_pos - self.g_pos).abs().sum() + (new_neg - self.g_neg).abs().sum()
            pulses = float(torch.ceil(delta / dev.lt_dg_s))
            energy = pulses * dev.lt_pulse_energy_j
        self.g_pos.copy_(new_pos)
        self.g_neg.copy_(new_neg)
        self._version += 1
        return pulses, energy

    def read_noise_var(self) -> Optional[Tensor]:
        """Per-cell read-noise variance in weight units squared, or None without noise."""
        s = self.device_model.read_noise_std
        if s <= 0:
            return None
        return self._cached("noise_var", lambda: (s / self.device_model.g_range_s) ** 2 * (self.g_pos**2 + self.g_neg**2))

    def _cached(self, name: str, compute):
        """Value derived from the programmed state, recomputed only after (re)programming."""
        version = self._version + sum(v._version for v in self._views)
        hit = self._cache.get(name)
        if hit is None or hit[0] != version:
            hit = (version, compute())
            self._cache[name] = hit
        return hit[1]

    # -- short-term state ----------------------------------------------------------------
    def set_batch(self, batch: int) -> None:
        """Allocate (zeroed) short-term state for ``batch`` independent chips."""
        if batch < 1:
            raise ConfigError(f"batch = {batch}: allowed range is [1, inf)")
        self.g_st = self.g_pos.new_zeros(batch, *self.g_pos.shape)
        self._st_cols = None

    def reset_short_term(self, done: Optional[Tensor] = None) -> None:
        """Zero F for all chips, or only where ``done [B]`` is true (episode start)."""
        if self.g_st is None:
            return
        if done is None:
            self.g_st.zero_()
        else:
            self.g_st[done.bool()] = 0.0

    def set_bias(self, v_bias: Tensor) -> None:
        """Set the per-synapse decay bias ``[O, in]`` (V); raises outside the device's range."""
        dev = self.device_model
        check_finite("v_bias", v_bias)
        lo, hi = float(v_bias.min()), float(v_bias.max())
        tol = 1e-6 * max(1.0, abs(dev.v_bias_max_v))  # float32 round-off of the bounds only
        if lo < dev.v_bias_min_v - tol or hi > dev.v_bias_max_v + tol:
            raise ConfigError(
                f"v_bias range [{lo:.4g}, {hi:.4g}] V: allowed range is "
                f"[{dev.v_bias_min_v:g}, {dev.v_bias_max_v:g}] V"
            )
        self.v_bias.copy_(self.tiled_weight(v_bias.to(self.v_bias.dtype)) + dev.v_bias_min_v * (~self.mask))
        self.hold_bias = True
        self._version += 1

    def effective_weight(self) -> Tensor:
        """Weight the array reads: ``[T, O, X]`` or ``[B, T, O, X]`` with short-term state."""
        w = self.weights()
        if self.g_st is None:
            return w
        return torch.add(w, self.g_st, alpha=1.0 / self.device_model.g_range_s)

    @torch.no_grad()
    def short_term_update(self, delta_w: Tensor) -> Tuple[Tensor, float, float]:
        """Apply the short-term update ``delta_w [B, T, O, X]`` (weight units) as pulses.

        The request is quantised to the device's discrete pulse levels (no pulse where it rounds
        to zero). Returns (signed level index tensor, number of pulses, device pulse energy J).
        """
        if self.g_st is None:
            raise ConfigError("short_term_update before set_batch(): no short-term state allocated")
        dev = self.device_model
        level, _ = dynamics.quantise_short_term(delta_w * dev.g_range_s, dev, validate=False)
        if self.padded:
            level = level * self.mask  # no pulses on pad rows (they are no cells)
        # the state only ever changes through these calls, so it is in its window by construction
        new, energy = dynamics.apply_short_term(self.g_st, level, dev, validate=False)
        self.g_st.copy_(new)
        n = float(torch.count_nonzero(level))
        return level, n, float(energy.sum())

    def _decay_tables(self, dt_s: float) -> Tuple[Tensor, Tensor, float]:
        """(Lambda [T,O,X], bias energy per siemens of |F| [T,O,X] (J/S), long-term bias energy J).

        Cached per dt until reprogramming: within a game only F changes, so a decay step is one
        multiply of F plus one weighted sum of |F|.
        """
        def compute():
            dev = self.device_model
            ones = torch.ones_like(self.g_pos)
            lam = dynamics.decay(ones, self.v_bias, dt_s, dev) * self.mask
            per_st = dynamics.bias_energy_j(torch.zeros_like(ones), ones, self.v_bias, dt_s, dev) * self.mask
            lt = float(dynamics.bias_energy_j(self.g_pos + self.g_neg, torch.zeros_like(ones), self.v_bias, dt_s, dev,
                                              reduce=True))
            return lam, per_st, lt

        return self._cached(f"decay:{float(dt_s)!r}", compute)

    @torch.no_grad()
    def decay(self, dt_s: float) -> Tuple[float, float]:
        """Let ``dt_s`` seconds pass: F decays exactly, the held bias costs energy.

        Returns (bias energy of all chips' synapses in J, bias-held device-seconds). The bias
        integral (``dynamics.bias_energy_j``) starts from F at the interval start: exact for the
        exponential decay.
        """
        lam, per_st, lt = self._decay_tables(dt_s)
        st_energy = 0.0
        if self.g_st is not None:
            if self.hold_bias:
                st_energy = float((self.g_st.abs().sum(0) * per_st).sum())
            self.g_st.mul_(lam)
        return self._bias_energy(dt_s, lt, st_energy)

    def _bias_energy(self, dt_s: float, lt_energy: float, st_energy: float) -> Tuple[float, float]:
        """(bias energy J, held device-s) of an interval from its long-term part per chip and short-term part."""
        if not self.hold_bias:
            return 0.0, 0.0
        chips = 1 if self.g_st is None else self.g_st.shape[0]
        return chips * lt_energy + st_energy, chips * self.n_cells * dt_s

    @torch.no_grad()
    def hebbian_step(self, dt_s: float, gam: Tensor, post: Tensor, pre: Tensor
                     ) -> Tuple[Tensor, Tensor, Tuple[float, float], Tuple[float, float]]:
        """Let ``dt_s`` seconds of decay pass, then pulse the Hebbian request ``gam * post pre^T``.

        ``gam [T, O, X]`` (weight units), ``post [B, O]``, ``pre [B, T, X]`` (tiled). The same as
        :meth:`decay` then :meth:`short_term_update` of ``gam * post[:, None, :, None] * pre[:, :, None, :]``,
        in one pass over F with the fused kernel (:mod:`~stoxbar.crossbar.fused`: same F and levels,
        energies equal up to float round-off), which also keeps ``sum_o |F|`` for the next read.
        Returns (signed levels int8 [B, T, O, X], pulses per level [B, L], (bias energy J, held
        device-s), (pulses, pulse energy J)).
        """
        if self.g_st is None:
            raise ConfigError("short_term_update before set_batch(): no short-term state allocated")
        b = self.g_st.shape[0]
        if gam.shape != self.g_pos.shape or post.shape != (b, self.out_size) or pre.shape != (b, self.tiles, self.rows):
            raise ConfigError(f"hebbian_step shapes gam {tuple(gam.shape)}, post {tuple(post.shape)}, pre "
                              f"{tuple(pre.shape)}: expected {tuple(self.g_pos.shape)}, [{b}, {self.out_size}], "
                              f"[{b}, {self.tiles}, {self.rows}]")
        dev = self.device_model
        lam, per_st, lt = self._decay_tables(dt_s)
        dg, e, thr = self._cached("st_tables", lambda: dynamics.short_term_tables(dev, self.g_pos))
        out = fused.short_term_step(self.g_st, self.row_sizes, lam, per_st if self.hold_bias else None, gam, post,
                                    pre, dev.g_range_s, thr, dg, dev.st_g_max_s)
        if out is None:
            decayed = self.decay(dt_s)
            level, n, energy = self.short_term_update(gam.unsqueeze(0) * post[:, None, :, None] * pre[:, :, None, :])
            return level, dynamics.level_counts(level, thr.numel()), decayed, (n, energy)
        level, ge, cols, st_energy = out
        if not self.g_st.is_inference():
            self._st_cols = (self.g_st, self.g_st._version, cols)
        counts = ge - torch.cat([ge[:, 1:], ge.new_zeros(b, 1)], dim=1)
        pulse_energy = float((counts.double() * e[1:].double()).sum())
        return level, counts, self._bias_energy(dt_s, lt, st_energy), (float(ge[:, 0].sum()), pulse_energy)

    def abs_column_conductance(self) -> Tensor:
        """``sum_o (G+ + G- + |F|)`` per chip and row, [B or 1, T, X] (S), for read energy."""
        g = self._cached("col_g", lambda: (self.g_pos + self.g_neg).sum(1).unsqueeze(0))
        if self.g_st is not None:
            kept = self._st_cols  # from the last fused step, valid while g_st is unchanged since
            fresh = kept is None or kept[0] is not self.g_st or kept[1] != self.g_st._version
            g = g + (self.g_st.abs().sum(2) if fresh else kept[2])
        return g
