"""Row input DAC: behaviour (resolution, mode, read voltage) and cost (J, s, m^2).

Three ways to put an input of ``bits`` resolution on a crossbar row:

* ``"multibit"``: one amplitude-coded conversion per input. Power doubles per bit (MNSIM-2.0
  ``DAC_power_dict``, docs/peripherals-energy.md §2.5) and the DAC holds its output for one read cycle.
* ``"pwm"``: one 1-bit driver whose pulse width codes the value (sign by polarity). The full-scale
  pulse lasts ``2**(bits-1)`` slots of ``1/f_pwm_hz`` (magnitude needs ``2**(bits-1)-1`` slots,
  plus one guard/settle slot: assumption). One conversion per input, energy and time x2 per bit.
* ``"bit_serial"``: ISAAC-style 1-bit DAC, ``bits`` read cycles per input (one per input bit).
  Each cycle is a separate array read and a separate ADC pass (``passes_per_mvm``).

The effective input resolution is ``bits`` in every mode, so the aihwkit ``inp_res`` is the same
(``PeripheryConfig.io_parameters``). aihwkit simulates one analog pass; in bit-serial mode the
per-bit ADC quantisation of partial sums is *not* simulated, only costed.

Energies are full-scale (worst case: every input at full scale, every bit 1).

May import: stoxbar.core.validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoxbar.core.validation import check_choice, check_int, check_range

DAC_MODES = ("multibit", "pwm", "bit_serial")

# ISAAC Table I: 1-bit DAC, 4 mW per 8x128 DACs -> 3.9 uW per row DAC (docs/peripherals-energy.md §1;
# PUMA dac_pow_dyn+leak = 0.0039 mW, MNSIM DAC_power_dict[1] = 0.0039e-3 W).
P_1BIT_W = 3.9e-6
# ISAAC Table I: 0.00017 mm^2 per 1024 DACs -> 0.166 um^2 per 1-bit DAC (MNSIM DAC_area_dict[1]).
AREA_1BIT_M2 = 0.166e-12
# ISAAC crossbar read cycle 100 ns (docs/peripherals-energy.md §1): 3.9 uW x 100 ns = 0.39 pJ per row.
T_CYCLE_S = 100e-9
# PWM slot clock 1 GHz: assumption (MNSIM DACs run at 1 GS/s; CiMLoop BASE_LATENCY 1 ns, §3.6).
F_PWM_HZ = 1e9
# Full-scale read voltage 0.6 V: assumption, the paper's bias level (docs/paper.md §1); the lead ties it
# to the device's read voltage. Allowed (0, 2] V: above ~2 V STO-class devices switch (assumption).
V_READ_V = 0.6
V_READ_MAX_V = 2.0


@dataclass(frozen=True)
class DAC:
    """Input DAC of one crossbar row.

    Attributes:
        bits: input resolution incl. sign, 1..16.
        mode: "multibit" | "pwm" | "bit_serial".
        v_read_v: full-scale read voltage on the row (V), (0, 2].
        p_1bit_w: power of a 1-bit DAC while driving (W); ISAAC Table I.
        area_1bit_m2: area of a 1-bit DAC (m^2); ISAAC Table I / MNSIM.
        t_cycle_s: read cycle the DAC holds its output (multibit: per conversion, bit_serial: per
            bit), s; ISAAC 100 ns.
        f_pwm_hz: PWM slot clock (Hz); assumption 1 GHz.
    """

    bits: int = 8  # assumption: 8-bit inputs (aihwkit StandardIOParameters is 8/8 bit)
    mode: str = "pwm"  # assumption: PWM matches aihwkit's single analog pass (one ADC pass/MVM)
    v_read_v: float = V_READ_V
    p_1bit_w: float = P_1BIT_W
    area_1bit_m2: float = AREA_1BIT_M2
    t_cycle_s: float = T_CYCLE_S
    f_pwm_hz: float = F_PWM_HZ

    def __post_init__(self) -> None:
        check_int("dac.bits", self.bits, 1, 16)
        check_choice("dac.mode", self.mode, DAC_MODES)
        check_range("dac.v_read_v", self.v_read_v, 0.0, V_READ_MAX_V, lo_open=True, unit="V")
        check_range("dac.p_1bit_w", self.p_1bit_w, 0.0, 1e-3, unit="W")
        check_range("dac.area_1bit_m2", self.area_1bit_m2, 0.0, 1e-8, unit="m^2")
        check_range("dac.t_cycle_s", self.t_cycle_s, 0.0, 1e-3, lo_open=True, unit="s")
        check_range("dac.f_pwm_hz", self.f_pwm_hz, 1e3, 1e11, unit="Hz")

    # ---- behaviour -------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        """Number of signed levels, 2**bits - 1 (aihwkit convention, symmetric about 0)."""
        return 2**self.bits - 1

    @property
    def passes_per_mvm(self) -> int:
        """Array reads (and ADC passes) per input vector: ``bits`` for bit_serial, else 1."""
        return self.bits if self.mode == "bit_serial" else 1

    @property
    def pulses_per_input(self) -> int:
        """Row-line activations per input (worst case): ``bits`` for bit_serial, else 1."""
        return self.passes_per_mvm

    @property
    def read_window_s(self) -> float:
        """Full-scale duration the row is driven in one pass (s): pulse width for PWM, else a cycle."""
        if self.mode == "pwm":
            return 2 ** (self.bits - 1) / self.f_pwm_hz
        return self.t_cycle_s

    # ---- cost --------------------------------------------------------------------------------
    @property
    def power_w(self) -> float:
        """Power while driving (W): MNSIM rule, doubles per bit for multibit; 1-bit otherwise."""
        if self.mode == "multibit":
            return self.p_1bit_w * 2 ** (self.bits - 1)
        return self.p_1bit_w

    @property
    def energy_per_conversion_j(self) -> float:
        """Energy of one conversion (J): one input (multibit, pwm) or one input bit (bit_serial)."""
        return self.power_w * self.read_window_s

    @property
    def energy_per_input_j(self) -> float:
        """Energy to apply one input value (J); bit_serial = bits x 1-bit energy."""
        return self.energy_per_conversion_j * self.passes_per_mvm

    @property
    def latency_per_input_s(self) -> float:
        """Time to apply one input value, all passes (s)."""
        return self.read_window_s * self.passes_per_mvm

    @property
    def area_m2(self) -> float:
        """Area of one row DAC (m^2): doubles per bit for multibit (MNSIM), 1-bit otherwise."""
        if self.mode == "multibit":
            return self.area_1bit_m2 * 2 ** (self.bits - 1)
        return self.area_1bit_m2
