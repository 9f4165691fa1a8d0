"""``analyze(model, example_input)``: energy, latency and area of any torch model on STO tiles.

What it is for: a user's own network (an MLP, a CNN, a recurrent cell) runs once on the simulated
chip and comes back as an :class:`~stoxbar.analysis.report.AnalysisReport` -- total energy (J),
latency (s), area (m^2) and breakdowns by layer, by tile (``"layer/i.j"``) and by component. Two
sources feed one ledger:

* the **analog layers** (aihwkit layers on :class:`~stoxbar.crossbar.STORPUConfig`) book their
  own physical events (DAC, row drivers, cell reads, ADC, sense, partial sums, programming) through
  the crossbar's cost model (:mod:`stoxbar.crossbar.costs`), flushed once the forward pass is done
  (:func:`stoxbar.crossbar.flush_events`); nothing of their inner work is counted again here;
* the **digital work outside the arrays** (activations, pooling, bias adds, output scales,
  normalisation, softmax, elementwise ops, im2col copies, any digital matmul left unconverted) is
  counted from the torch (aten) ops the forward pass actually executes
  (:class:`~stoxbar.analysis.ops.OpWatch`) and costed by :mod:`stoxbar.analysis.digital_cost`.

Programming energy: the conductances the layers hold are booked as the write-verify pulses that
program them from reset (``g_min``; the crossbar's own count,
:meth:`~stoxbar.crossbar.state.CrossbarState.programming_from_reset`), per tile, unless the ledger
already holds programming events of that layer; programming history the tiles keep pending is
left to the user's ledger (docs/library.md §4).

May import: torch, aihwkit, stoxbar.core.validation, stoxbar.crossbar, stoxbar.peripherals,
stoxbar.analysis.{ops,digital_cost,digital_baseline,report,convert}.
Used by ``stoxbar energy --model``, the studies' task entry points and ``examples/``.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.nn.modules.base import AnalogLayerBase
from torch import Tensor, nn

from stoxbar.analysis.convert import convert_layers, needs_conversion
from stoxbar.analysis.digital_cost import book_tally
from stoxbar.analysis.ops import DigitalOpCounter, OpWatch, layer_name
from stoxbar.analysis.report import AnalysisReport, build_report
from stoxbar.crossbar import (EnergyLedger, Events, STORPUConfig, STOTile, STOTileArray, attach_ledger, book, cost,
                              flush_events, sto_modules)
from stoxbar.core.validation import ConfigError, check_int, check_range

__all__ = ["analyze", "book_programming"]


# -- the model's analog layers -----------------------------------------------------------------------
def _sto_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(layer_name(name), module) for name, module in sto_modules(model)]


def _tiles_of(module: nn.Module) -> List[Tuple[str, Any]]:
    """(tile name, simulator tile) of every tile of an STO module."""
    if isinstance(module, STOTileArray):
        return [(t.tile.tile_name, t.tile) for *_, t in module._tiles()]
    return [(module.tile.tile_name, module.tile)]


def _foreign_analog_layers(model: nn.Module) -> List[str]:
    """Analog aihwkit layers whose tiles are not STO tiles (another rpu_config)."""
    names = []
    for name, m in model.named_modules():
        if isinstance(m, AnalogLayerBase) and hasattr(m, "analog_module") and not isinstance(
                m.analog_module, (STOTile, STOTileArray)):
            names.append(name)
    return names


def book_programming(model: nn.Module, ledger: Any) -> None:
    """Book the programming of every STO tile's present conductances (see module docstring).

    Write-verify from reset, counted by the crossbar's programming model
    (:meth:`~stoxbar.crossbar.state.CrossbarState.programming_from_reset`), costed by the one cost
    model (device energy + write driver). Skipped for a layer whose programming the ledger
    already holds, so a shared ledger books it once.
    """
    booked = {k[0] for k in ledger.totals(("layer",), event="program")}
    for layer, module in _sto_layers(model):
        if layer in booked:
            continue
        for tile_name, sim in _tiles_of(module):
            st = sim.state
            pulses, device_j = st.programming_from_reset()
            ev = Events("program", st.in_sizes[0], st.out_size, program_pulses=pulses, program_device_j=device_j)
            book(ledger, layer, tile_name, cost(ev, st.device_model, module.rpu_config.periphery))


# -- analyze ------------------------------------------------------------------------------------------
def _prepare_model(model: Any, rpu_config: Any) -> nn.Module:
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
    if needs_conversion(model):  # nn.LSTM / nn.GRU / nn.MultiheadAttention, which convert_to_analog does not map
        model = convert_layers(model, rpu_config)
    converted = convert_to_analog(model, rpu_config)
    if not _sto_layers(converted):
        raise ConfigError("model has no Linear or Conv layers (nor LSTM, GRU or MultiheadAttention) that could be "
                          "mapped onto STO tiles")
    return converted


def analyze(model: nn.Module, example_input: Any, *, rpu_config: Any = None, ledger: Any = None,
            dt_s: Optional[float] = None, gpu: Any = None, act_bits: int = 8,
            programming: bool = True, accel: Any = None) -> AnalysisReport:
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
        programming: book the programming of the conductances (see module docstring); reported
            apart from the inference energy either way.
        accel: a :class:`~stoxbar.peripherals.digital_accel.DigitalAccelSpec` for the report's
            digital-accelerator baseline of the same forward (default: the int8 one); its SRAM leaks
            over ``dt_s`` when given, else only while it computes.

    Raises:
        ConfigError: not a module, no STO analog layers (and no ``rpu_config``), foreign analog
            layers, an input that is not a tensor or that the model rejects (its shape is named).
    """
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
    watch = OpWatch(model, counter)
    was_training = model.training
    model.eval()
    # torch's fused CPU recurrent and attention paths hide their matmuls from every counter: run the
    # plain ops (the same maths) so a digital LSTM/GRU or attention is counted as its MACs
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        # programming the tiles keep pending is the user's; analyze books the present conductances' own
        attach_ledger(model, ledger, book_pending=False)
        if programming:
            book_programming(model, ledger)
        with torch.no_grad(), _plain_cpu_ops(), watch, counter:
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
        flush_events(model)
        book_tally(ledger, digital, counter.tally, act_bits)
        run = ledger.since(start)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for _, m in layers:
            led, name = before[id(m)]
            _reattach(m, led, name)
        model.train(was_training)
    kinds: Dict[str, str] = {}  # layer name -> module class, in model order
    for n, m in model.named_modules():
        kinds.setdefault(layer_name(n), type(m).__name__ if n else "")
    inside = {id(p) for _, m in layers for p in m.parameters()}
    held_digital = sum(p.numel() for p in model.parameters() if id(p) not in inside)
    report = build_report(run, layers, periphery, counter, tuple(inputs[0].shape), gpu, watch.calls, kinds,
                          held_digital, accel, dt_s)
    for name, m in layers:  # the wires of each layer, per tile (only with line parasitics on)
        wires = wire_report(m.state, periphery[name])
        if wires is not None and name in report.layers:
            report.layers[name]["wires"] = wires
    return report


