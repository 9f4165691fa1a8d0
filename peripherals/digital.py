"""Digital periphery: energy per operation by kind and bit width.

Source: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
45 nm, 0.9 V. Integer add 8 b 0.03 pJ, 32 b 0.1 pJ; integer mult 8 b 0.2 pJ, 32 b 3.1 pJ;
fp16 add 0.4 / mult 1.1 pJ; fp32 add 0.9 / mult 3.7 pJ; SRAM 64-bit read from 8 KB ~10 pJ;
DRAM 1.3-2.6 nJ per 64 bit (midpoint 1.95 nJ used).

Other integer widths: power law through Horowitz's two points, E(b) = E8 * (b/8)**k with
k = log(E32/E8)/log(4) (add: k = 0.87, ~linear; mult: k = 1.98, ~quadratic as an array multiplier).

Composite operations (documented op counts, all assumptions unless stated):

* shift_add, accumulate, compare: one add of the same width (shift by a fixed amount is wiring, as
  in ISAAC's S+A unit; cross-check: ISAAC S+A 0.05 mW at 1.2 GHz = 42 fJ/op at 32 nm, §2.5).
* tanh: piecewise-linear with ``tanh_segments`` segments: ceil(log2(segments)) compares to find the
  segment, then one mult + one add (slope * x + offset; coefficients from a small ROM, not costed).
* divide: Newton-Raphson reciprocal, table seed (~1 add) + 2 iterations of (2 mult + 1 add) + the
  final mult: 5 mult + 3 add.
* rsqrt: table seed (~1 add) + 2 iterations of y*(1.5 - 0.5*x*y*y) (3 mult + 1 add): 6 mult + 3 add.
* l2_normalise over n values: n mult (squares) + (n-1) add + 1 rsqrt + n mult (scaling).
* memory reads per byte: a 64-bit word read costs the SRAM (or DRAM) figure above; n bytes are
  n / 8 words (a partial word charged pro rata; assumption).

Technology scaling (optional): E * (tech_node_nm / 45)**tech_scaling_exponent; assumption:
exponent 1 (switched capacitance ~ feature size, supply held near 0.9 V); Stillmaker & Baas
(Integration 2017) report steeper scaling, so this is conservative below 45 nm.

May import: stoxbar.core.validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stoxbar.core.validation import check_choice, check_int, check_range

# Horowitz ISSCC 2014, 45 nm (J)
INT_ADD_J = {8: 0.03e-12, 32: 0.1e-12}
INT_MULT_J = {8: 0.2e-12, 32: 3.1e-12}
FP_ADD_J = {16: 0.4e-12, 32: 0.9e-12}
FP_MULT_J = {16: 1.1e-12, 32: 3.7e-12}
SRAM_READ_64B_8KB_J = 10e-12
DRAM_READ_64B_J = 1.95e-9  # midpoint of 1.3-2.6 nJ
REF_NODE_NM = 45.0

INT_OPS = ("add", "accumulate", "compare", "shift_add", "mult", "tanh", "divide", "rsqrt")
FP_OPS = ("fp_add", "fp_mult")
MEM_OPS = ("sram_read_64b", "dram_read_64b")
OPS = INT_OPS + FP_OPS + MEM_OPS


def _power_law(table: dict[int, float], bits: int) -> float:
    (b0, e0), (b1, e1) = sorted(table.items())
    k = math.log(e1 / e0) / math.log(b1 / b0)
    return e0 * (bits / b0) ** k


@dataclass(frozen=True)
class DigitalPeriphery:
    """Digital logic beside the arrays: generic operations (add, multiply, compare, ...) and memory reads.

    Attributes:
        tech_node_nm: technology node (nm), 3..180; Horowitz numbers hold at 45 nm.
        tech_scaling_exponent: E ~ (node/45)**exponent; 0 disables scaling.
        tanh_segments: PWL segments of the tanh unit, 2..1024.
        accumulate_bits: default width of partial-sum accumulators (bits).
    """

    tech_node_nm: float = REF_NODE_NM  # Horowitz's node: published numbers used as they are
    tech_scaling_exponent: float = 1.0  # assumption (module doc)
    tanh_segments: int = 16  # assumption
    accumulate_bits: int = 16  # assumption: 8-bit ADC words + headroom for tile sums and shifts

    def __post_init__(self) -> None:
        check_range("digital.tech_node_nm", self.tech_node_nm, 3.0, 180.0, unit="nm")
        check_range("digital.tech_scaling_exponent", self.tech_scaling_exponent, 0.0, 3.0)
        check_int("digital.tanh_segments", self.tanh_segments, 2, 1024)
        check_int("digital.accumulate_bits", self.accumulate_bits, 1, 64)

    @property
    def tech_factor(self) -> float:
        """Energy scale factor (node/45 nm)**exponent."""
        return (self.tech_node_nm / REF_NODE_NM) ** self.tech_scaling_exponent

    # ---- primitives (45 nm) ----------------------------------------------------------------
    @staticmethod
    def _add45(bits: int) -> float:
        return _power_law(INT_ADD_J, bits)

    @staticmethod
    def _mult45(bits: int) -> float:
        return _power_law(INT_MULT_J, bits)

    def _op45(self, op: str, bits: int) -> float:
        add, mult = self._add45, self._mult45
        if op in ("add", "accumulate", "compare", "shift_add"):
            return add(bits)
        if op == "mult":
            return mult(bits)
        if op == "tanh":
            return math.ceil(math.log2(self.tanh_segments)) * add(bits) + mult(bits) + add(bits)
        if op == "divide":
            return 5 * mult(bits) + 3 * add(bits)
        if op == "rsqrt":
            return 6 * mult(bits) + 3 * add(bits)
        if op in FP_OPS:
            table = FP_ADD_J if op == "fp_add" else FP_MULT_J
            return table[check_choice("bits", bits, tuple(table))]
        if op == "sram_read_64b":
            return SRAM_READ_64B_8KB_J
        return DRAM_READ_64B_J  # "dram_read_64b"

    # ---- public API --------------------------------------------------------------------------
    def energy_j(self, op: str, bits: int = 8, count: float = 1) -> float:
        """Energy (J) of ``count`` operations ``op`` at ``bits`` width (memory ops ignore bits).

        ``op`` is one of :data:`OPS`; fp ops accept bits 16 or 32.
        """
        check_choice("op", op, OPS)
        check_int("bits", bits, 1, 64)
        check_range("count", count, 0.0, None)
        return self._op45(op, bits) * self.tech_factor * count

    def accumulate_j(self, bits: int | None = None, count: float = 1) -> float:
        """Energy (J) of ``count`` partial-sum accumulations (default width ``accumulate_bits``)."""
        return self.energy_j("accumulate", self.accumulate_bits if bits is None else bits, count)

    def shift_add_j(self, bits: int | None = None, count: float = 1) -> float:
        """Energy (J) of ``count`` shift-and-adds (bit-serial input recombination)."""
        return self.energy_j("shift_add", self.accumulate_bits if bits is None else bits, count)

    def tanh_j(self, bits: int = 8, count: float = 1) -> float:
        """Energy (J) of ``count`` PWL tanh evaluations."""
        return self.energy_j("tanh", bits, count)

    def divide_j(self, bits: int = 16, count: float = 1) -> float:
        """Energy (J) of ``count`` Newton-Raphson divisions."""
        return self.energy_j("divide", bits, count)

    def l2_normalise_j(self, n: int, bits: int = 16, count: float = 1) -> float:
        """Energy (J) of ``count`` L2 normalisations of an ``n``-vector (op count in module doc)."""
        check_int("n", n, 1, None)
        per = (self.energy_j("mult", bits, 2 * n) + self.energy_j("add", bits, n - 1)
               + self.energy_j("rsqrt", bits))
        return per * check_range("count", count, 0.0, None)

    def memory_read_j(self, n_bytes: float, memory: str = "sram") -> float:
        """Energy (J) of reading ``n_bytes`` bytes from ``memory`` ("sram" | "dram"), 64-bit words."""
        check_choice("memory", memory, ("sram", "dram"))
        check_range("n_bytes", n_bytes, 0.0, None)
        return self.energy_j(f"{memory}_read_64b", 64, n_bytes / 8.0)
