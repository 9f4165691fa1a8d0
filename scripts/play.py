"""``stoxbar play``: the m-STPN agent plays Pong on the simulated STO chip; score and energy.

The shipped checkpoint's STP layer is programmed onto STO tiles (``STORPUConfig`` with the
default device and periphery presets); every agent step runs DAC -> tiles -> ADC, the short-term
pulses and the decay over the real step period, and books the energy. ``--digital`` plays the
same checkpoint in float for comparison.

May import: everything in stoxbar (the top of the dependency order).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import os
import sys

import torch

from stoxbar.core.fsio import check_new_file
from stoxbar.pong.ablate import ABLATIONS, apply_ablation, check_ablation
from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT, checkpoint_source
from stoxbar.pong.chips import MAX_CHIPS, check_games_chips
from stoxbar.pong.env import EVAL_STICKY, check_sticky
from stoxbar.pong.scores import score_summary
from stoxbar.scripts.energy import (accel_from_args, add_accel_arguments, add_device_argument,
                                    add_periphery_arguments, periphery_from_args)
from stoxbar.core.validation import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stoxbar play``."""
    p.add_argument("--games", type=int, default=1,
                   help="number of games (one after another; with --chips all together)")
    p.add_argument("--chips", type=int, default=None, metavar="C",
                   help=f"play the games together on C independent chip instances (batched, one vector env; "
                        f"--games a multiple of C, C in [1, {MAX_CHIPS}]; default: one chip, games one after another)")
    p.add_argument("--torch-device", dest="torch_device", default="cpu", metavar="TORCH_DEVICE",
                   help="torch device of the batched chips (--chips): cpu, cuda, cuda:1, ... (--device names the "
                        "memristive device)")
    p.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT), help="agent checkpoint (.pt)")
    add_device_argument(p, None, "; the chip's device (default: the one the checkpoint was trained for; the "
                        "checkpoint's own preset is never imported)")
    add_periphery_arguments(p)
    add_accel_arguments(p)
    p.add_argument("--digital", action="store_true", help="play in float (no chip) for comparison")
    p.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=True,
                   help="take the most likely action (--no-greedy: sample from the policy)")
    p.add_argument("--max-steps", type=int, default=27000, help="agent steps per game at most (108k frames)")
    p.add_argument("--sticky", type=float, default=EVAL_STICKY, metavar="P",
                   help="sticky-action probability in [0, 1) (default 0.25: Machado et al. 2018, ALE v5)")
    p.add_argument("--ablate", default="none", metavar="NAME",
                   help="play with part of the plasticity switched off: " + ", ".join(ABLATIONS))
    p.add_argument("--seed", type=int, default=0, help="seed of the games and the chip's noise")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 for games one after another, whose per-step tensors are small; "
                        "with --chips, one per core: 1.46x faster batched play on 2 cores, BENCHMARKS.md)")
    p.add_argument("--env-threads", dest="env_threads", type=int, default=None,
                   help="emulator threads of the vector env with --chips (default: one per core; 1.3x faster batched "
                        "play than one on 2 cores, the same games, BENCHMARKS.md)")
    p.add_argument("--gpu-measured", dest="gpu_measured", default=None, metavar="FILE",
                   help="a benchmarks/gpu_measure.py file whose measured agent step is put beside the modelled GPU "
                        "tiers (default: the shipped NVIDIA H200 measurement, benchmarks/gpu/; 'none': leave it out)")
    p.add_argument("--json", default=None, help="write the report here (never overwrites)")


