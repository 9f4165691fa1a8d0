"""The report of one ``analyze`` run: :class:`AnalysisReport` and how it is built from the run's ledger.

Energy by layer, tile and component are views of the run's ledger. Latency is the sum over
layers of the analog busy time the ledger recorded, each layer's tiles in parallel
(:meth:`~stoxbar.crossbar.ledger.EnergyLedger.latency_s`, per layer and event; a decay interval is
waiting and programming is one-off, so neither counts; the digital work is assumed to overlap
with the next read and adds none). Area is the tiles' area from the periphery model
(:func:`tile_area_m2`, one call). Layers are listed in model order.

May import: torch, stoxbar.crossbar, stoxbar.peripherals, stoxbar.analysis.ops.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from stoxbar.analysis.ops import DigitalOpCounter
from stoxbar.crossbar import STOTileArray
from stoxbar.crossbar.costs import area
from stoxbar.peripherals import dense_layer_cost

__all__ = ["AnalysisReport", "tile_area_m2", "build_report"]

_NOT_LATENCY = ("decay", "program")  # a decay interval is waiting, programming is one-off


def tile_area_m2(periphery: Any) -> float:
    """Area (m^2) of one tile with its periphery, from the crossbar's one cost model (``crossbar.costs.area``)."""
    return area(1, periphery)["total"]


