"""``analyze(model, example_input)``: energy, latency and area of any torch model on STO tiles.

What it is for: a user's own network (an MLP, a CNN, a recurrent cell) runs once on the simulated
chip and comes back as an :class:`AnalysisReport` -- total energy (J), latency (s), area (m^2) and
breakdowns by layer, by tile (``"layer/i.j"``) and by component. Two sources feed one ledger:

* the **analog layers** (aihwkit layers on :class:`~stoxbar.crossbar.STORPUConfig`) book their
  own physical events (DAC, row drivers, cell reads, ADC, sense, partial sums, programming) through
  the crossbar's cost model (:mod:`stoxbar.crossbar.costs`); nothing of their inner work is
  counted again here;
* the **digital work outside the arrays** (activations, pooling, bias adds, output scales,
  normalisation, softmax, elementwise ops, im2col copies, any digital matmul left unconverted) is
  counted from the torch (aten) ops the forward pass actually executes, seen with a
  ``TorchDispatchMode``; matmul/conv MACs come from ``torch.utils.flop_counter``'s formulas. Each
  op is costed with the periphery's digital model (:class:`~stoxbar.peripherals.DigitalPeriphery`,
  Horowitz ISSCC 2014 energies at the configured node) plus the memory traffic it needs: every
  input read and every output written, ``bits / 8`` bytes per value, at Horowitz's 8 KB SRAM
  energy per 64-bit word (docs/library.md §3 lists the op table and its assumptions).

Programming energy: the conductances the layers hold are booked as the write-verify pulses that
program them from reset (``g_min``), per tile, unless the ledger already holds programming events
of that layer; programming history the tiles keep pending is left to the user's ledger
(docs/library.md §4).

Latency is the sum over layers of the analog busy time the ledger recorded, the busiest tile of
each layer (tiles of a layer run in parallel, layers one after another; the digital work is
assumed to overlap with the next read and adds none). Area is the
tiles' area from the periphery model (:func:`tile_area_m2`, one call).

May import: torch, aihwkit, ``stoxbar.validation``, ``stoxbar.devices``, ``stoxbar.peripherals``,
``stoxbar.crossbar``. Used by ``stoxbar energy --model``, the studies' task entry points, the Pong
energy boundaries (:mod:`stoxbar.pong.accounting`) and ``examples/``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from stoxbar.validation import ConfigError

__all__ = ["analyze", "AnalysisReport", "DigitalOpCounter", "digital_energy", "sram_energy_j",
           "tile_area_m2", "load_entry_point", "OP_KINDS"]

aten = torch.ops.aten

# -- the digital op table ---------------------------------------------------------------------------
# kind -> list of (DigitalPeriphery op, width: "act" (activation bits) | "acc" (accumulator bits)
#                  | int, operations per counted element)
OP_KINDS: Dict[str, Tuple[Tuple[str, str | int, float], ...]] = {
    "mac": (("mult", "act", 1), ("accumulate", "acc", 1)),
    "add": (("add", "acc", 1),),
    "mult": (("mult", "act", 1),),
    "divide": (("divide", 16, 1),),
    "compare": (("compare", "act", 1),),
    "nonlinear": (("tanh", "act", 1),),          # PWL unit (tanh, sigmoid, exp, log, gelu, ...)
    "rsqrt": (("rsqrt", 16, 1),),
    "softmax": (("tanh", "act", 1), ("add", "acc", 1), ("divide", 16, 1)),  # exp, sum, divide
    "affine": (("mult", "act", 1), ("add", "acc", 1)),                       # folded scale + shift
    "layer_norm": (("add", "acc", 3), ("mult", "act", 3)),                  # + one rsqrt per row
    "memory": (),                                                           # copies: traffic only
}
# op -> kind, counted per output element unless handled in DigitalOpCounter._count
_ELEMENTWISE = {
    "add": "add", "sub": "add", "rsub": "add", "neg": "add", "abs": "compare", "sign": "compare",
    "mul": "mult", "square": "mult", "pow": "mult", "reciprocal": "divide", "div": "divide",
    "relu": "compare", "threshold": "compare", "clamp": "compare", "clamp_min": "compare",
    "clamp_max": "compare", "hardtanh": "compare", "maximum": "compare", "minimum": "compare",
    "where": "compare", "gt": "compare", "lt": "compare", "ge": "compare", "le": "compare",
    "eq": "compare", "ne": "compare", "round": "compare", "floor": "compare", "ceil": "compare",
    "leaky_relu": "affine", "hardswish": "affine", "hardsigmoid": "affine", "lerp": "affine",
    "addcmul": "affine", "addcdiv": "affine",
    "tanh": "nonlinear", "sigmoid": "nonlinear", "exp": "nonlinear", "log": "nonlinear",
    "gelu": "nonlinear", "silu": "nonlinear", "elu": "nonlinear", "softplus": "nonlinear",
    "mish": "nonlinear", "erf": "nonlinear", "log1p": "nonlinear", "expm1": "nonlinear",
    "sqrt": "rsqrt", "rsqrt": "rsqrt",
}
_REDUCTIONS = {"sum": "add", "mean": "add", "amax": "compare", "amin": "compare", "max": "compare",
               "min": "compare", "argmax": "compare", "argmin": "compare", "norm": "affine",
               "linalg_vector_norm": "affine", "prod": "mult", "var": "affine", "std": "affine"}
_COPIES = {"clone", "contiguous", "_to_copy", "copy", "copy_", "cat", "stack", "im2col", "col2im",
           "constant_pad_nd", "index_select", "gather", "repeat", "index", "scatter", "masked_fill",
           "fill", "fill_", "zero", "zero_", "flip", "roll", "embedding", "unfold_copy"}
_FREE = {"view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "squeeze", "unsqueeze",
         "flatten", "slice", "select", "as_strided", "detach", "alias", "lift_fresh", "empty", "empty_like",
         "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "ones", "ones_like",
         "full", "full_like", "new_zeros", "new_ones", "new_full", "scalar_tensor", "_local_scalar_dense",
         "split", "split_with_sizes", "unbind", "chunk", "narrow", "unfold", "sym_size", "sym_stride",
         "is_nonzero", "item", "_reshape_alias", "view_as", "expand_as", "resize_", "set_", "arange",
         "dropout", "native_dropout", "_has_compatible_shallow_copy_type", "lift", "movedim", "numpy_T",
         "randn", "rand", "normal", "uniform_", "normal_", "bernoulli_", "_assert_tensor_metadata",
         "randint", "manual_seed", "align_tensors", "result_type", "unsqueeze_", "squeeze_", "t_",
         "transpose_", "detach_", "_conj", "conj", "resolve_conj", "resolve_neg", "_neg_view"}
_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "convolution", "_convolution", "_slow_conv2d_forward"}


def _tensors(obj: Any) -> Iterable[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _numel(obj: Any) -> int:
    return sum(t.numel() for t in _tensors(obj))


@dataclass
class OpTally:
    """What the digital ops of one layer did: elements per kind, values moved, op names seen."""

    elements: Dict[str, float] = field(default_factory=lambda: defaultdict(float))
    values_moved: float = 0.0
    rows: float = 0.0  # layer-norm rows (one rsqrt each)
    ops: Dict[str, int] = field(default_factory=lambda: defaultdict(int))


class DigitalOpCounter(TorchDispatchMode):
    """Counts the aten ops executed outside the analog tiles, per layer (module path).

    ``inside_analog`` (a depth counter) is raised by the analog layers' forward hooks: their inner
    ops are the tile's own work, booked by the crossbar's cost model. ``layer_stack`` holds the
    module paths of the modules being run; an op belongs to the innermost one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inside_analog = 0
        self.layer_stack: List[str] = ["model"]
        self.tally: Dict[str, OpTally] = defaultdict(OpTally)
        self.unknown: Dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.inside_analog:
            self._count(func, args, kwargs, out)
        return out

    def count(self, layer: str, kind: str, elements: float, values_moved: float = 0.0, op: str = "") -> None:
        """Book ``elements`` of op kind ``kind`` and ``values_moved`` memory values on ``layer``."""
        t = self.tally[layer]
        if elements:
            t.elements[kind] += elements
        t.values_moved += values_moved
        if op:
            t.ops[op] += 1

    def _count(self, func, args, kwargs, out) -> None:
        name = func.overloadpacket.__name__
        base = name[:-1] if name.endswith("_") and name not in ("copy_", "fill_", "zero_") else name
        if base in _FREE or name in _FREE:
            return
        layer = self.layer_stack[-1]
        n_out = _numel(out)
        moved = _numel(args) + _numel(kwargs) + n_out
        if base in _MATMUL:
            packet = func.overloadpacket
            if packet in flop_registry:
                flops = flop_registry[packet](*args, **kwargs, out_val=out)
            else:  # pragma: no cover - every _MATMUL op has a flop formula in torch >= 2.1
                flops = 0
            self.count(layer, "mac", flops / 2, moved, name)
            if base in ("addmm", "baddbmm") or (base.endswith("convolution") and len(args) > 2
                                                  and isinstance(args[2], Tensor)):
                self.count(layer, "add", n_out)  # the bias add
            return
        if base in ("_softmax", "softmax", "_log_softmax", "log_softmax"):
            self.count(layer, "softmax", n_out, moved, name)
            return
        if base in ("max_pool2d_with_indices", "max_pool2d", "max_pool1d", "max_pool3d_with_indices",
                    "avg_pool2d", "avg_pool1d", "avg_pool3d"):
            k = args[1] if len(args) > 1 else kwargs.get("kernel_size")
            k = [k] if isinstance(k, int) else list(k)
            dims = 1 if "1d" in base else 3 if "3d" in base else 2
            window = math.prod(k) if len(k) > 1 else k[0] ** dims
            first = next(_tensors(out))
            kind = "compare" if base.startswith("max") else "add"
            self.count(layer, kind, first.numel() * max(window - 1, 0), moved, name)
            if kind == "add":
                self.count(layer, "mult", first.numel())
            return
        if base in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_avg_pool1d"):
            self.count(layer, "add", _numel(args[0]), moved, name)
            self.count(layer, "mult", n_out)
            return
        if base in ("adaptive_max_pool2d", "adaptive_max_pool1d"):
            self.count(layer, "compare", _numel(args[0]), moved, name)
            return
        if base in ("_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
                    "batch_norm", "instance_norm", "native_group_norm", "group_norm"):
            self.count(layer, "affine", _numel(args[0]), moved, name)
            return
        if base in ("native_layer_norm", "layer_norm", "rms_norm", "_fused_rms_norm"):
            x = args[0]
            shape = args[1] if len(args) > 1 else kwargs.get("normalized_shape", [x.shape[-1]])
            rows = x.numel() / max(math.prod(shape), 1)
            self.count(layer, "layer_norm", x.numel(), moved, name)
            self.tally[layer].rows += rows
            return
        if base in _REDUCTIONS:
            self.count(layer, _REDUCTIONS[base], _numel(args[0]), moved, name)
            if base == "mean":
                self.count(layer, "mult", n_out)
            return
        if base in _ELEMENTWISE:
            self.count(layer, _ELEMENTWISE[base], n_out, moved, name)
            return
        if base in _COPIES or name in _COPIES:
            self.count(layer, "memory", 0, moved, name)
            return
        # not in the table: costed as one add per output element, and listed in the report
        self.unknown[name] += 1
        self.count(layer, "add", n_out, moved, name)


