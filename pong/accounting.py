"""Energy boundaries of the Pong m-STPN chip, the digital work of its steps, and its GPU baseline.

The analog STP layer books its own events (ledger layer ``stp``: DAC, drivers, cell reads, ADC,
sense, partial sums, pulses, bias). The digital work around it is counted by the same op counter
``analyze`` uses (:class:`stoxbar.analysis.OpWatch`): :class:`StepCounter` runs one agent step of
each distinct input shape under the counter and books the counted ops, costed by the digital
cost model (:mod:`stoxbar.analysis.digital_cost`), once per step. The op sequence of a step is
fixed by the shapes (no data-dependent branch outside the tiles: the analog read and the
substrate's short-term step are the tiles' own work), so the count of one step is exactly the
count of every step of that shape (tested). Ledger layers (event ``step``, tile ``digital``):

* ``stp``: the digital periphery of the Hebbian request the substrate's outer-product update
  runs, ``(Gamma * h) * z_hat`` per synapse and its quantisation to a pulse level (2 mults + 1
  compare per synapse; the paper keeps this off the memristors) and reading Gamma, h and z_hat
  (``analysis.ops.count_substrate_call``);
* ``neuron``: the cell's own ops (presynaptic normalisation, gain, bias, tanh, the tiling copy);
* ``encoder``, ``heads``: the conv encoder (and bottleneck) and the actor/critic heads (MACs,
  bias adds, ReLUs, every operand read and result written);
* ``agent``: the agent's own ops (the frame's conversion to [0, 1]).

Boundaries (nested by construction: each is a superset of the previous one's components):

* ``synapse_only`` - the paper's: decay bias + short-term pulses + cell reads of the STP synapses;
* ``array`` - plus every peripheral of the STP layer (DAC, ADC, drivers, sense, digital periphery);
* ``system`` - plus neuron operations, encoder, heads and the agent's frame conversion.

The digital-accelerator baseline (:func:`digital_tier`, docs/energy-model.md §9.1) counts one
steady-state step of the float agent with the same counter and prices it on an int8 SRAM datapath.

May import: torch, stoxbar.analysis, stoxbar.crossbar, stoxbar.peripherals, stoxbar.stpn, stoxbar.pong.{agent,env}.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from stoxbar.analysis import DigitalOpCounter, OpWatch, tally_entries
from stoxbar.analysis.digital_baseline import baseline_cost, tally_work
from stoxbar.crossbar.ledger import EnergyLedger
from stoxbar.peripherals import DigitalPeriphery, GPUSpec, dense_layer_cost
from stoxbar.peripherals.digital_accel import DigitalAccelSpec
from stoxbar.pong.agent import ArchConfig, build_encoder
from stoxbar.pong.env import OBS_SHAPE, STEP_PERIOD_S
from stoxbar.stpn.gpu_cost import stpn_step_cost

SYNAPSE_COMPONENTS = ("bias", "st_pulse", "cell_read")
STEP_EVENT = "step"


def ledger_layer(path: str) -> str:
    """The ledger layer of a counted op (``analysis.ops.layer_name`` of the agent's module path)."""
    top = path.split(".")[0]
    if path == "cell.syn":
        return "stp"  # the plastic layer's own periphery (the analog cell's ledger layer)
    return {"cell": "neuron", "encoder": "encoder", "actor": "heads", "critic": "heads", "model": "agent"}.get(top, path)


def _shape_key(obj: Any) -> Any:
    """What fixes a step's op sequence: the shapes and dtypes of its inputs (tensors, arrays, nested tuples)."""
    if isinstance(obj, (tuple, list)):
        return tuple(map(_shape_key, obj))
    shape = getattr(obj, "shape", None)  # a tensor's torch.Size, an array's tuple
    return (shape, obj.dtype) if shape is not None else type(obj)


class StepCounter:
    """Counts the digital work of an agent's steps (forward calls) and books it (module docstring).

    While entered (``with StepCounter(agent, digital):``), every forward of ``agent`` is one step;
    the first forward of each input shape runs under the op counter, whose entries (per step) are
    kept; :meth:`book` adds ``steps x entries`` to a ledger and starts counting steps afresh.
    """

    def __init__(self, agent: nn.Module, digital: DigitalPeriphery, act_bits: int = 8) -> None:
        self.agent, self.digital, self.act_bits = agent, digital, act_bits
        self.entries: Dict[Any, List[tuple]] = {}
        self.steps: Dict[Any, int] = defaultdict(int)
        self._handles: list = []
        self._counting: Optional[Tuple[Any, DigitalOpCounter, OpWatch]] = None

    def _pre(self, module: nn.Module, args: Tuple) -> None:
        key = (id(module._modules.get("cell")), _shape_key(args))  # a swapped cell is another step
        self.steps[key] += 1
        if key not in self.entries and self._counting is None:
            counter = DigitalOpCounter()
            watch = OpWatch(module, counter).start()
            counter.__enter__()
            self._counting = (key, counter, watch)

    def _post(self, module: nn.Module, args: Tuple, out: Any) -> None:
        if self._counting is None:
            return
        key, counter, watch = self._counting
        self._counting = None
        counter.__exit__(None, None, None)
        watch.stop()
        if out is not None:
            self.entries[key] = step_entries(counter, self.digital, self.act_bits)

    def __enter__(self) -> "StepCounter":
        self._handles = [self.agent.register_forward_pre_hook(self._pre),
                         self.agent.register_forward_hook(self._post, always_call=True)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def book(self, ledger: EnergyLedger) -> None:
        """Book the digital work of the steps run since the last call in ``ledger``."""
        steps, self.steps = self.steps, defaultdict(int)
        for key, n in steps.items():
            for layer, tile, comp, event, count, energy in self.entries.get(key, ()):
                ledger.add(layer, tile, comp, event, count * n, energy * n)


def step_entries(counter: DigitalOpCounter, digital: DigitalPeriphery, act_bits: int = 8) -> List[tuple]:
    """Ledger entries (layer, tile, component, event, count, J) of one counted step, in Pong's layers."""
    merged: Dict[tuple, List[float]] = {}
    for layer, tile, comp, event, count, energy in tally_entries(digital, counter.tally, act_bits, STEP_EVENT):
        acc = merged.setdefault((ledger_layer(layer), tile, comp, event), [0.0, 0.0])
        acc[0] += count
        acc[1] += energy
    return [(*k, c, e) for k, (c, e) in merged.items()]


@functools.lru_cache(maxsize=16)
def encoder_work(arch: ArchConfig) -> Tuple[float, int]:
    """(MACs per frame, weights + biases) of ``arch``'s encoder, counted by the op counter on one frame."""
    encoder = build_encoder(arch)
    counter = DigitalOpCounter()
    with torch.no_grad(), counter:
        encoder(torch.zeros(1, *OBS_SHAPE))
    macs = math.fsum(t.elements.get("mac", 0.0) for t in counter.tally.values())
    return macs, sum(p.numel() for p in encoder.parameters())


def boundaries(ledger: EnergyLedger) -> Dict[str, Dict[str, object]]:
    """``synapse_only`` / ``array`` / ``system`` totals and per-component joules (nested)."""
    stp = ledger.by_component(layer="stp")
    synapse = {c: stp.get(c, 0.0) for c in SYNAPSE_COMPONENTS}
    system: Dict[str, float] = {}
    for (layer, comp), e in ledger.totals(("layer", "component")).items():
        key = comp if layer == "stp" else f"{layer}.{comp}"
        system[key] = system.get(key, 0.0) + e.energy_j
    out = {}
    for name, parts in (("synapse_only", synapse), ("array", stp), ("system", system)):
        out[name] = {"total_j": math.fsum(parts.values()), "by_component": dict(sorted(parts.items()))}
    return out


def gpu_baseline(arch: ArchConfig, steps: int, dtype: str = "fp32", spec: GPUSpec | None = None) -> Dict[str, object]:
    """GPU energy of ``steps`` agent steps of ``arch`` at batch 1 (STP step + encoder + heads)."""
    spec = spec or GPUSpec()
    stp = stpn_step_cost(arch.hidden, arch.n_in + arch.hidden, 1, dtype, spec)
    macs, params = encoder_work(arch)
    enc = dense_layer_cost(1, 1, 1, dtype, spec, flops=2.0 * macs,
                           weight_bytes=params * (2 if dtype == "fp16" else 4), label="conv encoder")
    heads = dense_layer_cost(arch.hidden, arch.n_actions + 1, 1, dtype, spec, label="heads")
    parts = {"stp_step": stp.energy_j * steps, "encoder": enc.energy_j * steps, "heads": heads.energy_j * steps}
    return {"total_j": math.fsum(parts.values()), "by_component": parts, "gpu": spec.name, "dtype": dtype,
            "assumptions": stp.assumptions()}


@functools.lru_cache(maxsize=8)
def agent_step_work(arch_items: Tuple[Tuple[str, Any], ...]) -> Tuple[Dict[str, float], float, float, int, int]:
    """(elements per op kind, values moved, layer-norm rows, values held, state values) of one steady-state
    digital agent step.

    The float agent of ``arch`` (every op a torch op: the cell's fused CPU kernel off) runs
    ``PongAgent.act`` once to derive Lambda (a game does that once), then once more under the op
    counter. Held: every parameter (W, Lambda in place of theta, Gamma, gain, b, encoder, heads)
    and the recurrent state (h, F).
    """
    from stoxbar.pong.agent import PongAgent

    arch = ArchConfig(**dict(arch_items))
    torch.manual_seed(0)
    agent = PongAgent(arch)
    if hasattr(agent.cell, "use_kernel"):
        agent.cell.use_kernel = False
    obs = torch.zeros(1, *OBS_SHAPE, dtype=torch.uint8)
    _, state = agent.act(obs, agent.initial_state(1))
    counter = DigitalOpCounter()
    with torch.no_grad(), counter:
        agent.act(obs, state)
    elements, moved, rows = tally_work(counter.tally.values())
    state_values = sum(t.numel() for t in state)
    held = sum(p.numel() for p in agent.parameters()) + state_values
    return elements, moved, rows, held, state_values


def digital_tier(arch: ArchConfig, steps: int, spec: Optional[DigitalAccelSpec] = None,
                 step_period_s: float = STEP_PERIOD_S) -> Dict[str, object]:
    """The digital-accelerator baseline (``peripherals.digital_accel``) of ``steps`` agent steps of ``arch``.

    The work of a step is counted from the torch ops the float agent runs (:func:`agent_step_work`);
    the SRAM leaks over the real step period. Returns the same keys as a GPU tier (``total_j``,
    ``j_per_step``, ``by_component``) plus the step's work.
    """
    spec = DigitalAccelSpec() if spec is None else spec
    elements, moved, rows, held, state_values = agent_step_work(tuple(sorted(arch.to_dict().items())))
    c = baseline_cost(elements, moved, held, step_period_s, spec, rows, state_values)
    parts = {"compute": c.compute_j * steps, "sram": c.sram_j * steps, "leakage": c.leakage_j * steps}
    return {"total_j": c.energy_j * steps, "j_per_step": c.energy_j, "s_per_step": c.time_s,
            "by_component": parts, "macs_per_step": c.macs, "ops_per_step": c.ops, "held_bits": c.held_bits,
            "step_period_s": step_period_s, "accelerator": spec.name, "mac_bits": spec.mac_bits,
            "acc_bits": spec.acc_bits, "power_gating": spec.power_gating, "reuse": spec.reuse,
            "tech_node_nm": spec.digital.tech_node_nm}
