"""What one study trial measures, and the unit of every metric column.

* static: synapses, tiles, area of the STP layer, MVM latency (from the periphery model);
* ``wires`` (``[metrics] wires = true``): the tiles' line parasitics solved in full (:func:`wire_metrics`);
* ``mvm_error_*``: the analog STP layer's MVM against float on layer inputs recorded while the
  digital agent plays (each sample: z_hat and the short-term state F of that step);
* Pong on the chip: score, steps, simulation speed, energy per game and per step at the three
  boundaries and per component, the GPU baseline and the memristive-vs-GPU ratios (roofline,
  latency and dedicated tiers, docs/paper-energy.md §2, and the shipped H200 measurement of the
  agent's step, ``measured_b1`` / ``measured_b256``, §2.3);
* ``agent.backend = "float"``: the same games with the agent in float32 (score, steps, speed only;
  no static, MVM-error, wire or energy columns: those describe a chip);
* any other task (a study's ``task`` entry point): whatever metrics the task returns
  (:func:`measure_task`), units read from the name's suffix (``_j``, ``_s``, ``_m2``, ...).

May import: stoxbar.core.validation, stoxbar.core.entry_points, stoxbar.analysis, stoxbar.crossbar, stoxbar.devices, stoxbar.stpn,
stoxbar.pong, stoxbar.studies.spec.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from stoxbar.crossbar import EnergyLedger
from stoxbar.pong.ablate import apply_ablation
from stoxbar.pong.scores import score_summary
from stoxbar.studies.spec import Metrics, PointConfig

BOUNDARIES = ("synapse_only", "array", "system")

# -- building -----------------------------------------------------------------------------------
def build_agent(ckpt: Optional[Dict[str, Any]], cfg: PointConfig, seed: int):
    """The trained agent of a loaded checkpoint, or an untrained one of ``cfg.arch`` (``ckpt`` None)."""
    from stoxbar.pong.agent import PongAgent
    from stoxbar.pong.checkpoint import build_agent as agent_from_checkpoint

    torch.manual_seed(seed)
    agent = PongAgent(cfg.arch) if ckpt is None else agent_from_checkpoint(ckpt)
    agent.eval()
    return agent


def static_metrics(cfg: PointConfig) -> Dict[str, Any]:
    """Size, area and latency of the STP layer from the configuration alone."""
    from stoxbar.crossbar.costs import area, cost, full_scale_read, layer_layout

    p, arch = cfg.periphery, cfg.arch
    layout = layer_layout(arch.n_in + arch.hidden, arch.hidden, p)
    a = area(layout, p)
    rows, cols = max(r for r, _ in layout), max(c for _, c in layout)
    latency = cost(full_scale_read(p, cfg.device, rows, cols), cfg.device, p).latency_s
    return {"synapses": arch.n_synapses, "tiles": len(layout), "area_m2": a["total"],
            "area_adc_share": a["adc"] / a["total"], "mvm_latency_s": latency}


# -- MVM error ------------------------------------------------------------------------------------
@torch.no_grad()
def record_layer_inputs(agent, samples: int, seed: int, stride: int = 8) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(z_hat [1, P], F [1, H, P]) of every ``stride``-th step of a digital game (more games if needed)."""
    from stoxbar.pong.env import make_pong_env

    cell = agent.cell
    out: List[Tuple[torch.Tensor, torch.Tensor]] = []
    gen = torch.Generator().manual_seed(seed)
    game = 0
    while len(out) < samples:
        env = make_pong_env(1, seed=seed + 1000 + game)
        try:
            obs, state, step, done = env.reset(), agent.initial_state(1), 0, False
            while not done and len(out) < samples:
                if step % stride == 0:
                    h_prev, F = state
                    out.append((cell.presynaptic(agent.encode(obs), h_prev), F.clone()))
                actions, state = agent.act(obs, state, greedy=False, generator=gen)
                obs, _, d, _ = env.step(actions)
                done, step = bool(d[0]), step + 1
        finally:
            env.close()
        game += 1
    return out


