"""The report of one ``analyze`` run: :class:`AnalysisReport` and how it is built from the run's ledger.

Energy by layer, tile and component are views of the run's ledger. Latency is the sum over
layers of the analog busy time the ledger recorded, each layer's tiles in parallel
(:meth:`~stoxbar.crossbar.ledger.EnergyLedger.latency_s`, per layer and event; a decay interval is
waiting and programming is one-off, so neither counts; the digital work is assumed to overlap
with the next read and adds none). Area is the tiles' area from the periphery model
(:func:`tile_area_m2`, one call). Layers are listed in model order.

Per-MAC figures (docs/library.md §5): MACs = the arrays' (one per weight per input vector) + the
digital ones the op counter saw; energy per MAC = inference energy / MACs; TOPS/W = 2 x MACs /
inference energy; throughput = 1 / latency; TOPS/mm^2 = 2 x MACs x throughput / tile area.
Inference and programming are reported apart: a layer's ``share`` is its share of the inference
energy. The digital-accelerator baseline of the same work is
:func:`~stoxbar.analysis.digital_baseline.baseline_cost`.

May import: torch, stoxbar.crossbar, stoxbar.peripherals, stoxbar.analysis.{ops,digital_baseline}.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from stoxbar.analysis.digital_baseline import baseline_cost, tally_work
from stoxbar.analysis.ops import DigitalOpCounter
from stoxbar.crossbar import STOTileArray
from stoxbar.crossbar.costs import area
from stoxbar.peripherals import dense_layer_cost
from stoxbar.peripherals.digital_accel import DigitalAccelSpec

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
    analog_macs: float = 0.0
    digital_macs: float = 0.0
    digital_baseline: Optional[Dict[str, Any]] = None
    inference_by_tile: Dict[str, float] = field(default_factory=dict)
    inference_by_component: Dict[str, float] = field(default_factory=dict)

    @property
    def inference_j(self) -> float:
        """Energy of the forward pass alone (total minus programming), J."""
        return self.total_j - self.programming_j

    @property
    def macs(self) -> float:
        """Multiply-accumulates of the forward pass: on the arrays and on the digital periphery."""
        return self.analog_macs + self.digital_macs

    @property
    def energy_per_mac_j(self) -> Optional[float]:
        return self.inference_j / self.macs if self.macs > 0 else None

    @property
    def tops_per_w(self) -> Optional[float]:
        """Tera-operations (2 per MAC) per joule of inference."""
        return 2.0 * self.macs / self.inference_j / 1e12 if self.inference_j > 0 and self.macs > 0 else None

    @property
    def throughput_per_s(self) -> Optional[float]:
        """Forward passes (of the example input, its whole batch) per second, 1 / latency."""
        return 1.0 / self.latency_s if self.latency_s > 0 else None

    @property
    def tops_per_mm2(self) -> Optional[float]:
        """Tera-operations per second per mm^2 of tiles."""
        t = self.throughput_per_s
        return 2.0 * self.macs * t / (self.area_m2 * 1e6) / 1e12 if t and self.area_m2 > 0 else None

    def figures(self) -> Dict[str, Any]:
        """The per-MAC figures (module docstring), None where undefined."""
        return {"macs": self.macs, "analog_macs": self.analog_macs, "digital_macs": self.digital_macs,
                "energy_per_mac_j": self.energy_per_mac_j, "tops_per_w": self.tops_per_w,
                "tops_per_mm2": self.tops_per_mm2, "throughput_per_s": self.throughput_per_s}

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready view (plain floats, strings, lists)."""
        out = {
            "total_j": self.total_j, "inference_j": self.inference_j, "programming_j": self.programming_j,
            "latency_s": self.latency_s, "area_m2": self.area_m2, "by_layer": dict(self.by_layer),
            "by_tile": dict(self.by_tile), "by_component": dict(self.by_component),
            "layers": {k: dict(v) for k, v in self.layers.items()}, "digital_ops": dict(self.digital_ops),
            "input_shape": list(self.input_shape), "assumed_ops": dict(self.uncosted_ops), **self.figures(),
        }
        out["inference_by_tile"] = dict(self.inference_by_tile)
        out["inference_by_component"] = dict(self.inference_by_component)
        if self.digital_baseline is not None:
            out["digital_baseline"] = dict(self.digital_baseline)
        if self.gpu_j is not None:
            out["gpu_j"] = self.gpu_j
        if self.ledger is not None:
            out["ledger"] = self.ledger.to_dict()
        return out

    def table(self) -> str:
        """Human-readable tables: the per-MAC figures, per layer (inference), programming, per tile, per component
        (shares of the inference energy; programming is its own section)."""
        inf = self.inference_j
        share = (lambda j: 100.0 * j / inf) if inf > 0 else (lambda j: 0.0)
        fmt = lambda v, f=1.0: "n/a" if v is None else f"{v * f:.4g}"  # noqa: E731
        lines = [f"input {list(self.input_shape)}: inference {inf:.4g} J, latency {self.latency_s * 1e9:.4g} ns, "
                 f"area {self.area_m2 * 1e6:.4g} mm^2; programming {self.programming_j:.4g} J (one-off, below)",
                 f"MACs {self.macs:.6g} ({self.analog_macs:.6g} on tiles, {self.digital_macs:.6g} digital); "
                 f"{fmt(self.energy_per_mac_j, 1e12)} pJ/MAC, {fmt(self.tops_per_w)} TOPS/W, "
                 f"{fmt(self.tops_per_mm2)} TOPS/mm^2, {fmt(self.throughput_per_s)} forward passes/s"]
        if self.gpu_j is not None:
            lines.append(f"GPU baseline of the same forward: {self.gpu_j:.4g} J")
        if self.digital_baseline is not None:
            d = self.digital_baseline
            lines.append(f"digital accelerator of the same forward ({d['accelerator']}, int{d['mac_bits']}): "
                         f"{d['energy_j']:.4g} J = compute {d['compute_j']:.3g} + SRAM {d['sram_j']:.3g} + leakage "
                         f"{d['leakage_j']:.3g} J ({d['energy_j'] / inf:.3g}x the inference energy)" if inf > 0 else
                         f"digital accelerator of the same forward: {d['energy_j']:.4g} J")
        lines.append(f"  {'layer':<14}{'module':<16}{'kind':<9}{'tiles':>6}{'MACs':>11}{'inference (J)':>15}{'share':>8}"
                     f"{'latency (ns)':>14}")
        for name, info in self.layers.items():
            lines.append(f"  {name:<14}{info['module'][:15]:<16}{info['kind']:<9}{info['tiles']:>6}{info['macs']:>11.4g}"
                         f"{info['inference_j']:>15.4g}{100 * info['share']:>7.1f}%{info['latency_s'] * 1e9:>14.4g}")
        if self.programming_j > 0:
            lines.append(f"  {'programming':<31}{'energy (J)':>14}")
            for name, info in self.layers.items():
                if info["programming_j"] > 0:
                    lines.append(f"  {name:<31}{info['programming_j']:>14.4g}")
        lines.append(f"  {'tile (inference)':<31}{'energy (J)':>14}{'share':>8}")
        for name, j in self.inference_by_tile.items():
            lines.append(f"  {name:<31}{j:>14.4g}{share(j):>7.1f}%")
        lines.append(f"  {'component (inference)':<31}{'energy (J)':>14}{'share':>8}")
        for name, j in sorted(self.inference_by_component.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<31}{j:>14.4g}{share(j):>7.1f}%")
        for name, info in self.layers.items():
            w = info.get("wires")
            if w:
                worst = max(w["ir_drop_rel_error_per_tile"].items(), key=lambda kv: kv[1])
                text = (f"  wires of {name} ({w['mode']}): MVM error of the wires alone {100 * w['ir_drop_rel_error']:.3g} %, "
                        f"worst tile {worst[0]} {100 * worst[1]:.3g} %")
                if "bias_wire_drop_max_v_per_tile" in w:
                    drop = max(w["bias_wire_drop_max_v_per_tile"].items(), key=lambda kv: kv[1])
                    tau = max(w["bias_tau_rel_error_max_per_tile"].values())
                    text += f"; held bias drops up to {1e3 * drop[1]:.3g} mV (tile {drop[0]}), tau off up to {100 * tau:.3g} %"
                lines.append(text)
        if self.uncosted_ops:
            lines.append("  ops not in the digital table (costed as one add per output): "
                         + ", ".join(f"{k} x{v}" for k, v in sorted(self.uncosted_ops.items())))
        return "\n".join(lines)