# -- costing ------------------------------------------------------------------------------------------
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


def book_tally(ledger: Any, digital: Any, tally: Dict[str, OpTally], act_bits: int = 8) -> None:
    """Turn counted digital ops into ledger entries (tile ``"digital"``, component ``digital_<kind>``
    and ``sram``)."""
    bytes_per_value = math.ceil(act_bits / 8)
    for layer, t in sorted(tally.items()):
        for kind, n in sorted(t.elements.items()):
            ledger.add(layer, "digital", f"digital_{kind}", "forward", n, digital_energy(digital, kind, n, act_bits))
        if t.rows:
            ledger.add(layer, "digital", "digital_rsqrt", "forward", t.rows, digital.energy_j("rsqrt", 16, t.rows))
        if t.values_moved:
            n_bytes = t.values_moved * bytes_per_value
            ledger.add(layer, "digital", "sram", "forward", n_bytes / 8.0, sram_energy_j(digital, n_bytes))


def tile_area_m2(periphery: Any) -> float:
    """Area (m^2) of one tile with its periphery, from the crossbar's one cost model (``crossbar.costs.area``)."""
    from stoxbar.crossbar.costs import area

    return area(1, periphery)["total"]


# -- the model's analog layers -----------------------------------------------------------------------
def _sto_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    from stoxbar.crossbar import sto_modules

    out = []
    for name, module in sto_modules(model):
        inner = ".".join(part for part in name.split(".") if part != "analog_module")
        out.append((inner or "layer", module))
    return out


