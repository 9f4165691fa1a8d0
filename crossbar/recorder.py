"""Event recording: where a tile or tile array sends what it did, and when it is costed and booked.

:class:`EventSink` is the recorder a simulator tile and a tile array carry: the attached
:class:`~stoxbar.crossbar.ledger.EnergyLedger`, the ledger keys (layer, tile ``"i.j"``), the
accumulated events and the programming kept pending while no ledger is attached.

**Booking is explicit.** Reads, short-term pulses and decay intervals are additive
(:mod:`~stoxbar.crossbar.events`), so a recorder accumulates them between bookings -- a few tensor
adds per operation, on the state's torch device -- and costs and books them (one
:func:`~stoxbar.crossbar.costs.cost` per tile and kind) when its owner calls :meth:`EventSink.flush`
or :func:`flush_events` at a step or game boundary (a task's evaluation loop after each game,
``analyze`` after its forward pass, ``stoxbar energy`` before printing), or when it is attached to
another ledger. A ledger is plain data: reading it never changes it and it never
calls into a tile.

Why not book every operation at once: costing a read is tens of microseconds of Python per tile
(the cost model walks the periphery blocks), which would be several times a batch-1 forward of
the 64 x 2656 layer (about 0.1 ms); recording must stay within a few per cent of it
(docs/substrate.md §5). Because the events are additive, booking at a boundary gives the same
entries as booking each operation (tested), so the only rule is: flush before you read.

Programming (``set_weights``) is booked at once when a ledger is attached; without one it is
kept pending and booked when a ledger is attached (:meth:`EventSink.pending_events`).

May import: torch, aihwkit, stoxbar.devices, stoxbar.peripherals, stoxbar.crossbar.{events,costs,ledger}.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn

from aihwkit.simulator.parameters.enums import NoiseManagementType

from stoxbar.crossbar.costs import book, cost
from stoxbar.crossbar.events import Events
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.devices.base import MemristiveDevice
from stoxbar.peripherals.config import PeripheryConfig

__all__ = ["EventSink", "flush_events"]


class EventSink:
    """Where a tile or array sends its events: ``ledger``, key names, accumulated and pending events.

    Reads, pulses and decay intervals are accumulated per tile (their events are additive) and
    costed and booked by :meth:`flush` (called by the owner at a boundary, see module docstring),
    so that recording costs a few tensor adds per operation. Programming is booked at once, or
    kept pending while no ledger is attached. Users give ``state`` (a
    :class:`~stoxbar.crossbar.state.CrossbarState`).
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
        """Book future events under ``layer_name`` in ``ledger``; pending programming too (``book_pending``).

        What was accumulated so far is booked in the ledger attached until now (:meth:`flush`).
        """
        self.flush()
        self.ledger = ledger
        self.layer_name = layer_name
        if ledger is not None and book_pending and self._pending:
            pending, self._pending = self._pending, []
            for key, ev in pending:
                book(ledger, layer_name, key, cost(ev, self.device, self.periphery))

    @property
    def recording(self) -> bool:
        """True if a ledger is attached."""
        return self.ledger is not None

    def emit(self, key: str, events: Events) -> None:
        """Cost ``events`` of tile ``key`` and book them now; programming without a ledger stays pending."""
        if self.ledger is not None:
            book(self.ledger, self.layer_name, key, cost(events, self.device, self.periphery))
        elif events.op == "program":
            self._pending.append((key, events))

    def pending_events(self) -> List[Tuple[str, Events]]:
        """(tile key, events) of programming not yet booked in a ledger."""
        return list(self._pending)

    # -- accumulated events ----------------------------------------------------------------------
    def _read_acc(self) -> list:
        """The read accumulator: [reads, vectors, vector-rounds, drive_g_s per tile (float64, state's device)
        (, wire_g_s per tile once a read model with wires recorded)]."""
        a = self._acc.get("read")
        if a is None:
            a = self._acc["read"] = [0, 0, 0, torch.zeros(self.state.n_tiles, dtype=torch.float64,
                                                          device=self.state.g_pos.device)]
        return a

    def wire_acc(self) -> Tensor:
        """The per-tile accumulator of the drive the line wires dissipate (S, float64; line parasitics)."""
        a = self._read_acc()
        if len(a) == 4:
            a.append(torch.zeros_like(a[3]))
        return a[4]

    def count_read(self, vectors: int, rounds: int) -> Tensor:
        """Count one read of ``vectors`` input vectors that took ``rounds`` array reads; returns the
        per-tile drive accumulator the read adds its ``drive_g_s`` to.

        An all-zero input that aihwkit short-cuts (0 rounds) is still one read on the chip.
        """
        a = self._read_acc()
        a[0] += 1
        a[1] += vectors
        a[2] += vectors * max(rounds, 1)
        return a[3]

    def _native_drive(self, io_pars: Any) -> Optional[Tuple[int, float]]:
        """(drive mode, shrink per round) if the native read can add this read's drive itself, else None
        (the same sum as ``crossbar.read.read_drive``, in float64)."""
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
        """Accumulate a decay interval of ``chips`` chips (``bias_energy_j`` None: no bias held; the
        interval still books the tiles' static power)."""
        a = self._acc.get("decay")
        if a is None:
            n = len(self._blocks())
            a = self._acc["decay"] = [0.0, 0.0, None, 0.0, 0.0, n]
        if bias_energy_j is not None:
            a[2] = bias_energy_j.double().clone() if a[2] is None else a[2] + bias_energy_j
            a[3] += chips * dt_s * self.state.bias_duty  # chip-seconds the bias lines are held
        a[0] += dt_s
        a[1] += chips * dt_s
        a[4] += chips

    def flush(self) -> None:
        """Cost and book the accumulated events (per tile) in the attached ledger; nothing left accumulated.

        Without a ledger, accumulated events are dropped (nothing records them: ``recording`` is
        False while no ledger is attached, so there are none).
        """
        acc, self._acc = self._acc, {}
        if not acc or self.ledger is None:
            return
        blocks = self._blocks()
        read = acc.get("read")
        if read is not None:
            drive = read[3].tolist()
            wire = read[4].tolist() if len(read) > 4 else [0.0] * len(drive)
            for k, (key, rows, cols, i, t) in enumerate(blocks):
                self._book_events(key, Events("read", rows, cols, i, t, reads=read[0], input_vectors=read[1],
                                              vector_rounds=read[2], drive_g_s=drive[k], wire_g_s=wire[k]))
        pulses = acc.get("short_term")
        if pulses is not None:
            for (key, rows, cols, i, t), counts in zip(blocks, pulses.tolist()):
                self._book_events(key, Events("short_term", rows, cols, i, t, pulses_by_level=tuple(counts)))
        decay = acc.get("decay")
        if decay is not None:
            dt, chip_s = decay[0], decay[1]
            energy = [0.0] * len(blocks) if decay[2] is None else decay[2].tolist()
            for k, (key, rows, cols, i, t) in enumerate(blocks):
                load, drawn = energy[k] if isinstance(energy[k], list) else (energy[k], 0.0)
                self._book_events(key, Events("decay", rows, cols, i, t, dt_s=dt, chip_s=chip_s,
                                              bias_held_s=2 * rows * cols * decay[3], bias_energy_j=load,
                                              bias_drawn_j=drawn, bias_line_s=decay[3],
                                              chip_intervals=decay[4]))

    def _book_events(self, key: str, events: Events) -> None:
        book(self.ledger, self.layer_name, key, cost(events, self.device, self.periphery))


def flush_events(module: nn.Module) -> None:
    """Book what every recorder in ``module`` (any torch module: a model, a layer, a tile array) has
    accumulated, each in its attached ledger (:meth:`EventSink.flush`). Call before reading a ledger."""
    for m in module.modules():
        if isinstance(m, EventSink):
            m.flush()
