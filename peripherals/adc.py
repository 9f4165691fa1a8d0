"""Column ADC: resolution, sample rate, FOM-based energy, sharing (time multiplexing), area.

Energy model (docs/peripherals-energy.md §2.1), with ENOB taken equal to ``bits`` (optimistic; the
calibration below absorbs the difference):

    E_walden   = FOM_W * 2**bits                                   (x2 per bit, low resolution)
    E_schreier = 0.5 * 10**((SNDR - FOM_S)/10),  SNDR = 6.02*bits + 1.76 dB  (x4 per bit)
    E          = max(E_walden, E_schreier) * (tech_node_nm / 32)**tech_scaling_exponent

Convention: ISAAC / PUMA, one conversion per sample period, E = P / f_s (NOT MNSIM's (bits+2)/f_s,
which is ~10x higher; §2.4). Calibration at 32 nm:

* FOM_W = 1.56 pJ / 2**8 = 6.1 fJ/step, so 8 bit = 1.56 pJ = ISAAC's 2 mW / 1.28 GS/s (§1). This
  sits inside the survey's best >= 1 GS/s Walden FOMs, 7-10 fJ/step (§2.2).
* FOM_S = 168 dB puts the Walden/Schreier knee at 9 bits and gives 10 bit 12.4 pJ, 12 bit 199 pJ,
  close to the accelergy-adc-plug-in at 32 nm, 1 GS/s (13.9 pJ, 133 pJ; §2.3).
* Technology rule: E ~ node**1.88, fitted (by us) to the plug-in's 8-bit outputs at 1 GS/s
  (22 nm 0.85, 65 nm 6.5, 7 nm 0.098 pJ vs 32 nm 1.71 pJ; exponents 1.87, 1.88, 1.88; §2.3).
  Set ``tech_scaling_exponent=0`` to switch scaling off.

The energy is taken as independent of the sample rate (constants from ~1 GS/s designs; valid
roughly 0.1-1.3 GS/s). Sharing: one ADC serves ``share`` columns in turn; this changes the number
of ADCs (area) and the readout time, never the number of conversions.

May import: stoxbar.core.validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stoxbar.core.validation import check_int, check_range

# Walden FOM at 32 nm, derived from ISAAC Table I: 2 mW / 1.28 GS/s / 2**8 (docs/peripherals-energy.md §1).
FOM_WALDEN_J = 2e-3 / 1.28e9 / 2**8  # 6.1 fJ/conversion-step
# Schreier FOM (dB): chosen so the knee is at 9 bits; matches the plug-in's 10-12 bit energies (§2.3).
FOM_SCHREIER_DB = 168.0
# ISAAC ADC sample rate 1.28 GS/s (text; Table I says 1.2 GS/s), §1.
SAMPLE_RATE_HZ = 1.28e9
REF_NODE_NM = 32.0  # ISAAC's node, where the constants above hold
# Energy ~ node**1.88: fitted to the accelergy-adc-plug-in outputs in docs/peripherals-energy.md §2.3.
TECH_EXPONENT = 1.88
# ISAAC Table I: 0.0096 mm^2 per 8 ADCs -> 1200 um^2 for the 8-bit 32 nm ADC (§1; PUMA, MNSIM).
AREA_8BIT_M2 = 1200e-12


def walden_energy_j(bits: int, fom_j: float = FOM_WALDEN_J) -> float:
    """Walden-limited energy per conversion (J) = FOM_W * 2**bits."""
    return fom_j * 2.0**bits


def schreier_energy_j(bits: int, fom_db: float = FOM_SCHREIER_DB) -> float:
    """Schreier (thermal-noise) limited energy per conversion (J): 0.5*10**((SNDR-FOM_S)/10)."""
    sndr_db = 6.02 * bits + 1.76
    return 0.5 * 10.0 ** ((sndr_db - fom_db) / 10.0)


@dataclass(frozen=True)
class ADC:
    """One column ADC (possibly shared by ``share`` columns).

    Attributes:
        bits: resolution incl. sign, 2..16 (the same range as PeripheryConfig: aihwkit's signed
            output step is 1/(2**bits - 2), so a 1-bit signed ADC has no step).
        sample_rate_hz: conversions per second (Hz).
        tech_node_nm: technology node (nm), 3..180.
        share: columns per ADC (time multiplexed), 1..4096; must divide the tile's ADC columns.
        fom_walden_j: Walden FOM at 32 nm (J/step).
        fom_schreier_db: Schreier FOM (dB).
        tech_scaling_exponent: E ~ (node/32)**exponent; 0 disables scaling.
        area_8bit_m2: area of an 8-bit ADC at 32 nm (m^2).
    """

    bits: int = 8  # assumption: 8 bits as ISAAC (§1); aihwkit StandardIOParameters is also 8 bit
    sample_rate_hz: float = SAMPLE_RATE_HZ
    tech_node_nm: float = REF_NODE_NM
    share: int = 8  # NeuroSim V1.4 default numColMuxed = 8 (§3.2); ISAAC uses 128
    fom_walden_j: float = FOM_WALDEN_J
    fom_schreier_db: float = FOM_SCHREIER_DB
    tech_scaling_exponent: float = TECH_EXPONENT
    area_8bit_m2: float = AREA_8BIT_M2

    def __post_init__(self) -> None:
        check_int("adc.bits", self.bits, 2, 16)
        check_range("adc.sample_rate_hz", self.sample_rate_hz, 1e3, 1e11, unit="Hz")
        check_range("adc.tech_node_nm", self.tech_node_nm, 3.0, 180.0, unit="nm")
        check_int("adc.share", self.share, 1, 4096)
        check_range("adc.fom_walden_j", self.fom_walden_j, 0.0, 1e-9, unit="J/step")
        check_range("adc.fom_schreier_db", self.fom_schreier_db, 120.0, 200.0, unit="dB")
        check_range("adc.tech_scaling_exponent", self.tech_scaling_exponent, 0.0, 3.0)
        check_range("adc.area_8bit_m2", self.area_8bit_m2, 0.0, 1e-6, unit="m^2")

    @property
    def levels(self) -> int:
        """Number of signed output levels, 2**bits - 1 (aihwkit convention)."""
        return 2**self.bits - 1

    @property
    def tech_factor(self) -> float:
        """Energy scale factor (node/32 nm)**exponent."""
        return (self.tech_node_nm / REF_NODE_NM) ** self.tech_scaling_exponent

    def _energy_32nm_j(self, bits: int) -> float:
        return max(walden_energy_j(bits, self.fom_walden_j), schreier_energy_j(bits, self.fom_schreier_db))

    @property
    def regime(self) -> str:
        """"walden" (x2 per bit) or "schreier" (x4 per bit) at this resolution."""
        w = walden_energy_j(self.bits, self.fom_walden_j)
        return "walden" if w >= schreier_energy_j(self.bits, self.fom_schreier_db) else "schreier"

    @property
    def energy_per_conversion_j(self) -> float:
        """Energy of one conversion (J)."""
        return self._energy_32nm_j(self.bits) * self.tech_factor

    @property
    def power_w(self) -> float:
        """Power while converting continuously (W) = E * f_s."""
        return self.energy_per_conversion_j * self.sample_rate_hz

    @property
    def latency_per_conversion_s(self) -> float:
        """Time of one conversion (s) = 1 / f_s."""
        return 1.0 / self.sample_rate_hz

    def n_adcs(self, columns: int) -> int:
        """ADCs needed for ``columns`` converted columns: ceil(columns / share)."""
        check_int("columns", columns, 0, None)
        return math.ceil(columns / self.share)

    def readout_latency_s(self, columns: int, n_adcs: int | None = None) -> float:
        """Time to convert ``columns`` columns once (s), ``n_adcs`` ADCs in parallel (default:
        ceil(columns/share)); each ADC converts its columns one after the other."""
        check_int("columns", columns, 0, None)
        n = self.n_adcs(columns) if n_adcs is None else check_int("n_adcs", n_adcs, 1, None)
        return math.ceil(columns / n) * self.latency_per_conversion_s if columns else 0.0

    @property
    def area_m2(self) -> float:
        """Area of one ADC (m^2).

        Assumption: area ~ sqrt(energy) at fixed node, anchored at ISAAC's 1200 um^2 for 8 bit
        at 32 nm (gives 600 um^2 at 6 bit vs MNSIM's 580 um^2 6-bit entry, §3.3), and ~ node**2.
        """
        rel = self._energy_32nm_j(self.bits) / self._energy_32nm_j(8)
        return self.area_8bit_m2 * math.sqrt(rel) * (self.tech_node_nm / REF_NODE_NM) ** 2
