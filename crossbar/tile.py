"""aihwkit tiles whose synapses are STO memristor pairs, with the generic substrate operations.

* :class:`STOSimulatorTile` is the simulator tile (``rpu_config.simulator_tile_class``): it keeps
  the physical state (:class:`~stoxbar.crossbar.state.CrossbarState`, siemens) instead of a bare
  weight matrix, reads it through aihwkit's ``AnalogMVM`` with the IO parameters derived from the
  periphery, and records what every operation did (:class:`~stoxbar.crossbar.events.Events`).
* :class:`STOTile` is the tile module (``rpu_config.tile_class``): aihwkit's
  ``TorchInferenceTile`` plus the substrate operations of
  :class:`~stoxbar.crossbar.substrate.SubstrateOps`.

Substrate operations (units in brackets; none knows a learning rule):

* program ``set_weights(w)`` (weight units, write-verify or open-loop as the periphery says);
* read: the forward pass (an MVM, through DAC -> array -> ADC);
* ``apply_short_term(request)``: a requested conductance change (weight units) discretised by the
  device into pulses;
* ``decay(dt_s)`` [s] under the held bias; ``set_bias(v)`` [V] sets and holds it, ``hold(on)``;
* ``decay_and_outer_update(dt_s, scale, u, v)``: decay for ``dt_s``, then apply the requested
  change ``scale * (u v^T)`` (the rows and columns driven as in a crossbar outer-product update).

Events go to the attached :class:`~stoxbar.crossbar.ledger.EnergyLedger` through the one cost
model (:func:`~stoxbar.crossbar.costs.cost`), per tile (key ``"i.j"``). Programming done while no
ledger is attached (aihwkit's ``convert_to_analog``, a layer's constructor) is kept as pending
events and booked when a ledger is attached (:meth:`EventSink.pending_events` reports them).

The aihwkit ``weight`` parameter is kept as the programmed target so aihwkit's optimisers and
hardware-aware training still work: the forward pass uses the conductances' value with the
gradient of ``weight`` (straight-through, :mod:`~stoxbar.crossbar.aihwkit_compat`); after each
update the conductances are brought to it (:mod:`~stoxbar.crossbar.programming`), weights past
the conductance window remapped or clipped as configured (docs/aihwkit-support.md §2). Drift is
:mod:`~stoxbar.crossbar.drift`, save/load :mod:`~stoxbar.crossbar.persistence`, indexed
convolution :mod:`~stoxbar.crossbar.conv`.

May import: torch, aihwkit, stoxbar.devices, stoxbar.peripherals, stoxbar.validation,
stoxbar.crossbar.{state,events,costs,ledger,read,aihwkit_compat,substrate,programming,drift,persistence,conv};
never crossbar.config (the configuration is duck-typed: crossbar/persistence.py ``is_sto_config``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import NoiseManagementType, WeightModifierType
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

import stoxbar.crossbar.conv as conv
import stoxbar.crossbar.drift as drift
import stoxbar.crossbar.persistence as persistence
import stoxbar.crossbar.programming as programming
from stoxbar.crossbar.aihwkit_compat import ScaleGradHook
from stoxbar.crossbar.costs import book, cost
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.crossbar.read import analog_read, read_drive
from stoxbar.crossbar.state import CrossbarState
from stoxbar.crossbar.substrate import SubstrateOps
from stoxbar.devices.base import MemristiveDevice
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.validation import ConfigError


class EventSink:
    """Where a tile or array sends its events: ``ledger``, key names, accumulated and pending events.

    Reads, pulses and decay intervals are accumulated per tile (their events are additive) and
    costed and booked when the ledger is read (:meth:`flush`, called by the ledger), so that
    recording costs a few tensor adds per operation. Programming is booked at once, or kept
    pending while no ledger is attached.
    """

    ledger: Optional[EnergyLedger] = None
    layer_name: str = "layer"
    tile_name: str = "0.0"
    row_tile: int = 0
    row_tiles: int = 1
    device: MemristiveDevice
    periphery: PeripheryConfig

    def _init_sink(self, device: MemristiveDevice, periphery: PeripheryConfig) -> None:
        self.device, self.periphery = device, periphery
        self._pending: List[Tuple[str, Events]] = []
        self._acc: dict = {}

    def _blocks(self) -> List[Tuple[str, int, int, int, int]]:
        """(tile key, rows, cols, row-tile, row-tiles) of every tile this sink books, in state order."""
        return [(self.tile_name, self.state.in_sizes[0], self.state.out_size, self.row_tile, self.row_tiles)]

    def attach(self, ledger: Optional[EnergyLedger], layer_name: str, book_pending: bool = True) -> None:
        """Book future events under ``layer_name`` in ``ledger``; pending programming too (``book_pending``)."""
        self.flush()
        if self.ledger is not None:
            self.ledger.unregister(self)
        self.ledger = ledger
        self.layer_name = layer_name
        if ledger is not None:
            ledger.register(self)
            if book_pending and self._pending:
                pending, self._pending = self._pending, []
                for key, ev in pending:
                    book(ledger, layer_name, key, cost(ev, self.device, self.periphery))

    @property
    def recording(self) -> bool:
        """True if a ledger is attached and enabled."""
        return self.ledger is not None and self.ledger.enabled

    def emit(self, key: str, events: Events) -> None:
        """Cost ``events`` of tile ``key`` and book them now; programming without a ledger stays pending."""
        if self.recording:
            book(self.ledger, self.layer_name, key, cost(events, self.device, self.periphery))
        elif self.ledger is None and events.op == "program":
            self._pending.append((key, events))

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return list(self._pending)

    # -- accumulated events ----------------------------------------------------------------------
    def _read_acc(self) -> list:
        """The read accumulator: [reads, vectors, vector-rounds, drive_g_s per tile (float64)]."""
        a = self._acc.get("read")
        if a is None:
            a = self._acc["read"] = [0, 0, 0, torch.zeros(self.state.n_tiles, dtype=torch.float64)]
        return a

    def record_read(self, x_t: Tensor, rounds: int, io_pars: Any) -> None:
        """Accumulate one read of ``x_t [N, T, X]`` that took ``rounds`` array reads (:func:`read_drive`).

        An all-zero input that aihwkit short-cuts (0 rounds) is still one read on the chip.
        """
        rounds = max(rounds, 1)
        a = self._read_acc()
        a[0] += 1
        a[1] += x_t.shape[0]
        a[2] += x_t.shape[0] * rounds
        read_drive(self.state, x_t, rounds, io_pars, self.periphery, out=a[3])

    def _native_drive(self, io_pars: Any) -> Optional[Tuple[int, float]]:
        """(drive mode, shrink per round) if the native read can add this read's drive itself, else None
        (the same sum as :func:`read_drive`, in float64)."""
        nm = io_pars.noise_management
        hit = self.__dict__.get("_drive_mode")
        if hit is not None and hit[0] is io_pars and hit[1] == nm and hit[3] is self.periphery:
            return hit[2]
        mode = self.periphery.dac.mode
        found = None if mode == "bit_serial" or nm != NoiseManagementType.ABS_MAX else (
            (0, 0.25) if mode == "multibit" else (1, 0.5))
        self.__dict__["_drive_mode"] = (io_pars, nm, found, self.periphery)
        return found

    def record_pulses(self, tile_counts: Tensor) -> None:
        """Accumulate short-term pulses per tile and level ``[tiles, L]``."""
        a = self._acc.get("short_term")
        if a is None:
            self._acc["short_term"] = tile_counts.to(torch.int64, copy=True)
        else:
            a.add_(tile_counts)

    def record_decay(self, dt_s: float, chips: int, bias_energy_j: Optional[Tensor]) -> None:
        """Accumulate a decay interval of ``chips`` chips under a held bias (None: no bias held, nothing to book)."""
        if bias_energy_j is None:
            return
        a = self._acc.get("decay")
        if a is None:
            a = self._acc["decay"] = [0.0, 0.0, torch.zeros(bias_energy_j.shape, dtype=torch.float64)]
        a[0] += dt_s
        a[1] += chips * dt_s
        a[2].add_(bias_energy_j)

    def flush(self) -> None:
        """Cost and book the accumulated events (per tile) in the attached ledger."""
        acc, self._acc = self._acc, {}
        if not acc or self.ledger is None:
            return
        blocks = self._blocks()
        read = acc.get("read")
        if read is not None:
            drive = read[3].tolist()
            for k, (key, rows, cols, i, t) in enumerate(blocks):
                self._book_events(key, Events("read", rows, cols, i, t, reads=read[0], input_vectors=read[1],
                                       vector_rounds=read[2], drive_g_s=drive[k]))
        pulses = acc.get("short_term")
        if pulses is not None:
            for (key, rows, cols, i, t), counts in zip(blocks, pulses.tolist()):
                self._book_events(key, Events("short_term", rows, cols, i, t, pulses_by_level=tuple(counts)))
        decay = acc.get("decay")
        if decay is not None:
            dt, chip_s, energy = decay[0], decay[1], decay[2].tolist()
            for k, (key, rows, cols, i, t) in enumerate(blocks):
                self._book_events(key, Events("decay", rows, cols, i, t, dt_s=dt, chip_s=chip_s,
                                       bias_held_s=2 * rows * cols * chip_s, bias_energy_j=energy[k]))

    def _book_events(self, key: str, events: Events) -> None:
        book(self.ledger, self.layer_name, key, cost(events, self.device, self.periphery))


class STOSimulatorTile(TorchSimulatorTile, EventSink):
    """Simulator tile holding one STO crossbar tile's conductances (see module docstring).

    The aihwkit ``weight`` parameter is the digital target; after each change of it the
    conductances are brought to it (:meth:`sync_device`): programmed (``update_mode =
    "program_after_step"``) or pulsed (``"pulsed"``) through crossbar/programming.py.
    """

    update_mode: str = "program_after_step"  # class defaults: tiles pickled before a field existed
    weight_overflow: str = "remap"

    def __init__(self, x_size: int, d_size: int, rpu_config: Any, bias: bool = False):
        super().__init__(x_size, d_size, rpu_config, bias, analog_mvm=rpu_config.read_model)
        self.state = CrossbarState([x_size], d_size, rpu_config.device)
        self._init_sink(rpu_config.device, rpu_config.periphery)
        self.programming = rpu_config.periphery.programming
        self.update_mode = getattr(rpu_config, "update_mode", "program_after_step")
        self.weight_overflow = getattr(rpu_config, "weight_overflow", "remap")
        # the target the conductances were last brought to (persistent: survives save/load)
        self.register_buffer("programmed_target", torch.zeros_like(self.weight.data))
        self._sync_key: Tuple[int, int] = (-1, -1)
        self._d2d: Optional[Tuple[Tensor, Tensor]] = None  # per-device step factors (pulsed mode)

    def set_config(self, rpu_config: Any) -> None:  # aihwkit calls this on every forward
        super().set_config(rpu_config)
        self.update_mode = getattr(rpu_config, "update_mode", self.update_mode)
        self.weight_overflow = getattr(rpu_config, "weight_overflow", self.weight_overflow)

    def set_weights(self, weight: Tensor) -> None:
        """Program ``weight [d, x]`` (|w| <= 1) onto the conductance pairs."""
        self.weight.data = weight.detach().clone().to(self.weight.device, self.weight.dtype)
        pulses, energy = self.state.program(self.weight.data, self.programming)
        self.mark_programmed()
        self.emit(self.tile_name, Events("program", self.x_size, self.d_size, self.row_tile, self.row_tiles,
                                         program_pulses=pulses, program_device_j=energy))

    def get_weights(self) -> Tensor:
        """Weights the conductances hold now (long-term part), ``[d, x]``."""
        return self.state.from_tiled(self.state.weights()).detach().cpu()

    def forward(self, x_input: Tensor, bias: bool = False, in_trans: bool = False, out_trans: bool = False,
                is_test: bool = False, non_blocking: bool = False) -> Tensor:
        if in_trans or out_trans or bias:
            raise NotImplementedError("STO tiles support plain (non-transposed, digital-bias) MVMs only")
        self.sync_device()  # a plain torch optimiser changed the weights: program them first
        lead = x_input.shape[:-1]
        weight_param = self.weight.unsqueeze(0) if (torch.is_grad_enabled() and self.weight.requires_grad) else None
        y, _ = analog_read(self.state, x_input.reshape(-1, self.x_size), self._f_io, self._analog_mvm, self.periphery,
                           weight_param, is_test, self.read_modifier(is_test), self.out_noise_values, sink=self)
        return y.sum(1).reshape(*lead, self.d_size)

    def read_modifier(self, is_test: bool) -> Any:
        """The weight modifier to apply in this read (None in eval or if off)."""
        mod = getattr(self, "_modifier", None)
        if is_test or mod is None or mod.type in (WeightModifierType.NONE, WeightModifierType.COPY):
            return None
        return mod

    # -- the conductances follow the trained weight ----------------------------------------------
    def _key(self) -> Tuple[int, int]:
        return (self.weight.data_ptr(), self.weight._version)

    def mark_programmed(self) -> None:
        """The conductances now correspond to the current ``weight`` parameter."""
        self.programmed_target.copy_(self.weight.detach())
        self._sync_key = self._key()

    def device_stale(self) -> bool:
        """True if ``weight`` changed since the conductances were last brought to it."""
        if self._sync_key == self._key():
            return False
        if torch.equal(self.weight.detach(), self.programmed_target):
            self._sync_key = self._key()
            return False
        return True

    def _book(self, pulses: float, energy_j: float) -> None:
        if pulses > 0:  # the one cost model books it (or keeps it pending without a ledger)
            self.emit(self.tile_name, Events("program", self.x_size, self.d_size, self.row_tile, self.row_tiles,
                                             program_pulses=pulses, program_device_j=energy_j))

    def recheck_by_value(self) -> None:
        """Forget the version key: the next :meth:`device_stale` compares ``weight`` with the target by value."""
        self._sync_key = (-1, -1)

    @torch.no_grad()
    def sync_device(self) -> None:
        """Program (or pulse) the conductances to ``weight`` if it changed.

        NaN/inf weights (a diverged step) are refused by ``CrossbarState.program`` / the pulse model.
        Weights past the window (|w| > 1) are clamped to it with ``weight_overflow = "clip"``; with
        ``"remap"`` the tile module rescales them first (:meth:`STOTile.fit_window`), and a weight
        that still reaches here past the window is a ConfigError, never a silent clip.
        """
        if self.device_stale():
            self.follow_weight()

    @torch.no_grad()
    def follow_weight(self) -> None:
        """:meth:`sync_device` without the staleness check (the caller made it)."""
        if self.weight_overflow == "clip":
            self.weight.data.clamp_(-1.0, 1.0)  # the conductance window (configured, docs/aihwkit-support.md §2)
        else:
            lo, hi = torch.aminmax(self.weight.detach()) if self.weight.numel() else (torch.zeros(()),) * 2
            peak = max(-float(lo), float(hi))
            if peak > 1.0 + 1e-6:
                raise ConfigError(
                    f"trained weight max |w| = {peak:.4g} (tile units): allowed range is [-1, 1] (the conductance "
                    "window); the tile module remaps it (weight_overflow = 'remap'), a bare simulator tile "
                    "cannot: set STORPUConfig(weight_overflow='clip') to clip it to the window")
            if peak > 1.0:
                self.weight.data.clamp_(-1.0, 1.0)  # float round-off only
        target = self.weight.detach()
        if self.update_mode == "pulsed":
            pulses, energy, self._d2d = programming.pulsed_update(self.state, target, self._d2d)
            self._book(pulses, energy)
            self.weight.data.copy_(self.get_weights().to(self.weight.device, self.weight.dtype))
        else:
            self.program_target(target, changed_only=True)
        self.mark_programmed()

    @torch.no_grad()
    def program_target(self, target: Tensor, changed_only: bool = False,
                       mode: Optional[str] = None) -> Tuple[float, float]:
        """Program ``target [d, x]`` with the programming model (:func:`programming.program_target`),
        book it and return (pulses, J); ``changed_only``: residuals drawn only where the target changed."""
        st = self.state
        unchanged = None
        if changed_only:  # compared before programming
            unchanged = target.to(st.g_pos.dtype) == self.programmed_target.to(st.g_pos.dtype)
        pulses, energy = programming.program_target(st, target, mode or self.programming, unchanged)
        self._book(pulses, energy)
        return pulses, energy

    # -- save/load (aihwkit's analog state: crossbar/persistence.py) ------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the programmed target was saved: the target is the weight
        if prefix + "programmed_target" not in state_dict and prefix + "weight" in state_dict:
            state_dict[prefix + "programmed_target"] = state_dict[prefix + "weight"]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def dump_extra(self) -> Optional[Dict]:
        return {**persistence.extra_state(self.state), "d2d": self._d2d}

    def load_extra(self, extra: Dict, strict: bool = False) -> None:
        if isinstance(extra, dict):
            persistence.load_extra_state(self.state, extra)
            self._d2d = extra.get("d2d")


class STOTile(TorchInferenceTile, SubstrateOps):
    """aihwkit tile module for STO crossbars, with the substrate operations."""

    _sto_pending_error: Optional[str] = None
    _sto_written: bool = False
    supports_indexed: bool = True  # aihwkit's AnalogConv1d/3d and mapped convolutions (crossbar/conv.py)
    set_indexed = conv.set_indexed
    is_indexed = conv.is_indexed

    @property
    def state(self) -> CrossbarState:  # type: ignore[override]
        """The simulator tile's physical state."""
        return self.tile.state

    def _sink(self) -> EventSink:
        return self.tile

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return self.tile.pending_events()

    # -- weights ----------------------------------------------------------------------------
    def set_weights(self, weight: Tensor, bias: Optional[Tensor] = None, **kwargs: Any) -> None:
        """aihwkit's ``set_weights``; a first write of non-finite values to a fresh tile is deferred.

        aihwkit's mapped layers write uninitialised memory once in ``__init__`` before their real
        initialisation. Such a write (non-finite values, tile never written) programs nothing and
        leaves a pending :class:`ConfigError` that the next valid write clears and any use of the
        tile (forward, programming) raises. Every later write is checked strictly.
        """
        finite = bool(torch.isfinite(weight).all()) and (bias is None or bool(torch.isfinite(bias).all()))
        if not finite and not self._sto_written:
            self._sto_pending_error = ("weight contains NaN or inf (first write to this tile): inputs to an "
                                       "STO tile must be finite")
            return None
        self._sto_written = True
        self._sto_pending_error = None
        return super().set_weights(weight, bias, **kwargs)

    def check_written(self) -> None:
        """Raise the pending error of a deferred non-finite first write (see :meth:`set_weights`)."""
        if self._sto_pending_error is not None:
            raise ConfigError(self._sto_pending_error)

    def forward(self, x_input: Tensor, tensor_view: Optional[Tuple] = None) -> Tensor:
        self.check_written()
        self.sync_device()  # a plain torch optimiser changed the weights: remap and program them first
        y = conv.forward_indexed(self, x_input, lambda cols: TorchInferenceTile.forward(self, cols))
        return y if y is not None else super().forward(x_input, tensor_view)

    def set_scales(self, scales: Tensor) -> None:
        """aihwkit's ``set_scales`` with a picklable gradient hook (``torch.save(model)`` works)."""
        super(TorchInferenceTile, self).set_scales(scales)  # the periphery's, without the local hook
        self._scale_grad_hook(scales)

    def _scale_grad_hook(self, scales: Tensor) -> None:
        """aihwkit's gradient hook of the mapping scales (``grad / scales**2``), picklable."""
        if self._backward_hook_handle is not None:
            self._backward_hook_handle.remove()
            self._backward_hook_handle = None
        if self.tile.weight.requires_grad:
            self._backward_hook_handle = self.tile.register_weight_hook(ScaleGradHook(scales))

    # -- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def fit_window(self) -> None:
        """With ``weight_overflow = "remap"``: output rows whose trained weights left the conductance
        window (|w| > 1) are divided by their peak (the tile's peak if its mapping scale is one
        number: the checkpoint shapes stay) and the peak moves into the digital mapping scales
        (learned output scales untouched; aihwkit's gradient hook follows the new scales),
        so the layer computes the same function and trains on as aihwkit's tile would."""
        if self.tile.weight_overflow != "remap":
            return
        m = self.get_mapping_scales()
        factor = programming.overflow_factors(self.tile.weight.detach(), per_row=m is not None and m.numel() > 1)
        if factor is None:
            return
        m = factor if m is None else m.to(factor) * factor
        self.tile.weight.data = self.tile.weight.data / factor.view(-1, 1)
        self.set_mapping_scales(m)
        self._scale_grad_hook(m)

    @torch.no_grad()
    def sync_device(self) -> None:
        """Bring the conductances to the trained weight (remapping weights past the window first)."""
        if self.tile.device_stale():
            self.fit_window()
            self.tile.follow_weight()

    @torch.no_grad()
    def post_update_step(self) -> None:
        """aihwkit's clip and remap (on the weights), then the device is brought to them."""
        super().post_update_step()
        self.check_written()
        self.sync_device()

    # -- programming and drift (crossbar/programming.py, crossbar/drift.py) ----------------------
    @torch.no_grad()
    def program_weights(self, from_reference: bool = True, noise_model: Any = None) -> None:
        """Program the reference weights with the STO programming model (``periphery.programming``).

        Stores the programmed long-term and short-term state as the t = 0 point of
        :meth:`drift_weights` and initialises aihwkit's drift compensation baseline.
        """
        if noise_model is not None:
            raise ConfigError("noise_model: STO tiles program and drift through the device model "
                              "(periphery.programming, STORPUConfig.retention); aihwkit noise models do not apply")
        self.check_written()
        self.sync_device()
        t = self.tile
        if not from_reference or self.reference_combined_weights is None:
            self.reference_combined_weights = t.weight.detach().clone()
        ref = self.reference_combined_weights.to(t.weight.device, t.weight.dtype)
        t.weight.data.copy_(ref)
        t.program_target(ref, changed_only=False)
        t.mark_programmed()
        self.programmed_weights = t.get_weights()
        self._sto_programmed = drift.snapshot(t.state, self.rpu_config.retention)
        if getattr(self.rpu_config, "drift_compensation", None) is not None:
            self.drift_baseline = self.rpu_config.drift_compensation.init_baseline(self)

    @torch.no_grad()
    def drift_weights(self, t_inference: float = 0.0) -> None:
        """State ``t_inference`` seconds after programming (absolute, like aihwkit's): the retention
        law on the long-term state, the device's decay on the short-term state
        (:func:`~stoxbar.crossbar.drift.drift`); then aihwkit's drift compensation (if configured)
        rescales the outputs."""
        if getattr(self, "_sto_programmed", None) is None:
            self.program_weights()
        drift.drift(self.tile.state, self._sto_programmed, self.rpu_config.retention, t_inference)
        self.tile.mark_programmed()  # the weight parameter stays the programmed target
        if getattr(self.rpu_config, "drift_compensation", None) is not None:
            out = self._forward_drift_readout_tensor()
            self.__dict__.pop("alpha", None)
            self.alpha = self.rpu_config.drift_compensation.apply(out, self.drift_baseline)

    # -- save/load (crossbar/persistence.py) ------------------------------------------------------
    def _recreate_simulator_tile(self, x_size: int, d_size: int, rpu_config: Any) -> Any:
        """Keep the simulator tile if it models the loaded device and periphery, else rebuild it."""
        persistence.require_sto_config(rpu_config)
        tile = self.__dict__.get("_modules", {}).get("tile")
        if tile is not None and tile.state.device_model == rpu_config.device \
                and tile.periphery == rpu_config.periphery:
            return tile
        new = rpu_config.simulator_tile_class(x_size=x_size, d_size=d_size, rpu_config=rpu_config)
        if tile is not None:
            new.attach(tile.ledger, tile.layer_name)
            new.tile_name = tile.tile_name
        return new

    def __setstate__(self, state: Dict) -> None:
        cfg = state.get("rpu_config")
        if cfg is not None:
            persistence.require_sto_config(cfg)
        tile = state.get("_modules", {}).get("tile")  # pickled (torch.save(model)): restore it exactly
        saved = None
        if tile is not None and hasattr(tile, "state"):
            st = tile.state
            saved = (st.g_pos.clone(), st.g_neg.clone(), tile.weight.detach().clone(),
                     tile.programmed_target.clone())
        super().__setstate__(state)
        if saved is not None and self.tile is tile:
            st = self.tile.state
            st.g_pos.copy_(saved[0])
            st.g_neg.copy_(saved[1])
            st.invalidate()
            self.tile.weight.data.copy_(saved[2])
            self.tile.programmed_target.copy_(saved[3])
            self.tile.recheck_by_value()