def _tiles(module: nn.Module) -> int:
    return len(module.in_sizes) * len(module.out_sizes) if isinstance(module, STOTileArray) else 1


def build_report(ledger: Any, layers: Sequence[Tuple[str, nn.Module]], periphery: Dict[str, Any],
                 counter: DigitalOpCounter, input_shape: Tuple[int, ...], gpu: Any, calls: Dict[str, List[int]],
                 kinds: Dict[str, str], held_digital: float = 0.0, accel: Any = None,
                 dt_s: Optional[float] = None) -> AnalysisReport:
    """The :class:`AnalysisReport` of a run's ``ledger`` (see module docstring).

    ``layers``: (layer name, STO module); ``kinds``: layer name -> module class name, in model
    order; ``calls``: per STO layer [input vectors, array MACs] (:class:`~stoxbar.analysis.ops.OpWatch`);
    ``held_digital``: parameters outside the tiles (for the digital baseline's SRAM); ``accel``: a
    ``DigitalAccelSpec`` (default one); ``dt_s``: the step period the baseline's SRAM leaks over
    (None: only while it computes).
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
    prog_tile = {f"{k[0]}/{k[1]}": e.energy_j for k, e in ledger.totals(("layer", "tile"), event="program").items()}
    prog_comp = {k[0]: e.energy_j for k, e in ledger.totals(("component",), event="program").items()}
    inference_by_tile = {k: j - prog_tile.get(k, 0.0) for k, j in by_tile.items()}
    inference_by_component = {k: j - prog_comp.get(k, 0.0) for k, j in by_component.items()
                              if k not in prog_comp or j - prog_comp[k] > 1e-12 * j}  # programming-only ones out
    inference_total = ledger.total_j - math.fsum(programmed.values())
    analog = dict(layers)
    info: Dict[str, Dict[str, Any]] = {}
    for name in by_layer:
        m = analog.get(name)
        tiles = 0 if m is None else _tiles(m)
        info[name] = {"kind": "analog" if m is not None else "digital", "module": kinds.get(name, ""),
                      "tiles": tiles, "area_m2": tiles * tile_area_m2(periphery[name]) if m is not None else 0.0,
                      "energy_j": by_layer[name], "latency_s": layer_time[name],
                      "programming_j": programmed.get(name, 0.0),
                      "inference_j": by_layer[name] - programmed.get(name, 0.0),
                      "share": (by_layer[name] - programmed.get(name, 0.0)) / inference_total if inference_total > 0
                      else 0.0,
                      "macs": (calls[name][1] if name in calls else 0)
                      + (counter.tally[name].elements.get("mac", 0.0) if name in counter.tally else 0.0),
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
    accel = DigitalAccelSpec() if accel is None else accel
    analog_macs = float(sum(c[1] for c in calls.values()))
    elements, moved, rows = tally_work(counter.tally.values())
    weights_moved = 0.0  # the arrays' work on the accelerator: weights once per call, inputs and outputs once
    for name, m in layers:
        n_in, n_out = (m.in_size, m.out_size) if isinstance(m, STOTileArray) else (m.tile.x_size, m.tile.d_size)
        if name in calls and calls[name][0]:
            weights_moved += n_in * n_out + calls[name][0] * (n_in + n_out)
    elements["mac"] = elements.get("mac", 0.0) + analog_macs
    base = baseline_cost(elements, moved + weights_moved, held_digital + sum(
        (m.in_size * m.out_size if isinstance(m, STOTileArray) else m.tile.x_size * m.tile.d_size) for _, m in layers),
        dt_s, accel, rows)
    baseline = dict(base.as_dict(), accelerator=accel.name, mac_bits=accel.mac_bits)
    return AnalysisReport(
        total_j=ledger.total_j, latency_s=math.fsum(layer_time.values()),
        area_m2=math.fsum(v["area_m2"] for v in info.values()),
        programming_j=math.fsum(programmed.values()), by_layer=by_layer, by_tile=by_tile,
        by_component=by_component, layers=info, digital_ops=dict(digital_ops), input_shape=input_shape,
        uncosted_ops=dict(counter.unknown), ledger=ledger, gpu_j=gpu_j, analog_macs=analog_macs,
        digital_macs=float(digital_ops.get("mac", 0.0)), digital_baseline=baseline,
        inference_by_tile=inference_by_tile, inference_by_component=inference_by_component)
