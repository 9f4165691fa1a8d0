"""Digital costing: counted op kinds and memory traffic -> joules, and their ledger entries.

Each op kind of the table (:data:`~stoxbar.analysis.ops.OP_KINDS`) is costed with the periphery's
digital model (:class:`~stoxbar.peripherals.DigitalPeriphery`, Horowitz ISSCC 2014 energies at the
configured node) plus the memory traffic it needs: ``bits / 8`` bytes per value moved, at
Horowitz's 8 KB SRAM energy per 64-bit word (docs/library.md §3 lists the op table and its
assumptions).

May import: stoxbar.core.validation, stoxbar.analysis.ops.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

from stoxbar.analysis.ops import OP_KINDS, OpTally
from stoxbar.core.validation import ConfigError

__all__ = ["sram_energy_j", "digital_energy", "tally_entries", "book_tally"]

Entry = Tuple[str, str, str, str, float, float]  # (layer, tile, component, event, count, energy J)


def sram_energy_j(digital: Any, n_bytes: float) -> float:
    """Energy (J) of moving ``n_bytes`` through on-chip SRAM (Horowitz: 10 pJ per 64-bit word from 8 KB;
    assumption: a write costs what a read costs)."""
    return digital.memory_read_j(n_bytes, "sram")


def digital_energy(digital: Any, kind: str, elements: float, act_bits: int = 8) -> float:
    """Energy (J) of ``elements`` operations of kind ``kind`` (see :data:`OP_KINDS`) on ``digital``."""
    if kind not in OP_KINDS:
        raise ConfigError(f"digital op kind = {kind!r}: allowed kinds are {tuple(OP_KINDS)}")
    total = 0.0
    for op, width, per in OP_KINDS[kind]:
        bits = act_bits if width == "act" else (digital.accumulate_bits if width == "acc" else width)
        total += digital.energy_j(op, bits, elements * per)
    return total


def tally_entries(digital: Any, tally: Dict[str, OpTally], act_bits: int = 8, event: str = "forward") -> List[Entry]:
    """Counted digital ops as ledger entries (tile ``"digital"``, components ``digital_<kind>`` and
    ``sram``, the given ``event``), layers in the order the ops first ran."""
    bytes_per_value = math.ceil(act_bits / 8)
    out: List[Entry] = []
    for layer, t in tally.items():
        for kind, n in sorted(t.elements.items()):
            out.append((layer, "digital", f"digital_{kind}", event, n, digital_energy(digital, kind, n, act_bits)))
        if t.rows:
            out.append((layer, "digital", "digital_rsqrt", event, t.rows, digital.energy_j("rsqrt", 16, t.rows)))
        if t.values_moved:
            n_bytes = t.values_moved * bytes_per_value
            out.append((layer, "digital", "sram", event, n_bytes / 8.0, sram_energy_j(digital, n_bytes)))
    return out


def book_tally(ledger: Any, digital: Any, tally: Dict[str, OpTally], act_bits: int = 8, event: str = "forward") -> None:
    """Book :func:`tally_entries` in ``ledger``."""
    for entry in tally_entries(digital, tally, act_bits, event):
        ledger.add(*entry)
