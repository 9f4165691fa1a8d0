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
gradient of ``weight`` (straight-through); after each update the conductances are brought to it
(:mod:`~stoxbar.crossbar.aihwkit_compat`, docs/aihwkit-support.md).

May import: aihwkit, stoxbar.validation, stoxbar.devices, stoxbar.peripherals,
stoxbar.crossbar.{state,events,costs,ledger,read,aihwkit_compat}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import NoiseManagementType
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile

from stoxbar.crossbar.aihwkit_compat import STOSimulatorTileCompat, STOTileCompat
from stoxbar.crossbar.costs import book, cost
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.crossbar.read import analog_read, read_drive
from stoxbar.crossbar.state import CrossbarState
from stoxbar.devices.base import MemristiveDevice
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.validation import ConfigError

if TYPE_CHECKING:
    from stoxbar.crossbar.config import STORPUConfig


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


class STOSimulatorTile(STOSimulatorTileCompat, TorchSimulatorTile, EventSink):
    """Simulator tile holding one STO crossbar tile's conductances (see module docstring)."""

    def __init__(self, x_size: int, d_size: int, rpu_config: "STORPUConfig", bias: bool = False):
        super().__init__(x_size, d_size, rpu_config, bias, analog_mvm=rpu_config.read_model)
        self.state = CrossbarState([x_size], d_size, rpu_config.device)
        self._init_sink(rpu_config.device, rpu_config.periphery)
        self.programming = rpu_config.periphery.programming

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


class SubstrateOps:
    """The short-term substrate operations shared by a tile module and a tile array.

    Subclasses give ``_sink()`` (where events go).
    """

    state: CrossbarState

    def _sink(self) -> EventSink:  # pragma: no cover - abstract
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
            sink.record_pulses(tile_counts)

    def _emit_decay(self, dt_s: float, bias_energy_j: Optional[Tensor]) -> None:
        sink = self._sink()
        if sink.recording:
            sink.record_decay(dt_s, self.state.chips, bias_energy_j)

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
        recording = self._sink().recording
        level, counts, bias_j, tiles = self.state.decay_and_outer_update(dt_s, scale, u, v, per_tile=recording)
        if recording:
            self._emit_decay(dt_s, bias_j)
            self._emit_pulses(tiles)
        return level, counts


class STOTile(STOTileCompat, TorchInferenceTile, SubstrateOps):
    """aihwkit tile module for STO crossbars, with the substrate operations."""

    @property
    def state(self) -> CrossbarState:  # type: ignore[override]
        """The simulator tile's physical state."""
        return self.tile.state

    def _sink(self) -> EventSink:
        return self.tile

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return self.tile.pending_events()
