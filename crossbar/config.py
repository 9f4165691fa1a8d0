"""``STORPUConfig``: the one configuration that drives both behaviour and cost.

An aihwkit RPU config (built on ``TorchInferenceRPUConfig``) carrying the STO device physics and
the periphery. Everything aihwkit needs is derived from them in ``__post_init__``:

* ``forward`` (aihwkit ``IOParameters``) from the periphery: DAC bits -> ``inp_res``, ADC bits ->
  ``out_res``, ranges, noise, bound/noise management. A 6-bit ADC in the periphery is a 6-bit ADC
  in the MVM *and* in the energy ledger.
* ``mapping.max_input_size`` / ``max_output_size`` from the periphery's tile geometry.

Constructor arguments (docs/aihwkit-support.md §5): a ``forward`` or ``mapping`` field that the
periphery sets (DAC/ADC resolution, ranges, output noise, bound/noise management, tile size) must
equal the periphery's value or stay at aihwkit's default; otherwise a :class:`ConfigError` names
the field and the periphery field that sets it. The other ``forward`` fields (``is_perfect``,
``out_noise_std``, ``inp_noise``, stochastic rounding, ...) and the other ``mapping`` fields
(weight scaling, output scaling, digital bias) are honoured. ``clip``, ``remap``, ``modifier``,
``drift_compensation`` work as in aihwkit; ``noise_model`` is the STO device model itself
(:class:`STONoiseModel`), any other is refused. ``update_mode`` chooses how training reaches the
conductances (:mod:`stoxbar.crossbar.programming`); ``weight_overflow`` what happens to trained
weights past the conductance window (remapped into it by default, or clipped);
``retention`` is the long-term retention law used by ``drift_analog_weights``
(:mod:`stoxbar.devices.retention`, :mod:`stoxbar.crossbar.drift`).

Usage::

    from aihwkit.nn import AnalogLinear
    from stoxbar.crossbar import STORPUConfig
    from stoxbar.devices import presets
    layer = AnalogLinear(2656, 64, rpu_config=STORPUConfig(device=presets.sto_2024()))

May import: aihwkit, stoxbar.core.compat, stoxbar.devices, stoxbar.peripherals, stoxbar.core.validation,
stoxbar.crossbar.{array,tile,programming,read,parasitics} (the top of the crossbar layer: nothing in crossbar imports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.simulator.parameters.mapping import MappingParameter

from stoxbar.core.compat import ensure_aihwkit
from stoxbar.crossbar.array import STOTileArray
from stoxbar.crossbar.parasitics import FirstOrderParasiticMVM, ParasiticMVM
from stoxbar.crossbar.programming import UPDATE_MODES, WEIGHT_OVERFLOW
from stoxbar.crossbar.read import TiledAnalogMVM
from stoxbar.crossbar.tile import STOSimulatorTile, STOTile
from stoxbar.devices import presets
from stoxbar.devices.presets import sto_2024
from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices.retention import RetentionModel, sto_2024_retention
from stoxbar.devices.sto import STODevice
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.core.validation import ConfigError, check_choice

# forward (IOParameters) fields the periphery sets -> the periphery field that sets them
FORWARD_FROM_PERIPHERY = {
    "inp_res": "periphery.dac.bits", "out_res": "periphery.adc.bits", "inp_bound": "periphery.dac (full scale 1)",
    "out_bound": "periphery.out_bound", "out_noise": "periphery.out_noise",
    "bound_management": "periphery.bound_management", "noise_management": "periphery.noise_management",
    "nm_thres": "periphery.nm_thres", "mv_type": "periphery.subtraction (one analog pass)",
}
MAPPING_FROM_PERIPHERY = {"max_input_size": "periphery.tile_rows", "max_output_size": "periphery.tile_cols"}


class STONoiseModel(BaseNoiseModel):
    """Marker noise model: programming and drift come from the STO device model, not from aihwkit.

    ``program_analog_weights`` uses ``periphery.programming`` (write-verify residual or open-loop
    spread) and ``drift_analog_weights`` the ``STORPUConfig.retention`` law; the aihwkit noise
    model hooks are therefore never called and raise if they are.
    """

    def _refuse(self, *args, **kwargs):
        raise ConfigError("STONoiseModel: STO tiles program and drift through the device model "
                          "(STOTile.program_weights / drift_weights), not through an aihwkit noise model")

    apply_programming_noise_to_conductance = _refuse
    generate_drift_coefficients = _refuse
    apply_drift_noise_to_conductance = _refuse

    def __eq__(self, other):
        return isinstance(other, STONoiseModel)

    __hash__ = object.__hash__


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

    noise_model: BaseNoiseModel = field(default_factory=STONoiseModel)
    """Programming and drift come from the device (see :class:`STONoiseModel`)."""

    update_mode: str = "program_after_step"
    """How training reaches the conductances: "program_after_step" (default) | "pulsed"."""

    weight_overflow: str = "remap"
    """Trained weights past the conductance window (|w| > 1 in tile units): "remap" (default: the
    overflowing output rows are rescaled into the window and the factor moves into the digital
    output scales, so the layer computes the same function) | "clip" (clamped to the window, the
    device's bound, like aihwkit's ``clip``). docs/aihwkit-support.md §2."""

    retention: RetentionModel = field(default_factory=sto_2024_retention)
    """Long-term retention law applied by ``drift_analog_weights`` (docs/retention.md)."""

    read_model: Type = TiledAnalogMVM
    """The analog read's class (a :class:`~stoxbar.crossbar.read.TiledAnalogMVM` subclass): the simulator
    tile hands it to aihwkit as ``analog_mvm`` and every read of the tile or array goes through it.
    With ``periphery.parasitics.mode`` "first_order" or "full" the default becomes
    :class:`~stoxbar.crossbar.parasitics.FirstOrderParasiticMVM` or :class:`~stoxbar.crossbar.parasitics.ParasiticMVM`."""

    def __post_init__(self) -> None:
        ensure_aihwkit()  # aihwkit's compiled core must match torch: checked once, before the first tile
        if isinstance(self.device, str):  # a preset name, device file PATH.toml, or PATH.py:factory (user code)
            self.device = presets.resolve_device(self.device, what="device")
        if not isinstance(self.device, MemristiveDevice):
            raise ConfigError(f"device = {self.device!r}: must be a MemristiveDevice such as STODevice (see stoxbar.devices.presets)")
        if not isinstance(self.periphery, PeripheryConfig):
            raise ConfigError(f"periphery = {self.periphery!r}: must be a PeripheryConfig")
        if abs(self.periphery.dac.v_read_v - self.device.v_read_v) > 1e-12:
            raise ConfigError(
                f"periphery.dac.v_read_v = {self.periphery.dac.v_read_v!r} V differs from device.v_read_v = "
                f"{self.device.v_read_v!r} V: the DAC drives the device's read voltage, set both to one value")
        if self.periphery.dac.mode == "multibit" and not self.device.is_ohmic():
            raise ConfigError(
                f"periphery.dac.mode = 'multibit' with device {self.device.name!r}, whose I-V is not ohmic: an "
                "amplitude-coded input would make the MVM non-linear, which the read model does not simulate; "
                "allowed: 'pwm' or 'bit_serial' (docs/device-physics.md §9)")
        check_choice("update_mode", self.update_mode, UPDATE_MODES)
        check_choice("weight_overflow", self.weight_overflow, WEIGHT_OVERFLOW)
        if not (isinstance(self.read_model, type) and issubclass(self.read_model, TiledAnalogMVM)):
            raise ConfigError(f"read_model = {self.read_model!r}: must be a subclass of "
                              "stoxbar.crossbar.read.TiledAnalogMVM (a read model class)")
        if self.periphery.parasitics.mode != "off" and self.read_model is TiledAnalogMVM:
            # the periphery's wires: the read that models them
            self.read_model = ParasiticMVM if self.periphery.parasitics.mode == "full" else FirstOrderParasiticMVM
        if not isinstance(self.retention, RetentionModel):
            raise ConfigError(f"retention = {self.retention!r}: must be a RetentionModel (stoxbar.devices.retention)")
        if not isinstance(self.noise_model, STONoiseModel):
            raise ConfigError(f"noise_model = {type(self.noise_model).__name__}: STO tiles program and drift through "
                              "the device model; set periphery.programming and STORPUConfig.retention instead")
        self.forward = self._reconcile(self.forward, self.periphery.io_parameters(), IOParameters(),
                                       FORWARD_FROM_PERIPHERY, "forward")
        derived = MappingParameter(**{**self.mapping.__dict__, "max_input_size": self.periphery.tile_rows,
                                      "max_output_size": self.periphery.tile_cols})
        self.mapping = self._reconcile(self.mapping, derived, MappingParameter(), MAPPING_FROM_PERIPHERY, "mapping")

    @staticmethod
    def _reconcile(given, derived, default, owned, name):
        """``derived`` with the user's non-periphery fields of ``given``; periphery fields must agree."""
        for key, where in owned.items():
            value = getattr(given, key)
            if value != getattr(derived, key) and value != getattr(default, key):
                raise ConfigError(
                    f"{name}.{key} = {value!r}: set by {where} (here {getattr(derived, key)!r}); "
                    f"change it there, e.g. STORPUConfig(periphery=PeripheryConfig(...))")
        for key, value in given.__dict__.items():
            if key not in owned and value != getattr(default, key):
                setattr(derived, key, value)
        return derived

    def compatible_with(self, tile_class_name: str) -> bool:
        """Only STO tiles load STO checkpoints (stock aihwkit tiles: :class:`ConfigError`)."""
        if tile_class_name != self.tile_class.__name__:
            raise ConfigError(f"checkpoint tile class {tile_class_name!r}: an STO tile ({self.tile_class.__name__}) "
                              "loads only STORPUConfig checkpoints (stock aihwkit and STO tiles do not exchange "
                              "analog states)")
        return True