def _tiles_of(module: nn.Module) -> List[Tuple[str, Any]]:
    """(tile name, simulator tile) of every tile of an STO module."""
    from stoxbar.crossbar import STOTileArray

    if isinstance(module, STOTileArray):
        return [(t.tile.tile_name, t.tile) for *_, t in module._tiles()]
    return [(module.tile.tile_name, module.tile)]


def _foreign_analog_layers(model: nn.Module) -> List[str]:
    """Analog aihwkit layers whose tiles are not STO tiles (another rpu_config)."""
    from aihwkit.nn.modules.base import AnalogLayerBase
    from stoxbar.crossbar import STOTile, STOTileArray

    names = []
    for name, m in model.named_modules():
        if isinstance(m, AnalogLayerBase) and hasattr(m, "analog_module") and not isinstance(
                m.analog_module, (STOTile, STOTileArray)):
            names.append(name)
    return names


def book_programming(model: nn.Module, ledger: Any) -> None:
    """Book the programming of every STO tile's present conductances (see module docstring).

    Write-verify from reset: ``ceil(sum |G - g_min| / lt_dg_s)`` pulses per tile (both devices of
    each pair), costed by the tile's own cost path (device energy + write driver). Skipped for a
    layer whose programming the ledger already holds, so a shared ledger books it once.
    """
    booked = {k[0] for k, _ in ledger.items() if k[3] == "program"}
    for layer, module in _sto_layers(model):
        if layer in booked:
            continue
        for tile_name, sim in _tiles_of(module):
            st, dev = sim.state, sim.state.device_model
            m = st.mask.to(st.g_pos.dtype)
            dg = float((((st.g_pos - dev.g_min_s).abs() + (st.g_neg - dev.g_min_s).abs()) * m).sum())
            pulses = float(math.ceil(dg / dev.lt_dg_s - 1e-9)) if dg > 0 else 0.0
            _book_program(module, sim, ledger, layer, tile_name, pulses, pulses * dev.lt_pulse_energy_j)


