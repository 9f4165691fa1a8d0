"""Peripheral circuits of an STO crossbar: behaviour (aihwkit IO parameters) and cost."""

from stoxbar.peripherals.adc import ADC
from stoxbar.peripherals.config import (
    MAX_TILE, PeripheryConfig, event_costs, event_counts, mvm_latency_s, tile_area_m2)
from stoxbar.peripherals.dac import DAC, DAC_MODES
from stoxbar.peripherals.digital import DigitalPeriphery
from stoxbar.peripherals.drivers import BiasDriver, RowDriver, WriteDriver
from stoxbar.peripherals.gpu_baseline import (
    TIERS, GPUCost, GPUSpec, KernelOp, dense_layer_cost, step_tiers, stpn_step_cost, trace_kernels)
from stoxbar.peripherals.sense import TIA, SampleHold

__all__ = [
    "DAC", "DAC_MODES", "ADC", "RowDriver", "WriteDriver", "BiasDriver", "TIA", "SampleHold",
    "DigitalPeriphery", "PeripheryConfig", "MAX_TILE", "event_counts", "event_costs", "mvm_latency_s",
    "tile_area_m2", "GPUSpec", "GPUCost", "stpn_step_cost", "dense_layer_cost", "TIERS", "KernelOp",
    "step_tiers", "trace_kernels",
]
