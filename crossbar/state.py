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
* ``tau_factor`` [T, O, X] (or [B, T, O, X], one per chip slot) or None: each device's own factor on
  its time constant (``device.draw_tau_d2d``, drawn once per array at its first programming; None
  without spread). The laws are functions of ``t / tau``: a device decays by ``Lambda(dt / f, V)``.
* ``st_d2d`` [2, T, O, X] (or [2, B, T, O, X]) or None: each device's (G+, G-) spread of the short-term
  increment (``device.draw_st_d2d``, drawn with ``tau_factor``); with the device's dependence on its
  conductance (``device.st_dg_factor``) it scales the level's increment per device.
* ``g_modes`` [K, B, T, O, X] (S) or None: for a device whose decay law has K > 1 exponential
  modes (``device.decay_modes()``: bi-exponential, stretched), the part of F in each mode; F is
  their sum. A pulse's increment splits by the modes' weights, each mode decays exactly with its
  own time constant ``s_k tau(V)``, so the law holds over any step. None for one mode (the
  exponential: F alone, unchanged paths).

The layer's physical tiles are its row-tiles x column-tiles (``out_sizes`` split O); tile
``k = i * J + j`` is aihwkit's ``array[i][j]`` (key ``"i.j"``). The generic substrate operations
(program, read weights, :meth:`apply_short_term`, :meth:`decay`, :meth:`set_bias`, and the fused
:meth:`decay_and_outer_update`) are vectorised over tiles and return what physically happened
per tile (pulses by level, bias integrals, held device-seconds); the tile or array turns those
into :class:`~stoxbar.crossbar.events.Events` and the one cost model prices them. The state knows
no learning rule: a requested conductance change comes from its client. The fused operation
runs as one pass over F (:mod:`~stoxbar.crossbar.fused`) where the native kernel exists.

May import: stoxbar.devices, stoxbar.crossbar.fused, stoxbar.crossbar.bias, stoxbar.core.native,
stoxbar.core.validation.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from stoxbar.core import native
from stoxbar.crossbar import fused
from stoxbar.devices import dynamics
from stoxbar.devices.base import MemristiveDevice
from stoxbar.core.validation import ConfigError, check_choice, check_range
from stoxbar.crossbar.bias import BiasReport, check_rails, project


def _level_counts(ge: Tensor) -> Tuple[Tensor, Tensor]:
    """(pulses per chip, row-tile and level [B, T, L], per chip and level [B, L]) from the kernel's counts of
    cells at or above each level's threshold: cells at level m = cells >= m minus cells >= m + 1."""
    per_bt = ge.clone()
    per_bt[..., :-1] -= ge[..., 1:]
    return per_bt, per_bt.sum(1)


def _over(dt_s: float, f: Optional[Tensor]):
    """``dt / f``: the time a device whose time constant is ``f tau`` sees (``dt`` when no spread)."""
    return dt_s if f is None else dt_s / f


def is_continuous(device: MemristiveDevice) -> bool:
    """True if the device's long-term conductance is continuous: programming lands on any target
    exactly (a class attribute ``continuous_long_term``, e.g. the ``ideal`` preset's class)."""
    return bool(getattr(device, "continuous_long_term", False))


def check_finite(name: str, value: Tensor) -> None:
    """Raise ``ConfigError`` if ``value`` holds NaN or inf (never let it spread).

    ``name`` says the operation and the tensor, e.g. ``"apply_short_term: request"``.
    """
    if value.numel() and math.isfinite(float(value.detach().sum())):  # a finite sum: all finite (one pass)
        return
    if not torch.isfinite(value).all():  # a NaN/inf sum may also be an overflow of finite values
        raise ConfigError(f"{name} contains NaN or inf: inputs to an STO tile must be finite")


def write_verify_cost(delta_g_s: Tensor, device: MemristiveDevice) -> Tuple[float, float]:
    """(pulses, device energy J) of write-verify programming that moves the conductances by ``delta_g_s``
    in total (S): ``ceil(delta / lt_dg_s)`` pulses of ``lt_pulse_energy_j`` each."""
    pulses = float(torch.ceil(delta_g_s / device.lt_dg_s))
    return pulses, pulses * device.lt_pulse_energy_j