def _book_program(module: nn.Module, sim: Any, ledger: Any, layer: str, tile: str, pulses: float,
                  device_j: float) -> None:
    """One tile's programming through the crossbar's one cost model (``Events`` + ``crossbar.costs.cost``)."""
    from stoxbar.crossbar.costs import book, cost
    from stoxbar.crossbar.events import Events

    st = sim.state
    ev = Events("program", st.in_sizes[0], st.out_size, program_pulses=pulses, program_device_j=device_j)
    book(ledger, layer, tile, cost(ev, st.device_model, module.rpu_config.periphery))


def _attach(model: nn.Module, ledger: Any) -> None:
    """``attach_ledger`` without consuming programming the tiles keep pending: analyze books the
    programming of the present conductances itself (:func:`book_programming`)."""
    from stoxbar.crossbar import attach_ledger

    attach_ledger(model, ledger, book_pending=False)


# -- the report ---------------------------------------------------------------------------------------
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


# -- analyze ------------------------------------------------------------------------------------------
def _prepare_model(model: Any, rpu_config: Any) -> nn.Module:
    from stoxbar.crossbar import STORPUConfig

    if not isinstance(model, nn.Module):
        raise ConfigError(f"model = {type(model).__name__}: expected a torch.nn.Module (an aihwkit model on "
                          "STORPUConfig, or a plain torch model with rpu_config=STORPUConfig(...))")
    foreign = _foreign_analog_layers(model)
    if foreign:
        raise ConfigError(f"analog layers {foreign} do not use STORPUConfig: analyze needs STO tiles (build them "
                          "with rpu_config=STORPUConfig(...))")
    if _sto_layers(model):
        return model
    if rpu_config is None:
        raise ConfigError("model has no analog layers: expected aihwkit layers on STORPUConfig, or pass "
                          "rpu_config=STORPUConfig(...) to convert its Linear/Conv layers with convert_to_analog")
    if not isinstance(rpu_config, STORPUConfig):
        raise ConfigError(f"rpu_config = {type(rpu_config).__name__}: expected an STORPUConfig")
    from aihwkit.nn.conversion import convert_to_analog

    converted = convert_to_analog(model, rpu_config)
    if not _sto_layers(converted):
        raise ConfigError("model has no Linear or Conv layers that convert_to_analog could map onto STO tiles")
    return converted