@contextlib.contextmanager
def _plain_cpu_ops() -> Iterator[None]:
    """oneDNN off (its fused RNN op hides the matmuls); torch warns about oneDNN's TF32 on setting the flag."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _periphery_of(module: nn.Module) -> Any:
    return module.rpu_config.periphery


def _attached(module: nn.Module) -> Tuple[Any, str]:
    """(ledger, layer name) an STO module books into now."""
    holder = module if isinstance(module, STOTileArray) else module.tile
    return holder.ledger, holder.layer_name


def _reattach(module: nn.Module, ledger: Any, name: str) -> None:
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


def wire_report(state: Any, periphery: Any, seed: int = 0) -> Optional[Dict[str, Any]]:
    """What a layer's line parasitics do, per physical tile (key ``"i.j"``, aihwkit's ``array[i][j]``):
    the MVM error of the wires alone (``||y - y_ideal|| / ||y_ideal||`` of one random input in [-1, 1]
    on the tile's present conductances, ``periphery.parasitics`` against ideal wires) and, when a decay
    bias is held, the largest drop of the held bias along its wires and the tau error it causes
    (``CrossbarState.bias_report``). None with ``parasitics.mode = "off"``."""
    from stoxbar.crossbar.parasitics import parasitic_outputs

    if periphery.parasitics.mode == "off":
        return None
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, state.tiles, state.rows, generator=gen, dtype=torch.float64) * 2 - 1) * state.mask[:, 0, :]
    y = parasitic_outputs(state, periphery.parasitics, x)[0]  # [T, O]
    w = state.effective_weight().double()
    w = w[0] if w.dim() == 4 else w  # the first chip's state: the one the solve reads
    ideal = torch.einsum("tox,tx->to", w, x[0])
    err, start = {}, [sum(state.out_sizes[:j]) for j in range(len(state.out_sizes))]
    for key, i, j, _, cols in state.tile_blocks():  # tile order i * J + j, as the bias report's
        o = slice(start[j], start[j] + cols)
        err[key] = _rel_l2(y[i, o], ideal[i, o])
    out: Dict[str, Any] = {"mode": periphery.parasitics.mode, "ir_drop_rel_error": _rel_l2(y, ideal),
                           "ir_drop_rel_error_per_tile": err}
    rep = state.bias_report
    if rep is not None and rep.wire_drop_max_v_per_tile:
        keys = list(err)
        out["bias_wire_drop_max_v_per_tile"] = dict(zip(keys, rep.wire_drop_max_v_per_tile))
        out["bias_tau_rel_error_max_per_tile"] = dict(zip(keys, rep.wire_tau_err_max_per_tile))
    return out


def ir_drop_rel_error(n_in: int, n_out: int, device, periphery, seed: int = 0) -> float:
    """MVM error from the line parasitics alone: ``||y - y_ideal|| / ||y_ideal||`` of the layer's read with
    ``periphery.parasitics`` against the same read with ideal wires (the noise-free device, perfect
    converters, the same random weights and input as ``stoxbar energy``'s layer breakdown)."""
    from dataclasses import replace

    from aihwkit.nn import AnalogLinear

    from stoxbar.crossbar import STORPUConfig

    ys = []
    for p in (periphery, replace(periphery, parasitics=replace(periphery.parasitics, mode="off"))):
        gen = torch.Generator().manual_seed(seed)
        cfg = STORPUConfig(device=device.without_noise(), periphery=p)
        cfg.forward.is_perfect = True
        layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=cfg)
        layer.eval()
        layer.set_weights((torch.rand(n_out, n_in, generator=gen) * 2 - 1) * 0.5)
        with torch.no_grad():
            ys.append(layer(torch.rand(1, n_in, generator=gen) * 2 - 1).double())
    return _rel_l2(ys[0], ys[1])


def _rel_l2(y: Tensor, ref: Tensor) -> float:
    """``||y - ref|| / ||ref||`` (0 / 0 -> 0)."""
    return float((y - ref).norm() / ref.norm().clamp_min(1e-300))
