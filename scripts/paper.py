"""``stoxbar paper``: the paper's energy estimate from our models, and the waterfall to ours.

Without ``--waterfall`` it prints (and with ``--json`` writes) the paper-mode estimate
(docs/paper-energy.md §1-2): every assumption of the paper is an option whose default is the
paper's value. With ``--waterfall FIG.png`` it also plays game(s) of the shipped checkpoint (or of
``--checkpoint``) on the simulated chip (about 10-30 s a game) and walks from the paper's figure to
stoxbar's ``system`` figure one assumption at a time (§3), writing the figure and, with ``--json``, the
table.

May import: everything in stoxbar (the top of the dependency order).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from stoxbar.core.validation import ConfigError
from stoxbar.scripts.energy import add_bias_arguments, apply_steps, bias_steps


def _float_expr(text: str) -> float:
    """A finite float, or ``a**b`` (e.g. ``2**21``); inf, nan and overflows are refused."""
    try:
        if "**" in text:
            base, exp = text.split("**", 1)
            value = float(base) ** float(exp)
        else:
            value = float(text)
    except (ValueError, OverflowError, ZeroDivisionError) as e:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number or a**b") from e
    if isinstance(value, complex) or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number or a**b")
    return value


def _int_expr(text: str) -> int:
    v = _float_expr(text)
    if v != int(v):
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer")
    return int(v)


def _csv(text: str) -> tuple:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stoxbar paper`` (defaults: the paper's values, docs/paper-energy.md §1)."""
    from stoxbar.pong.paper import PaperAssumptions

    d = PaperAssumptions()
    p.add_argument("--json", default=None, help="write the estimate (and waterfall) here (never overwrites; default: none)")
    p.add_argument("--bias-v", type=_float_expr, default=d.bias_v, help="decay bias held on every synapse (V)")
    p.add_argument("--g-bias-s", type=_float_expr, default=d.g_bias_s, help="conductance under the bias (S); "
                   "default 4.3 nW / 0.36 V^2")
    p.add_argument("--devices-per-synapse", type=int, default=d.devices_per_synapse,
                   help="memristors per synapse (a differential pair: 2)")
    p.add_argument("--bias-hold-s", "--bias-held-s-per-step", dest="bias_held_s_per_step", type=_float_expr,
                   default=d.bias_held_s_per_step,
                   help="time the bias is held per agent step (s); not stated by the paper, default the "
                        "real-time step period (the output gives the hold that reproduces each published ratio)")
    p.add_argument("--steps-per-game", type=_int_expr, default=d.steps_per_game, help="agent steps per game")
    p.add_argument("--hidden", type=int, default=d.hidden, help="units of the plastic layer")
    p.add_argument("--presyn", type=int, default=d.presyn, help="presynaptic inputs per unit")
    p.add_argument("--pulse-fraction", type=_float_expr, default=d.pulse_fraction,
                   help="share of the pulses in the memristive figure (the paper's ~1 %%)")
    p.add_argument("--ops", default=d.ops, help="GPU work per step: four (the paper's) | mstpn_step")
    p.add_argument("--precision", type=_csv, default=d.precisions, help="GPU number formats, comma-separated")
    p.add_argument("--tier", type=_csv, default=d.tiers, help="GPU baseline tiers, comma-separated")
    p.add_argument("--optimal-synapses", type=_int_expr, default=d.optimal_synapses, help="synapses of the GPU's optimal point, e.g. 2**21")
    p.add_argument("--cuda-graph", action="store_true", help="latency tier with CUDA-graph launches")
    p.add_argument("--gpu-measured", default=None, metavar="FILE",
                   help="benchmarks/gpu_measure.py JSON: replaces the latency tier's constants")
    from stoxbar.scripts.energy import add_accel_arguments

    add_accel_arguments(p)
    p.add_argument("--waterfall", default=None, metavar="PNG",
                   help="play the checkpoint (--checkpoint) and write the waterfall figure here (never overwrites)")
    p.add_argument("--games", type=int, default=1, help="games for the waterfall")
    from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT

    p.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT), metavar="PT",
                   help="the agent of the waterfall's games")
    from stoxbar.scripts.energy import add_device_argument

    add_device_argument(p, None, "; the chip of the waterfall's games (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the waterfall's games")
    add_bias_arguments(p)  # the waterfall's chip (the analytic estimate takes --bias-v etc.)