def analyze(model: nn.Module, example_input: Any, *, rpu_config: Any = None, ledger: Any = None,
            dt_s: Optional[float] = None, gpu: Any = None, act_bits: int = 8,
            programming: bool = True) -> AnalysisReport:
    """Run ``model`` once on ``example_input`` on the chip and return its :class:`AnalysisReport`.

    Args:
        model: an aihwkit model whose analog layers use ``STORPUConfig``, or a plain torch model
            together with ``rpu_config`` (converted with aihwkit's ``convert_to_analog``; the
            original is left unchanged).
        example_input: a tensor (or a tuple of tensors, passed as positional arguments).
        rpu_config: ``STORPUConfig`` for the conversion of a model without analog layers.
        ledger: an :class:`~stoxbar.crossbar.EnergyLedger` to book into (default: a new one); the
            report covers the entries this call adds (``report.ledger``).
        dt_s: if given, ``dt_s`` seconds of short-term decay under the held bias follow the
            forward pass (networks with short-term plasticity; booked as ``bias``/``bias_driver``).
        gpu: a :class:`~stoxbar.peripherals.GPUSpec`: also report a GPU baseline of the same MACs.
        act_bits: width of digital activations (bits) for the digital op and memory costs, 2..32.
        programming: book the programming of the conductances (see module docstring).

    Raises:
        ConfigError: not a module, no STO analog layers (and no ``rpu_config``), foreign analog
            layers, an input that is not a tensor or that the model rejects (its shape is named).
    """
    from stoxbar.crossbar import EnergyLedger
    from stoxbar.validation import check_int, check_range

    check_int("act_bits", act_bits, 2, 32)
    if dt_s is not None:
        check_range("dt_s", dt_s, 0.0, None, unit="s")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if not inputs or not all(isinstance(x, Tensor) for x in inputs):
        raise ConfigError(f"example_input = {type(example_input).__name__}: expected a torch.Tensor (or a tuple "
                          "of tensors)")
    for x in inputs:
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ConfigError("example_input contains NaN or inf: inputs to an STO tile must be finite")
    model = _prepare_model(model, rpu_config)
    layers = _sto_layers(model)
    ledger = EnergyLedger() if ledger is None else ledger
    start = ledger.snapshot()  # the report covers what this call books; the ledger keeps everything
    before = {id(m): _attached(m) for _, m in layers}
    periphery = {name: _periphery_of(m) for name, m in layers}
    digital = next(iter(periphery.values())).digital
    counter = DigitalOpCounter()
    names = {id(m): n for n, m in model.named_modules()}
    analog_ids = {id(m) for _, m in layers}
    calls: Dict[str, List[int]] = defaultdict(lambda: [0, 0])  # layer -> [input vectors, MACs]
    sto_name = {id(m): n for n, m in layers}
    handles = []

    def pre(module, args):
        if id(module) in analog_ids:
            counter.inside_analog += 1
        counter.layer_stack.append(_layer_name(names.get(id(module), "model")))

    def post(module, args, out):
        counter.layer_stack.pop()
        if id(module) in analog_ids:
            counter.inside_analog -= 1
            _count_analog_call(counter, module, sto_name[id(module)], args, out, calls)

    for m in model.modules():
        if m is not model:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    was_training = model.training
    model.eval()
    try:
        _attach(model, ledger)
        if programming:
            book_programming(model, ledger)
        with torch.no_grad(), counter:
            try:
                model(*inputs)
            except ConfigError:
                raise
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                shapes = [list(x.shape) for x in inputs]
                first = _first_in_features(model)
                raise ConfigError(f"example_input shape {shapes[0] if len(shapes) == 1 else shapes}: the model's "
                                  f"forward rejected it ({type(exc).__name__}: {str(exc).splitlines()[0]}); expected "
                                  f"the input the model takes{first}") from None
        if dt_s is not None:
            for _, m in layers:
                if hasattr(m, "decay") and m.state.g_st is not None:
                    m.decay(dt_s)
        book_tally(ledger, digital, counter.tally, act_bits)
        run = ledger.since(start)  # read while the tiles still book into this ledger
    finally:
        for h in handles:
            h.remove()
        for _, m in layers:
            led, name = before[id(m)]
            _reattach(m, led, name)
        model.train(was_training)
    programmed = {k: e.energy_j for k, e in run.totals(("layer",), event="program").items()}
    kinds: Dict[str, str] = {}
    for n, m in model.named_modules():
        if n:
            kinds.setdefault(_layer_name(n), type(m).__name__)
    return _report(run, layers, periphery, counter, tuple(inputs[0].shape), programmed, gpu, calls, kinds)


