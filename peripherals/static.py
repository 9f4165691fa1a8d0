"""Static power of a tile's periphery (leakage) and its power gating.

Every block of a tile leaks while the chip exists, not only while it works: the Pong chip is
active ~135 ns per 66.7 ms step, so leakage over the step period can exceed the dynamic energy
(docs/peripherals-energy.md §9). Per tile (W):

* ADC: 0.2 mW each (PUMA's ``adc_pow_leak`` for ISAAC's 8-bit 1.28 GS/s SAR, [PUMA]);
* DAC: 0.39 uW per row (PUMA ``dac_pow_leak`` 0.000390625 mW);
* sample-and-hold: 0.97 nW per converted column (PUMA ``snh_pow_leak``); TIA: its 2 uW bias
  (the TIA block's ``power_w``) per converted column, an amplifier's quiescent current;
* read and write drivers: 1 nW per line (assumption: a few minimum-size inverters' subthreshold
  leakage at 32 nm);
* bias references: 1 uW per tile (assumption: a bandgap / reference buffer);
* SRAM retention of the tile's input and output buffers: 0.075 mW each (PUMA ``xbar_inMem`` /
  ``xbar_outMem`` leakage of a 256-size crossbar's buffers, taken as-is for 512: assumption).

Power gating (``PowerGating``): between the tile's active windows every gated block leaks only
``residual`` of its power (a sleep transistor's off-state, assumption 2 %, within the 1-10 %
reported for header/footer gating, Hu et al. ISLPED 2004 [Hu]); each wake-up costs ``wake_ns``
nanoseconds of the gated power (the break-even time of [Hu], ~10-20 cycles: assumption 20 ns) and
``wake_time_s`` of latency (assumption 10 ns) once per step. The bias references are never
gated while a bias is held (the held bias needs them).

May import: stoxbar.core.validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoxbar.core.validation import check_choice, check_range

ADC_LEAK_W = 0.2e-3  # PUMA adc_pow_leak (mW 0.2)
DAC_LEAK_W = 0.390625e-6  # PUMA dac_pow_leak (mW 0.000390625)
SH_LEAK_W = 9.7e-10  # PUMA snh_pow_leak (mW 9.7e-7)
DRIVER_LEAK_W = 1e-9  # assumption
BIAS_REFERENCE_W = 1e-6  # assumption
BUFFER_LEAK_W = 0.075e-3  # PUMA xbar_inMem / xbar_outMem leakage, 256-size (mW 0.075)


@dataclass(frozen=True)
class StaticPower:
    """Leakage per block instance (W); see the module docstring for sources.

    Attributes:
        adc_w, dac_w, sample_hold_w, driver_w, bias_reference_w, buffer_w: leakage of one ADC, one
            DAC (per row), one S+H (per converted column), one read or write driver (per line),
            the tile's bias references, one I/O buffer (two per tile).
        tia_static: whether the TIA's bias (``tia.power_w``) flows all the time (True) or only
            while integrating (False: it is then in the read's ``sense`` energy only).
    """

    adc_w: float = ADC_LEAK_W
    dac_w: float = DAC_LEAK_W
    sample_hold_w: float = SH_LEAK_W
    driver_w: float = DRIVER_LEAK_W
    bias_reference_w: float = BIAS_REFERENCE_W
    buffer_w: float = BUFFER_LEAK_W
    tia_static: bool = True

    def __post_init__(self) -> None:
        for name in ("adc_w", "dac_w", "sample_hold_w", "driver_w", "bias_reference_w", "buffer_w"):
            check_range(f"static.{name}", getattr(self, name), 0.0, 1.0, unit="W")
        check_choice("static.tia_static", self.tia_static, (True, False))


@dataclass(frozen=True)
class PowerGating:
    """Power gating of a tile's converters, sense, drivers and buffers between active windows.

    Attributes:
        enabled: gate the blocks between steps (default True: a chip active 135 ns per 66.7 ms
            step would be built with gating, assumption).
        residual: fraction of the gated power still leaking while gated, [0, 1].
        wake_ns: wake-up energy in nanoseconds of the gated blocks' full leakage power (J/W * 1e9).
        wake_time_s: wake-up latency per step (s).
    """

    enabled: bool = True
    residual: float = 0.02  # assumption (module doc)
    wake_ns: float = 20.0  # assumption (module doc)
    wake_time_s: float = 10e-9  # assumption (module doc)

    def __post_init__(self) -> None:
        check_choice("power_gating.enabled", self.enabled, (True, False))
        check_range("power_gating.residual", self.residual, 0.0, 1.0)
        check_range("power_gating.wake_ns", self.wake_ns, 0.0, 1e9, unit="ns")
        check_range("power_gating.wake_time_s", self.wake_time_s, 0.0, 1.0, unit="s")