@dataclass
class AnalysisReport:
    """Energy (J), latency (s) and area (m^2) of one forward pass on the chip, with breakdowns."""

    total_j: float
    latency_s: float
    area_m2: float
    programming_j: float
    by_layer: Dict[str, float]
    by_tile: Dict[str, float]
    by_component: Dict[str, float]
    layers: Dict[str, Dict[str, Any]]
    digital_ops: Dict[str, float]
    input_shape: Tuple[int, ...]
    uncosted_ops: Dict[str, int]
    ledger: Any = field(repr=False, default=None)
    gpu_j: Optional[float] = None

    @property
    def inference_j(self) -> float:
        """Energy of the forward pass alone (total minus programming), J."""
        return self.total_j - self.programming_j

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready view (plain floats, strings, lists)."""
        out = {
            "total_j": self.total_j, "inference_j": self.inference_j, "programming_j": self.programming_j,
            "latency_s": self.latency_s, "area_m2": self.area_m2, "by_layer": dict(self.by_layer),
            "by_tile": dict(self.by_tile), "by_component": dict(self.by_component),
            "layers": {k: dict(v) for k, v in self.layers.items()}, "digital_ops": dict(self.digital_ops),
            "input_shape": list(self.input_shape), "assumed_ops": dict(self.uncosted_ops),
        }
        if self.gpu_j is not None:
            out["gpu_j"] = self.gpu_j
        if self.ledger is not None:
            out["ledger"] = self.ledger.to_dict()
        return out

    def table(self) -> str:
        """Human-readable tables: per layer, per tile, per component."""
        tot = self.total_j
        share = (lambda j: 100.0 * j / tot) if tot > 0 else (lambda j: 0.0)
        lines = [f"input {list(self.input_shape)}: {tot:.4g} J in total ({self.inference_j:.4g} J forward, "
                 f"{self.programming_j:.4g} J programming), latency {self.latency_s * 1e9:.4g} ns, "
                 f"area {self.area_m2 * 1e6:.4g} mm^2"]
        if self.gpu_j is not None:
            lines.append(f"GPU baseline of the same forward: {self.gpu_j:.4g} J")
        lines.append(f"  {'layer':<14}{'module':<16}{'kind':<9}{'tiles':>6}{'energy (J)':>13}{'share':>8}"
                     f"{'latency (ns)':>14}")
        for name, info in self.layers.items():
            lines.append(f"  {name:<14}{info['module'][:15]:<16}{info['kind']:<9}{info['tiles']:>6}{info['energy_j']:>13.4g}"
                         f"{share(info['energy_j']):>7.1f}%{info['latency_s'] * 1e9:>14.4g}")
        lines.append(f"  {'tile':<31}{'energy (J)':>14}{'share':>8}")
        for name, j in self.by_tile.items():
            lines.append(f"  {name:<31}{j:>14.4g}{share(j):>7.1f}%")
        lines.append(f"  {'component':<31}{'energy (J)':>14}{'share':>8}")
        for name, j in sorted(self.by_component.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<31}{j:>14.4g}{share(j):>7.1f}%")
        if self.uncosted_ops:
            lines.append("  ops not in the digital table (costed as one add per output): "
                         + ", ".join(f"{k} x{v}" for k, v in sorted(self.uncosted_ops.items())))
        return "\n".join(lines)


def _tiles(module: nn.Module) -> int:
    return len(module.in_sizes) * len(module.out_sizes) if isinstance(module, STOTileArray) else 1


def build_report(ledger: Any, layers: Sequence[Tuple[str, nn.Module]], periphery: Dict[str, Any],
                 counter: DigitalOpCounter, input_shape: Tuple[int, ...], gpu: Any, calls: Dict[str, List[int]],
                 kinds: Dict[str, str]) -> AnalysisReport:
    """The :class:`AnalysisReport` of a run's ``ledger`` (see module docstring).

    ``layers``: (layer name, STO module); ``kinds``: layer name -> module class name, in model
    order; ``calls``: per STO layer [input vectors, array MACs] (:class:`~stoxbar.analysis.ops.OpWatch`).
    """
    order = {name: k for k, name in enumerate(kinds)}
    rank = lambda name: (order.get(name, len(order)), name)  # noqa: E731 - model order, then unknown ones by name
    per_layer = ledger.totals(("layer",))
    by_layer = {name: per_layer[(name,)].energy_j for name in sorted((k[0] for k in per_layer), key=rank)}
    events: Dict[str, List[str]] = defaultdict(list)
    for layer, event in ledger.totals(("layer", "event")):
        if event not in _NOT_LATENCY:
            events[layer].append(event)
    layer_time = {name: math.fsum(ledger.latency_s(layer=name, event=ev) for ev in events[name]) for name in by_layer}
    programmed = {k[0]: e.energy_j for k, e in ledger.totals(("layer",), event="program").items()}
    by_tile = {f"{layer}/{tile}": e.energy_j for (layer, tile), e in
               sorted(ledger.totals(("layer", "tile")).items(), key=lambda kv: (rank(kv[0][0]), kv[0][1]))
               if tile != "digital"}
    by_component = {k[0]: e.energy_j for k, e in sorted(ledger.totals(("component",)).items())}
    analog = dict(layers)
    info: Dict[str, Dict[str, Any]] = {}
    for name in by_layer:
        m = analog.get(name)
        tiles = 0 if m is None else _tiles(m)
        info[name] = {"kind": "analog" if m is not None else "digital", "module": kinds.get(name, ""),
                      "tiles": tiles, "area_m2": tiles * tile_area_m2(periphery[name]) if m is not None else 0.0,
                      "energy_j": by_layer[name], "latency_s": layer_time[name],
                      "programming_j": programmed.get(name, 0.0),
                      "input_vectors": calls[name][0] if name in calls else 0}
    digital_ops: Dict[str, float] = defaultdict(float)
    for t in counter.tally.values():
        for kind, n in t.elements.items():
            digital_ops[kind] += n
    gpu_j = None
    if gpu is not None:
        macs = sum(c[1] for c in calls.values()) + digital_ops.get("mac", 0.0)
        weights = sum(m.in_size * m.out_size if isinstance(m, STOTileArray)
                      else m.tile.x_size * m.tile.d_size for _, m in layers)
        gpu_j = dense_layer_cost(1, 1, 1, "fp32", gpu, flops=2.0 * macs, weight_bytes=4.0 * weights,
                                 label="analyzed model").energy_j
    return AnalysisReport(
        total_j=ledger.total_j, latency_s=math.fsum(layer_time.values()),
        area_m2=math.fsum(v["area_m2"] for v in info.values()),
        programming_j=math.fsum(programmed.values()), by_layer=by_layer, by_tile=by_tile,
        by_component=by_component, layers=info, digital_ops=dict(digital_ops), input_shape=input_shape,
        uncosted_ops=dict(counter.unknown), ledger=ledger, gpu_j=gpu_j)