class CrossbarState(nn.Module):
    """Conductance state of T row-tiles sharing ``out`` columns (see module docstring)."""

    def __init__(self, in_sizes: Sequence[int], out_size: int, device: MemristiveDevice, dtype: torch.dtype = torch.float32,
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
        # a (non-persistent) buffer, so .to()/.cuda() move it with the module; saved through the
        # tiles' and arrays' extra state (crossbar/persistence.py)
        self.register_buffer("g_st", None, persistent=False)
        self.register_buffer("g_modes", None, persistent=False)
        self.register_buffer("tau_factor", None, persistent=False)
        self.register_buffer("st_d2d", None, persistent=False)
        self._st_cols: Optional[Tuple[Tensor, int, Tensor]] = None  # (g_st, its version, sum_o |g_st|)
        self.hold_bias = False
        self.bias_duty, self.bias_rail_v = 1.0, None  # set with the bias (set_bias)
        self.bias_report: Optional[BiasReport] = None
        self._cache: dict = {}
        self._version = 0  # bumped whenever conductances or biases are (re)programmed
        self._views: List["CrossbarState"] = []  # per-tile views of this state (tile arrays)
        self.col_tiles = len(self.out_sizes)
        self._col_bounds = [sum(self.out_sizes[:j]) for j in range(self.col_tiles + 1)]
        col_of = torch.zeros(self.out_size, dtype=torch.long)
        for j in range(self.col_tiles):
            col_of[self._col_bounds[j]:self._col_bounds[j + 1]] = j
        self.register_buffer("col_tile_of", col_of, persistent=False)
        self._checked: tuple = (0, -1)  # (id, version, tensor, contiguous copy) of the last finite-checked scale

    # -- ownership of the derived caches --------------------------------------------------
    def invalidate(self) -> None:
        """The conductances, biases or short-term state were changed in place from outside this
        class (programming, drift, loading): drop every value derived from them.

        The one way for other modules to say so; nobody else writes ``_version`` or ``_st_cols``.
        """
        self._bump()
        self._st_cols = None

    def _bump(self) -> None:
        """Bump the version of this state and of the array state it is a view of (whose derived values,
        e.g. the layer's weights, read this view's tensors)."""
        self._version += 1
        parent = self.__dict__.get("_parent")
        if parent is not None:
            parent._version += 1

    def load_short_term(self, g_st: Optional[Tensor], hold_bias: bool, g_modes: Optional[Tensor] = None) -> None:
        """Replace the short-term state (``[B, T, O, X]`` or None), its modes (``[K, B, T, O, X]``, for a
        device with K > 1 decay modes; None: F split by the modes' weights, as if written now) and the
        bias-hold flag (loading)."""
        self.g_st = None if g_st is None else g_st.to(self.g_pos.device, self.g_pos.dtype).clone()
        self.g_modes = None
        k = self.n_modes
        if self.g_st is not None and k > 1:
            if g_modes is not None and tuple(g_modes.shape) == (k,) + tuple(self.g_st.shape):
                self.g_modes = g_modes.to(self.g_st).clone()
            else:
                self.g_modes = self.g_st.new_zeros(k, *self.g_st.shape)
                self._split_change(self.g_st)
            self.g_st = self.g_modes.sum(0)
        self.hold_bias = bool(hold_bias)
        self.invalidate()

    @property
    def n_modes(self) -> int:
        """Exponential modes of the device's decay law (1: the exponential; ``g_modes`` is then None)."""
        return len(self.device_model.decay_modes())

    def _sum_modes(self) -> None:
        """F = the sum of its modes, written in place (a tile's view of F included)."""
        if self.g_st.is_contiguous():
            torch.sum(self.g_modes, 0, out=self.g_st)
        else:
            self.g_st.copy_(self.g_modes.sum(0))

    def _split_change(self, delta: Tensor) -> None:
        """Add a change of F to the modes by their weights (one pass per mode, no [K, ...] temporary)."""
        for k, (w, _) in enumerate(self.device_model.decay_modes()):
            self.g_modes[k].add_(delta, alpha=w)

    def bind_views(self, views: Sequence[Tuple["CrossbarState", Tuple[slice, slice, slice]]]) -> None:
        """Make each ``(state, block)`` of ``views`` a view of this state's ``block`` ``[T, O, X]``.

        A tile array's tiles read and write its one state through these views (crossbar/array.py);
        called again after anything replaced this state's tensors (a device move, loading).
        """
        self._views = [v for v, _ in views]
        for v, block in views:
            v.__dict__["_parent"] = self  # a plain reference (not a submodule): its version bumps reach this state
            v.g_pos = self.g_pos[(Ellipsis,) + block]  # per-chip long-term state [B, T, O, X] too
            v.g_neg = self.g_neg[(Ellipsis,) + block]
            v.v_bias = self.v_bias[block]
            v.g_st = None if self.g_st is None else self.g_st[(slice(None),) + block]
            v.g_modes = None if self.g_modes is None else self.g_modes[(slice(None), slice(None)) + block]
            v.tau_factor = None if self.tau_factor is None else self.tau_factor[(Ellipsis,) + block]
            v.st_d2d = None if self.st_d2d is None else self.st_d2d[(Ellipsis,) + block]
            v.hold_bias = self.hold_bias
            v.bias_duty, v.bias_rail_v = self.bias_duty, self.bias_rail_v
            v.invalidate()  # its tensors are new views: drop derived caches

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_read_scratch", None)  # a read buffer (effective_weight(scratch=True)), not state
        return state

    def __setstate__(self, state: dict) -> None:
        legacy = state.pop("g_st", None) if "g_st" in state else None  # pickled before g_st was a buffer
        super().__setstate__(state)
        for name, value in (("bias_duty", 1.0), ("bias_rail_v", None), ("bias_report", None)):
            self.__dict__.setdefault(name, value)  # pickled before bias addressing
        if "g_st" not in self._buffers:
            self.register_buffer("g_st", legacy, persistent=False)
        for name in ("g_modes", "tau_factor", "st_d2d"):  # pickled before decay modes / law spreads
            if name not in self._buffers:
                self.register_buffer(name, None, persistent=False)
        for v in self.__dict__.get("_views", ()):  # pickled before views knew their array state
            v.__dict__.setdefault("_parent", self)

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .double(), ...: tensors replaced
        out = super()._apply(fn, recurse)
        self._cache.clear()  # derived tensors live on the old device / dtype
        self._checked = (0, -1)
        self.invalidate()
        return out

    # -- layout ------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        """Physical devices (two per synapse: differential pair)."""
        return 2 * self.out_size * sum(self.in_sizes)

    @property
    def n_tiles(self) -> int:
        """Physical tiles (row-tiles x column-tiles)."""
        return self.tiles * self.col_tiles

    def tile_blocks(self) -> List[Tuple[str, int, int, int, int]]:
        """(key "i.j", row-tile i, column-tile j, rows, cols) of every tile, in tile order ``i * J + j``."""
        return [(f"{i}.{j}", i, j, n, c) for i, n in enumerate(self.in_sizes) for j, c in enumerate(self.out_sizes)]

    def tile_sum(self, x: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
        """Sum of ``x [..., T, O, X]`` over each tile's cells: ``[..., T * J]`` (in ``dtype`` if given)."""
        s = x.sum(-1, dtype=dtype)
        if self.col_tiles == 1:
            return s.sum(-1)
        b = self._col_bounds
        return torch.stack([s[..., b[j]:b[j + 1]].sum(-1) for j in range(self.col_tiles)], -1).flatten(-2)

    def to_tiled(self, x: Tensor) -> Tensor:
        """``[B, in]`` -> ``[B, T, X]`` with zero pad rows."""
        if not self.padded:
            return x.reshape(x.shape[0], self.tiles, self.rows)
        if x.dim() == 2 and not x.requires_grad and native.usable(x):  # a copy per tile, no index scatter
            return native.extension().to_tiled(x, self.row_sizes, self.rows)
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
        return self._cached("weights", lambda: self._weights_of(self.g_pos, self.g_neg))

    def _weights_of(self, g_pos: Tensor, g_neg: Tensor) -> Tensor:
        return torch.sub(g_pos, g_neg).div_(self.device_model.g_range_s)

    def chip_weights(self) -> Optional[Tuple[Tensor, Optional[Tensor], Tensor]]:
        """With one long-term state per chip slot (:meth:`program_chips`) whose slots share conductances:
        ``(weights [C, T, O, X], read-noise variance [C, T, O, X] or None, each slot's chip [B] int64)``,
        C < B, else None; cached until reprogrammed.

        The chips are the runs of consecutive slots holding equal ``g_pos`` and ``g_neg`` (the layout
        :meth:`program_chips` and :meth:`keep_slots` keep; found from the values, so slots that were
        changed apart, e.g. by drift, count as chips of their own). The values equal :meth:`weights` and
        :meth:`read_noise_var` at each chip's slots; a read that takes them never materialises a slot's
        W + F (the native read, :meth:`~stoxbar.crossbar.read.TiledAnalogMVM.chip_read`)."""
        def compute():
            if not self.per_chip or self.g_pos.shape[0] < 2:
                return None
            same = ((self.g_pos[1:] == self.g_pos[:-1]) & (self.g_neg[1:] == self.g_neg[:-1])).flatten(1).all(1)
            if not bool(same.any()):
                return None
            slot_chip = torch.cat([same.new_zeros(1, dtype=torch.long), (~same).long().cumsum(0)])
            first = torch.cat([same.new_ones(1), ~same]).nonzero().squeeze(1)
            gp, gn = self.g_pos[first].contiguous(), self.g_neg[first].contiguous()
            return self._weights_of(gp, gn), self._noise_var_of(gp, gn), slot_chip

        return self._cached("chip_weights", compute)

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
        check_choice("programming", mode, ("write_verify", "open_loop"))
        if weight.numel():  # NaN/inf propagate: one pass, no temporary, checks both
            lo, hi = torch.aminmax(weight)
            w_abs = max(-float(lo), float(hi))
        else:
            w_abs = 0.0
        if not math.isfinite(w_abs):
            check_finite("program: weight", weight)
        if w_abs > 1.0 + 1e-6:
            raise ConfigError(
                f"weight max |w| = {w_abs:.4g}: allowed range is [-1, 1] (the conductance window); "
                "set mapping.weight_scaling_omega > 0 so aihwkit rescales weights digitally"
            )
        dev = self.device_model
        self.draw_law_spreads(generator)
        w = weight.to(self.g_pos.dtype)
        if w_abs > 1.0:
            w = w.clamp(-1.0, 1.0)  # float round-off only
        w = w.unsqueeze(0) if self.tiles == 1 and not self.padded else self.tiled_weight(w)
        new_pos = w.clamp_min(0).mul_(dev.g_range_s).add_(dev.g_min_s)
        new_neg = (-w).clamp_min_(0).mul_(dev.g_range_s).add_(dev.g_min_s)
        m = self.mask.to(w.dtype)
        if self.padded:  # pad rows hold no cell
            new_pos.mul_(m)
            new_neg.mul_(m)
        if mode == "open_loop":
            pulses, energy = 0.0, 0.0
            g0 = torch.full_like(new_pos, dev.g_min_s)
            continuous = is_continuous(dev)
            for target in (new_pos, new_neg):
                n = dynamics.ltp_pulses_for(torch.where(self.mask, target, g0), dev)
                pulses += float(n.sum())
                if continuous:  # a continuous device lands on its target (devices/presets.py ideal)
                    energy += float(n.sum()) * dev.lt_pulse_energy_j
                    continue
                d2d = dynamics.draw_d2d(target.shape, dev, generator, target.dtype, target.device)
                g, e = dynamics.apply_long_term(g0, n, dev, generator, d2d)
                target.copy_(g * m)
                energy += float(e.sum())
        else:
            # |old - new| summed in place (the state is overwritten with new below): no temporaries
            delta = self.g_pos.sub_(new_pos).abs_().sum() + self.g_neg.sub_(new_neg).abs_().sum()
            pulses, energy = write_verify_cost(delta, dev)
        self.g_pos.copy_(new_pos)
        self.g_neg.copy_(new_neg)
        self._bump()
        return pulses, energy

    @property
    def per_chip(self) -> bool:
        """True if the long-term state holds one copy per chip slot, ``[B, T, O, X]`` (:meth:`program_chips`)."""
        return self.g_pos.dim() == 4

    @torch.no_grad()
    def program_chips(self, weight: Tensor, chips: int, slots_per_chip: int, mode: str = "write_verify",
                      generator: Optional[torch.Generator] = None) -> List[Tuple[float, float]]:
        """Program ``weight [O, in]`` onto ``chips`` independent chip instances, each with its own draws
        (``open_loop``: its own d2d factors and c2c programming error, :meth:`program`), and lay the
        long-term state out per chip slot, ``[chips * slots_per_chip, T, O, X]``: slot ``b`` is on chip
        ``b // slots_per_chip`` (the games a chip plays at once share its programmed conductances; each
        keeps its own short-term state F, allocated by :meth:`set_batch` with the same batch).

        Each chip is programmed from reset (every device at ``g_min``). Returns (pulses, device J) per chip.
        The chips are drawn one after another from ``generator`` (or torch's default), so a seed
        reproduces them. The short-term state is dropped (call :meth:`set_batch`).
        """
        from stoxbar.core.validation import check_int

        check_int("chips", chips, 1)
        check_int("slots_per_chip", slots_per_chip, 1)
        reset = self.device_model.g_min_s * self.mask.to(self.v_bias.dtype).expand_as(self.v_bias)
        pos, neg, costs, taus, sts = [], [], [], [], []
        for _ in range(chips):  # a one-off cost per chip (programming), not per step
            self.g_pos, self.g_neg = reset.clone(), reset.clone()
            self.tau_factor = self.st_d2d = None  # each chip's devices draw their own law spreads
            costs.append(self.program(weight, mode, generator))
            pos.append(self.g_pos)
            neg.append(self.g_neg)
            taus.append(self.tau_factor)
            sts.append(self.st_d2d)
        slot_chip = torch.arange(chips, device=reset.device).repeat_interleave(slots_per_chip)
        self.g_pos, self.g_neg = torch.stack(pos)[slot_chip], torch.stack(neg)[slot_chip]
        self.tau_factor = None if taus[0] is None else torch.stack(taus)[slot_chip]
        self.st_d2d = None if sts[0] is None else torch.stack(sts, 1)[:, slot_chip]
        self.g_st = self.g_modes = None
        self.invalidate()
        return costs

    @torch.no_grad()
    def keep_slots(self, keep: Tensor) -> None:
        """Keep only the batch slots where ``keep [B]`` (bool) is true: their short-term state and, with
        one long-term state per chip slot, their conductances (finished games leave the batch)."""
        g_st = self._need_st("keep_slots")
        keep = keep.to(device=g_st.device, dtype=torch.bool)
        if keep.shape != g_st.shape[:1] or not bool(keep.any()):
            raise ConfigError(f"keep_slots: mask of shape {tuple(keep.shape)} with {int(keep.sum())} kept; "
                              f"allowed: [{g_st.shape[0]}] with at least one kept")
        self.g_st = g_st[keep]
        if self.g_modes is not None:
            self.g_modes = self.g_modes[:, keep]
        if self.per_chip:
            self.g_pos, self.g_neg = self.g_pos[keep], self.g_neg[keep]
            if self.tau_factor is not None and self.tau_factor.dim() == 4:
                self.tau_factor = self.tau_factor[keep]
            if self.st_d2d is not None and self.st_d2d.dim() == 5:
                self.st_d2d = self.st_d2d[:, keep]
        self.invalidate()

    def draw_law_spreads(self, generator: Optional[torch.Generator]) -> None:
        """Draw the devices' own time constants and short-term spreads, once per array (first programming)."""
        dev, shape = self.device_model, self.v_bias.shape
        drawn = self.tau_factor is not None or self.st_d2d is not None
        if drawn and (self.tau_factor if self.tau_factor is not None else self.st_d2d).shape[-3:] == shape:
            return
        f = dev.draw_tau_d2d(shape, generator, self.v_bias.dtype, self.v_bias.device)
        self.tau_factor = None if f is None else torch.where(self.mask, f, torch.ones_like(f))
        s = dev.draw_st_d2d((2, *shape), generator, self.v_bias.dtype, self.v_bias.device)
        self.st_d2d = None if s is None else torch.where(self.mask, s, torch.ones_like(s))

    def _st_scale(self) -> Optional[Tuple[Tensor, Tensor]]:
        """(G+ device, G- device) factors on the short-term increment, or None (every device the level's dG)."""
        def compute():
            dev = self.device_model
            d = (None, None) if self.st_d2d is None else (self.st_d2d[0], self.st_d2d[1])
            fp, fn = dev.st_dg_factor(self.g_pos, d[0]), dev.st_dg_factor(self.g_neg, d[1])
            return None if fp is None and fn is None else (fp, fn)

        return self._cached("st_scale", compute)

    def programming_from_reset(self) -> Tuple[float, float]:
        """(pulses, device energy J) of write-verify programming the present conductances from reset
        (every device at ``g_min``): the count :meth:`program` makes for that change."""
        dev = self.device_model
        delta = ((self.g_pos - dev.g_min_s).abs_() + (self.g_neg - dev.g_min_s).abs_()).mul_(self.mask).sum()
        return write_verify_cost(delta, dev)

    def read_noise_var(self) -> Optional[Tensor]:
        """Per-cell read-noise variance of the pair in weight units squared (the device's law,
        ``device.read_noise_var_s2`` of each side, over ``g_range^2``), or None without noise
        (then the read draws no random numbers)."""
        return self._cached("noise_var", lambda: self._noise_var_of(self.g_pos, self.g_neg))

    def _noise_var_of(self, g_pos: Tensor, g_neg: Tensor) -> Optional[Tensor]:
        dev = self.device_model
        var = dev.read_noise_var_s2(g_pos).add_(dev.read_noise_var_s2(g_neg))
        var = var.mul_(self.mask).div_(dev.g_range_s ** 2)
        return var if bool(var.any()) else None

    def _cached(self, name: str, compute):
        """Value derived from the programmed state, recomputed only after (re)programming."""
        version = self._version  # a view's changes bump it too (_bump)
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
        if self.per_chip and self.g_pos.shape[0] != batch:
            raise ConfigError(f"batch = {batch}: this state holds {self.g_pos.shape[0]} chip slots "
                              "(program_chips); allowed: exactly that many")
        self.g_st = self.g_pos.new_zeros(batch, *self.g_pos.shape[-3:])
        k = self.n_modes
        self.g_modes = self.g_pos.new_zeros(k, batch, *self.g_pos.shape[-3:]) if k > 1 else None
        self._st_cols = None

    def reset_short_term(self, done: Optional[Tensor] = None) -> None:
        """Zero F for all chips, or only where ``done [B]`` is true (episode start)."""
        if self.g_st is None:
            return
        if done is None:
            self.g_st.zero_()
            if self.g_modes is not None:
                self.g_modes.zero_()
        else:
            self.g_st[done.bool()] = 0.0
            if self.g_modes is not None:
                self.g_modes[:, done.bool()] = 0.0

    def set_bias(self, v_bias: Tensor, addressing: str = "per_cell", rails_v: Sequence[float] = (),
                 duty: float = 1.0, rail_v: Optional[float] = None,
                 wire_drop: Optional[Callable[["CrossbarState", Tensor], Tensor]] = None) -> BiasReport:
        """Set the decay bias ``[O, in]`` (V) the ``addressing`` scheme can hold nearest the request, and hold it.

        Raises outside the device's range. The request is projected onto the scheme (and its
        ``rails_v``) per physical tile, :func:`stoxbar.crossbar.bias.project`; the residual is
        returned and kept in ``bias_report``. ``duty`` (0, 1] is the held fraction of every decay
        interval; ``rail_v`` (V) the supply rail every cell's current is drawn from (linear supply,
        per-cell access; None: no rail, the cost model's switched supply). ``wire_drop``: with line
        parasitics, a function of (this state, the held line voltages) giving the voltages the cells
        hold after the wires' drop (the substrate passes the held bias's network solved in full,
        :func:`stoxbar.crossbar.parasitics.held_bias_cells`), so the decay and the bias energy use
        the dropped voltages; the drop is reported in ``bias_report``.
        """
        dev = self.device_model
        check_range("bias_duty", duty, 0.0, 1.0, lo_open=True)
        if rail_v is not None:
            check_range("bias rail_v", rail_v, dev.v_bias_max_v, 10.0, unit="V (>= the device's largest bias)")
        check_rails(rails_v, dev.v_bias_min_v, dev.v_bias_max_v)
        check_finite("set_bias: v_bias", v_bias)
        lo, hi = float(v_bias.min()), float(v_bias.max())
        tol = 1e-6 * max(1.0, abs(dev.v_bias_max_v))  # float32 round-off of the bounds only
        if lo < dev.v_bias_min_v - tol or hi > dev.v_bias_max_v + tol:
            raise ConfigError(
                f"v_bias range [{lo:.4g}, {hi:.4g}] V: allowed range is "
                f"[{dev.v_bias_min_v:g}, {dev.v_bias_max_v:g}] V"
            )
        want = self.tiled_weight(v_bias.to(self.v_bias.dtype)) + dev.v_bias_min_v * (~self.mask)
        held, report = project(want, self.mask, self._col_bounds, addressing, rails_v, dev.v_bias_min_v,
                               dev.v_bias_max_v)
        if wire_drop is not None:
            cells = torch.where(self.mask, wire_drop(self, held).clamp(dev.v_bias_min_v, dev.v_bias_max_v), held)
            real = self.mask.expand_as(held)
            drop = (held - cells)[real].double()
            tau_err = (torch.as_tensor(dev.tau_s(cells[real].double()))
                       / torch.as_tensor(dev.tau_s(held[real].double())) - 1.0).abs()
            drop_cell = torch.where(real, held - cells, torch.zeros_like(held)).double().abs()
            err_cell = torch.zeros_like(drop_cell)
            err_cell[real] = tau_err
            report = replace(report, wire_drop_max_v=float(drop.abs().max()) if drop.numel() else 0.0,
                             wire_drop_rms_v=float(drop.square().mean().sqrt()) if drop.numel() else 0.0,
                             wire_tau_err_max=float(tau_err.max()) if tau_err.numel() else 0.0,
                             wire_drop_max_v_per_tile=self._tile_max(drop_cell),
                             wire_tau_err_max_per_tile=self._tile_max(err_cell))
            held = cells
        self.v_bias.copy_(held)
        self.bias_report, self.bias_duty, self.bias_rail_v = report, float(duty), rail_v
        self.hold_bias = True
        self._bump()
        return report

    def _tile_max(self, x: Tensor) -> Tuple[float, ...]:
        """Largest value of ``x [T, O, X]`` per physical tile, in tile order ``k = i * J + j``."""
        b = self._col_bounds
        per = torch.stack([x[:, b[j]:b[j + 1], :].amax((1, 2)) for j in range(self.col_tiles)], 1)  # [T, J]
        return tuple(float(v) for v in per.reshape(-1))

    def hold(self, on: bool = True) -> None:
        """Hold (``True``) or release the decay bias; a released bias costs no energy."""
        self.hold_bias = bool(on)

    def effective_weight(self, scratch: bool = False) -> Tensor:
        """Weight the array reads: ``[T, O, X]`` or ``[B, T, O, X]`` with short-term state.

        ``scratch``: write W + F into a buffer the state keeps and reuses (valid until the next
        ``effective_weight(scratch=True)``) when no graph is recorded (grad mode off), for a read that
        consumes it at once: a fresh [B, T, O, X] tensor per read costs its page faults (glibc maps
        every block above 32 MiB anew), measured ~8x the add itself for 100 games of the paper's
        layer (BENCHMARKS.md)."""
        w = self.weights()
        if self.g_st is None:
            return w
        alpha = 1.0 / self.device_model.g_range_s
        if not scratch or torch.is_grad_enabled():  # a graph may keep the weight until its backward pass
            return torch.add(w, self.g_st, alpha=alpha)
        shape = torch.broadcast_shapes(w.shape, self.g_st.shape)
        buf = self.__dict__.get("_read_scratch")
        if buf is None or buf.shape != shape or buf.dtype != self.g_st.dtype or buf.device != self.g_st.device:
            buf = torch.empty(shape, dtype=self.g_st.dtype, device=self.g_st.device)
            self.__dict__["_read_scratch"] = buf
        return torch.add(w, self.g_st, alpha=alpha, out=buf)

    def _need_st(self, op: str) -> Tensor:
        if self.g_st is None:
            raise ConfigError(f"{op} before set_batch(): no short-term state allocated")
        return self.g_st

    def tile_level_counts(self, level: Tensor) -> Tensor:
        """Pulses per tile and level (both signs), ``[T * J, L]`` int64, from signed levels ``[B, T, O, X]``."""
        n_levels = len(self.device_model.st_pulse_levels)
        flat = level.reshape(-1)
        if flat.dtype == torch.int8 and flat.numel() % 8 == 0 and flat.is_contiguous():
            # pulses are sparse: find the 64-bit words holding one (an 8x shorter scan), then the bytes
            words = flat.view(torch.int64)
            nzw = words.nonzero().squeeze(1)
            held = words[nzw].view(torch.int8).view(-1, 8)
            sub = held.nonzero()
            nz = nzw[sub[:, 0]] * 8 + sub[:, 1]
            k = held[sub[:, 0], sub[:, 1]].abs().long()
        else:
            nz = flat.nonzero().squeeze(1)
            k = flat[nz].abs().long()
        t, o, x = self.g_pos.shape[-3:]
        cell = nz % (t * o * x)
        tile = (cell // (o * x)) * self.col_tiles
        if self.col_tiles > 1:
            tile = tile + self.col_tile_of[(cell // x) % o]
        n = self.n_tiles * (n_levels + 1)
        return torch.bincount(tile * (n_levels + 1) + k, minlength=n).view(self.n_tiles, n_levels + 1)[:, 1:]

    @torch.no_grad()
    def apply_short_term(self, request: Tensor) -> Tuple[Tensor, Tensor]:
        """Apply the requested short-term change ``request [B, T, O, X]`` (weight units) as pulses.

        The device discretises the request to its pulse levels (no pulse where it rounds to zero;
        none on pad rows) and the state saturates at its short-term window. Returns (signed level
        int8 [B, T, O, X], pulses per tile and level [T * J, L]). NaN or inf requests raise.
        """
        g_st = self._need_st("apply_short_term")
        check_finite("apply_short_term: request", request)
        dev = self.device_model
        level, _ = dynamics.quantise_short_term(request * dev.g_range_s, dev, validate=False)
        if self.padded:
            level = level * self.mask  # no pulses on pad rows (they are no cells)
        # the state only ever changes through these calls, so it is in its window by construction
        new, _ = dynamics.apply_short_term(g_st, level, dev, validate=False, dg_scale=self._st_scale())
        if self.g_modes is not None:  # the achieved change (after saturation) splits by the modes' weights
            self._split_change(new - g_st)
            new = self.g_modes.sum(0)
        g_st.copy_(new)
        return level, self.tile_level_counts(level)

    def _decay_tables(self, dt_s: float) -> Tuple[Tensor, Tensor, Tensor]:
        """(Lambda [T,O,X], bias energy per siemens of |F| [T,O,X] (J/S), long-term bias energy J per
        tile and chip [T * J] float64).

        With a rail (``bias_rail_v``) each energy table is stacked with the energy the rail
        *delivers* (each cell's load times ``V_rail / |V|``: the current a cell draws comes from
        the rail): per_st ``[2, T, O, X]``, the long-term part ``[T * J, 2]`` (load, drawn).

        Duty ``d`` (``bias_duty``): the bias is held for ``d dt`` first, then released (the device's
        ``v_bias_min_v``) for ``(1 - d) dt``: ``Lambda = Lambda(d dt, V) Lambda((1 - d) dt, V_min)``
        (exact: the decay is linear in F), and the bias energy is the integral over the held phase.

        Cached per dt until reprogramming: within a game only F changes, so a decay step is one
        multiply of F plus one weighted sum of |F|.
        """
        def compute():
            dev = self.device_model
            ones = torch.ones_like(self.v_bias)
            d = self.bias_duty
            held_s = d * dt_s
            f = self.tau_factor  # a device with tau = f tau(V) decays by Lambda(dt / f): its own time
            lam = dynamics.decay(ones, self.v_bias, _over(held_s, f), dev) * self.mask
            if d < 1.0:
                lam = lam * dynamics.decay(ones, dev.v_bias_min_v, _over(dt_s - held_s, f), dev)
            per_st = dynamics.bias_energy_j(torch.zeros_like(ones), ones, self.v_bias, _over(held_s, f), dev) * self.mask
            if f is not None:
                per_st = per_st * f
            lt = dynamics.bias_energy_j(self.g_pos + self.g_neg, torch.zeros_like(ones), self.v_bias, held_s, dev)

            def tsum(x: Tensor) -> Tensor:  # [T * J]: per tile, summed over the chip slots of a per-chip state
                s = self.tile_sum(x, torch.float64)
                return s.sum(0) if self.per_chip else s

            if self.bias_rail_v is None:
                return lam, per_st, tsum(lt)
            r = self._rail_factor()
            return lam, torch.stack([per_st, per_st * r]), torch.stack([tsum(lt), tsum(lt * r)], -1)

        return self._cached(f"decay:{float(dt_s)!r}:{self.bias_duty!r}:{self.bias_rail_v!r}", compute)

    def _mode_tables(self, dt_s: float) -> Tuple[Tensor, List[Tensor]]:
        """(Lambda per mode [K, 1, T, O, X], bias energy per siemens of each mode's |F_k| (J/S), K tables
        as in :meth:`_decay_tables`) for a device with K > 1 decay modes.

        Mode k decays as ``exp(-t / (s_k tau(V)))`` (held phase, then the released phase at
        ``v_bias_min_v`` for a duty below 1); its bias energy is ``p(V) s_k tau (1 - exp(-d dt / (s_k tau)))``
        per siemens of its part of F at the interval start. Summed over the modes this is the exact
        integral when the modes share a sign (every increment of a cell had one sign), an upper bound
        otherwise (|sum| <= sum |.|).
        """
        def compute():
            dev = self.device_model
            d = self.bias_duty
            held_s = d * dt_s
            f = self.tau_factor
            lams = torch.stack(dev.mode_decay_factors(_over(held_s, f), self.v_bias)) * self.mask
            if d < 1.0:
                vmin = torch.full_like(self.v_bias, dev.v_bias_min_v)
                lams = lams * torch.stack(dev.mode_decay_factors(_over(dt_s - held_s, f), vmin))
            p = dev.bias_power_w(1.0, self.v_bias) * self.mask
            if f is not None:
                p = p * f
            per = [p * i for i in dev.mode_decay_integrals_s(_over(held_s, f), self.v_bias)]
            if self.bias_rail_v is not None:
                r = self._rail_factor()
                per = [torch.stack([x, x * r]) for x in per]
            return (lams if f is not None and f.dim() == 4 else lams.unsqueeze(1)), per  # [K, B or 1, T, O, X]

        return self._cached(f"modes:{float(dt_s)!r}:{self.bias_duty!r}:{self.bias_rail_v!r}", compute)

    def _rail_factor(self):
        """``V_rail / |V|`` per cell (0 where V = 0: no current), or 1 without a rail."""
        if self.bias_rail_v is None:
            return 1.0
        v = self.v_bias.abs()
        return torch.where(v > 0, self.bias_rail_v / v.clamp_min(1e-30), torch.zeros_like(v))

    def _st_bias(self, per_st: Tensor, stacked: Optional[bool] = None) -> Tensor:
        """Short-term part of the bias energy per tile (J, [T * J] float64, or [T * J, 2] for a
        stacked (load, drawn) table: with a rail), all chips, from F at the interval start."""
        if self.bias_rail_v is not None if stacked is None else stacked:
            return torch.stack([self._st_bias(per_st[0], False), self._st_bias(per_st[1], False)], -1)
        return self._chips_tile_sum(self.g_st.abs() * per_st)

    def _modes_bias(self, per: List[Tensor]) -> Tensor:
        """:meth:`_st_bias` of a K-mode state: ``sum_k |F_k| per_k``, summed over the modes in the state's
        dtype before the one float64 reduction per tile."""
        def weighted(tables: List[Tensor]) -> Tensor:  # in place: one buffer for |F_k|, one accumulator
            buf, acc = torch.empty_like(self.g_st), torch.zeros_like(self.g_st)
            for g, p in zip(self.g_modes, tables):
                acc.addcmul_(torch.abs(g, out=buf), p)
            return self._chips_tile_sum(acc)

        if self.bias_rail_v is not None:
            return torch.stack([weighted([p[i] for p in per]) for i in (0, 1)], -1)
        return weighted(per)

    def _chips_tile_sum(self, prod: Tensor) -> Tensor:
        """Per tile, summed over the chips of ``prod [B, T, O, X]``, in float64 ([T * J])."""
        return self.tile_sum(prod.sum(0, dtype=torch.float64) if prod.shape[0] > 1 else prod[0].double())

    @property
    def chips(self) -> int:
        """Independent short-term states (1 before ``set_batch``)."""
        return 1 if self.g_st is None else self.g_st.shape[0]

    @torch.no_grad()
    def decay(self, dt_s: float) -> Optional[Tensor]:
        """Let ``dt_s`` seconds pass: F decays exactly, the held bias costs energy.

        Returns the bias energy per tile in J (``[T * J]`` float64, all chips), or None if no bias
        is held. The bias integral (``dynamics.bias_energy_j``) starts from F at the interval
        start: exact for the exponential decay.
        """
        lam, per_st, lt = self._decay_tables(dt_s)
        st = None
        if self.g_modes is not None:
            lams, per = self._mode_tables(dt_s)
            if self.hold_bias:
                st = self._modes_bias(per)
            self.g_modes.mul_(lams)
            self._sum_modes()
        elif self.g_st is not None:
            if self.hold_bias:
                st = self._st_bias(per_st)
            self.g_st.mul_(lam)
        return self._bias_energy(lt, st)

    def _bias_energy(self, lt: Tensor, st) -> Optional[Tensor]:
        """Bias energy per tile (J) from the long-term part per chip and the short-term part (None: no bias held)."""
        if not self.hold_bias:
            return None
        e = lt if self.per_chip else lt * self.chips  # per-chip tables already sum every chip
        return e if st is None else e + st

    def _check_scale(self, scale: Tensor) -> Tensor:
        """Finite check of the (usually fixed) scale tensor, once per tensor version; returns it contiguous
        (a tiled view is copied once per version, not every step)."""
        key = (id(scale), scale._version)
        if key != self._checked[:2]:
            check_finite("decay_and_outer_update: scale", scale)
            self._checked = key + (scale, scale.contiguous())
        return self._checked[3]

    @torch.no_grad()
    def decay_and_outer_update(self, dt_s: float, scale: Tensor, u: Tensor, v: Tensor, per_tile: bool = True,
                               levels: bool = True) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor], Optional[Tensor]]:
        """Let ``dt_s`` seconds of decay pass, then apply the requested change ``scale * (u v^T)``.

        A crossbar outer-product update: ``u [B, O]`` drives the columns, ``v [B, T, X]`` (tiled)
        the rows, ``scale [T, O, X]`` (tiled, weight units) weights each cell. The same as
        :meth:`decay` then :meth:`apply_short_term` of ``scale * u[:, None, :, None] * v[:, :, None, :]``,
        in one pass over F with the fused kernel (:mod:`~stoxbar.crossbar.fused`: same F and
        levels, energies equal up to float round-off), which also keeps ``sum_o |F|`` for the
        next read. Returns (signed levels int8 [B, T, O, X], pulses per level [B, L], bias energy per
        tile J [T * J] or None without a held bias, pulses per tile and level [T * J, L]).
        ``per_tile=False`` (nobody records the events) skips the per-tile split: the last two are None.
        ``levels=False`` (a client that needs the counts only): the fused pass writes no levels, the first is
        None (the same F, counts and energies).
        """
        g_st = self._need_st("decay_and_outer_update")
        b = g_st.shape[0]
        if scale.shape != self.v_bias.shape or u.shape != (b, self.out_size) or v.shape != (b, self.tiles, self.rows):
            raise ConfigError(f"decay_and_outer_update shapes scale {tuple(scale.shape)}, u {tuple(u.shape)}, v "
                              f"{tuple(v.shape)}: expected {tuple(self.v_bias.shape)}, [{b}, {self.out_size}], "
                              f"[{b}, {self.tiles}, {self.rows}]")
        scale = self._check_scale(scale)
        check_finite("decay_and_outer_update: u", u)
        check_finite("decay_and_outer_update: v", v)
        if (self.g_modes is not None or (self.tau_factor is not None and self.tau_factor.dim() == 4)
                or self._st_scale() is not None):  # the kernel has one Lambda per cell and one dG per level
            level, *rest = self._unfused_decay_and_update(dt_s, scale, u, v, per_tile)
            return (level if levels else None, *rest)
        dev = self.device_model
        lam, per_st, lt = self._decay_tables(dt_s)
        dg, _, thr = self._cached("st_tables", lambda: dynamics.short_term_tables(dev, self.g_pos))
        hold = self.hold_bias and per_tile
        # several column-tiles: the kernel's per-row-tile figures are split by a sparse scan below; a
        # rail's stacked (load, drawn) table is summed in the same pass ([B, T, 2])
        split = per_tile and self.col_tiles > 1
        st = self._st_bias(per_st) if self.hold_bias and split else None  # per tile, before the pass
        out = fused.short_term_step(g_st, self.row_sizes, lam, per_st if hold and not split else None,
                                    scale, u, v, dev.g_range_s, thr, dg, dev.st_g_max_s, True,  # by tile
                                    levels or split)  # several column-tiles: the split reads the levels
        level, ge, cols, bias_bt = out
        if not g_st.is_inference():
            self._st_cols = (g_st, g_st._version, cols)
        per_bt, counts = _level_counts(ge)
        if not per_tile:
            return level if levels else None, counts, None, None
        if split:
            return level if levels else None, counts, self._bias_energy(lt, st), self.tile_level_counts(level)
        if hold:
            st = bias_bt.sum(0) if b > 1 else bias_bt[0]
        return level, counts, self._bias_energy(lt, st), per_bt.sum(0) if b > 1 else per_bt[0]

    def _unfused_decay_and_update(self, dt_s: float, scale: Tensor, u: Tensor, v: Tensor, per_tile: bool):
        """:meth:`decay_and_outer_update` for a device with several decay modes, per-chip time-constant
        spread or per-device short-term increments: :meth:`decay` (each mode and device exactly), then the
        request on the decayed F: the fused pass with Lambda = 1 (the same quantiser, update and counts in
        one pass; the achieved change splits over the modes), or, with per-device increments,
        :meth:`apply_short_term`."""
        energy = self.decay(dt_s)
        b = self.g_st.shape[0]
        if self._st_scale() is not None:  # one dG per device: the kernel has one per level
            level, per_tile_counts = self.apply_short_term(scale.unsqueeze(0) * u[:, None, :, None] * v[:, :, None, :])
            counts = dynamics.level_counts(level, len(self.device_model.st_pulse_levels))
            return (level, counts, None, None) if not per_tile else (level, counts, energy, per_tile_counts)
        g_st, dev = self.g_st, self.device_model
        before = g_st.clone() if self.g_modes is not None else None
        dg, _, thr = self._cached("st_tables", lambda: dynamics.short_term_tables(dev, self.g_pos))
        keep = self._cached("keep_lam", lambda: self.mask.to(self.v_bias.dtype).expand_as(self.v_bias).contiguous())
        level, ge, cols, _ = fused.short_term_step(g_st, self.row_sizes, keep, None, scale, u, v, dev.g_range_s, thr,
                                                   dg, dev.st_g_max_s, True)
        if before is not None:
            self._split_change(before.neg_().add_(g_st))  # the achieved change, in place of the copy
            self._sum_modes()
        elif not g_st.is_inference():
            self._st_cols = (g_st, g_st._version, cols)
        per_bt, counts = _level_counts(ge)
        if not per_tile:
            return level, counts, None, None
        tiles = self.tile_level_counts(level) if self.col_tiles > 1 else (per_bt.sum(0) if b > 1 else per_bt[0])
        return level, counts, energy, tiles

    def abs_column_conductance(self) -> Tensor:
        """``sum_o (G+ + G- + |F|)`` per chip, row-tile, column-tile and row, [B or 1, T, J, X] (S), for read energy."""
        def per_col(x: Tensor) -> Tensor:  # [..., T, O, X] -> [..., T, J, X]
            if self.col_tiles == 1:
                return x.sum(-2, keepdim=True)
            b = self._col_bounds
            return torch.stack([x[..., b[j]:b[j + 1], :].sum(-2) for j in range(self.col_tiles)], -2)

        g = self._cached("col_g", lambda: per_col(self.g_pos + self.g_neg) if self.per_chip
                         else per_col(self.g_pos + self.g_neg).unsqueeze(0))
        if self.g_st is not None:
            kept = self._st_cols  # from the last fused step, valid while g_st is unchanged since
            fresh = kept is None or kept[0] is not self.g_st or kept[1] != self.g_st._version or self.col_tiles > 1
            g = g + (per_col(self.g_st.abs()) if fresh else kept[2].unsqueeze(-2))
        return g
