"""Line parasitics of a crossbar tile: the wire resistance between neighbouring cells of a row and of a
column (``Parasitics``), and how the read treats them (``mode``).

* ``mode = "off"`` (default): ideal wires, the read is the ideal MVM.
* ``"first_order"``: one correction of the ideal currents for the voltage the wires drop (the
  error left is second order in ``r G N^2``, the wire-to-cell conductance ratio times the line
  length squared).
* ``"full"``: the resistive network of each tile solved to ``tol`` (preconditioned conjugate
  gradient on the symmetric network equations, :mod:`stoxbar.crossbar.parasitics`), validated
  against ngspice (``tests/test_parasitics.py``).

Geometry (assumption, docs/peripherals-energy.md §6): a row line is driven at its first cell and runs
across the tile's physical columns (the two devices of a differential pair are neighbours); a
column line ends at its sense amplifier (a virtual ground) after its last row. ``r_row_ohm`` /
``r_col_ohm`` are the wire resistances of one cell pitch along a row / a column: NeuroSim V1.4's
wire model at a technology node (docs/peripherals-energy.md §6): 0.50/1.49 ohm at 65 nm, 0.70/2.09
at 45 nm, 1.04/3.13 at 32 nm (the default, the ADC's reference node), 1.56/4.69 at 22 nm.

May import: stoxbar.core.validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

MODES = ("off", "first_order", "full")
# (row, column) wire resistance per cell pitch (ohm) by node (nm): docs/peripherals-energy.md §6
WIRE_OHM_PER_CELL = {65: (0.50, 1.49), 45: (0.70, 2.09), 32: (1.04, 3.13), 22: (1.56, 4.69)}


@dataclass(frozen=True)
class Parasitics:
    """Wire resistance per cell pitch and the read's treatment of it (module docstring).

    Attributes:
        mode: "off" | "first_order" | "full".
        r_row_ohm: row-line resistance between neighbouring cells (ohm), 0..1e4.
        r_col_ohm: column-line resistance between neighbouring cells (ohm), 0..1e4.
        tol: "full": relative residual at which the solve stops, 1e-12..1e-2.
        max_iter: "full": most solver iterations, 1..10000 (not converging raises).
    """

    mode: str = "off"
    r_row_ohm: float = WIRE_OHM_PER_CELL[32][0]
    r_col_ohm: float = WIRE_OHM_PER_CELL[32][1]
    tol: float = 1e-7
    max_iter: int = 500

    def __post_init__(self) -> None:
        check_choice("parasitics.mode", self.mode, MODES)
        check_range("parasitics.r_row_ohm", self.r_row_ohm, 0.0, 1e4, unit="ohm")
        check_range("parasitics.r_col_ohm", self.r_col_ohm, 0.0, 1e4, unit="ohm")
        check_range("parasitics.tol", self.tol, 1e-12, 1e-2)
        check_int("parasitics.max_iter", self.max_iter, 1, 10000)

    @classmethod
    def at_node(cls, node_nm: int, mode: str = "full", **kw) -> "Parasitics":
        """The NeuroSim-derived wire resistances at ``node_nm`` (65, 45, 32 or 22 nm)."""
        if node_nm not in WIRE_OHM_PER_CELL:
            raise ConfigError(f"node_nm = {node_nm!r}: allowed values are {sorted(WIRE_OHM_PER_CELL)} (nm)")
        r_row, r_col = WIRE_OHM_PER_CELL[node_nm]
        return cls(mode=mode, r_row_ohm=r_row, r_col_ohm=r_col, **kw)
