"""Peripheral circuits of an STO crossbar: behaviour (aihwkit IO parameters) and
per-event energies (the one cost model that combines them is stoxbar.crossbar.costs).

May import: stoxbar.peripherals.
"""

from stoxbar.peripherals.adc import ADC
from stoxbar.peripherals.config import MAX_TILE, PeripheryConfig
from stoxbar.peripherals.dac import DAC, DAC_MODES
from stoxbar.peripherals.digital import DigitalPeriphery
from stoxbar.peripherals.drivers import BiasDriver, RowDriver, WriteDriver
from stoxbar.peripherals.gpu_baseline import (
    TIERS, GPUCost, GPUSpec, KernelOp, dense_layer_cost, roofline_cost, step_tiers, trace_kernels)
from stoxbar.peripherals.parasitics import Parasitics
from stoxbar.peripherals.sense import TIA, SampleHold
from stoxbar.peripherals.static import PowerGating, StaticPower

__all__ = [
    "DAC", "DAC_MODES", "ADC", "RowDriver", "WriteDriver", "BiasDriver", "TIA", "SampleHold",
    "DigitalPeriphery", "Parasitics", "PeripheryConfig", "MAX_TILE", "GPUSpec", "GPUCost", "roofline_cost", "dense_layer_cost",
    "TIERS", "KernelOp", "step_tiers", "trace_kernels", "StaticPower", "PowerGating",
]
