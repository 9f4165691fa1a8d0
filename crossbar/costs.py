"""What each crossbar event costs, booked into the :class:`EnergyLedger`.

One :class:`CrossbarCosts` per tile/array turns the counts of a simulated operation into ledger
entries using the periphery blocks (DAC, ADC, drivers, sense, digital) and the device model (cell
read, pulses, bias). Components (ledger ``component`` field):

=================  ==========================================================================
``dac``            input conversions (``dac.energy_per_input_j`` per row and read round)
``row_driver``     charging each driven row line, C_line V_read^2
``cell_read``      the array itself: sum over cells of V^2 G t (input-dependent, exact)
``adc``            output conversions per tile and read pass (``periphery.adc_columns``: one per
                   physical column with digital subtraction, one per output with analog)
``sense``          TIA/integrator + sample-and-hold per conversion
``digital_accum``  partial-sum accumulation across row-tiles (+ shift-add for bit-serial)
``st_pulse``       short-term pulses: device energy of each pulse
``st_write_driver`` line charging of each short-term pulse
``bias``           decay-control bias held on the synapses, V_bias^2 G integrated exactly
``bias_driver``    bias generation overhead and quiescent power of the bias lines
``lt_program``     long-term (LTP/LTD) programming pulses + their write driver
=================  ==========================================================================
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Tuple

import torch
from torch import Tensor

from aihwkit.simulator.parameters.enums import NoiseManagementType

from stoxbar.devices.sto import STODevice
from stoxbar.peripherals.config import PeripheryConfig

if TYPE_CHECKING:
    from stoxbar.crossbar.ledger import EnergyLedger
    from stoxbar.crossbar.state import CrossbarState


class CrossbarCosts:
    """Per-event energies of one STO crossbar design; records operations into a ledger."""

    def __init__(self, device: STODevice, periphery: PeripheryConfig):
        self.device = device
        self.periphery = periphery
        p = periphery
        self.v_read_v = p.dac.v_read_v
        self.t_read_s = p.dac.read_window_s
        self.e_dac_j = p.dac.energy_per_input_j
        self.e_adc_j = p.adc.energy_per_conversion_j
        self.e_sense_j = p.tia.energy_per_sample_j() + p.sample_hold.energy_per_sample_j()
        self.passes = p.dac.passes_per_mvm  # bit-serial: one array read + ADC pass per input bit
        self.mode = p.dac.mode

    # -- MVM -----------------------------------------------------------------------------------
    def _input_drive(self, x_t: Tensor, io_pars: Any) -> Tensor:
        """Normalised row drive per (sample, tile, row): x^2 (amplitude), |x| (PWM), bit count (bit-serial)."""
        nm = io_pars.noise_management
        if nm == NoiseManagementType.ABS_MAX:
            scale = x_t.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(x_t.dtype).tiny)
        elif nm == NoiseManagementType.CONSTANT and io_pars.nm_thres > 0:
            scale = io_pars.nm_thres
        else:
            scale = 1.0
        xn = (x_t / scale).clamp(-1.0, 1.0)
        if self.mode == "pwm":
            return xn.abs()
        if self.mode == "bit_serial":
            k = torch.round(xn.abs() * (2 ** (self.periphery.dac.bits - 1) - 1)).to(torch.int64)
            ones = torch.zeros_like(xn)
            for b in range(self.periphery.dac.bits):
                ones += ((k >> b) & 1).to(xn.dtype)
            return ones
        return xn * xn

    def record_mvm(self, ledger: "EnergyLedger", layer: str, tile: str, state: "CrossbarState", x_t: Tensor,
                   rounds: int, io_pars: Any) -> None:
        """Book one analog MVM of ``x_t [N, T, X]`` over ``state`` that took ``rounds`` reads."""
        p = self.periphery
        n = x_t.shape[0]
        rows = n * sum(state.in_sizes)
        cols = sum(p.adc_columns(o) for o in state.out_sizes)  # conversions per row-tile and pass
        convs = n * state.tiles * cols * rounds * self.passes
        # Bound management halves the input scale each repeat: drive energy x 1/4 (amplitude), 1/2 (PWM).
        shrink = 0.25 if self.mode == "multibit" else 0.5
        round_weight = sum(shrink**r for r in range(rounds))
        drive = self._input_drive(x_t, io_pars)
        g_col = state.abs_column_conductance()  # [B or 1, T, X]
        if g_col.shape[0] == 1:
            g_drive = float((drive.sum(0) * g_col[0]).sum())
        else:
            g_drive = float((drive * g_col).sum())
        t_pass = self.t_read_s if self.mode != "bit_serial" else p.dac.t_cycle_s
        e_cell = self.v_read_v**2 * t_pass * g_drive * round_weight
        e_row = p.row_driver.energy_j(sum(p.physical_cols(o) for o in state.out_sizes), self.v_read_v)
        t_mvm = rounds * (p.dac.latency_per_input_s + self.passes * max(
            p.adc.readout_latency_s(p.adc_columns(o)) for o in state.out_sizes))
        ledger.add(layer, tile, "dac", "mvm", rows * rounds, rows * rounds * self.e_dac_j, t_mvm)
        ledger.add(layer, tile, "row_driver", "mvm", rows * rounds * self.passes, rows * rounds * self.passes * e_row)
        ledger.add(layer, tile, "cell_read", "mvm", rows * state.out_size * 2 * rounds, e_cell)
        ledger.add(layer, tile, "adc", "mvm", convs, convs * self.e_adc_j)
        ledger.add(layer, tile, "sense", "mvm", convs, convs * self.e_sense_j)

    def record_accumulate(self, ledger: "EnergyLedger", layer: str, state: "CrossbarState", n: int) -> None:
        """Digital partial sums across row-tiles (and shift-add of bit-serial passes) for ``n`` MVMs."""
        d = self.periphery.digital
        bits = self.periphery.adc.bits + math.ceil(math.log2(max(state.tiles, 1))) + (
            self.periphery.dac.bits if self.mode == "bit_serial" else 0)
        adds = n * state.out_size * (state.tiles - 1)
        if self.mode == "bit_serial":
            adds += n * state.out_size * state.tiles * (self.passes - 1)
        if adds:
            ledger.add(layer, "all", "digital_accum", "mvm", adds, d.accumulate_j(bits, adds))

    # -- plasticity, decay, programming -------------------------------------------------------------
    def record_short_term(self, ledger: "EnergyLedger", layer: str, tile: str, state: "CrossbarState",
                          n_pulses: float, device_energy_j: float) -> None:
        """Book ``n_pulses`` short-term pulses (device energy given) and their driver energy."""
        dev = self.device
        v = max(a for a, _ in dev.st_pulse_levels)
        e_drv = self.periphery.write_driver.short_term_pulse_j(v, state.out_size)
        ledger.add(layer, tile, "st_pulse", "short_term_update", n_pulses, device_energy_j)
        ledger.add(layer, tile, "st_write_driver", "short_term_update", n_pulses, n_pulses * e_drv)

    def record_decay(self, ledger: "EnergyLedger", layer: str, tile: str, state: "CrossbarState",
                     device_energy_j: float, held_device_s: float, dt_s: float) -> None:
        """Book a decay interval: synapse bias energy and the bias drivers' overhead."""
        if held_device_s <= 0:
            return
        chips = 1 if state.g_st is None else state.g_st.shape[0]
        lines = chips * (sum(state.in_sizes) + state.tiles * state.out_size)
        e_drv = self.periphery.bias_driver.energy_j(dt_s, device_energy_j / dt_s if dt_s > 0 else 0.0, lines)
        ledger.add(layer, tile, "bias", "decay", held_device_s, device_energy_j, dt_s)
        ledger.add(layer, tile, "bias_driver", "decay", lines * dt_s, e_drv)

    def record_hebbian_step(self, ledger: "EnergyLedger", layer: str, tile: str, state: "CrossbarState",
                            decayed: Tuple[float, float], pulsed: Tuple[float, float], dt_s: float) -> None:
        """Book a decay interval then its short-term pulses (``CrossbarState.hebbian_step``'s results)."""
        self.record_decay(ledger, layer, tile, state, *decayed, dt_s)
        self.record_short_term(ledger, layer, tile, state, *pulsed)

    def record_program(self, ledger: "EnergyLedger", layer: str, tile: str, pulses: float, device_energy_j: float) -> None:
        """Book long-term programming pulses (device + write driver)."""
        e_drv = self.periphery.write_driver.long_term_pulse_j(self.device.lt_pulse_v, 1)
        ledger.add(layer, tile, "lt_program", "program", pulses, device_energy_j + pulses * e_drv)
