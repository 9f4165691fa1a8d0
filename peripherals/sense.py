"""Column sensing: TIA / integrator and sample-and-hold, energy per sample.

May import: stoxbar.core.validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoxbar.core.validation import check_range

# ISAAC Table I: S+H 10 uW and 0.00004 mm^2 per 8x128 units -> 9.8 nW and 0.039 um^2 each;
# 9.8 nW x 100 ns = ~1 fJ per sample (docs/peripherals-energy.md §1).
SH_POWER_W = 10e-6 / 1024
SH_AREA_M2 = 0.00004e-6 / 1024
SH_T_HOLD_S = 100e-9  # ISAAC read cycle (§1)


@dataclass(frozen=True)
class TIA:
    """Column current-to-voltage stage (TIA or charge integrator).

    Energy per sample = power_w * t_integrate_s. The 2 uW default is an assumption: an OTA-based
    integrator biased at ~2 uA from 1 V, enough for column currents of a few uA (100 nS devices at
    <= 0.6 V, hundreds of rows). With ISAAC's 100 ns read cycle that is 0.2 pJ per sample. ISAAC and
    NeuroSim fold this stage into the S+H / sense amplifier (docs/peripherals-energy.md §1, §2.4).

    Attributes:
        power_w: power while integrating (W).
        t_integrate_s: default integration window (s); the MVM uses the DAC's read window.
        area_m2: area per TIA (m^2).
    """

    power_w: float = 2e-6  # assumption (see class doc)
    t_integrate_s: float = 100e-9  # ISAAC read cycle (§1)
    area_m2: float = 20e-12  # assumption: ~20 um^2 OTA + feedback capacitor at 32 nm

    def __post_init__(self) -> None:
        check_range("tia.power_w", self.power_w, 0.0, 1e-2, unit="W")
        check_range("tia.t_integrate_s", self.t_integrate_s, 0.0, 1e-3, lo_open=True, unit="s")
        check_range("tia.area_m2", self.area_m2, 0.0, 1e-6, unit="m^2")

    def energy_per_sample_j(self, t_integrate_s: float | None = None) -> float:
        """Energy of one sample (J) over ``t_integrate_s`` (default: the field)."""
        t = self.t_integrate_s if t_integrate_s is None else check_range(
            "t_integrate_s", t_integrate_s, 0.0, None, unit="s")
        return self.power_w * t


@dataclass(frozen=True)
class SampleHold:
    """Sample-and-hold in front of a (shared) ADC. ISAAC Table I: ~1 fJ per sample.

    Attributes:
        power_w: power per unit (W); ISAAC 9.8 nW.
        t_hold_s: hold time per sample (s); ISAAC 100 ns cycle.
        area_m2: area per unit (m^2); ISAAC 0.039 um^2.
    """

    power_w: float = SH_POWER_W
    t_hold_s: float = SH_T_HOLD_S
    area_m2: float = SH_AREA_M2

    def __post_init__(self) -> None:
        check_range("sample_hold.power_w", self.power_w, 0.0, 1e-3, unit="W")
        check_range("sample_hold.t_hold_s", self.t_hold_s, 0.0, 1e-3, lo_open=True, unit="s")
        check_range("sample_hold.area_m2", self.area_m2, 0.0, 1e-6, unit="m^2")

    def energy_per_sample_j(self, t_hold_s: float | None = None) -> float:
        """Energy of one sample (J) held ``t_hold_s`` (default: the field)."""
        t = self.t_hold_s if t_hold_s is None else check_range("t_hold_s", t_hold_s, 0.0, None, unit="s")
        return self.power_w * t
