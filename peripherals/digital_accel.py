"""A digital-accelerator baseline: what the same network costs on a small int8 SRAM datapath at the chip's node.

:class:`DigitalAccelSpec` says what the accelerator is (one sourced dataclass, like ``GPUSpec``);
:func:`accelerator_cost` turns a step's counted work into joules and seconds. The work comes from
the torch ops the network actually runs (the op counter of ``stoxbar.analysis``, which passes in
elements per op kind, the values those ops move and the values the accelerator must hold); the
energy per operation is the digital periphery's (:class:`~stoxbar.peripherals.DigitalPeriphery`,
Horowitz ISSCC 2014 at the configured node), so the baseline and the chip's own digital work are
priced by one model (docs/energy-model.md §9.1).

Model (docs/energy-model.md §9.1 lists the assumptions):

* **compute**: every counted op kind at ``mac_bits`` operands and ``acc_bits`` accumulators
  (a MAC = one ``mac_bits`` multiply + one ``acc_bits`` accumulate);
* **SRAM traffic (reuse model, ``reuse``)**: ``"per_op"`` (default, the upper bound): every operand
  of every op is read from SRAM once and every result written once (reuse inside an op -- a
  weight is read once per matmul, however many outputs use it -- but none across ops);
  ``"per_step"`` (the lower bound of a fully fused datapath): every held value is read once per
  step and the recurrent state written back once, intermediates stay in registers. At
  ``ceil(mac_bits / 8)`` bytes per value and Horowitz's 10 pJ per 64-bit word from 8 KB (a write
  costs what a read costs);
* **leakage**: ``sram_leak_w_per_bit`` x the bits held (weights and state at ``mac_bits``) x the
  step period; with ``power_gating`` the held SRAM sits at its retention voltage between steps
  (``retention_leak_factor`` of the leakage) and leaks in full only while it computes;
* **time**: ops / (``mac_units`` x ``clock_hz``).

May import: stoxbar.core.validation, stoxbar.peripherals.digital.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range
from stoxbar.peripherals.digital import DigitalPeriphery


REUSE_MODELS = ("per_op", "per_step")


@dataclass(frozen=True)
class DigitalAccelSpec:
    """A small digital accelerator for the baseline (docs/energy-model.md §9.1).

    Attributes:
        name: label.
        mac_bits: operand width of multiplies and of stored weights/state (bits), 2..32; 8 (int8, the
            usual inference datapath; assumption).
        acc_bits: accumulator width (bits), >= mac_bits; 32 (int8 x int8 products summed over
            thousands of inputs need > 16 bits; assumption).
        digital: the energy per operation and memory access (Horowitz ISSCC 2014, 45 nm; its
            ``tech_node_nm`` sets the node, the same as the chip's periphery by default).
        sram_leak_w_per_bit: SRAM leakage per stored bit (W), 10 pW: assumption for a 6T cell at
            45 nm at room temperature (a parameter: 1-20 pW/bit spans the low-leakage to the
            general-purpose cells); scaled with the node like every other energy.
        power_gating: hold the SRAM at its retention voltage between steps.
        retention_leak_factor: leakage at the retention voltage / full leakage, 0.1 (assumption:
            source biasing cuts SRAM leakage by ~85 % at 45 nm).
        mac_units: parallel MAC (op) units, 256 (assumption: a small edge accelerator).
        clock_hz: clock frequency, 1 GHz (assumption).
        reuse: SRAM reuse model, "per_op" | "per_step" (module docstring).
    """

    name: str = "int8 SRAM accelerator"
    mac_bits: int = 8
    acc_bits: int = 32
    digital: DigitalPeriphery = field(default_factory=DigitalPeriphery)
    sram_leak_w_per_bit: float = 10e-12
    power_gating: bool = False
    retention_leak_factor: float = 0.1
    mac_units: int = 256
    clock_hz: float = 1e9
    reuse: str = "per_op"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"digital_accel.name = {self.name!r}: must be a non-empty string")
        check_int("digital_accel.mac_bits", self.mac_bits, 2, 32)
        check_int("digital_accel.acc_bits", self.acc_bits, self.mac_bits, 64)
        if not isinstance(self.digital, DigitalPeriphery):
            raise ConfigError(f"digital_accel.digital = {self.digital!r}: must be a DigitalPeriphery")
        check_range("digital_accel.sram_leak_w_per_bit", self.sram_leak_w_per_bit, 0.0, 1e-6, unit="W")
        if not isinstance(self.power_gating, bool):
            raise ConfigError(f"digital_accel.power_gating = {self.power_gating!r}: must be True or False")
        check_range("digital_accel.retention_leak_factor", self.retention_leak_factor, 0.0, 1.0)
        check_int("digital_accel.mac_units", self.mac_units, 1, 10 ** 7)
        check_range("digital_accel.clock_hz", self.clock_hz, 0.0, 1e11, lo_open=True, unit="Hz")
        check_choice("digital_accel.reuse", self.reuse, REUSE_MODELS)

    @property
    def bytes_per_value(self) -> int:
        return math.ceil(self.mac_bits / 8)

    @property
    def leak_w_per_bit(self) -> float:
        """SRAM leakage per bit at the node (W), scaled like every digital energy."""
        return self.sram_leak_w_per_bit * self.digital.tech_factor


@dataclass(frozen=True)
class AccelCost:
    """One step on the accelerator: joules by part, seconds, and the work it did."""

    compute_j: float
    sram_j: float
    leakage_j: float
    time_s: float
    macs: float
    ops: float
    sram_bytes: float
    held_bits: float
    by_kind_j: Dict[str, float]

    @property
    def energy_j(self) -> float:
        return self.compute_j + self.sram_j + self.leakage_j

    def as_dict(self) -> Dict[str, object]:
        return {"energy_j": self.energy_j, "compute_j": self.compute_j, "sram_j": self.sram_j,
                "leakage_j": self.leakage_j, "time_s": self.time_s, "macs": self.macs, "ops": self.ops,
                "sram_bytes": self.sram_bytes, "held_bits": self.held_bits, "by_kind_j": dict(self.by_kind_j)}


def accelerator_cost(kind_j: Dict[str, float], elements: Dict[str, float], values_moved: float, held_values: float,
                     step_period_s: Optional[float], spec: DigitalAccelSpec, state_values: float = 0.0) -> AccelCost:
    """Cost of one step: ``kind_j`` (J per op kind at the spec's widths, priced by the caller's op
    table), ``elements`` (ops per kind; ``mac`` counts MACs), ``values_moved`` (operands read +
    results written), ``held_values`` (weights and state kept in SRAM), ``step_period_s`` (the real
    time between steps, over which the SRAM leaks; None: a one-off pass that leaks only while it computes),
    ``state_values`` (the recurrent state among the held values, written back once per step under
    ``reuse="per_step"``)."""
    check_range("values_moved", values_moved, 0.0, None)
    check_range("held_values", held_values, 0.0, None)
    check_range("state_values", state_values, 0.0, held_values)
    ops = math.fsum(elements.values())
    time_s = ops / (spec.mac_units * spec.clock_hz)
    if step_period_s is None:
        step_period_s = time_s
    check_range("step_period_s", step_period_s, 0.0, 3600.0, unit="s")
    traffic = values_moved if spec.reuse == "per_op" else held_values + state_values
    sram_bytes = traffic * spec.bytes_per_value
    held_bits = held_values * spec.mac_bits
    leak_w = held_bits * spec.leak_w_per_bit
    busy = min(time_s, step_period_s)
    idle_factor = spec.retention_leak_factor if spec.power_gating else 1.0
    leakage_j = leak_w * (busy + idle_factor * (step_period_s - busy))
    return AccelCost(compute_j=math.fsum(kind_j.values()), sram_j=spec.digital.memory_read_j(sram_bytes, "sram"),
                     leakage_j=leakage_j, time_s=time_s, macs=float(elements.get("mac", 0.0)), ops=ops,
                     sram_bytes=sram_bytes, held_bits=held_bits, by_kind_j=dict(kind_j))