def _layer_name(path: str) -> str:
    return ".".join(p for p in path.split(".") if p != "analog_module") or "model"


def _periphery_of(module: nn.Module) -> Any:
    return module.rpu_config.periphery


def _attached(module: nn.Module) -> Tuple[Any, str]:
    """(ledger, layer name) an STO module books into now."""
    from stoxbar.crossbar import STOTileArray

    holder = module if isinstance(module, STOTileArray) else module.tile
    return holder.ledger, holder.layer_name


def _reattach(module: nn.Module, ledger: Any, name: str) -> None:
    from stoxbar.crossbar import STOTileArray

    if isinstance(module, STOTileArray):
        module.attach(ledger, name)
    else:
        module.tile.attach(ledger, name)


def _first_in_features(model: nn.Module) -> str:
    for m in model.modules():
        for attr, label in (("in_features", "features in the last dimension"), ("in_channels", "input channels")):
            if isinstance(getattr(m, attr, None), int):
                return f" (its first layer takes {getattr(m, attr)} {label})"
    return ""


def _count_analog_call(counter: DigitalOpCounter, module: nn.Module, layer: str, args: Tuple, out: Any,
                       calls: Dict[str, List[int]]) -> None:
    """Digital work of an analog layer call outside its array: output scales and the bias add."""
    y = next(_tensors(out), None)
    if y is None:
        return
    n_out = y.numel()
    in_size = module.in_size if hasattr(module, "in_size") else module.tile.x_size
    out_size = module.out_size if hasattr(module, "out_size") else module.tile.d_size
    vectors = _numel(args[0]) // max(in_size, 1)
    calls[layer][0] += vectors
    calls[layer][1] += vectors * in_size * out_size
    scales = module.get_scales() if hasattr(module, "get_scales") else None
    if scales is None and hasattr(module, "_scales"):
        scales = module._scales(y)
    if scales is not None:
        counter.count(layer, "mult", n_out, n_out + scales.numel())
    if getattr(module, "bias", None) is not None and isinstance(module.bias, Tensor):
        counter.count(layer, "add", n_out, n_out + module.bias.numel())


