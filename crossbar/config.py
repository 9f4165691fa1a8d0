"""``STORPUConfig``: the one configuration that drives both behaviour and cost.

An aihwkit RPU config (built on ``TorchInferenceRPUConfig``) carrying the STO device physics and
the periphery. Everything aihwkit needs is derived from them in ``__post_init__``:

* ``forward`` (aihwkit ``IOParameters``) from the periphery: DAC bits -> ``inp_res``, ADC bits ->
  ``out_res``, ranges, noise, bound/noise management. A 6-bit ADC in the periphery is a 6-bit ADC
  in the MVM *and* in the energy ledger.
* ``mapping.max_input_size`` / ``max_output_size`` from the periphery's tile geometry.

``forward.is_perfect = True`` remains available to switch the IO model off for exactness checks;
the cost model is unaffected by it.

Usage::

    from aihwkit.nn import AnalogLinear
    from stoxbar.devices import STORPUConfig, presets
    layer = AnalogLinear(2656, 64, rpu_config=STORPUConfig(device=presets.sto_2024()))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.mapping import MappingParameter

from stoxbar.crossbar.array import STOTileArray
from stoxbar.crossbar.tile import STOSimulatorTile, STOTile
from stoxbar.devices.presets import sto_2024
from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices.sto import STODevice
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.validation import ConfigError


@dataclass
class STORPUConfig(TorchInferenceRPUConfig):
    """aihwkit RPU config for STO memristor crossbars with a costed periphery."""

    simulator_tile_class: Type = STOSimulatorTile
    tile_class: Type = STOTile
    tile_array_class: Type = STOTileArray

    device: STODevice = field(default_factory=sto_2024)
    """Physics of the STO memristor (conductance window, dynamics, noise, event energies)."""

    periphery: PeripheryConfig = field(default_factory=PeripheryConfig)
    """DAC, ADC, drivers, sense, digital periphery and tile geometry."""

    mapping: MappingParameter = field(default_factory=lambda: MappingParameter(weight_scaling_omega=1.0))
    """Weights are scaled digitally so max |w| = 1 fills the conductance window."""

    def __post_init__(self) -> None:
        if not isinstance(self.device, MemristiveDevice):
            raise ConfigError(f"device = {self.device!r}: must be a MemristiveDevice such as STODevice (see stoxbar.devices.presets)")
        if not isinstance(self.periphery, PeripheryConfig):
            raise ConfigError(f"periphery = {self.periphery!r}: must be a PeripheryConfig")
        if abs(self.periphery.dac.v_read_v - self.device.v_read_v) > 1e-12:
            raise ConfigError(
                f"periphery.dac.v_read_v = {self.periphery.dac.v_read_v!r} V differs from device.v_read_v = "
                f"{self.device.v_read_v!r} V: the DAC drives the device's read voltage, set both to one value")
        perfect = self.forward.is_perfect
        self.forward = self.periphery.io_parameters()
        self.forward.is_perfect = perfect
        self.mapping.max_input_size = self.periphery.tile_rows
        self.mapping.max_output_size = self.periphery.tile_cols
