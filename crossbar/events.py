"""What one substrate operation physically did on one crossbar tile: the :class:`Events` record.

Every operation of a tile or tile array (program, read, short-term pulses, decay under a bias)
yields one :class:`Events` per tile it touched. Events of one kind on one tile are additive (every
field is a sum), so a tile may accumulate several operations into one record before costing it. An event record holds counts and physical
integrals only, never joules of a periphery block: :func:`stoxbar.crossbar.costs.cost` is the
one place that turns events plus the configuration (device, periphery) into energy and time.

Fields (all totals over the operation; dimensionless counts unless a unit is given):

* ``op``: ``"read"`` | ``"program"`` | ``"short_term"`` | ``"decay"``;
* ``rows``, ``cols``: size of the tile's active block (inputs, logical outputs); ``row_tile`` its
  row-tile index out of ``row_tiles`` in its layer (partial sums of row-tiles after the first are
  accumulated digitally);
* read: ``reads`` (read operations), ``input_vectors`` (a conv over 1,352 patches reads 1,352
  vectors), ``vector_rounds`` (vectors x array reads each took: aihwkit's bound management repeats
  a clipped read), ``drive_g_s`` (S: sum over vectors, rounds and cells of the normalised row drive
  of that round times the cell conductance; the cell-read energy is ``V_read^2 t drive_g_s``; with
  line parasitics the drive the row drivers deliver: the row voltage times the row's solved
  current), ``wire_g_s`` (S: the part of ``drive_g_s`` dissipated in the line wires, I^2 R; 0 for
  ideal wires);
* short-term pulses: ``pulses_by_level`` (fired pulses per level, ascending pulse energy, both
  signs);
* decay: ``dt_s`` (s), ``chip_s`` (chips x seconds: independent short-term states under the
  bias), ``bias_held_s`` (device-seconds under a held bias), ``bias_energy_j`` (J: the device's
  exact integral of ``V_bias^2 G(t)`` over the interval, the one quantity that needs the per-cell
  state); ``chip_intervals`` (chips x decay intervals: power-gating wake-ups); ``bias_line_s`` (chips x seconds the bias lines are held: ``chip_s`` times the bias
  duty); ``bias_drawn_j`` (J: what a rail delivers for that bias, each cell's load times
  ``V_rail / |V|``; 0 when the bias is not drawn from a rail, i.e. a switched supply);
* programming: ``program_pulses`` and ``program_device_j`` (J, the device energy of those pulses,
  which for open-loop programming depends on each pulse's drawn step).

This module imports nothing from stoxbar.

May import: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

OPS = ("read", "program", "short_term", "decay")


@dataclass(slots=True)
class Events:
    """Physical events of one operation on one tile (see module docstring)."""

    op: str
    rows: int
    cols: int
    row_tile: int = 0
    row_tiles: int = 1
    reads: int = 0
    input_vectors: int = 0
    vector_rounds: int = 0
    drive_g_s: float = 0.0
    wire_g_s: float = 0.0
    pulses_by_level: Tuple[float, ...] = ()
    dt_s: float = 0.0
    chip_s: float = 0.0
    bias_held_s: float = 0.0
    bias_energy_j: float = 0.0
    bias_drawn_j: float = 0.0
    bias_line_s: float = 0.0
    chip_intervals: float = 0.0
    program_pulses: float = 0.0
    program_device_j: float = 0.0

    @property
    def pulses(self) -> float:
        """Short-term pulses fired (all levels)."""
        return float(sum(self.pulses_by_level))
