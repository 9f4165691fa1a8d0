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

Events are recorded by the tile's :class:`~stoxbar.crossbar.recorder.EventSink` and booked in the
attached :class:`~stoxbar.crossbar.ledger.EnergyLedger` through the one cost model
(:func:`~stoxbar.crossbar.costs.cost`), per tile (key ``"i.j"``), when the owner flushes them
(:func:`~stoxbar.crossbar.recorder.flush_events`). Programming done while no ledger is attached
(aihwkit's ``convert_to_analog``, a layer's constructor) is kept as pending events and booked when
a ledger is attached (:meth:`~stoxbar.crossbar.recorder.EventSink.pending_events` reports them).

The aihwkit ``weight`` parameter is kept as the programmed target so aihwkit's optimisers and
hardware-aware training still work: the forward pass uses the conductances' value with the
gradient of ``weight`` (straight-through, :mod:`~stoxbar.crossbar.aihwkit_compat`); after each
update the conductances are brought to it (:mod:`~stoxbar.crossbar.programming`), weights past
the conductance window remapped or clipped as configured (docs/aihwkit-support.md §2). Drift is
:mod:`~stoxbar.crossbar.drift`, save/load :mod:`~stoxbar.crossbar.persistence`, indexed
convolution :mod:`~stoxbar.crossbar.conv`.

May import: torch, aihwkit, stoxbar.devices, stoxbar.peripherals, stoxbar.core.validation,
stoxbar.crossbar.{state,events,recorder,read,aihwkit_compat,substrate,programming,drift,persistence,conv};
never crossbar.config (the configuration is duck-typed: crossbar/persistence.py ``is_sto_config``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import WeightModifierType
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

import stoxbar.crossbar.conv as conv
import stoxbar.crossbar.drift as drift
import stoxbar.crossbar.persistence as persistence
import stoxbar.crossbar.programming as programming
from stoxbar.crossbar.aihwkit_compat import ScaleGradHook
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.read import analog_read
from stoxbar.crossbar.recorder import EventSink
from stoxbar.crossbar.state import CrossbarState
from stoxbar.crossbar.substrate import SubstrateOps
from stoxbar.core.validation import ConfigError


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
