"""The paper's energy estimate from our own models, the GPU tiers of the Pong agent, and the waterfall.

* :func:`paper_estimate` - Weilenmann et al.'s memristive-vs-GPU estimate (docs/paper-energy.md §1)
  under the paper's assumptions, each one a field of :class:`PaperAssumptions` whose default is
  the paper's value (or, where the paper does not state it, the documented reading of it);
* :func:`gpu_tiers` - the Pong agent's GPU energy in the ``roofline`` / ``latency`` / ``dedicated``
  tiers (peripherals/gpu_baseline.py), the kernels counted from the agent's actual torch step;
  every place that prints a GPU ratio calls it;
* :func:`waterfall` - from the paper's assumptions to stoxbar's ``system`` figure of a real game,
  one assumption changed at a time (docs/paper-energy.md §3), and :func:`waterfall_figure`.

May import: stoxbar.core.validation, stoxbar.core.fsio (a measurement file), stoxbar.devices, stoxbar.peripherals, stoxbar.stpn,
stoxbar.analysis, stoxbar.pong.{accounting,agent,env,evaluate}, torch, numpy, matplotlib (figures only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from stoxbar.devices.sto import PAPER_BIAS_POWER_W, PAPER_V_BIAS_MAX_V
from stoxbar.peripherals.digital_accel import DigitalAccelSpec
from stoxbar.peripherals.gpu_baseline import (
    DTYPE_BYTES, TIERS, GPUSpec, KernelOp, step_tiers, trace_kernels)
from stoxbar.pong.env import STEP_PERIOD_S
from stoxbar.core.validation import ConfigError, check_choice, check_int, check_range

PAPER_HIDDEN = 64  # docs/paper.md §2: 64 units
PAPER_PRESYN = 2656  # 2592 conv features + 64 recurrent inputs
PAPER_STEPS_PER_GAME = 6826  # docs/paper.md §3: energy rescaled to 6,826 agent steps per game
PAPER_OPTIMAL_SYNAPSES = 2 ** 21  # docs/paper.md §3: "optimal" measured near 2^21 synapses
PAPER_PULSE_FRACTION = 0.01  # issue 11: the paper's pulses are ~1 % of its memristive figure
PAPER_HEADLINE_RATIOS = {"optimal_fp16": 96.0, "standard_fp16": 970.0}  # docs/paper.md §3 / issue 11 (measured A100)
# the published ratio per GPU size, for every precision (docs/paper.md §3: ~970x standard in fp16 and fp32)
PAPER_RATIO_BY_SIZE = {"optimal": 96.0, "standard": 970.0}
HOLD_GRID_S = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, STEP_PERIOD_S, 0.3, 1.0)  # the ratio-vs-hold table
OPS = ("four", "mstpn_step")
# The GPU measurement shipped with stoxbar (benchmarks/gpu_measure.py on an NVIDIA H200, 2026-12-04,
# docs/paper-energy.md §2.3): `stoxbar play` puts its measured agent step beside the modelled tiers.
_ROOT = Path(__file__).resolve().parent.parent  # the source tree (the package's root)
DEFAULT_GPU_MEASUREMENT = str(_ROOT / "benchmarks" / "gpu" / "h200-2026-12-04.json")


def shipped_gpu_measurement() -> Optional[str]:
    """:data:`DEFAULT_GPU_MEASUREMENT` if this install has it (a source tree), else None."""
    return DEFAULT_GPU_MEASUREMENT if Path(DEFAULT_GPU_MEASUREMENT).is_file() else None


@dataclass(frozen=True)
class PaperAssumptions:
    """The paper's assumptions (docs/paper-energy.md §1), the paper's values as defaults.

    bias_v: decay bias held on every synapse (V); 0.6 V, the paper's worst case (docs/paper.md §1).
    g_bias_s: conductance under that bias (S); 4.3 nW / 0.36 V^2 = 11.9 nS, the zero-weight device
        of the paper (docs/paper.md §1, ohmic, derived).
    devices_per_synapse: devices biased per synapse; 1 (the paper counts 4.3 nW per synapse).
    bias_held_s_per_step: time the bias is held per agent step (s); not stated by the paper; the
        paper holds it "for the whole game" (docs/paper.md §3), i.e. the real-time step period 66.7 ms.
    steps_per_game: 6,826 (docs/paper.md §3).
    hidden, presyn: the layer, 64 units over 2,656 inputs = 169,984 synapses (docs/paper.md §2).
    pulse_fraction: the short-term pulses' share of the memristive figure; 0.01 (issue 11, the
        paper's pulses are ~1 % of its memristive figure; its pulse table was not available).
    ops: GPU work per step, "four" (the paper's G = W + F; einsum; F *= Lambda; F += dF) or
        "mstpn_step" (our whole digital m-STPN cell step).
    precisions: GPU precisions, fp16 and fp32 (docs/paper.md §3).
    tiers: GPU tiers reported (peripherals/gpu_baseline.py).
    optimal_synapses: size of the GPU's "optimal" point, 2^21 (docs/paper.md §3); the energy per synapse
        there is scaled to the layer's synapses.
    cuda_graph: cost the latency tier with CUDA-graph launches (False: eager, as measured).
    """

    bias_v: float = PAPER_V_BIAS_MAX_V
    g_bias_s: float = PAPER_BIAS_POWER_W / PAPER_V_BIAS_MAX_V ** 2
    devices_per_synapse: int = 1
    bias_held_s_per_step: float = STEP_PERIOD_S
    steps_per_game: int = PAPER_STEPS_PER_GAME
    hidden: int = PAPER_HIDDEN
    presyn: int = PAPER_PRESYN
    pulse_fraction: float = PAPER_PULSE_FRACTION
    ops: str = "four"
    precisions: Tuple[str, ...] = ("fp16", "fp32")
    tiers: Tuple[str, ...] = TIERS
    optimal_synapses: int = PAPER_OPTIMAL_SYNAPSES
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        check_range("bias_v", self.bias_v, 0.0, 10.0, unit="V")
        check_range("g_bias_s", self.g_bias_s, 0.0, 1e-3, unit="S")
        check_int("devices_per_synapse", self.devices_per_synapse, 1, 16)
        check_range("bias_held_s_per_step", self.bias_held_s_per_step, 0.0, 3600.0, unit="s")
        check_int("steps_per_game", self.steps_per_game, 1, 10 ** 7)
        check_int("hidden", self.hidden, 1, 65536)
        check_int("presyn", self.presyn, 2, 10 ** 6)
        if self.presyn <= self.hidden and self.ops == "mstpn_step":
            raise ConfigError(f"presyn = {self.presyn}: must exceed hidden = {self.hidden} for ops 'mstpn_step'")
        check_range("pulse_fraction", self.pulse_fraction, 0.0, 1.0, hi_open=True)
        check_choice("ops", self.ops, OPS)
        for name, values, allowed in (("precisions", self.precisions, tuple(DTYPE_BYTES)),
                                      ("tiers", self.tiers, TIERS)):
            if not isinstance(values, tuple) or not values:
                raise ConfigError(f"{name} = {values!r}: must be a non-empty tuple of {allowed}")
            for v in values:
                check_choice(name, v, allowed)
        check_int("optimal_synapses", self.optimal_synapses, self.presyn, 2 ** 34)
        if not isinstance(self.cuda_graph, bool):
            raise ConfigError(f"cuda_graph = {self.cuda_graph!r}: must be True or False")

    @property
    def synapses(self) -> int:
        return self.hidden * self.presyn

    @property
    def optimal_hidden(self) -> int:
        """Units at the optimal size over the same inputs (790 for 2^21 over 2,656)."""
        return max(1, round(self.optimal_synapses / self.presyn))


# ---------------------------------------------------------------------------------------------
# kernels of the GPU work, traced from the torch code
# ---------------------------------------------------------------------------------------------
def paper_four_ops(x: torch.Tensor, W: torch.Tensor, F: torch.Tensor, lam: torch.Tensor,
                   dF: torch.Tensor) -> torch.Tensor:
    """The paper's four synapse operations at batch 1 (docs/paper.md §3), in place on F like its scripts."""
    G = W + F
    y = torch.einsum("bf,bhf->bh", x, G)
    F.mul_(lam)
    F.add_(dF)
    return y


@lru_cache(maxsize=64)
def ops_kernels(ops: str, hidden: int, presyn: int) -> Tuple[KernelOp, ...]:
    """Kernels of one step of ``ops`` ("four" | "mstpn_step") at ``hidden`` x ``presyn``, batch 1."""
    check_choice("ops", ops, OPS)
    g = torch.Generator().manual_seed(0)
    if ops == "four":
        shape = (1, hidden, presyn)
        W, F, lam, dF = (torch.rand(shape, generator=g) for _ in range(4))
        kernels, _ = trace_kernels(paper_four_ops, torch.rand(1, presyn, generator=g), W, F, lam, dF)
        return tuple(kernels)
    from stoxbar.devices import presets
    from stoxbar.stpn.cells import MSTPNCell

    with torch.no_grad():
        cell = MSTPNCell(presyn - hidden, hidden, presets.sto_2024(), STEP_PERIOD_S, use_kernel=False)
        state = cell.initial_state(1)
        x = torch.rand(1, presyn - hidden, generator=g)
        kernels, _ = trace_kernels(cell, x, state)
    return tuple(kernels)


@lru_cache(maxsize=8)
def agent_kernels(arch_items: Tuple[Tuple[str, Any], ...]) -> Tuple[KernelOp, ...]:
    """Kernels of one steady-state greedy agent step (``PongAgent.act``: encoder, cell, heads, action) at batch 1.

    Traced on CPU with the cell's CPU-only fused kernel off, i.e. the torch ops a GPU would run;
    each kernel is labelled ``encoder``, ``stp_step`` or ``heads`` (the actor/critic and the action).
    """
    from stoxbar.pong.agent import ArchConfig, PongAgent

    arch = ArchConfig(**dict(arch_items))
    torch.manual_seed(0)
    agent = PongAgent(arch)
    if hasattr(agent.cell, "use_kernel"):
        agent.cell.use_kernel = False
    where = ["heads"]
    agent.encoder.register_forward_pre_hook(lambda *a: where.__setitem__(0, "encoder"))
    agent.cell.register_forward_pre_hook(lambda *a: where.__setitem__(0, "stp_step"))
    agent.cell.register_forward_hook(lambda *a: where.__setitem__(0, "heads"))
    state = agent.initial_state(1)
    obs = torch.zeros(1, 1, 84, 84, dtype=torch.uint8)
    # a steady-state step: the first one also derives Lambda from theta through the device's laws,
    # which a game does once (the cell caches it while theta is unchanged), not every step
    _, state = agent.act(obs, state)
    where[0] = "encoder"  # frame -> float conversion belongs to the encoder
    kernels, _ = trace_kernels(agent.act, obs, state, label=lambda: where[0])
    return tuple(kernels)


def gpu_tiers(arch, steps: int, dtype: str = "fp32", spec: Optional[GPUSpec] = None,
              step_period_s: float = STEP_PERIOD_S, cuda_graph: bool = False,
              accel: Optional[DigitalAccelSpec] = None, measured: Any = None) -> Dict[str, Dict[str, Any]]:
    """GPU energy of ``steps`` agent steps of ``arch`` (an ``ArchConfig``) in every tier, batch 1, and
    the digital-accelerator baseline beside them (``digital``: ``pong.accounting.digital_tier``).
    With ``measured`` (a ``benchmarks/gpu_measure.py`` file or dict) the measured agent step joins them
    (:func:`measured_agent_tiers`: ``measured_b1``, ``measured_b<N>``).

    ``roofline``: today's first-principles model (``pong.accounting.gpu_baseline``: every operand
    once per step, no launch cost), the lower bound. ``latency`` / ``dedicated``: the kernels of
    ``PongAgent.act`` as torch runs them (:func:`agent_kernels`), each max(launch, roofline) at the
    active power, plus host syncs; ``dedicated`` adds the idle power of a GPU held for the rest of
    each real-time step period. Returns {tier: {"total_j", "j_per_step", "by_component", ...}}.
    """
    from stoxbar.pong.accounting import digital_tier, gpu_baseline

    check_int("steps", steps, 0, None)
    spec = GPUSpec() if spec is None else spec
    roof = gpu_baseline(arch, steps, dtype, spec)
    kernels = agent_kernels(tuple(sorted(arch.to_dict().items())))
    whole = step_tiers(kernels, dtype, spec, step_period_s, cuda_graph)
    parts = {lab: step_tiers([k for k in kernels if k.label == lab], dtype,
                             _no_syncs(spec), step_period_s, cuda_graph)
             for lab in ("encoder", "stp_step", "heads")}
    lat_parts = {lab: t.latency_j * steps for lab, t in parts.items()}
    lat_parts["host_sync"] = whole.latency_j * steps - math.fsum(lat_parts.values())  # syncs (+ graph launch)
    ded_parts = dict(lat_parts, idle=(whole.dedicated_j - whole.latency_j) * steps)
    common = {"gpu": spec.name, "dtype": dtype, "kernels_per_step": whole.kernels, "syncs_per_step": whole.syncs,
              "cuda_graph": cuda_graph}
    return {
        "roofline": {"total_j": roof["total_j"], "j_per_step": roof["total_j"] / steps if steps else 0.0,
                     "by_component": roof["by_component"], **common},
        "latency": {"total_j": whole.latency_j * steps, "j_per_step": whole.latency_j,
                    "s_per_step": whole.latency_s, "by_component": lat_parts, **common},
        "dedicated": {"total_j": whole.dedicated_j * steps, "j_per_step": whole.dedicated_j,
                      "step_period_s": step_period_s, "by_component": ded_parts, **common},
        **(measured_agent_tiers(measured, arch, steps) if measured is not None else {}),
        "digital": digital_tier(arch, steps, accel, step_period_s),
    }


def measured_agent_tiers(measurement: Any, arch, steps: int) -> Dict[str, Dict[str, Any]]:
    """Measured GPU tiers of ``steps`` agent steps of ``arch`` from a ``benchmarks/gpu_measure.py`` file.

    ``measurement``: its path or its (validated) dict. Its ``agent_step`` rows of the same layer
    (``units`` = hidden, ``presyn`` = n_in + hidden, fp32) give ``measured_b1`` (one game at a time)
    and ``measured_b<N>`` (the largest batch measured: N games side by side, energy shared), each in
    the cheaper of its modes (a CUDA graph, where it was measured). Board energy: the GPU's whole
    draw while it steps back to back, split into ``idle_floor`` (the idle power with a context held,
    measured in the same file, over the step time) and ``above_idle``; no idle time between steps is
    added (the ``dedicated`` tier's real-time hold). ``{}`` if the file has no row for this layer.
    """
    from stoxbar.core.fsio import read_json
    from stoxbar.peripherals.gpu_baseline import validate_measurement

    check_int("steps", steps, 0, None)
    src = "<dict>" if isinstance(measurement, dict) else str(measurement)
    if not isinstance(measurement, dict) and Path(src).resolve().is_relative_to(_ROOT):
        src = Path(src).resolve().relative_to(_ROOT).as_posix()  # the shipped file: the same name on every machine
    data = validate_measurement(measurement if isinstance(measurement, dict) else read_json(measurement))
    rows = [r for r in data["results"] if r["workload"] == "agent_step" and r["dtype"] == "fp32"
            and r["units"] == arch.hidden and r["presyn"] == arch.n_in + arch.hidden]
    if not rows:
        return {}
    idle_w = float(data["idle_power_w"] or 0.0)
    out: Dict[str, Dict[str, Any]] = {}
    for batch in sorted({1, max(r.get("batch", 1) for r in rows)}):
        cands = [r for r in rows if r.get("batch", 1) == batch]
        if not cands:
            continue
        r = min(cands, key=lambda r: r["energy_j_per_step"])
        t_game_step = r["time_s_per_step"] / batch  # GPU time per game-step
        j = r["energy_j_per_step"] / batch
        floor = min(j, idle_w * t_game_step)
        out[f"measured_b{batch}"] = {
            "total_j": j * steps, "j_per_step": j, "s_per_step": t_game_step, "batch": batch, "mode": r["mode"],
            "gpu": data["gpu"]["name"], "dtype": "fp32", "kernels_per_step": r["kernels_per_step"],
            "idle_power_w": idle_w, "power_w": r["energy_j_per_step"] / r["time_s_per_step"], "measured_from": src,
            "by_component": {"idle_floor": floor * steps, "above_idle": (j - floor) * steps}}
    return out


def _no_syncs(spec: GPUSpec) -> GPUSpec:
    return replace(spec, syncs_per_step=0)


def tier_ratios(gpu: Dict[str, Dict[str, Any]], energy_j: float) -> Dict[str, float]:
    """GPU energy / ``energy_j`` for every tier of a :func:`gpu_tiers` result (inf for 0 J)."""
    return {t: (v["total_j"] / energy_j if energy_j > 0 else float("inf")) for t, v in gpu.items()}


# ---------------------------------------------------------------------------------------------
# the paper's estimate
# ---------------------------------------------------------------------------------------------
def memristive_paper(a: PaperAssumptions) -> Dict[str, Any]:
    """The paper's memristive side: bias held on every synapse + short-term pulses, per game."""
    bias_power_w = a.synapses * a.devices_per_synapse * a.bias_v ** 2 * a.g_bias_s
    bias_j = bias_power_w * a.bias_held_s_per_step * a.steps_per_game
    pulses_j = bias_j * a.pulse_fraction / (1.0 - a.pulse_fraction)
    return {"bias_power_w": bias_power_w, "energy_j_per_game": bias_j + pulses_j,
            "by_component": {"bias": bias_j, "pulses": pulses_j},
            "bias_power_w_per_synapse": bias_power_w / a.synapses}


def gpu_paper(a: PaperAssumptions, spec: Optional[GPUSpec] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """The paper's GPU side: ``gpu[tier][dtype]`` standard / optimal J per game and memory share."""
    spec = GPUSpec() if spec is None else spec
    std_k = ops_kernels(a.ops, a.hidden, a.presyn)
    h_opt = a.optimal_hidden
    opt_k = ops_kernels(a.ops, h_opt, a.presyn)
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for dtype in a.precisions:
        std = step_tiers(std_k, dtype, spec, STEP_PERIOD_S, a.cuda_graph)
        opt = step_tiers(opt_k, dtype, spec, STEP_PERIOD_S, a.cuda_graph)
        scale = a.synapses / (h_opt * a.presyn)
        for tier in a.tiers:
            out.setdefault(tier, {})[dtype] = {
                "standard_j_per_game": std.energy_j(tier) * a.steps_per_game,
                "optimal_j_per_game": opt.energy_j(tier) * scale * a.steps_per_game,
                "memory_share": std.memory_share(tier),
                "optimal_memory_share": opt.memory_share(tier),
                "kernels_per_step": std.kernels, "syncs_per_step": std.syncs,
                "standard_s_per_step": std.roofline_s if tier == "roofline" else std.latency_s,
            }
    return out


def paper_estimate(a: Optional[PaperAssumptions] = None, spec: Optional[GPUSpec] = None,
                   accel: Optional[DigitalAccelSpec] = None) -> Dict[str, Any]:
    """The paper's estimate from our models (the ``stoxbar paper --json`` document); ``accel``: the
    digital-accelerator baseline's spec (default: the int8 one)."""
    a = PaperAssumptions() if a is None else a
    spec = GPUSpec() if spec is None else spec
    mem = memristive_paper(a)
    gpu = gpu_paper(a, spec)
    ratios = {tier: {dt: {k.replace("_j_per_game", ""): v[k] / mem["energy_j_per_game"]
                          if mem["energy_j_per_game"] > 0 else float("inf")
                          for k in ("standard_j_per_game", "optimal_j_per_game")}
                     for dt, v in by_dt.items()} for tier, by_dt in gpu.items()}
    # what the paper's measured headline ratios imply for its GPU, given its memristive figure
    implied = {}
    for key, ratio in PAPER_HEADLINE_RATIOS.items():
        j_game = ratio * mem["energy_j_per_game"]
        j_step = j_game / a.steps_per_game
        if key.startswith("optimal"):
            j_step *= a.optimal_hidden * a.presyn / a.synapses  # per step at the optimal size itself
        implied[key] = {"ratio": ratio, "gpu_j_per_game": j_game, "gpu_j_per_step_at_measured_size": j_step,
                        "s_per_step_at_active_power": j_step / spec.active_power_w if spec.active_power_w else None}
        implied[key]["bias_hold_s"] = a.bias_held_s_per_step  # the hold this derivation assumes
    assumptions = asdict(a)
    assumptions["optimal_hidden"] = a.optimal_hidden
    assumptions["gpu_spec"] = asdict(spec)
    digital = paper_digital(a, accel)
    for v in digital.values():
        v["ratio"] = v["j_per_game"] / mem["energy_j_per_game"] if mem["energy_j_per_game"] > 0 else float("inf")
    return {"steps_per_game": a.steps_per_game, "synapses": a.synapses, "bias_hold_s": a.bias_held_s_per_step,
            "seconds_per_game": a.steps_per_game * STEP_PERIOD_S,
            "bias_held_s_per_game": a.steps_per_game * a.bias_held_s_per_step,
            "hold_for_ratio": hold_for_ratio(a, mem, gpu), "ratio_vs_hold": ratio_vs_hold(a, mem, gpu),
            "digital": digital, "memristive": mem, "gpu": gpu,
            "ratios": ratios, "implied_by_paper_ratios": implied, "assumptions": assumptions,
            "sources": "docs/paper-energy.md §1 (assumptions), §2 (GPU tiers)"}


def _j_per_hold_s(a: PaperAssumptions, mem: Dict[str, Any]) -> float:
    """Memristive J per game per second of bias hold per step: the paper's memristive side is linear in
    the hold (bias energy = P_bias x hold x steps; the pulses a fixed share of it)."""
    return mem["bias_power_w"] * a.steps_per_game / (1.0 - a.pulse_fraction)


def hold_for_ratio(a: PaperAssumptions, mem: Dict[str, Any], gpu: Dict[str, Dict[str, Dict[str, Any]]]
                   ) -> Dict[str, Dict[str, Dict[str, Dict[str, Optional[float]]]]]:
    """The bias hold per step (s) at which each GPU tier, precision and size reproduces the paper's
    published ratio (:data:`PAPER_RATIO_BY_SIZE`): GPU J / (J per hold-second x hold) = ratio, solved
    exactly (the memristive side is linear in the hold, the paper-mode GPU side does not depend on
    it); None where no hold does (no bias power)."""
    per_s = _j_per_hold_s(a, mem)
    return {tier: {dt: {size: {"ratio": r, "bias_hold_s": v[f"{size}_j_per_game"] / (r * per_s) if per_s > 0 else None}
                        for size, r in PAPER_RATIO_BY_SIZE.items()}
                   for dt, v in by_dt.items()} for tier, by_dt in gpu.items()}


def ratio_vs_hold(a: PaperAssumptions, mem: Dict[str, Any], gpu: Dict[str, Dict[str, Dict[str, Any]]],
                  holds_s: Sequence[float] = HOLD_GRID_S) -> List[Dict[str, Any]]:
    """The paper-mode ratio of every tier, precision and size at each bias hold per step in ``holds_s``."""
    per_s = _j_per_hold_s(a, mem)
    rows = []
    for h in holds_s:
        check_range("bias_hold_s", h, 0.0, 3600.0, lo_open=True, unit="s")
        m = per_s * h
        rows.append({"bias_hold_s": h, "memristive_j_per_game": m,
                     **{f"{tier}_{dt}_{size}": (v[f"{size}_j_per_game"] / m if m > 0 else float("inf"))
                        for tier, by_dt in gpu.items() for dt, v in by_dt.items() for size in PAPER_RATIO_BY_SIZE}})
    return rows


@lru_cache(maxsize=16)
def ops_work(ops: str, hidden: int, presyn: int) -> Tuple[Tuple[Tuple[str, float], ...], float, float, int, int]:
    """(elements per op kind, values moved, layer-norm rows, values held, state values) of one step of ``ops`` at batch 1,
    counted by the op counter of ``analyze`` from the same torch code the GPU kernels are traced from."""
    from stoxbar.analysis import DigitalOpCounter
    from stoxbar.analysis.digital_baseline import tally_work

    check_choice("ops", ops, OPS)
    g = torch.Generator().manual_seed(0)
    counter = DigitalOpCounter()
    if ops == "four":
        shape = (1, hidden, presyn)
        W, F, lam, dF = (torch.rand(shape, generator=g) for _ in range(4))
        x = torch.rand(1, presyn, generator=g)
        state = hidden * presyn  # F
        held = 3 * hidden * presyn + presyn  # W, F, Lambda and x (dF is the step's update, produced in place)
        with counter:
            paper_four_ops(x, W, F, lam, dF)
    else:
        from stoxbar.devices import presets
        from stoxbar.stpn.cells import MSTPNCell

        with torch.no_grad():
            cell = MSTPNCell(presyn - hidden, hidden, presets.sto_2024(), STEP_PERIOD_S, use_kernel=False)
            state = cell.initial_state(1)
            x = torch.rand(1, presyn - hidden, generator=g)
            cell.step_params()  # Lambda is derived once per game, not per step
            with counter:
                cell(x, state)
        held = sum(p.numel() for p in cell.parameters()) + sum(t.numel() for t in state)
        state = sum(t.numel() for t in state)
    elements, moved, rows = tally_work(counter.tally.values())
    return tuple(sorted(elements.items())), moved, rows, held, state


def paper_digital(a: PaperAssumptions, spec: Optional[DigitalAccelSpec] = None) -> Dict[str, Dict[str, Any]]:
    """The digital-accelerator baseline of the paper's GPU work (``a.ops``) at the standard and optimal
    sizes, J per game (the optimal one scaled to the layer's synapses like the GPU's), the SRAM leaking
    over the real step period."""
    from stoxbar.analysis.digital_baseline import baseline_cost

    spec = DigitalAccelSpec() if spec is None else spec
    out = {}
    for size, hidden in (("standard", a.hidden), ("optimal", a.optimal_hidden)):
        elements, moved, rows, held, state = ops_work(a.ops, hidden, a.presyn)
        c = baseline_cost(dict(elements), moved, held, STEP_PERIOD_S, spec, rows, state)
        scale = a.synapses / (hidden * a.presyn)
        out[size] = {"j_per_game": c.energy_j * scale * a.steps_per_game, "j_per_step": c.energy_j,
                     "macs_per_step": c.macs, **{k: v for k, v in c.as_dict().items() if k.endswith("_j") and k != "energy_j"}}
    return out


# ---------------------------------------------------------------------------------------------
# the waterfall: the paper's estimate -> stoxbar's system figure of a real game
# ---------------------------------------------------------------------------------------------
@dataclass
class WaterfallStep:
    """One changed assumption: the memristive and GPU J per game after it, and its factor on the ratio."""

    label: str
    side: str  # "start" | "memristive" | "gpu" | "both"
    memristive_j: float
    gpu_j: float
    factor: float = 1.0  # ratio after / ratio before
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.gpu_j / self.memristive_j if self.memristive_j > 0 else float("inf")


# ledger components of the array / system boundaries, grouped into waterfall steps
_STEP_COMPONENTS = (
    ("cell reads", ("cell_read",)),
    ("DAC and ADC", ("dac", "adc")),
    ("read/write drivers, sense, digital accumulation", ("row_driver", "st_write_driver", "sense",
                                                         "digital_accum", "sample_hold", "write_driver")),
    ("bias drivers", ("bias_driver",)),
    ("digital neuron and Hebbian work", ("digital_mult", "digital_compare", "neuron.", "agent.")),
    ("encoder and heads", ("encoder.", "heads.")),
)


def _match(comp: str, names: Sequence[str]) -> bool:
    return any(comp == n or (n.endswith(".") and comp.startswith(n)) for n in names)


def waterfall(system_by_component: Dict[str, float], steps: int, g_long_term_sum_s: float,
              bias_v2_g_sum: float, arch, a: Optional[PaperAssumptions] = None,
              spec: Optional[GPUSpec] = None, dtype: str = "fp32", step_period_s: float = STEP_PERIOD_S,
              pulses_per_game: Optional[float] = None) -> List[WaterfallStep]:
    """From the paper's estimate to the ``system`` figure of ``steps`` real agent steps.

    ``system_by_component``: the game's ``system`` boundary, J by component (pong.accounting);
    ``g_long_term_sum_s``: sum of the programmed long-term conductances of every device (both of
    each differential pair, S); ``bias_v2_g_sum``: sum of V_bias^2 * G over the same devices at
    the biases that realise the learned taus (W = V^2 S). The last memristive value is exactly
    the ``system`` total, the last GPU value the ``dedicated`` tier at ``dtype``; the product of
    the factors is the end-to-end change of the ratio (tested).
    """
    a = PaperAssumptions() if a is None else a
    spec = GPUSpec() if spec is None else spec
    check_int("steps", steps, 1, None)
    paper = paper_estimate(a, spec)
    m = paper["memristive"]["energy_j_per_game"]
    g = gpu_paper(replace(a, tiers=("roofline",), precisions=("fp16",)), spec)["roofline"]["fp16"][
        "standard_j_per_game"]
    out = [WaterfallStep("the paper's assumptions (four ops, fp16, roofline)", "start", m, g,
                         note=f"{a.steps_per_game} steps, {a.bias_v:g} V on {a.g_bias_s * 1e9:.3g} nS per synapse")]

    def push(label: str, side: str, m_new: float, g_new: float, note: str = "") -> None:
        prev = out[-1]
        r_new = g_new / m_new if m_new > 0 else float("inf")
        out.append(WaterfallStep(label, side, m_new, g_new, r_new / prev.ratio, note))

    t_held = a.bias_held_s_per_step
    pulses_paper_per_step = paper["memristive"]["by_component"]["pulses"] / a.steps_per_game
    scale = steps / a.steps_per_game
    push("the real game's length", "both", m * scale, g * scale, f"{steps} agent steps instead of {a.steps_per_game}")
    bias = g_long_term_sum_s * a.bias_v ** 2 * t_held * steps
    push("the conductance actually held", "memristive", bias + pulses_paper_per_step * steps, out[-1].gpu_j,
         f"both devices of each pair at their programmed G ({g_long_term_sum_s / a.synapses * 1e9:.3g} nS per "
         f"synapse) instead of {a.devices_per_synapse} x {a.g_bias_s * 1e9:.3g} nS")
    bias = bias_v2_g_sum * t_held * steps
    push("the bias each synapse needs for its tau", "memristive", bias + pulses_paper_per_step * steps, out[-1].gpu_j,
         "V_bias(tau) from the learned time constants instead of 0.6 V everywhere")
    bias = bias * step_period_s / t_held if t_held > 0 else bias_v2_g_sum * step_period_s * steps
    push("the bias held for the real step period", "memristive", bias + pulses_paper_per_step * steps,
         out[-1].gpu_j, f"{step_period_s * 1e3:.4g} ms per step instead of {t_held * 1e3:.4g} ms")
    bias_ledger = system_by_component.get("bias", 0.0)
    push("the short-term increments under bias", "memristive", bias_ledger + pulses_paper_per_step * steps,
         out[-1].gpu_j, "the ledger's exact bias integral, which also biases F")
    used = {"bias"}
    pulses = system_by_component.get("st_pulse", 0.0)
    used.add("st_pulse")
    m_cur = bias_ledger + pulses
    paper_pj = 1e12 * pulses_paper_per_step / a.synapses
    note = (f"{pulses:.3g} J of short-term pulses instead of the paper's {100 * a.pulse_fraction:g} % share "
            f"({paper_pj:.3g} pJ per synapse-step)")
    if pulses_per_game:
        rate = pulses_per_game / (steps * a.synapses)
        note += (f"; ours: {pulses_per_game:.4g} pulses = {rate:.3g} per synapse-step at "
                 f"{1e12 * pulses / pulses_per_game:.3g} pJ each")
    push("the pulses of the actual game", "memristive", m_cur, out[-1].gpu_j, note)
    for label, names in _STEP_COMPONENTS:
        comps = [c for c in system_by_component if c not in used and _match(c, names)]
        used.update(comps)
        m_cur += math.fsum(system_by_component[c] for c in comps)
        push(label, "memristive", m_cur, out[-1].gpu_j, ", ".join(sorted(comps)) or "none booked")
    rest = [c for c in system_by_component if c not in used]
    if rest:
        m_cur += math.fsum(system_by_component[c] for c in rest)
        push("other booked components", "memristive", m_cur, out[-1].gpu_j, ", ".join(sorted(rest)))
    m_end = math.fsum(system_by_component.values())
    out[-1].memristive_j = m_end  # identical up to summation order
    tiers16 = gpu_tiers(arch, steps, "fp16", spec, step_period_s)
    push("the whole network step (m-STPN step, encoder, heads)", "gpu", m_end, tiers16["roofline"]["total_j"],
         "today's roofline model of the agent's step instead of the four synapse ops")
    tiers = gpu_tiers(arch, steps, dtype, spec, step_period_s)
    push(f"{dtype} instead of fp16", "gpu", m_end, tiers["roofline"]["total_j"])
    push("launch and sync latency (latency tier)", "gpu", m_end, tiers["latency"]["total_j"],
         f"{tiers['latency']['kernels_per_step']} kernels + {tiers['latency']['syncs_per_step']} sync per step, "
         "each max(launch, roofline) at the active power")
    push("a GPU held for the game (dedicated tier)", "gpu", m_end, tiers["dedicated"]["total_j"],
         f"idle {spec.idle_power_w:g} W between steps")
    return out


def gap_decomposition(paper: Dict[str, Any], system_j_per_game: float, steps: int,
                      tiers: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The gap between each published ratio and ours, split into its memristive and its GPU side.

    ``paper``: a :func:`paper_estimate` document (its memristive figure holds the bias
    ``bias_hold_s`` per step); ``system_j_per_game`` over ``steps`` agent steps: our chip;
    ``tiers``: :func:`gpu_tiers` of the same steps. Per published ratio R (standard: per step at
    the layer's size) and per baseline tier: memristive factor = our chip's J per step / the
    paper's; GPU factor = the GPU J per step R implies / the tier's; R / (memristive x GPU) = our
    ratio (exact). At another paper hold h the memristive factor scales by ``bias_hold_s`` / h and
    the GPU factor by h / ``bias_hold_s``.
    """
    check_int("steps", steps, 1, None)
    m_paper = paper["memristive"]["energy_j_per_game"] / paper["steps_per_game"]
    m_ours = system_j_per_game / steps
    rows = []
    for size in ("standard",):
        r = PAPER_RATIO_BY_SIZE[size]
        for tier, t in tiers.items():
            g_ours = t["total_j"] / steps
            rows.append({"published": size, "published_ratio": r, "tier": tier, "bias_hold_s": paper["bias_hold_s"],
                         "memristive_j_per_step_paper": m_paper, "memristive_j_per_step_ours": m_ours,
                         "gpu_j_per_step_implied": r * m_paper, "baseline_j_per_step_ours": g_ours,
                         "memristive_factor": m_ours / m_paper, "gpu_factor": r * m_paper / g_ours,
                         "our_ratio": g_ours / m_ours})
    return rows


def waterfall_table(steps: Sequence[WaterfallStep]) -> List[Dict[str, Any]]:
    """Rows (dicts) of the waterfall: label, side, memristive and GPU J per game, factor, ratio."""
    return [{"step": s.label, "side": s.side, "memristive_j": s.memristive_j, "gpu_j": s.gpu_j,
             "factor": s.factor, "ratio": s.ratio, "note": s.note} for s in steps]


# the chip's ledger components booked per unit of time (crossbar/costs.py: bias held, chip on-time)
PER_TIME_COMPONENTS = ("bias", "bias_driver", "bias_refresh", "leakage")


def ratio_vs_step_period(system_by_component: Dict[str, float], steps: int, arch, periods_s: Sequence[float],
                         spec: Optional[GPUSpec] = None, dtype: str = "fp32",
                         step_period_s: float = STEP_PERIOD_S,
                         accel: Optional[DigitalAccelSpec] = None) -> List[Dict[str, float]]:
    """The system ratio per tier if the step period (and so the bias-held time) were ``periods_s``.

    What is booked per unit of time grows in proportion to the period (the ledger's values are for
    ``step_period_s``): the bias, its drivers and its refresh (held for the step) and the tiles'
    static power (``leakage``, booked over the chip's on-time, crossbar/costs.py); every other
    memristive cost (reads, converters, pulses, digital work, the power-gating wake-ups) is per step.
    The roofline and latency GPU figures do not depend on the period; the dedicated one idles for
    the rest of it.
    """
    spec = GPUSpec() if spec is None else spec
    fixed = math.fsum(v for c, v in system_by_component.items() if c not in PER_TIME_COMPONENTS)
    held = math.fsum(system_by_component.get(c, 0.0) for c in PER_TIME_COMPONENTS)
    rows = []
    for p in periods_s:
        check_range("period_s", p, 0.0, 3600.0, lo_open=True, unit="s")
        m = fixed + held * p / step_period_s
        t = gpu_tiers(arch, steps, dtype, spec, p, accel=accel)
        rows.append({"step_period_s": p, "memristive_j": m,
                     **{f"ratio_{tier}": t[tier]["total_j"] / m for tier in t}})
    return rows


def pulse_statistics(ledger, steps: int, synapses: int) -> Dict[str, float]:
    """Short-term pulses booked in ``ledger`` (layer stp): count, J, J per pulse, pulses per synapse-step."""
    e = ledger.totals(("component",), layer="stp").get(("st_pulse",))
    n, j = (float(e.count), float(e.energy_j)) if e is not None else (0.0, 0.0)
    return {"pulses": n, "energy_j": j, "j_per_pulse": j / n if n else 0.0,
            "pulses_per_synapse_step": n / (steps * synapses) if steps else 0.0}


def game_inputs(agent, ledger_boundaries: Dict[str, Any]) -> Tuple[Dict[str, float], float, float]:
    """(system J by component, sum of long-term G of every device S, sum of V_bias^2 G W) of a played chip."""
    chip = agent.cell.chip
    g_lt = chip.g_pos.double() + chip.g_neg.double()
    v = chip.v_bias.double()
    return (dict(ledger_boundaries["system"]["by_component"]), float(g_lt.sum()), float((v ** 2 * g_lt).sum()))


def waterfall_figure(steps: Sequence[WaterfallStep], period_rows: Sequence[Dict[str, float]], path,
                     hold_rows: Sequence[Dict[str, Any]] = ()) -> None:
    """Two panels: the ratio after each step (log scale), and the ratio against the bias-held time per
    step: the system boundary's (bias held for the whole step period) and, from ``hold_rows``
    (:func:`ratio_vs_hold`), paper mode's latency tier in fp16, with the paper's published ratios marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1.6, 1]})
    colors = {"start": "0.4", "both": "0.6", "memristive": "tab:blue", "gpu": "tab:orange"}
    y = list(range(len(steps)))[::-1]
    ax.barh(y, [s.ratio for s in steps], color=[colors[s.side] for s in steps], log=True)
    for yi, s in zip(y, steps):
        ax.text(s.ratio * 1.15, yi, f"{s.ratio:.3g}x" + (f"  (x{s.factor:.3g})" if s.side != "start" else ""),
                va="center", fontsize=8)
    ax.set_yticks(y, [s.label for s in steps], fontsize=8)
    ax.set_xlabel("GPU energy / memristive energy (per game)")
    ax.set_title("From the paper's assumptions to stoxbar's system figure")
    ax.set_xlim(min(s.ratio for s in steps) / 3, max(s.ratio for s in steps) * 30)
    for key, r in PAPER_HEADLINE_RATIOS.items():
        ax.axvline(r, color="tab:red", lw=0.8, ls="--")
        ax.text(r, len(steps) - 0.4, f"paper {key.replace('_', ' ')}: {r:g}x", color="tab:red", fontsize=7,
                rotation=90, va="top", ha="right")
    for tier, style, color in zip((*TIERS, "digital"), ("-", "--", ":", "-."), ("C0", "C1", "C2", "tab:purple")):
        bx.loglog([r["step_period_s"] for r in period_rows], [r[f"ratio_{tier}"] for r in period_rows], style,
                  marker="o", color=color, label=tier if tier != "digital" else "digital accelerator")
    for size, style in (("standard", "-"), ("optimal", "--")):
        key = f"latency_fp16_{size}"
        if hold_rows and key in hold_rows[0]:
            bx.loglog([r["bias_hold_s"] for r in hold_rows], [r[key] for r in hold_rows], style, color="tab:red",
                      lw=1.0, label=f"paper mode, latency fp16, {size}")
    for size, r in PAPER_RATIO_BY_SIZE.items():
        bx.axhline(r, color="tab:red", lw=0.8, ls=":")
        bx.text(period_rows[0]["step_period_s"] if period_rows else 1e-3, r, f"paper {size}: {r:g}x",
                color="tab:red", fontsize=7, va="bottom")
    bx.axvline(STEP_PERIOD_S, color="0.5", lw=0.8)
    bx.axhline(1.0, color="0.5", lw=0.8)
    bx.set_xlabel("bias-held time per step (s) (system: = the step period)")
    bx.set_ylabel("baseline / memristive")
    bx.set_title("The ratio against the bias hold")
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
