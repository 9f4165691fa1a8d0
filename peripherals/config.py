"""`PeripheryConfig`: every peripheral block plus tile geometry and its aihwkit `IOParameters`.

What an MVM, a pulse or a bias interval costs on this periphery is computed in one place only,
:func:`stoxbar.crossbar.costs.cost` (energy, latency) and :func:`stoxbar.crossbar.costs.area`, from
the events a tile records; this module holds the configuration those functions read.

Conventions
-----------
* ``tile_rows`` inputs x ``tile_cols`` outputs per tile (logical); every physical line <= 2048 cells
  (MAX_TILE): rows <= 2048, physical columns (2 x cols differential, cols + 1 reference) <= 2048.
* ``signed_mapping="differential"``: a weight is a pair G+ / G-, physical columns = 2 x cols.
  ``"reference"``: one shared reference column, physical columns = cols + 1.
* ``subtraction="digital"``: every physical column (pair member or reference) is converted and the
  difference is taken digitally (one add each, costed under ``shift_add``). ``"analog"``: the
  difference is formed before the ADC (differential integrator / current mirror), one conversion per
  output. aihwkit's one-pass MVM quantises the signed output once, i.e. it *simulates* the analog
  case; the digital case is costed honestly (2 conversions per output) but its per-column
  quantisation is not simulated.
* Bound management (aihwkit ``ITERATIVE``) repeats the whole MVM when the output clips; the tile
  records the rounds aihwkit took and the cost model charges each (docs/peripherals-energy.md §5.3).

May import: stoxbar.core.validation and the block modules of stoxbar.peripherals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

from .adc import ADC
from .dac import DAC
from .digital import DigitalPeriphery
from .drivers import BIAS_ADDRESSINGS, WRITE_SCHEMES, BiasDriver, RowDriver, WriteDriver
from .parasitics import Parasitics
from .sense import TIA, SampleHold
from .static import PowerGating, StaticPower

MAX_TILE = 2048  # assumption: largest array side with tolerable IR drop / line RC (brief)
SIGNED_MAPPINGS = ("differential", "reference")
SUBTRACTIONS = ("digital", "analog")
BOUND_MANAGEMENTS = ("iterative", "none")
NOISE_MANAGEMENTS = ("abs_max", "constant")
PROGRAMMINGS = ("write_verify", "open_loop")
# Cell footprint 0.01 um^2 = (0.1 um pitch)^2: assumption for a dense vertical STO crossbar (the
# paper's devices are planar lab cells, docs/paper.md §1). ISAAC's arrays imply ~0.0015 um^2 per cell
# (0.0002 mm^2 / 8x128x128, docs/peripherals-energy.md §1).
CELL_AREA_M2 = 0.01e-12

_BLOCKS = {
    "dac": DAC, "adc": ADC, "row_driver": RowDriver, "write_driver": WriteDriver,
    "bias_driver": BiasDriver, "tia": TIA, "sample_hold": SampleHold, "digital": DigitalPeriphery,
    "parasitics": Parasitics, "static": StaticPower, "power_gating": PowerGating,
}


@dataclass(frozen=True)
class PeripheryConfig:
    """Peripheral circuits and geometry of one crossbar tile type.

    Attributes:
        dac, adc, row_driver, write_driver, bias_driver, tia, sample_hold, digital: the blocks.
        parasitics: line wire resistance and how the read treats it (``peripherals/parasitics.py``;
            default off).
        static, power_gating: leakage per block and its gating between steps
            (``peripherals/static.py``); booked over every decay interval (the step period).
        tile_rows: max inputs per tile, 1..2048.
        tile_cols: max outputs per tile (logical), 1..1024 differential, 1..2047 reference (physical
            columns <= MAX_TILE).
        signed_mapping: "differential" | "reference".
        subtraction: "digital" | "analog" (where G+ - G- or G - G_ref is formed).
        out_bound: ADC range in aihwkit units of "fully-on inputs x max weight" (weights normalised
            to +-1): out_bound = 10 means the ADC full scale is the current of 10 rows at full-scale
            input on a weight of 1. Default 10 (aihwkit StandardIOParameters / HWA preset).
        out_noise: Gaussian noise std at the ADC input, same units as out_bound. Default 0.04
            (aihwkit StandardIOParameters / StandardHWATrainingPreset, ~0.5 LSB of an 8-bit ADC).
        bound_management: "iterative" (aihwkit default: halve input scale and repeat on clipping)
            | "none".
        noise_management: "abs_max" (aihwkit default: scale inputs by max|x|) | "constant".
        nm_thres: input scale used by "constant" noise management (inputs assumed in
            [-nm_thres, nm_thres]; 1.0 fits tanh activations).
        cell_area_m2: footprint of one device (m^2).
        programming: how long-term weights are written. "write_verify" (default, assumption:
            closed-loop programming lands every device on its target; the pulse count is
            |dG| / lt_dg_s) | "open_loop" (from reset at g_min, the number of LTP pulses the *mean*
            device needs, fired once without verify: each device's d2d factor and the c2c spread
            per pulse leave a programming error, ``devices.dynamics.apply_long_term``).
        write_scheme: how unselected lines are biased while a pulse is written (docs/peripherals-energy.md
            §10): "v2" (the other rows and columns at V/2: the selected row's and column's other cells
            see V/2) or "v3" (other rows at V/3, other columns at 2V/3: every other cell sees V/3).
        bias_addressing: how the decay bias reaches the cells (``crossbar/bias.py``): "per_cell"
            (default: an access device and held control voltage per cell, any matrix) | "row_col"
            (V_ij = a_i - b_j) | "per_row" | "per_column" | "global"; a requested matrix is
            projected (least squares per physical tile) and the residual reported.
        bias_rails_v: optional quantised bias rails (V); every line or cell takes the nearest.
        bias_duty: fraction of each decay interval the bias is held, (0, 1]; the decay integrates
            the biased phase (first) and the released phase (at the device's ``v_bias_min_v``)
            exactly, and the bias, its drivers and refresh are paid for the held fraction only.
    """

    dac: DAC = field(default_factory=DAC)
    adc: ADC = field(default_factory=ADC)
    row_driver: RowDriver = field(default_factory=RowDriver)
    write_driver: WriteDriver = field(default_factory=WriteDriver)
    bias_driver: BiasDriver = field(default_factory=BiasDriver)
    tia: TIA = field(default_factory=TIA)
    sample_hold: SampleHold = field(default_factory=SampleHold)
    digital: DigitalPeriphery = field(default_factory=DigitalPeriphery)
    parasitics: Parasitics = field(default_factory=Parasitics)
    static: StaticPower = field(default_factory=StaticPower)
    power_gating: PowerGating = field(default_factory=PowerGating)
    tile_rows: int = 512  # aihwkit MappingParameter default max_input_size (docs/aihwkit.md §3)
    tile_cols: int = 512  # aihwkit default max_output_size; MNSIM uses 256 (docs/peripherals-energy.md §3.3)
    signed_mapping: str = "differential"
    subtraction: str = "digital"  # brief: every physical column is converted
    out_bound: float = 10.0
    out_noise: float = 0.04
    bound_management: str = "iterative"
    noise_management: str = "abs_max"
    nm_thres: float = 1.0
    cell_area_m2: float = CELL_AREA_M2
    programming: str = "write_verify"
    bias_addressing: str = "per_cell"
    bias_rails_v: tuple = ()
    bias_duty: float = 1.0
    write_scheme: str = "v2"

    def __post_init__(self) -> None:
        for name, cls in _BLOCKS.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ConfigError(f"{name} = {value!r}: must be a {cls.__name__} instance")
        check_int("tile_rows", self.tile_rows, 1, MAX_TILE)
        check_int("tile_cols", self.tile_cols, 1, MAX_TILE)
        check_choice("signed_mapping", self.signed_mapping, SIGNED_MAPPINGS)
        physical = 2 * self.tile_cols if self.signed_mapping == "differential" else self.tile_cols + 1
        if physical > MAX_TILE:  # the line limit holds for the wires, not for logical outputs
            most = MAX_TILE // 2 if self.signed_mapping == "differential" else MAX_TILE - 1
            raise ConfigError(f"tile_cols = {self.tile_cols}: a {self.signed_mapping} tile has {physical} physical "
                              f"columns, more than the {MAX_TILE}-line limit; allowed range is [1, {most}]")
        check_choice("subtraction", self.subtraction, SUBTRACTIONS)
        check_range("out_bound", self.out_bound, 0.0, 1e4, lo_open=True)
        check_range("out_noise", self.out_noise, 0.0, 10.0)
        check_choice("bound_management", self.bound_management, BOUND_MANAGEMENTS)
        check_choice("noise_management", self.noise_management, NOISE_MANAGEMENTS)
        check_range("nm_thres", self.nm_thres, 0.0, 1e6, lo_open=True)
        check_range("cell_area_m2", self.cell_area_m2, 0.0, 1e-9, lo_open=True, unit="m^2")
        check_choice("programming", self.programming, PROGRAMMINGS)
        check_choice("bias_addressing", self.bias_addressing, BIAS_ADDRESSINGS)
        check_choice("write_scheme", self.write_scheme, WRITE_SCHEMES)
        if isinstance(self.bias_rails_v, list):  # a study file's TOML array
            object.__setattr__(self, "bias_rails_v", tuple(self.bias_rails_v))
        if not isinstance(self.bias_rails_v, tuple) or len(self.bias_rails_v) > 256:
            raise ConfigError(f"bias_rails_v = {self.bias_rails_v!r}: must be a tuple of 0..256 voltages (V)")
        for k, r in enumerate(self.bias_rails_v):
            check_range(f"bias_rails_v[{k}]", r, 0.0, 10.0, unit="V")
        check_range("bias_duty", self.bias_duty, 0.0, 1.0, lo_open=True)
        # aihwkit's signed converters need >= 2 bits: res = 1/(2**bits - 2) (docs/aihwkit.md §2).
        check_int("dac.bits", self.dac.bits, 2, 16)
        check_int("adc.bits", self.adc.bits, 2, 16)
        n_conv = self.adc_columns()
        if n_conv % self.adc.share:
            divisors = [d for d in range(1, n_conv + 1) if n_conv % d == 0]
            raise ConfigError(
                f"adc.share = {self.adc.share}: must divide the tile's {n_conv} ADC columns "
                f"({self.signed_mapping} mapping, {self.subtraction} subtraction, tile_cols = "
                f"{self.tile_cols}); allowed values are {divisors}")

    # ---- geometry ------------------------------------------------------------------------
    def _cols(self, cols: int | None) -> int:
        return self.tile_cols if cols is None else check_int("cols", cols, 1, self.tile_cols)

    def physical_cols(self, cols: int | None = None) -> int:
        """Device columns for ``cols`` outputs (default: full tile)."""
        c = self._cols(cols)
        return 2 * c if self.signed_mapping == "differential" else c + 1

    def adc_columns(self, cols: int | None = None) -> int:
        """Columns converted per pass for ``cols`` outputs (default: full tile)."""
        c = self._cols(cols)
        return self.physical_cols(c) if self.subtraction == "digital" else c

    @property
    def adc_share(self) -> int:
        """Columns per ADC (= ``adc.share``)."""
        return self.adc.share

    @property
    def adcs_per_tile(self) -> int:
        """Number of ADCs on one tile."""
        return self.adc_columns() // self.adc.share

    @property
    def passes_per_mvm(self) -> int:
        """Array reads / ADC passes per MVM (bit_serial: dac.bits)."""
        return self.dac.passes_per_mvm

    @property
    def read_window_s(self) -> float:
        """Full-scale time the rows are driven in one pass (s): the cell-read integration time."""
        return self.dac.read_window_s

    def adc_full_scale_current_a(self, g_weight_one_s: float) -> float:
        """Physical ADC full-scale current (A) = out_bound * v_read * G(weight 1).

        ``g_weight_one_s`` is the conductance (difference) that represents weight 1, e.g.
        g_max - g_min for a differential pair.
        """
        check_range("g_weight_one_s", g_weight_one_s, 0.0, 1.0, lo_open=True, unit="S")
        return self.out_bound * self.dac.v_read_v * g_weight_one_s

    def static_power_w(self) -> tuple:
        """(gateable, always-on) leakage of one physical tile (W): ADCs, DACs, S+H and TIAs, read and
        write drivers, the two I/O buffers (gateable); the bias references (always on).
        ``peripherals/static.py``."""
        s, rows, phys, n_conv = self.static, self.tile_rows, self.physical_cols(), self.adc_columns()
        sense = s.sample_hold_w + (self.tia.power_w if s.tia_static else 0.0)
        gated = (self.adcs_per_tile * s.adc_w + rows * s.dac_w + n_conv * sense
                 + (rows + rows + phys) * s.driver_w + 2 * s.buffer_w)
        return gated, s.bias_reference_w

    # ---- aihwkit -------------------------------------------------------------------------
    def io_parameters(self) -> Any:
        """aihwkit ``IOParameters`` for the forward MVM, derived from the converters.

        inp_res = 1/(2**dac.bits - 2), out_res = 1/(2**adc.bits - 2) (signed, symmetric; the step
        is res * 2 * bound, docs/aihwkit.md §2), inp_bound 1, out_bound, out_noise, bound/noise
        management; one analog pass (``ONE_PASS``), no other non-idealities (device read noise
        and IR drop belong to the tile).
        """
        from aihwkit.simulator.parameters.enums import (
            AnalogMVType, BoundManagementType, NoiseManagementType)
        from aihwkit.simulator.parameters.io import IOParameters

        bm = {"iterative": BoundManagementType.ITERATIVE, "none": BoundManagementType.NONE}
        nm = {"abs_max": NoiseManagementType.ABS_MAX, "constant": NoiseManagementType.CONSTANT}
        return IOParameters(
            is_perfect=False,
            mv_type=AnalogMVType.ONE_PASS,
            inp_bound=1.0,
            inp_res=1.0 / (2**self.dac.bits - 2),
            inp_noise=0.0,
            out_bound=self.out_bound,
            out_res=1.0 / (2**self.adc.bits - 2),
            out_noise=self.out_noise,
            bound_management=bm[self.bound_management],
            noise_management=nm[self.noise_management],
            nm_thres=self.nm_thres if self.noise_management == "constant" else 0.0,
        )

    # ---- convenience -----------------------------------------------------------------------
    def with_(self, **changes: Any) -> "PeripheryConfig":
        """Copy with fields replaced (validated again)."""
        return replace(self, **changes)

    def with_adc_bits(self, bits: int) -> "PeripheryConfig":
        return replace(self, adc=replace(self.adc, bits=bits))

    def with_dac_bits(self, bits: int) -> "PeripheryConfig":
        return replace(self, dac=replace(self.dac, bits=bits))

    def with_adc_share(self, share: int) -> "PeripheryConfig":
        return replace(self, adc=replace(self.adc, share=share))

    def with_tile(self, rows: int, cols: int) -> "PeripheryConfig":
        return replace(self, tile_rows=rows, tile_cols=cols)

    def with_tech_node(self, nm: float) -> "PeripheryConfig":
        """Put the node-scaled blocks (ADC, digital) at one technology node."""
        return replace(self, adc=replace(self.adc, tech_node_nm=nm),
                       digital=replace(self.digital, tech_node_nm=nm))

    def describe(self) -> str:
        """Human-readable summary of the blocks and per-event energies (full-tile MVM energy, latency
        and area: :func:`stoxbar.crossbar.costs.describe`, the one cost model)."""
        d, a = self.dac, self.adc
        lines = [
            f"tile {self.tile_rows} x {self.tile_cols} ({self.physical_cols()} physical columns, "
            f"{self.signed_mapping}, {self.subtraction} subtraction), {self.adcs_per_tile} ADCs "
            f"(share {a.share})",
            f"DAC {d.bits} b {d.mode}: {d.energy_per_input_j * 1e12:.3g} pJ/input, "
            f"{d.latency_per_input_s * 1e9:.3g} ns, V_read {d.v_read_v:g} V (ISAAC/MNSIM)",
            f"ADC {a.bits} b @ {a.tech_node_nm:g} nm, {a.sample_rate_hz / 1e9:.3g} GS/s: "
            f"{a.energy_per_conversion_j * 1e12:.3g} pJ/conversion ({a.regime} regime, ISAAC-"
            f"calibrated FOM)",
            f"aihwkit: inp_res 1/{2**d.bits - 2}, out_res 1/{2**a.bits - 2}, out_bound "
            f"{self.out_bound:g}, out_noise {self.out_noise:g}, BM {self.bound_management}, "
            f"NM {self.noise_management}",
            f"bias: {self.bias_addressing} addressing, duty {self.bias_duty:g}, {self.bias_driver.supply} supply"
            + (f", rails {', '.join(f'{r:g}' for r in self.bias_rails_v)} V" if self.bias_rails_v else ""),
        ]
        return "\n".join(lines)