def main(args: argparse.Namespace) -> int:
    """Run ``stoxbar play``."""
    from tqdm import tqdm

    from stoxbar.core.compat import versions
    from stoxbar.crossbar import EnergyLedger, write_json_atomic
    from stoxbar.crossbar.costs import describe as describe_periphery
    from stoxbar.devices import presets
    from stoxbar.pong.checkpoint import chip_device, load_agent
    from stoxbar.pong.evaluate import build_analog_cell, energy_report, play_games
    from stoxbar.pong.paper import gpu_tiers

    # every argument is checked before the first game
    if args.threads is None:
        args.threads = 1 if args.chips is None else (os.cpu_count() or 1)
    if args.env_threads is None:
        args.env_threads = os.cpu_count() or 1
    for flag, value in (("--games", args.games), ("--max-steps", args.max_steps), ("--threads", args.threads),
                        ("--env-threads", args.env_threads)):
        if value < 1:
            raise ConfigError(f"{flag} = {value}: allowed range is [1, inf)")
    if args.seed < 0:
        raise ConfigError(f"--seed = {args.seed}: allowed range is [0, inf)")
    check_sticky(args.sticky, "--sticky")
    if args.chips is not None:
        check_games_chips(args.games, args.chips)
        check_torch_device(args.torch_device, "--torch-device")
    elif args.torch_device != "cpu":
        raise ConfigError(f"--torch-device = {args.torch_device!r}: only the batched chips (--chips) run on another "
                          "torch device")
    check_ablation(args.ablate, "--ablate")
    if args.json:
        check_new_file(args.json, "--json")
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file; train one with `stoxbar train`")
    accel = accel_from_args(args)
    measured = gpu_measurement_from_args(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    agent, ckpt = load_agent(args.checkpoint)
    source = checkpoint_source(args.checkpoint, ckpt)  # which state of the file was played
    arch = agent.arch
    apply_ablation(agent, args.ablate, ckpt)
    if arch.cell != "mstpn" and not args.digital:
        raise ConfigError(f"checkpoint cell = {arch.cell!r}: only an m-STPN maps onto the STO chip (use --digital)")
    # --preset is named on the command line (may be module:factory); the checkpoint's is data (never imported)
    device = presets.get_preset(args.preset, "--device") if args.preset else chip_device(agent, args.checkpoint)
    periphery = periphery_from_args(args, device)
    if getattr(args, "bias_addressing", None) is None and arch.decay_addressing != periphery.bias_addressing:
        # an agent that learned its decay under a scheme is played on a chip wired for it
        periphery = replace(periphery, bias_addressing=arch.decay_addressing)
    ledger = EnergyLedger()
    bias_report = None
    if not args.digital:
        cell = build_analog_cell(agent, device, periphery)
        cell.attach(ledger, "stp")
        bias_report = cell.chip.bias_report  # how far the held bias is from the trained one (V)
        print(f"bias addressing {periphery.bias_addressing}, duty {periphery.bias_duty:g}: held bias - trained "
              f"bias RMS {bias_report.rms_residual_v * 1e3:.4g} mV, max {bias_report.max_residual_v * 1e3:.4g} mV, "
              f"{bias_report.clipped} cells clipped to the device window"
              + (f"; the wires drop the held bias by up to {bias_report.wire_drop_max_v * 1e3:.4g} mV "
                 f"(tau off by up to {100 * bias_report.wire_tau_err_max:.3g} %)"
                 if periphery.parasitics.mode != "off" else ""))

    if args.chips is not None:
        return _main_chips(args, agent, arch, device, periphery, ledger, source, accel, measured)
    bar = tqdm(total=args.games, desc="playing on the STO chip" if not args.digital else "playing (float)",
               unit="game")

    def after_game(score: float) -> None:
        bar.update(1)
        bar.set_postfix(score=score)

    result = play_games(agent, args.games, args.seed, args.greedy, args.max_steps,
                        None if args.digital else periphery, ledger, after_game, sticky=args.sticky)
    bar.close()
    cut = [i for i, t in enumerate(result.truncated) if t]  # stopped at --max-steps before the game ended
    per_game = [{"game": i, "env_seed": args.seed + i, "score": s, "steps": n, "truncated": t,
                 **({"energy_j": e} if e else {})}
                for i, (s, n, t, e) in enumerate(zip(result.scores, result.steps, result.truncated,
                                                     result.energy_per_game or [{}] * len(result.scores)))]
    report = {
        "checkpoint": str(args.checkpoint), **source, "arch": arch.to_dict(),
        "mode": "digital" if args.digital else "analog",
        "device_preset": args.preset or arch.device_preset, "sticky": args.sticky, "ablate": args.ablate,
        "score": score_summary(result.scores), "per_game": per_game,
        "games": args.games, "agent_steps": result.agent_steps, "steps_per_game": result.steps,
        "max_steps": args.max_steps, "truncated_games": cut,
        "simulated_seconds": result.simulated_s, "wall_seconds": result.wall_s, "greedy": args.greedy,
        "seed": args.seed, "synapses": arch.n_synapses, "periphery": describe_periphery(periphery, device),
        "bias_report": None if bias_report is None else vars(bias_report),
        "energy": energy_report(result, arch, analog=not args.digital),
        "energy_per_game_spread_j": result.energy_spread(),
        "gpu_tiers": gpu_tiers(arch, result.agent_steps, accel=accel, measured=measured),
        "command": ["stoxbar", *sys.argv[1:]], "versions": versions(),
    }
    _print(report)
    if args.json:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


def gpu_measurement_from_args(args: argparse.Namespace):
    """The GPU measurement of ``--gpu-measured`` (validated; None for 'none'), or the shipped one."""
    from stoxbar.core.fsio import read_json
    from stoxbar.peripherals.gpu_baseline import validate_measurement
    from stoxbar.pong.paper import DEFAULT_GPU_MEASUREMENT, shipped_gpu_measurement

    if args.gpu_measured is None:
        path = shipped_gpu_measurement()
        if path is None:  # an install without the source tree's benchmarks/
            print(f"note: no GPU measurement beside this install ({DEFAULT_GPU_MEASUREMENT}); the GPU tiers are "
                  "models only")
            return None
    elif args.gpu_measured == "none":
        return None
    else:
        path = args.gpu_measured
    if not os.path.isfile(path):
        raise ConfigError(f"--gpu-measured = {path!r}: no such file; allowed: a benchmarks/gpu_measure.py JSON "
                          "or 'none'")
    try:
        validate_measurement(read_json(path))
    except ConfigError as exc:  # damaged JSON or not the schema
        raise ConfigError(f"--gpu-measured = {path!r}: {exc}") from None
    return path


def _print_measured(tiers: dict, games: int, system_j: float | None = None) -> None:
    """One line per measured GPU tier (docs/paper-energy.md §2.3): J per game, its split, and the ratio
    to ``system_j`` (J per game) where given."""
    for name, m in tiers.items():
        if not name.startswith("measured"):
            continue
        j = m["total_j"] / games
        ratio = f", {j / system_j:.4g}x the system" if system_j else ""
        print(f"GPU measured, {m['gpu']}, {m['batch']} game{'s' if m['batch'] > 1 else ''} at a time "
              f"({m['mode'].replace('_', ' ')}, fp32): {j:.4g} J per game{ratio} = idle floor "
              f"{m['by_component']['idle_floor'] / games:.4g} + above idle {m['by_component']['above_idle'] / games:.4g}"
              f" J, {m['s_per_step'] * 1e6:.4g} us per step ({m['measured_from']}; docs/paper-energy.md §2.3)")


def check_torch_device(name: str, flag: str) -> str:
    """``name`` if torch can place tensors there, else a ConfigError naming ``flag``."""
    try:
        dev = torch.device(name)
        torch.zeros(1, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"{flag} = {name!r}: not a usable torch device here ({str(exc).splitlines()[0]}); "
                          "allowed: cpu, or cuda[:N] where CUDA exists") from None
    return name


def _main_chips(args: argparse.Namespace, agent, arch, device, periphery, ledger, source, accel=None,
                measured=None) -> int:
    """``stoxbar play --chips C``: the games together on C chip instances (stoxbar.pong.chips)."""
    from stoxbar.core.compat import versions
    from stoxbar.crossbar import write_json_atomic
    from stoxbar.crossbar.costs import describe as describe_periphery
    from stoxbar.pong.accounting import boundaries, gpu_baseline
    from stoxbar.pong.chips import energy_per_game, play_chips
    from stoxbar.pong.paper import gpu_tiers

    result = play_chips(agent, args.games, args.chips, args.seed, args.greedy, args.max_steps,
                        None if args.digital else periphery, ledger, sticky=args.sticky, device=args.torch_device,
                        env_threads=args.env_threads)
    cut = [i for i, t in enumerate(result.truncated) if t]
    per_game = [{"game": i, **g} for i, g in enumerate(result.per_game(args.seed))]
    energy = boundaries(result.ledger) if not args.digital else {}
    energy["gpu_baseline"] = gpu_baseline(arch, result.agent_steps)
    report = {
        "checkpoint": str(args.checkpoint), **source, "arch": arch.to_dict(),
        "mode": "digital" if args.digital else "analog",
        "device_preset": args.preset or arch.device_preset, "sticky": args.sticky, "ablate": args.ablate,
        "chips": args.chips, "games_per_chip": args.games // args.chips, "torch_device": args.torch_device,
        "score": score_summary(result.scores), "chip_means": result.chip_means(), "per_game": per_game,
        "games": args.games, "agent_steps": result.agent_steps, "steps_per_game": result.steps,
        "simulated_seconds": result.simulated_s, "gpu_tiers": gpu_tiers(arch, result.agent_steps, accel=accel, measured=measured),
        "max_steps": args.max_steps, "truncated_games": cut, "wall_seconds": result.wall_s, "threads": args.threads,
        "env_threads": args.env_threads,
        "energy_per_game_j": energy_per_game(result.ledger, args.games) if not args.digital else {},
        "energy_per_game_spread_j": result.energy_spread(),
        "energy": energy, "greedy": args.greedy, "seed": args.seed, "synapses": arch.n_synapses,
        "periphery": describe_periphery(periphery, device),
        "command": ["stoxbar", *sys.argv[1:]], "versions": versions(),
    }
    s = report["score"]
    print(f"score mean {s['mean']:+.2f}, 95 % CI [{s['ci95']['lower']:+.2f}, {s['ci95']['upper']:+.2f}] (bootstrap), "
          f"std {s['std']:.2f}, min {s['min']:+.0f} over {s['n']} games on {args.chips} chips "
          f"({report['mode']}, sticky p = {args.sticky}, ablation {args.ablate}, {result.wall_s:.1f} s wall)")
    print("per game " + " ".join(f"{v:+.0f}" for v in s["per_game"]))
    print("per chip mean " + " ".join(f"{v:+.2f}" for v in report["chip_means"]))
    if cut:
        print(f"warning: {len(cut)} of {args.games} games cut short at --max-steps {args.max_steps} "
              f"(game {', '.join(str(i + 1) for i in cut)}): their scores are of partial games")
    spread = report["energy_per_game_spread_j"]
    for name, j in report["energy_per_game_j"].items():
        sp = spread.get(name)
        extra = f"; per game std {sp['std']:.3g}, min {sp['min']:.4g}, max {sp['max']:.4g}" if sp else ""
        print(f"{name:<14}{j:>12.4g} J per game (mean over {args.games} games, {result.agent_steps} agent steps{extra})")
    _print_measured(report["gpu_tiers"], args.games, report["energy_per_game_j"].get("system"))
    if args.json:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _print(report: dict) -> None:
    from stoxbar.studies.report import ordered_boundaries

    s = report["score"]
    print(f"\nscore per game {s['per_game']}  mean {s['mean']:+.2f}   ({report['mode']}, {report['agent_steps']} agent "
          f"steps = {report['simulated_seconds']:.1f} s of play in {report['wall_seconds']:.1f} s wall)")
    print(f"score mean {s['mean']:+.2f}, 95 % CI [{s['ci95']['lower']:+.2f}, {s['ci95']['upper']:+.2f}] (bootstrap), "
          f"std {s['std']:.2f}, min {s['min']:+.0f} over {s['n']} games; sticky actions p = {report['sticky']}, "
          f"ablation {report['ablate']}")
    energy, games = report["energy"], report["games"]
    if report["truncated_games"]:
        print(f"warning: {len(report['truncated_games'])} of {games} games cut short at --max-steps "
              f"{report['max_steps']} (game {', '.join(str(i + 1) for i in report['truncated_games'])}): "
              "scores and energies are of partial games")
    tiers = report.get("gpu_tiers") or {"roofline": energy["gpu_baseline"]}
    widths = {t: max(15, len(t) + 5) for t in tiers}
    print(f"{'boundary':<14}{'J per game':>14}" + "".join(f"{'vs ' + t:>{widths[t]}}" for t in tiers))
    # the last column is the digital-accelerator baseline (docs/energy-model.md §9.1), the others GPU tiers
    for name in ordered_boundaries(energy):
        e = energy[name]
        if name.startswith("gpu"):
            continue
        print(f"{name:<14}{e['total_j'] / games:>14.4g}" + "".join(
            f"{g['total_j'] / e['total_j']:>{widths[t] - 1}.4g}x" if e["total_j"] > 0 else f"{'n/a':>{widths[t]}}"
            for t, g in tiers.items()))
    print("GPU, batch 1 (" + ", ".join(f"{t} {g['total_j'] / games:.4g} J" for t, g in tiers.items()
                                   if t != "digital" and not t.startswith("measured"))
          + " per game; docs/paper-energy.md §2)")
    for name, sp in report.get("energy_per_game_spread_j", {}).items():
        print(f"{name:<14}per game: std {sp['std']:.3g} J, min {sp['min']:.4g} J, max {sp['max']:.4g} J")
    _print_measured(tiers, games)
    if "digital" in tiers:
        d = tiers["digital"]
        print(f"digital accelerator ({d['accelerator']}, int{d['mac_bits']} MACs, {d['tech_node_nm']:g} nm): "
              f"{d['total_j'] / games:.4g} J per game = compute {d['by_component']['compute'] / games:.3g} + SRAM "
              f"{d['by_component']['sram'] / games:.3g} + leakage {d['by_component']['leakage'] / games:.3g} J "
              "(docs/energy-model.md §9.1)")
    if "system" in energy:
        print("\nsystem energy by component (J per game, share):")
        tot = energy["system"]["total_j"]
        for comp, j in sorted(energy["system"]["by_component"].items(), key=lambda kv: -kv[1]):
            print(f"  {comp:<24}{j / games:>12.4g}{100 * j / tot if tot > 0 else 0.0:>8.1f}%")
