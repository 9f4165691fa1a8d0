"""aihwkit tiles whose synapses are STO memristor pairs, with the generic substrate operations.

* :class:`STOSimulatorTile` is the simulator tile (``rpu_config.simulator_tile_class``): it keeps
  the physical state (:class:`~stoxbar.crossbar.state.CrossbarState`, siemens) instead of a bare
  weight matrix, reads it through aihwkit's ``AnalogMVM`` with the IO parameters derived from the
  periphery, and records what every operation did (:class:`~stoxbar.crossbar.events.Events`).
* :class:`STOTile` is the tile module (``rpu_config.tile_class``): aihwkit's
  ``TorchInferenceTile`` plus the substrate operations of :class:`SubstrateOps`.

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
gradient of ``weight`` (straight-through).

May import: aihwkit, stoxbar.devices, stoxbar.peripherals, stoxbar.crossbar.{state,events,costs,ledger,mvm}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import NoiseManagementType
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

from stoxbar.crossbar.costs import book, cost
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.crossbar.mvm import TiledAnalogMVM
from stoxbar.crossbar.state import CrossbarState, check_finite
from stoxbar.devices.sto import STODevice
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.validation import ConfigError

if TYPE_CHECKING:
    from stoxbar.crossbar.config import STORPUConfig


class EventSink:
    """Where a tile or array sends its events: ``ledger``, key names, and pending programming."""

    ledger: Optional[EnergyLedger] = None
    layer_name: str = "layer"
    tile_name: str = "0.0"
    row_tile: int = 0
    row_tiles: int = 1
    device: STODevice
    periphery: PeripheryConfig

    def _init_sink(self, device: STODevice, periphery: PeripheryConfig) -> None:
        self.device, self.periphery = device, periphery
        self._pending: List[Tuple[str, Events]] = []

    def attach(self, ledger: Optional[EnergyLedger], layer_name: str, book_pending: bool = True) -> None:
        """Book future events under ``layer_name`` in ``ledger``; pending programming too (``book_pending``)."""
        self.ledger = ledger
        self.layer_name = layer_name
        if ledger is not None and book_pending and self._pending:
            pending, self._pending = self._pending, []
            for key, ev in pending:
                book(ledger, layer_name, key, cost(ev, self.device, self.periphery))

    @property
    def recording(self) -> bool:
        """True if a ledger is attached and enabled."""
        return self.ledger is not None and self.ledger.enabled

    def emit(self, key: str, events: Events) -> None:
        """Cost ``events`` of tile ``key`` and book them; programming without a ledger stays pending."""
        if self.recording:
            book(self.ledger, self.layer_name, key, cost(events, self.device, self.periphery))
        elif self.ledger is None and events.op == "program":
            self._pending.append((key, events))

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return list(self._pending)


def input_drive(x_t: Tensor, io_pars: Any, periphery: PeripheryConfig) -> Tensor:
    """Normalised row drive per (vector, tile, row): x^2 (amplitude), |x| (PWM), bit count (bit-serial)."""
    nm = io_pars.noise_management
    if nm == NoiseManagementType.ABS_MAX:
        scale = x_t.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(x_t.dtype).tiny)
    elif nm == NoiseManagementType.CONSTANT and io_pars.nm_thres > 0:
        scale = io_pars.nm_thres
    else:
        scale = 1.0
    xn = (x_t / scale).clamp(-1.0, 1.0)
    mode = periphery.dac.mode
    if mode == "pwm":
        return xn.abs()
    if mode == "bit_serial":
        k = torch.round(xn.abs() * (2 ** (periphery.dac.bits - 1) - 1)).to(torch.int64)
        ones = torch.zeros_like(xn)
        for b in range(periphery.dac.bits):
            ones += ((k >> b) & 1).to(xn.dtype)
        return ones
    return xn * xn


def read_events(state: CrossbarState, x_t: Tensor, rounds: int, io_pars: Any, periphery: PeripheryConfig,
                row_tile: Optional[int] = None, row_tiles: Optional[int] = None) -> List[Events]:
    """Events of one read of ``x_t [N, T, X]`` over ``state`` that took ``rounds`` array reads, per tile.

    Bound management halves the input scale each repeat: the drive of round r is shrunk by
    1/4**r (amplitude) or 1/2**r (PWM, bit-serial). ``row_tile``/``row_tiles`` place a stand-alone
    tile inside its layer (default: the state's own row-tiles).
    """
    n = x_t.shape[0]
    shrink = 0.25 if periphery.dac.mode == "multibit" else 0.5
    weight = sum(shrink**r for r in range(rounds))
    if rounds:
        drive = input_drive(x_t, io_pars, periphery)
        g_col = state.abs_column_conductance()  # [B or 1, T, J, X]
        if g_col.shape[0] == 1:
            g = (drive.sum(0).unsqueeze(1) * g_col[0]).sum(-1)
        else:
            g = (drive.unsqueeze(2) * g_col).sum((0, -1))
        g_drive = g.reshape(-1).tolist()
    else:
        g_drive = [0.0] * state.n_tiles
    out = []
    for k, (_, i, _, rows, cols) in enumerate(state.tile_blocks()):
        out.append(Events("read", rows, cols, i if row_tile is None else row_tile,
                          state.tiles if row_tiles is None else row_tiles, n, rounds, weight, g_drive[k]))
    return out


def analog_read(state: CrossbarState, x: Tensor, io_pars: Any, weight_param: Optional[Tensor] = None,
                is_test: bool = True) -> Tuple[Tensor, Tensor, int]:
    """One analog MVM of ``x [N, in]`` over ``state``: (per-tile partial outputs ``[N, T, O]``,
    tiled input ``[N, T, X]``, read rounds taken). ``weight_param`` (tiled ``[T, O, X]``) gives the
    straight-through gradient path. NaN/inf inputs and an output that overflows raise ``ConfigError``.
    """
    check_finite("forward: tile input", x)
    x_t = state.to_tiled(x)
    w = state.effective_weight()
    if weight_param is not None:
        w = w + (weight_param - weight_param.detach())
    with TiledAnalogMVM.reading(state.read_noise_var()) as mvm:
        y = mvm.tiled_matmul(w, x_t, io_pars, is_test=is_test)
        rounds = mvm.rounds
    if not torch.isfinite(y).all():
        raise ConfigError(
            f"forward: tile output overflowed to inf/NaN (input max |x| = {float(x.abs().max()):.4g}): "
            "scale the inputs so that |x| times the output range stays within float range")
    return y, x_t, rounds


class STOSimulatorTile(TorchSimulatorTile, EventSink):
    """Simulator tile holding one STO crossbar tile's conductances (see module docstring)."""

    def __init__(self, x_size: int, d_size: int, rpu_config: "STORPUConfig", bias: bool = False):
        super().__init__(x_size, d_size, rpu_config, bias, analog_mvm=TiledAnalogMVM)
        self.state = CrossbarState([x_size], d_size, rpu_config.device)
        self._init_sink(rpu_config.device, rpu_config.periphery)
        self.programming = rpu_config.periphery.programming

    def set_weights(self, weight: Tensor) -> None:
        """Program ``weight [d, x]`` (|w| <= 1) onto the conductance pairs."""
        self.weight.data = weight.detach().clone().to(self.weight.device, self.weight.dtype)
        pulses, energy = self.state.program(self.weight.data, self.programming)
        self.emit(self.tile_name, Events("program", self.x_size, self.d_size, self.row_tile, self.row_tiles,
                                         program_pulses=pulses, program_device_j=energy))

    def get_weights(self) -> Tensor:
        """Weights the conductances hold now (long-term part), ``[d, x]``."""
        return self.state.from_tiled(self.state.weights()).detach().cpu()

    def forward(self, x_input: Tensor, bias: bool = False, in_trans: bool = False, out_trans: bool = False,
                is_test: bool = False, non_blocking: bool = False) -> Tensor:
        if in_trans or out_trans or bias:
            raise NotImplementedError("STO tiles support plain (non-transposed, digital-bias) MVMs only")
        lead = x_input.shape[:-1]
        weight_param = self.weight.unsqueeze(0) if (torch.is_grad_enabled() and self.weight.requires_grad) else None
        y, x_t, rounds = analog_read(self.state, x_input.reshape(-1, self.x_size), self._f_io, weight_param, is_test)
        if self.recording:
            (ev,) = read_events(self.state, x_t.detach(), rounds, self._f_io, self.periphery, self.row_tile,
                                self.row_tiles)
            self.emit(self.tile_name, ev)
        return y.sum(1).reshape(*lead, self.d_size)


class SubstrateOps:
    """The short-term substrate operations shared by a tile module and a tile array.

    Subclasses give ``_sink()`` (where events go) and ``_keys()`` (tile keys in state order).
    """

    state: CrossbarState

    def _sink(self) -> EventSink:  # pragma: no cover - abstract
        raise NotImplementedError

    def _keys(self) -> List[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _after_state_change(self) -> None:
        """Hook: re-point per-tile views after the state's tensors were replaced."""

    def set_batch(self, batch: int) -> None:
        """Allocate (zeroed) short-term state for ``batch`` independent chips."""
        self.state.set_batch(batch)
        self._after_state_change()

    def set_bias(self, v_bias: Tensor) -> None:
        """Set and hold the per-synapse decay bias ``[out, in]`` (V)."""
        self.state.set_bias(v_bias)
        self._after_state_change()

    def hold(self, on: bool = True) -> None:
        """Hold (or release) the decay bias."""
        self.state.hold(on)
        self._after_state_change()

    def _emit_pulses(self, tile_counts: Tensor) -> None:
        sink = self._sink()
        if sink.recording:
            st = self.state
            counts = tile_counts.tolist()
            for k, (key, blk) in enumerate(zip(self._keys(), st.tile_blocks())):
                sink.emit(key, Events("short_term", blk[3], blk[4], blk[1], st.tiles, pulses_by_level=tuple(counts[k])))

    def _emit_decay(self, dt_s: float, decayed: Tuple[List[float], List[float]]) -> None:
        sink = self._sink()
        if sink.recording:
            st = self.state
            chips = 1 if st.g_st is None else st.g_st.shape[0]
            energy, held = decayed
            for k, (key, blk) in enumerate(zip(self._keys(), st.tile_blocks())):
                sink.emit(key, Events("decay", blk[3], blk[4], blk[1], st.tiles, dt_s=dt_s, chips=chips,
                                      bias_held_s=held[k], bias_energy_j=energy[k]))

    def apply_short_term(self, request: Tensor, tiled: bool = False) -> Tensor:
        """Apply the requested change ``request`` ([B, out, in], or [B, T, O, X] if ``tiled``, weight
        units) as device pulses; returns the signed levels (tiled)."""
        st = self.state
        level, tiles = st.apply_short_term(request if tiled else st.tiled_weight(request))
        self._emit_pulses(tiles)
        return level

    short_term_update = apply_short_term  # earlier name of the same operation

    def decay(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds of decay pass under the held bias."""
        self._emit_decay(dt_s, self.state.decay(dt_s))

    def decay_and_outer_update(self, dt_s: float, scale: Tensor, u: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
        """Decay for ``dt_s`` s, then apply ``scale * (u v^T)`` (tiled; ``CrossbarState.decay_and_outer_update``).

        Returns (signed levels [B, T, O, X], pulses per level [B, L]).
        """
        level, counts, decayed, tiles = self.state.decay_and_outer_update(dt_s, scale, u, v)
        self._emit_decay(dt_s, decayed)
        self._emit_pulses(tiles)
        return level, counts


class STOTile(TorchInferenceTile, SubstrateOps):
    """aihwkit tile module for STO crossbars, with the substrate operations."""

    @property
    def state(self) -> CrossbarState:  # type: ignore[override]
        """The simulator tile's physical state."""
        return self.tile.state

    def _sink(self) -> EventSink:
        return self.tile

    def _keys(self) -> List[str]:
        return [self.tile.tile_name]

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return self.tile.pending_events()
