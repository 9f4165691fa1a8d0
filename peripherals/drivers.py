"""Line drivers: read (row), write (pulse) and decay-bias drivers. Energies beyond the devices' own.

Line capacitance C_line = c_per_cell_f * cells + c_wire_f; charging a line to V from the supply
costs C_line * V**2 (half stored, half lost in the driver; the stored half is lost on discharge).

Capacitance defaults are assumptions: 0.2 fF per cell = ~0.02 fF of wire (0.1 um cell pitch, the
pitch behind PeripheryConfig's 0.01 um^2 cell, x ~0.2 fF/um, a typical on-chip wire capacitance as
in NeuroSim's wire model) plus ~0.18 fF device/electrode capacitance (STO is a high-k dielectric,
eps_r ~ 300 at room temperature), rounded; inside the ~0.1-1 fF per cell range usually assumed.
5 fF fixed for driver output, decoder/mux and routing.

May import: stoxbar.core.validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from stoxbar.core.validation import check_choice, check_int, check_range

C_PER_CELL_F = 0.2e-15  # assumption (see module doc)
C_WIRE_F = 5e-15  # assumption: driver output + routing
DRIVER_AREA_M2 = 2e-12  # assumption: ~2 um^2 inverter-chain driver at 32 nm
BIAS_SUPPLIES = ("switched", "linear")
BIAS_ADDRESSINGS = ("per_cell", "row_col", "per_row", "per_column", "global")
WRITE_SCHEMES = ("v2", "v3")  # how unselected lines sit while a pulse is written (PeripheryConfig.write_scheme)
T_DRIVE_S = 1e-9  # assumption: line rise time ~1 ns (CiMLoop BASE_LATENCY 1 ns, §3.6)


def _line_cap_f(c_per_cell_f: float, c_wire_f: float, cells: int) -> float:
    check_int("cells", cells, 0, None)
    return c_per_cell_f * cells + c_wire_f


@dataclass(frozen=True)
class RowDriver:
    """Read driver of one row line: energy = C_line * V**2 per activation.

    Attributes:
        c_per_cell_f: line capacitance per cell on the line (F).
        c_wire_f: fixed line capacitance (F).
        t_drive_s: line rise time (s).
        area_m2: driver area (m^2).
    """

    c_per_cell_f: float = C_PER_CELL_F
    c_wire_f: float = C_WIRE_F
    t_drive_s: float = T_DRIVE_S
    area_m2: float = DRIVER_AREA_M2

    def __post_init__(self) -> None:
        check_range("row_driver.c_per_cell_f", self.c_per_cell_f, 0.0, 1e-12, unit="F")
        check_range("row_driver.c_wire_f", self.c_wire_f, 0.0, 1e-9, unit="F")
        check_range("row_driver.t_drive_s", self.t_drive_s, 0.0, 1e-3, unit="s")
        check_range("row_driver.area_m2", self.area_m2, 0.0, 1e-6, unit="m^2")

    def line_capacitance_f(self, cells: int) -> float:
        """C_line (F) of a row with ``cells`` cells."""
        return _line_cap_f(self.c_per_cell_f, self.c_wire_f, cells)

    def energy_j(self, cells: int, v_v: float) -> float:
        """Energy of one activation of a row with ``cells`` cells driven to ``v_v`` volts (J)."""
        check_range("v_v", v_v, 0.0, 10.0, unit="V")
        return self.line_capacitance_f(cells) * v_v**2


@dataclass(frozen=True)
class WriteDriver:
    """Programming-pulse driver: overhead per pulse beyond the device's own pulse energy.

    Per pulse it charges one line of ``cells`` cells to the pulse voltage (C_line * V**2) and pays a
    fixed overhead for level shifting and the switch matrix (NeuroSim enables level shifters above
    1.5 V, docs/peripherals-energy.md §2.5; the 20 fJ value is an assumption).

    Attributes:
        c_per_cell_f, c_wire_f: line capacitance (F), as for RowDriver.
        e_fixed_short_j: fixed overhead per short-term pulse (J).
        e_fixed_long_j: fixed overhead per long-term pulse (J).
        t_setup_s: driver set-up time added to the pulse width (s).
        area_m2: driver area (m^2).
    """

    c_per_cell_f: float = C_PER_CELL_F
    c_wire_f: float = C_WIRE_F
    e_fixed_short_j: float = 20e-15  # assumption: level shifter + switch matrix per pulse
    e_fixed_long_j: float = 20e-15  # assumption: same circuit as the short-term path
    t_setup_s: float = 1e-9  # assumption
    area_m2: float = 5e-12  # assumption: ~5 um^2 incl. level shifter (larger than a read driver)

    def __post_init__(self) -> None:
        check_range("write_driver.c_per_cell_f", self.c_per_cell_f, 0.0, 1e-12, unit="F")
        check_range("write_driver.c_wire_f", self.c_wire_f, 0.0, 1e-9, unit="F")
        check_range("write_driver.e_fixed_short_j", self.e_fixed_short_j, 0.0, 1e-9, unit="J")
        check_range("write_driver.e_fixed_long_j", self.e_fixed_long_j, 0.0, 1e-9, unit="J")
        check_range("write_driver.t_setup_s", self.t_setup_s, 0.0, 1e-3, unit="s")
        check_range("write_driver.area_m2", self.area_m2, 0.0, 1e-6, unit="m^2")

    def line_capacitance_f(self, cells: int) -> float:
        """C_line (F) of a line with ``cells`` cells."""
        return _line_cap_f(self.c_per_cell_f, self.c_wire_f, cells)

    def short_term_pulse_j(self, v_pulse_v: float, cells: int) -> float:
        """Driver energy of one short-term pulse at ``v_pulse_v`` on a ``cells``-cell line (J)."""
        check_range("v_pulse_v", v_pulse_v, 0.0, 10.0, unit="V")
        return self.line_capacitance_f(cells) * v_pulse_v**2 + self.e_fixed_short_j

    def long_term_pulse_j(self, v_pulse_v: float, cells: int) -> float:
        """Driver energy of one long-term (LTP/LTD) pulse (J)."""
        check_range("v_pulse_v", v_pulse_v, 0.0, 10.0, unit="V")
        return self.line_capacitance_f(cells) * v_pulse_v**2 + self.e_fixed_long_j

    def latency_s(self, pulse_width_s: float) -> float:
        """Time of one pulse including set-up (s)."""
        check_range("pulse_width_s", pulse_width_s, 0.0, 10.0, unit="s")
        return pulse_width_s + self.t_setup_s


@dataclass(frozen=True)
class BiasDriver:
    """Holds the decay-control bias on a line. Overhead beyond the bias power the devices draw.

    Power drawn from the supply for a load ``p_load_w`` (the devices' V_bias**2 * G, computed by the
    device model): p_load/efficiency + p_quiescent per driver. The overhead returned here is
    p_load*(1/efficiency - 1) + p_quiescent. Both constants are assumptions: efficiency 0.8 (a
    switched-capacitor / buck-class bias generator; a linear regulator would be V_bias/V_dd),
    quiescent 100 nW per line driver (~100 nA at 1 V for a low-power buffer).

    Supply models (docs/peripherals-energy.md §8): ``"switched"`` draws p_load/efficiency (a
    switched-capacitor / buck-class converter per line; optimistic for many independent analog
    levels); ``"linear"`` regulates every line down from one rail ``v_rail_v``: the current a
    cell draws at V comes from the rail, so the supply delivers ``P_cell V_rail / |V|`` (loss
    ``V_rail/V - 1``), exact per cell. ``per_cell`` addressing always uses the linear model (the
    access transistor drops the rest of the rail).

    Attributes:
        supply: "switched" | "linear".
        v_rail_v: the rail of the linear supply and of per-cell access (V); None: the device's
            largest bias ``v_bias_max_v`` (a rail below it could not hold every bias).
        cell_c_store_f, cell_v_ctrl_v, cell_refresh_s, cell_area_m2: the per-cell hold node of
            ``per_cell`` addressing (storage capacitance, control voltage, refresh window, area).
        efficiency: bias generation efficiency of the switched supply, (0, 1].
        p_quiescent_w: static power per driven line (W), leakage + buffer bias.
        c_per_cell_f, c_wire_f: line capacitance for re-targeting the bias (F).
        area_m2: area per bias driver (m^2).
    """

    efficiency: float = 0.8  # assumption
    p_quiescent_w: float = 100e-9  # assumption
    c_per_cell_f: float = C_PER_CELL_F
    c_wire_f: float = C_WIRE_F
    area_m2: float = 5e-12  # assumption
    supply: str = "switched"
    v_rail_v: Optional[float] = None  # None: the device's largest bias (sto_2024: 0.6 V), no dropout (assumption)
    cell_c_store_f: float = 25e-15  # DRAM storage capacitor ~25 fF (docs/peripherals-energy.md §8)
    cell_v_ctrl_v: float = 1.0  # assumption: control (gate) voltage written into each cell's hold node
    cell_refresh_s: float = 64e-3  # JEDEC DRAM retention/refresh window 64 ms (docs/peripherals-energy.md §8)
    cell_area_m2: float = 6 * (32e-9) ** 2  # 1T1C cell, 6 F^2 at F = 32 nm (docs/peripherals-energy.md §8)

    def __post_init__(self) -> None:
        check_choice("bias_driver.supply", self.supply, BIAS_SUPPLIES)
        if self.v_rail_v is not None:
            check_range("bias_driver.v_rail_v", self.v_rail_v, 0.0, 10.0, lo_open=True, unit="V")
        check_range("bias_driver.cell_c_store_f", self.cell_c_store_f, 0.0, 1e-12, unit="F")
        check_range("bias_driver.cell_v_ctrl_v", self.cell_v_ctrl_v, 0.0, 10.0, unit="V")
        check_range("bias_driver.cell_refresh_s", self.cell_refresh_s, 0.0, 1e3, lo_open=True, unit="s")
        check_range("bias_driver.cell_area_m2", self.cell_area_m2, 0.0, 1e-9, unit="m^2")
        check_range("bias_driver.efficiency", self.efficiency, 0.0, 1.0, lo_open=True)
        check_range("bias_driver.p_quiescent_w", self.p_quiescent_w, 0.0, 1e-3, unit="W")
        check_range("bias_driver.c_per_cell_f", self.c_per_cell_f, 0.0, 1e-12, unit="F")
        check_range("bias_driver.c_wire_f", self.c_wire_f, 0.0, 1e-9, unit="F")
        check_range("bias_driver.area_m2", self.area_m2, 0.0, 1e-6, unit="m^2")

    def refresh_energy_j(self, cell_s: float) -> float:
        """Per-cell hold refresh (``per_cell`` addressing): ``cell_s`` cell-seconds held, one
        C_store V_ctrl**2 recharge per cell and refresh window (J)."""
        check_range("cell_s", cell_s, 0.0, None, unit="s")
        return cell_s / self.cell_refresh_s * self.cell_c_store_f * self.cell_v_ctrl_v**2

    def overhead_power_w(self, p_load_w: float = 0.0, n_lines: int = 1) -> float:
        """Driver overhead power (W) for ``n_lines`` lines delivering ``p_load_w`` in total."""
        check_range("p_load_w", p_load_w, 0.0, None, unit="W")
        check_int("n_lines", n_lines, 0, None)
        return p_load_w * (1.0 / self.efficiency - 1.0) + self.p_quiescent_w * n_lines

    def energy_j(self, dt_s: float, p_load_w: float = 0.0, n_lines: int = 1) -> float:
        """Overhead energy (J) over ``dt_s`` seconds (the devices' own bias energy excluded)."""
        check_range("dt_s", dt_s, 0.0, None, unit="s")
        return self.overhead_power_w(p_load_w, n_lines) * dt_s

    def retarget_energy_j(self, v_from_v: float, v_to_v: float, cells: int) -> float:
        """Energy to move a ``cells``-cell line from one bias to another: C*|V_to**2 - V_from**2| (J)."""
        check_range("v_from_v", v_from_v, -10.0, 10.0, unit="V")
        check_range("v_to_v", v_to_v, -10.0, 10.0, unit="V")
        return _line_cap_f(self.c_per_cell_f, self.c_wire_f, cells) * abs(v_to_v**2 - v_from_v**2)


def driven_lines(addressing: str, rows: int, phys_cols: int) -> int:
    """Bias drivers a tile block of ``rows`` rows and ``phys_cols`` physical columns needs under
    ``addressing`` (``periphery.bias_addressing``, crossbar/bias.py).

    Lines held at the 0 V reference are tied to ground through the read path's switches (no
    driver, assumption); ``per_cell`` and ``global`` need one rail driver per tile.
    """
    check_choice("bias_addressing", addressing, BIAS_ADDRESSINGS)
    check_int("rows", rows, 0, None)
    check_int("phys_cols", phys_cols, 0, None)
    return {"per_cell": 1, "global": 1, "per_row": rows, "per_column": phys_cols,
            "row_col": rows + phys_cols}[addressing]
