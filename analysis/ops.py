"""The digital op table and the op counter: which torch (aten) ops a forward pass runs outside the tiles.

:class:`DigitalOpCounter` is a ``TorchDispatchMode`` that sees every aten op a forward pass
executes and tallies it per layer (module path) as elements of an op kind (:data:`OP_KINDS`:
``mac``, ``add``, ``mult``, ``compare``, ...) plus the values it moves (every input read and every
output written); matmul/conv MACs come from ``torch.utils.flop_counter``'s formulas.
:class:`OpWatch` puts a model under a counter: forward hooks name the layer an op belongs to,
the STO layers' reads and substrate operations are left out (their work is the tiles' own,
booked by the crossbar's cost model), and the digital periphery those layers need around the
array is counted from the call itself (:func:`count_analog_call`, :func:`count_substrate_call`).
``analyze`` and the Pong step's digital work (:mod:`stoxbar.pong.accounting`) both count this way.

May import: torch, stoxbar.crossbar (the STO layer types and their ledger layer names).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Tuple

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from stoxbar.crossbar import layer_key, sto_modules

__all__ = ["OP_KINDS", "OpTally", "DigitalOpCounter", "OpWatch", "count_analog_call", "count_substrate_call"]

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
        if base == "_scaled_dot_product_flash_attention_for_cpu":  # (no torch flop formula): Q K^T and P V
            q, k, v = args[:3]
            pairs = q.numel() // q.shape[-1] * k.shape[-2]  # (batch x heads x L) x S scores
            self.count(layer, "mac", pairs * (q.shape[-1] + v.shape[-1]), moved, name)
            self.count(layer, "softmax", pairs)
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



# -- a model under a counter ------------------------------------------------------------------------
def layer_name(path: str) -> str:
    """The counter's layer name of a module path: the ledger's layer key (``crossbar.layer_key``);
    "model" for the model itself (ops outside every submodule)."""
    return layer_key(path) if path else "model"


def count_analog_call(counter: DigitalOpCounter, module: nn.Module, layer: str, args: Tuple, out: Any) -> Tuple[int, int]:
    """Digital work of an STO layer call outside its array (output scales, bias add); returns the call's
    (input vectors, MACs the array did)."""
    y = next(_tensors(out), None)
    if y is None:
        return 0, 0
    n_out = y.numel()
    in_size = module.in_size if hasattr(module, "in_size") else module.tile.x_size
    out_size = module.out_size if hasattr(module, "out_size") else module.tile.d_size
    vectors = _numel(args[0]) // max(in_size, 1)
    scales = module.get_scales() if hasattr(module, "get_scales") else None
    if scales is None and hasattr(module, "_scales"):
        scales = module._scales(y)
    if scales is not None:
        counter.count(layer, "mult", n_out, n_out + scales.numel())
    if getattr(module, "bias", None) is not None and isinstance(module.bias, Tensor):
        counter.count(layer, "add", n_out, n_out + module.bias.numel())
    return vectors, vectors * in_size * out_size


def count_substrate_call(counter: DigitalOpCounter, module: nn.Module, layer: str, op: str, args: Tuple) -> None:
    """The digital periphery of an STO layer's short-term operation, from the call's operands.

    ``decay_and_outer_update(dt_s, scale, u, v)``: the request ``(scale * u) * v`` of every cell of
    every synapse of every chip, 2 mults, and its quantisation to a pulse level, 1 compare (crossbar/fused.py, the
    maths of the step), done digitally beside the array (docs/stpn.md: the paper keeps the Hebbian
    magnitude off the memristors); it reads ``scale`` per synapse and chip and ``u``, ``v`` once per chip.
    ``apply_short_term(request)``: the quantisation alone (the request is the caller's own ops,
    counted where they run). ``decay``: nothing digital (analog time under the held bias).
    """
    st = module.state
    chips = st.chips
    cells = st.out_size * sum(st.in_sizes) * chips  # synapses (differential pairs) x chips
    if op == "decay_and_outer_update":
        counter.count(layer, "mult", 2 * cells, cells + chips * (st.out_size + sum(st.in_sizes)), op)
        counter.count(layer, "compare", cells)
    elif op == "apply_short_term":
        counter.count(layer, "compare", cells, cells, op)


_SUBSTRATE_OPS = ("decay_and_outer_update", "apply_short_term", "decay")


class OpWatch:
    """Counts the digital ops of ``model``'s forward passes in ``counter`` while started (see module docstring).

    Forward hooks on every submodule keep ``counter.layer_stack`` (layer names:
    :func:`layer_name`); inside an STO layer (``crossbar.sto_modules``) and inside its substrate
    operations the counter pauses, and the layer's digital periphery is counted from the call
    (:func:`count_analog_call`, :func:`count_substrate_call`). ``calls`` holds per STO layer
    [input vectors, array MACs]. Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(self, model: nn.Module, counter: DigitalOpCounter) -> None:
        self.model, self.counter = model, counter
        self.names = {id(m): n for n, m in model.named_modules()}
        self.analog = {id(m): layer_name(n) for n, m in sto_modules(model)}
        self.analog_modules = [m for _, m in sto_modules(model)]
        self.calls: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
        self._handles: list = []

    def _pre(self, module: nn.Module, args: Tuple) -> None:
        if id(module) in self.analog:
            self.counter.inside_analog += 1
        self.counter.layer_stack.append(layer_name(self.names.get(id(module), "")))

    def _post(self, module: nn.Module, args: Tuple, out: Any) -> None:
        self.counter.layer_stack.pop()
        layer = self.analog.get(id(module))
        if layer is not None:
            self.counter.inside_analog -= 1
            vectors, macs = count_analog_call(self.counter, module, layer, args, out)
            self.calls[layer][0] += vectors
            self.calls[layer][1] += macs

    def _substrate(self, module: nn.Module, op: str) -> Callable:
        bound, layer, counter = getattr(module, op), self.analog[id(module)], self.counter

        def run(*args, **kwargs):
            counter.inside_analog += 1
            try:
                out = bound(*args, **kwargs)
            finally:
                counter.inside_analog -= 1
            if not counter.inside_analog:
                count_substrate_call(counter, module, layer, op, args)
            return out

        return run

    def start(self) -> "OpWatch":
        for m in self.model.modules():
            if m is not self.model:
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post, always_call=True))
        for m in self.analog_modules:  # an instance attribute shadows the method while watched
            for op in _SUBSTRATE_OPS:
                if hasattr(m, op):
                    m.__dict__[op] = self._substrate(m, op)
        return self

    def stop(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for m in self.analog_modules:
            for op in _SUBSTRATE_OPS:
                m.__dict__.pop(op, None)

    def __enter__(self) -> "OpWatch":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