def assumptions_from_args(args: argparse.Namespace):
    from stoxbar.pong.paper import PaperAssumptions

    return PaperAssumptions(
        bias_v=args.bias_v, g_bias_s=args.g_bias_s, devices_per_synapse=args.devices_per_synapse,
        bias_held_s_per_step=args.bias_held_s_per_step, steps_per_game=args.steps_per_game, hidden=args.hidden,
        presyn=args.presyn, pulse_fraction=args.pulse_fraction, ops=args.ops, precisions=tuple(args.precision),
        tiers=tuple(args.tier), optimal_synapses=args.optimal_synapses, cuda_graph=args.cuda_graph)


def main(args: argparse.Namespace) -> int:
    """Run ``stoxbar paper``."""
    from stoxbar.crossbar import write_json_atomic
    from stoxbar.peripherals.gpu_baseline import GPUSpec
    from stoxbar.pong.paper import paper_estimate
    from stoxbar.scripts.energy import accel_from_args

    for path in (args.json, args.waterfall):
        if path and os.path.exists(path):
            raise FileExistsError(f"{path} exists: results are never overwritten; choose a new path")
    a = assumptions_from_args(args)
    device = None
    if args.preset:  # checked before any work (the waterfall's chip)
        from stoxbar.devices import presets

        device = presets.get_preset(args.preset, "--device")
    spec = GPUSpec.from_measured(args.gpu_measured) if args.gpu_measured else GPUSpec()
    doc = paper_estimate(a, spec, accel_from_args(args))
    doc["command"] = ["stoxbar", *sys.argv[1:]]
    _print(doc)
    if args.waterfall:
        doc["waterfall"] = _waterfall(args, a, spec, doc, device)
    if args.json:
        write_json_atomic(args.json, doc)
        print(f"wrote {args.json}")
    return 0


def _print(doc: dict) -> None:
    m = doc["memristive"]
    print(f"paper mode: {doc['synapses']} synapses, {doc['steps_per_game']} steps per game = "
          f"{doc['seconds_per_game']:.4g} s of play; bias held {doc['bias_hold_s'] * 1e3:.4g} ms per step "
          f"({doc['bias_held_s_per_game']:.4g} s per game; not stated by the paper, --bias-hold-s)")
    print(f"memristive: bias power {m['bias_power_w']:.4g} W, {m['energy_j_per_game']:.4g} J per game "
          f"(bias {m['by_component']['bias']:.4g} J, pulses {m['by_component']['pulses']:.4g} J)")
    print(f"{'GPU tier':<11}{'dtype':<6}{'standard J':>13}{'ratio':>10}{'optimal J':>13}{'ratio':>10}"
          f"{'memory share':>14}")
    for tier, by_dt in doc["gpu"].items():
        for dt, v in by_dt.items():
            r = doc["ratios"][tier][dt]
            print(f"{tier:<11}{dt:<6}{v['standard_j_per_game']:>13.4g}{r['standard']:>9.3g}x"
                  f"{v['optimal_j_per_game']:>13.4g}{r['optimal']:>9.3g}x{100 * v['memory_share']:>13.1f}%")
    for size, d in doc["digital"].items():
        print(f"{'digital':<11}{'int8':<6}" if size == "standard" else f"{'':<17}", end="")
        print(f"{size} {d['j_per_game']:.4g} J per game, ratio {d['ratio']:.3g}x (compute {d['compute_j']:.3g} + "
              f"SRAM {d['sram_j']:.3g} + leakage {d['leakage_j']:.3g} J per step; docs/energy-model.md §9.1)")
    print("bias hold per step (ms) that reproduces the paper's published ratios (the memristive side is linear "
          "in the hold):")
    for tier, by_dt in doc["hold_for_ratio"].items():
        for dt, sizes in by_dt.items():
            print(f"  {tier:<10}{dt:<6}" + "  ".join(
                f"{size} {s['ratio']:g}x: " + (f"{s['bias_hold_s'] * 1e3:.4g} ms" if s["bias_hold_s"] is not None
                                               else "none") for size, s in sizes.items()))