@torch.no_grad()
def analog_reads(agent, cfg: PointConfig,
                 recorded: List[Tuple[torch.Tensor, torch.Tensor]]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(chip output, float output) of the STP layer for each recorded (z_hat, F): the layer programmed on this
    point's chip, F written as its short-term conductances, the same input read on the chip and in float."""
    from stoxbar.stpn.analog import AnalogMSTPNCell

    cell = agent.cell
    analog = AnalogMSTPNCell.from_cell(cell, cfg.periphery, cfg.device)
    analog.initial_state(1)
    chip, g_max = analog.chip, cfg.device.st_g_max_s
    for z_hat, F in recorded:
        # the chip's short-term window may be narrower than the trained one: it saturates
        g_st = (chip.tiled_weight(F[0]) * cfg.device.g_range_s).clamp(-g_max, g_max)
        chip.g_st.copy_(g_st.unsqueeze(0))
        y_float = cell.mvm(z_hat, F)
        yield analog.mvm(z_hat, F), y_float


@torch.no_grad()
def mvm_error(agent, cfg: PointConfig, samples: int, seed: int) -> Dict[str, Any]:
    """Relative error of the analog STP-layer MVM (this point's chip) against float, same inputs."""
    errors = [float((y - y_float).norm() / y_float.norm().clamp_min(1e-30))
              for y, y_float in analog_reads(agent, cfg, record_layer_inputs(agent, samples, seed))]
    e = torch.tensor(errors, dtype=torch.float64)
    return {"mvm_rel_error": float(e.mean()), "mvm_rel_error_std": float(e.std()) if len(errors) > 1 else 0.0,
            "mvm_samples": len(errors)}


# -- line parasitics ------------------------------------------------------------------------------------
def wire_metrics(agent, cfg: PointConfig) -> Dict[str, Any]:
    """What the wires of this point's tiles do, solved in full (``periphery.parasitics`` with mode "full",
    validated against ngspice) whatever mode the games use: ``ir_drop_rel_error``, the MVM error of the
    wires alone on a random read of the STP layer's shape (:func:`stoxbar.analysis.run.ir_drop_rel_error`),
    and the agent's trained decay bias held through the wires under this point's bias addressing: the
    largest and RMS drop (V) and the largest relative error of tau it causes."""
    from dataclasses import replace

    from stoxbar.analysis.run import ir_drop_rel_error
    from stoxbar.stpn.analog import AnalogMSTPNCell

    p = cfg.periphery
    p = replace(p, parasitics=replace(p.parasitics, mode="full"))
    # a chip of its own: the agent keeps its cell (the games build theirs from this point's periphery)
    report = AnalogMSTPNCell.from_cell(agent.cell, p, cfg.device).chip.bias_report
    arch = cfg.arch
    return {"ir_drop_rel_error": ir_drop_rel_error(arch.n_in + arch.hidden, arch.hidden, cfg.device, p),
            "bias_wire_drop_max_v": report.wire_drop_max_v, "bias_wire_drop_rms_v": report.wire_drop_rms_v,
            "bias_tau_rel_error_max": report.wire_tau_err_max}


# -- Pong on the chip --------------------------------------------------------------------------------
def pong_metrics(agent, cfg: PointConfig, metrics: Metrics, seed: int,
                 games_out: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Play ``metrics.games`` games on this point's chip; score, speed and energy columns (score and speed
    only for ``cfg.backend`` "float": the agent in float32, its games played together as on the chips).
    ``games_out`` (a list) receives one record per game: its env seed, chip, score, agent steps and whether
    ``max_steps`` cut it short (game ``i`` has env seed ``seed + i`` at every point of a study seed, so two
    points' games pair up)."""
    from stoxbar.pong.chips import default_chips, play_chips
    from stoxbar.pong.evaluate import build_analog_cell, energy_report

    chip = cfg.on_chip
    ledger = EnergyLedger()
    if chip:
        build_analog_cell(agent, cfg.device, cfg.periphery).attach(ledger, "stp")
    chips = metrics.chips or default_chips(metrics.games)
    res = play_chips(agent, metrics.games, chips, seed, metrics.greedy, metrics.max_steps,
                     cfg.periphery if chip else None, ledger, sticky=metrics.sticky)
    steps, games = res.agent_steps, len(res.scores)
    if games_out is not None:
        games_out.extend(res.per_game(seed))
    stats = score_summary(res.scores)
    out: Dict[str, Any] = {
        "score_mean": stats["mean"], "score_std": stats["std"], "score_ci95_lower": stats["ci95"]["lower"],
        "score_ci95_upper": stats["ci95"]["upper"], "score_min": stats["min"], "games": games,
        "truncated_games": sum(res.truncated), "chips": chips,
        "agent_steps": steps, "steps_per_game": steps / games,
        "wall_s_per_step": res.wall_s / steps, "speed_vs_real_time": res.simulated_s / res.wall_s,
    }
    if not chip:
        return out
    energy = energy_report(res, agent.arch, analog=True)
    mvm = ledger.totals(("layer", "component", "event"), layer="stp").get(("stp", "dac", "mvm"))
    if mvm is not None:
        out["latency_mvm_s_per_step"] = ledger.latency_s(layer="stp", event="mvm") / steps
        # the write phase of the short-term updates (pulses one at a time per tile, crossbar/costs.py)
        out["latency_write_s_per_step"] = ledger.latency_s(layer="stp", event="short_term_update") / steps
        # the power-gated blocks' wake-up before each step (peripherals/static.py)
        out["latency_wake_s_per_step"] = ledger.latency_s(layer="stp", component="power_gating_wake") / steps
        out["read_rounds_per_step"] = mvm.count / (steps * (agent.arch.n_in + agent.arch.hidden))
    gpu = energy["gpu_baseline"]["total_j"]
    out["energy_gpu_baseline_j_per_game"] = gpu / games
    out["energy_gpu_baseline_j_per_step"] = gpu / steps
    spread = res.energy_spread()  # of each game's own energy (pong/chips.py)
    for b in BOUNDARIES:
        total = energy[b]["total_j"]
        out[f"energy_{b}_j_per_game"] = total / games
        out[f"energy_{b}_j_per_step"] = total / steps
        out[f"gpu_ratio_{b}"] = gpu / total if total > 0 else float("inf")
        out[f"energy_{b}_j_per_game_std"] = spread[b]["std"]
    from stoxbar.pong.paper import gpu_tiers, shipped_gpu_measurement

    # the shipped GPU measurement (docs/paper-energy.md §2.3), where this install has it and it holds the layer
    tiers = gpu_tiers(agent.arch, steps, measured=shipped_gpu_measurement())
    for tier in ("latency", "dedicated", *(t for t in tiers if t.startswith("measured_b"))):
        out[f"energy_gpu_{tier}_j_per_game"] = tiers[tier]["total_j"] / games
        for b in BOUNDARIES:
            total = energy[b]["total_j"]
            out[f"gpu_ratio_{tier}_{b}"] = tiers[tier]["total_j"] / total if total > 0 else float("inf")
    digital = tiers["digital"]["total_j"]  # the digital-accelerator baseline (docs/energy-model.md §9.1)
    out["energy_digital_accel_j_per_game"] = digital / games
    for b in BOUNDARIES:
        total = energy[b]["total_j"]
        out[f"digital_ratio_{b}"] = digital / total if total > 0 else float("inf")
    for comp, j in energy["system"]["by_component"].items():
        out[f"energy_system.{comp}_j_per_game"] = j / games
    return out


def measure_task(task: str, task_args: Dict[str, Any], cfg: PointConfig, seed: int) -> Dict[str, Any]:
    """Metrics of one trial of a study over another task: ``task(cfg, seed, **task_args)`` (see studies.spec)."""
    from stoxbar.core.entry_points import load_entry_point
    from stoxbar.core.validation import ConfigError

    t0 = time.perf_counter()
    out = load_entry_point(task, "task")(cfg, seed, **task_args)
    if not isinstance(out, dict) or not out:
        raise ConfigError(f"task {task} returned {type(out).__name__}; expected a non-empty dict of metric name "
                          "-> number")
    bad = {k: v for k, v in out.items() if not isinstance(k, str) or not isinstance(v, (int, float))}
    if bad:
        raise ConfigError(f"task {task}: metrics {sorted(map(str, bad))} are not numbers; expected metric name -> "
                          "number")
    metrics = {k: (float(v) if isinstance(v, float) else v) for k, v in out.items()}
    metrics["trial_wall_s"] = time.perf_counter() - t0
    return metrics


def measure(ckpt: Optional[Dict[str, Any]], cfg: PointConfig, metrics: Metrics, seed: int,
            games_out: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Every metric of one trial (see module docstring); ``ckpt`` None = untrained agent; ``games_out``: see
    :func:`pong_metrics`."""
    t0 = time.perf_counter()
    chip = cfg.on_chip  # "float": the games in float32, no chip metrics (studies.spec.BACKENDS)
    out = static_metrics(cfg) if chip else {}
    if metrics.mvm_error_samples or metrics.games or metrics.wires:
        agent = build_agent(ckpt, cfg, seed)
        apply_ablation(agent, cfg.ablate, ckpt)
        if metrics.mvm_error_samples and chip:
            out.update(mvm_error(agent, cfg, metrics.mvm_error_samples, seed))
        if metrics.wires and chip:
            out.update(wire_metrics(agent, cfg))
        if metrics.games:
            out.update(pong_metrics(agent, cfg, metrics, seed, games_out))
    out["trial_wall_s"] = time.perf_counter() - t0
    return out
