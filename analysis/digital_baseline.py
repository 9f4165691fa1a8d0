"""The digital-accelerator baseline of counted work: op counter tallies -> :class:`~stoxbar.peripherals.digital_accel.AccelCost`.

The accelerator runs the whole network digitally: the op kinds the counter saw (its MACs, adds,
nonlinearities, ...) plus, for the layers that sit on tiles, the MACs the arrays did (one MAC per
weight per input vector, the weights read once per call and every input and output moved once).
Each kind is priced by the digital op table (:func:`~stoxbar.analysis.digital_cost.digital_energy`)
at the accelerator's widths, so the baseline and the chip's own digital work share one cost model.

May import: stoxbar.core.validation, stoxbar.peripherals, stoxbar.analysis.{ops,digital_cost}.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Dict, Iterable, Optional, Tuple

from stoxbar.analysis.digital_cost import digital_energy
from stoxbar.analysis.ops import OpTally
from stoxbar.peripherals.digital_accel import AccelCost, DigitalAccelSpec, accelerator_cost

__all__ = ["tally_work", "baseline_cost"]


def tally_work(tallies: Iterable[OpTally]) -> Tuple[Dict[str, float], float, float]:
    """(elements per op kind, values moved, layer-norm rows) summed over ``tallies``."""
    elements: Dict[str, float] = defaultdict(float)
    moved = rows = 0.0
    for t in tallies:
        for kind, n in t.elements.items():
            elements[kind] += n
        moved += t.values_moved
        rows += t.rows
    return dict(elements), moved, rows


def baseline_cost(elements: Dict[str, float], values_moved: float, held_values: float, step_period_s: Optional[float],
                  spec: Optional[DigitalAccelSpec] = None, rows: float = 0.0, state_values: float = 0.0) -> AccelCost:
    """The accelerator's cost of one step of counted work (module docstring); ``rows``: layer-norm
    rows, one 16-bit rsqrt each (as in the chip's digital costing); ``state_values``: the recurrent state
    among the held values."""
    spec = DigitalAccelSpec() if spec is None else spec
    digital = replace(spec.digital, accumulate_bits=spec.acc_bits)
    kind_j = {kind: digital_energy(digital, kind, n, spec.mac_bits) for kind, n in sorted(elements.items()) if n}
    if rows:
        kind_j["rsqrt"] = kind_j.get("rsqrt", 0.0) + digital.energy_j("rsqrt", 16, rows)
    return accelerator_cost(kind_j, elements, values_moved, held_values, step_period_s, spec, state_values)