def _waterfall(args: argparse.Namespace, a, spec, doc: dict, device=None) -> dict:
    import torch

    from dataclasses import replace

    from stoxbar.crossbar import EnergyLedger
    from stoxbar.peripherals import PeripheryConfig
    from stoxbar.pong.checkpoint import checkpoint_source, chip_device, load_agent
    from stoxbar.pong.accounting import boundaries
    from stoxbar.pong.env import REPEAT_ACTION_PROBABILITY
    from stoxbar.pong.evaluate import build_analog_cell, play_games
    from stoxbar.scripts.energy import accel_from_args
    from stoxbar.pong.paper import (gap_decomposition, game_inputs, gpu_tiers, pulse_statistics, ratio_vs_step_period,
                                    waterfall, waterfall_figure, waterfall_table)

    if args.games < 1:
        raise ConfigError(f"--games = {args.games}: allowed range is [1, inf)")
    checkpoint = args.checkpoint
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"--checkpoint {checkpoint}: no such file")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    agent, ckpt = load_agent(checkpoint)
    source = {"checkpoint": checkpoint, **checkpoint_source(checkpoint, ckpt)}
    device = device if device is not None else chip_device(agent, checkpoint)
    periphery = PeripheryConfig()
    periphery = replace(periphery, dac=replace(periphery.dac, v_read_v=device.v_read_v))  # the DAC drives the device's read
    periphery = apply_steps(periphery, bias_steps(args))
    ledger = EnergyLedger()
    build_analog_cell(agent, device, periphery).attach(ledger, "stp")
    # the waterfall's quoted numbers come from games without sticky actions (the training protocol, docs/stpn.md §8)
    res = play_games(agent, args.games, args.seed, True, 27000, periphery, ledger, sticky=REPEAT_ACTION_PROBABILITY)
    games = len(res.scores)
    by_comp, g_sum, v2g_sum = game_inputs(agent, boundaries(res.ledger))
    per_game = {c: j / games for c, j in by_comp.items()}
    steps = round(res.agent_steps / games)
    pulses = pulse_statistics(res.ledger, res.agent_steps, agent.arch.n_synapses)
    steps_wf = waterfall(per_game, steps, g_sum, v2g_sum, agent.arch, a, spec,
                         pulses_per_game=pulses["pulses"] / games)
    periods = (1e-3, 1e-2, 4 / 60, 0.3, 1.0, 10.0)
    rows = ratio_vs_step_period(per_game, steps, agent.arch, periods, spec, accel=accel_from_args(args))
    print(f"\nwaterfall over {games} game(s) of {checkpoint} (scores {res.scores}, {steps} steps per game)")
    print(f"{'step':<58}{'memristive J':>13}{'GPU J':>11}{'factor':>9}{'ratio':>10}")
    for s in steps_wf:
        print(f"{s.label:<58}{s.memristive_j:>13.4g}{s.gpu_j:>11.4g}{s.factor:>9.3g}{s.ratio:>9.4g}x")
        if s.note:
            print(f"    {s.note}")
    print(f"pulses: {pulses}")
    gap = gap_decomposition(doc, math.fsum(per_game.values()), steps, gpu_tiers(agent.arch, steps, "fp32", spec,
                                                                                 accel=accel_from_args(args)))
    print(f"\nthe gap between the paper's {gap[0]['published_ratio']:g}x and ours, at a "
          f"{gap[0]['bias_hold_s'] * 1e3:.4g} ms paper hold: ratio = published / (memristive side x GPU side)")
    for g in gap:
        print(f"  {g['tier']:<10} ours {g['our_ratio']:>9.4g}x = {g['published_ratio']:g} / "
              f"({g['memristive_factor']:.3g} x {g['gpu_factor']:.3g})")
    print("\nsystem ratio against the step period (bias held for the whole period):")
    for r in rows:
        print(f"  {r['step_period_s']:>8.4g} s: " + "  ".join(f"{t} {r[f'ratio_{t}']:.3g}x" for t in
                                                         ("roofline", "latency", "dedicated", "digital")))
    waterfall_figure(steps_wf, rows, args.waterfall, doc["ratio_vs_hold"])
    print(f"wrote {args.waterfall}")
    return {**source, "games": games, "scores": res.scores, "steps_per_game": steps, "table": waterfall_table(steps_wf),
            "ratio_vs_step_period": rows, "gap_decomposition": gap, "pulses": pulses, "system_by_component_j_per_game": per_game,
            "g_long_term_sum_s": g_sum, "v2g_sum_w_per_v0": v2g_sum}