def _report(ledger: Any, layers, periphery, counter: DigitalOpCounter, input_shape, programmed, gpu,
            calls, kinds: Dict[str, str]) -> AnalysisReport:
    from stoxbar.crossbar import STOTileArray

    by_layer: Dict[str, float] = {}
    busiest: Dict[Tuple[str, str], float] = {}  # (layer, event) -> busy time of its busiest tile
    for (layer, event, tile), e in sorted(ledger.totals(("layer", "event", "tile")).items()):
        by_layer[layer] = by_layer.get(layer, 0.0) + e.energy_j
        if event not in ("decay", "program"):  # a decay interval is waiting, programming is one-off
            busiest[(layer, event)] = max(busiest.get((layer, event), 0.0), e.time_s)
    layer_time: Dict[str, float] = defaultdict(float)  # tiles of a layer run in parallel, layers in turn
    for (layer, _), t in busiest.items():
        layer_time[layer] += t
    by_tile = {f"{layer}/{tile}": e.energy_j for (layer, tile), e in sorted(ledger.totals(("layer", "tile")).items())
               if tile != "digital"}
    by_component = {k[0]: e.energy_j for k, e in sorted(ledger.totals(("component",)).items())}
    info: Dict[str, Dict[str, Any]] = {}
    analog = {name: m for name, m in layers}
    for name in by_layer:
        m = analog.get(name)
        tiles = 0 if m is None else (len(m.in_sizes) * len(m.out_sizes) if isinstance(m, STOTileArray) else 1)
        area = tiles * tile_area_m2(periphery[name]) if m is not None else 0.0
        info[name] = {"kind": "analog" if m is not None else "digital", "module": kinds.get(name, ""),
                      "tiles": tiles, "area_m2": area,
                      "energy_j": by_layer[name], "latency_s": layer_time.get(name, 0.0),
                      "programming_j": programmed.get((name,), 0.0),
                      "input_vectors": calls[name][0] if name in calls else 0}
    digital_ops: Dict[str, float] = defaultdict(float)
    for t in counter.tally.values():
        for kind, n in t.elements.items():
            digital_ops[kind] += n
    gpu_j = None
    if gpu is not None:
        from stoxbar.peripherals import dense_layer_cost

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


# -- entry points -----------------------------------------------------------------------------------
def load_entry_point(spec: str, what: str = "entry point") -> Callable[..., Any]:
    """``"FILE.py:NAME"`` or ``"package.module:NAME"`` -> the callable it names (ConfigError otherwise)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"{what} = {spec!r}: expected FILE_OR_MODULE:NAME, e.g. examples/mlp_digits.py:build "
                          "or mypkg.models:make_model")
    target, attr = spec.split(":")
    try:
        if target.endswith(".py") or Path(target).exists():
            path = Path(target).resolve()
            if not path.is_file():
                raise ConfigError(f"{what} = {spec!r}: file {target} not found")
            mod_name = f"_stoxbar_entry_{abs(hash(str(path)))}"
            module = sys.modules.get(mod_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[mod_name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[mod_name]
                    raise
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import: say which and why
        raise ConfigError(f"{what} = {spec!r}: importing {target} failed ({type(exc).__name__}: {exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{what} = {spec!r}: {target} has no callable {attr!r}")
    return fn
