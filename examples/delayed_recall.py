"""Delayed match-to-sample on STO short-term plasticity: the bias must set tau to match the delay.

A task outside Pong that uses what only volatile synapses give. Every trial a sample -- one of
``K`` random +-1 patterns ``p`` -- is stored as a Hebbian short-term trace on an ``n x n`` STO
crossbar whose long-term weights are 0: the request ``w0 p p^T`` goes to the synapses as discrete
short-term pulses (``apply_short_term``). After a delay ``D`` (the trace decays under the held
bias, ``decay``) a probe ``q`` is read through the array (DAC -> tiles -> ADC): half of the trials
it is the sample (match), otherwise the previous trial's sample (a lure, the classic proactive
interference of delayed match-to-sample). The familiarity ``q . (F q) / n^2`` -- about
``w0 exp(-age / tau)`` for a pattern stored ``age`` seconds ago -- is compared with a fixed
threshold ``w0 / 4`` (assumption of this example's read-out). Trials follow each other every
``D + ITI`` seconds.

The bias sets the decay constant (``device.v_bias_for_tau``). A match needs ``exp(-D/tau) > 1/4``,
i.e. tau > D / ln 4; rejecting the lure, stored ``2D + ITI`` before the probe, needs
``exp(-(2D + ITI)/tau) < 1/4``. So recall works in a band of tau around D and fails on both sides,
and a longer tau costs more bias energy (a higher bias is held on every synapse). Everything the
chip does is booked in one energy ledger (pulses, bias, reads); the probe read at the best tau also
runs through ``stoxbar.analyze``.

    python examples/delayed_recall.py [--small]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

import torch


def make_layer(n: int, device, seed: int):
    """An n x n STO crossbar with long-term weights 0 and one chip of short-term state."""
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.parameters.mapping import MappingParameter

    from stoxbar.crossbar import STORPUConfig

    torch.manual_seed(seed)
    cfg = STORPUConfig(device=device, mapping=MappingParameter(weight_scaling_omega=0.0))
    layer = AnalogLinear(n, n, bias=False, rpu_config=cfg)
    layer.eval()
    layer.set_weights(torch.zeros(n, n))
    layer.analog_module.set_batch(1)
    return layer


@torch.no_grad()
def run_tau(tau_s: float, patterns: torch.Tensor, order: torch.Tensor, match: torch.Tensor, delay_s: float,
            iti_s: float, w0: float, device, seed: int) -> Dict[str, Any]:
    """Trials of one tau: accuracy, hit and false-alarm rates, and the ledger of everything the chip did."""
    from stoxbar.crossbar import EnergyLedger, attach_ledger, flush_events

    k, n = patterns.shape
    layer = make_layer(n, device, seed)
    tiles = layer.analog_module
    v_bias = float(device.v_bias_for_tau(tau_s))
    tiles.set_bias(torch.full((n, n), v_bias))
    ledger = EnergyLedger()
    attach_ledger(layer, ledger, prefix="memory")
    hits = false_alarms = correct = 0
    apply_short_term = tiles.apply_short_term  # the substrate's short-term operation
    for trial, idx in enumerate(order.tolist()):
        p = patterns[idx]
        apply_short_term((w0 * torch.outer(p, p)).unsqueeze(0))         # store the sample: Hebbian pulses
        tiles.decay(delay_s)                                            # the delay under the held bias
        lure = int(order[trial - 1]) if trial > 0 and int(order[trial - 1]) != idx else (idx + 1) % k
        q = p if bool(match[trial]) else patterns[lure]
        y = layer(q.unsqueeze(0))[0]                                    # probe read through the array
        said_match = float(q @ y) / (n * n) > w0 / 4
        correct += int(said_match == bool(match[trial]))
        hits += int(said_match and bool(match[trial]))
        false_alarms += int(said_match and not bool(match[trial]))
        tiles.decay(iti_s)                                              # until the next sample
    flush_events(layer)  # book what the chip recorded before the ledger is read
    trials, n_match = len(order), int(match.sum())
    return {"tau_s": tau_s, "v_bias_v": v_bias, "accuracy": correct / trials,
            "hit_rate": hits / max(n_match, 1), "false_alarm_rate": false_alarms / max(trials - n_match, 1),
            "energy_per_trial_j": ledger.total_j / trials,
            "by_component_j_per_trial": {c: j / trials for c, j in ledger.by_component().items()},
            "layer": layer, "probe": q}


def run(small: bool = False, seed: int = 0, delay_s: float = 1.0, iti_s: float = 1.0) -> Dict[str, Any]:
    """Sweep tau around the delay; returns accuracy and energy per tau, and the analyze report."""
    from stoxbar import analyze
    from stoxbar.devices import presets

    device = presets.sto_2024()
    n, k = (32, 8) if small else (64, 16)
    trials = 24 if small else 80
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 2, (k, n), generator=gen).float() * 2 - 1
    order = torch.randint(0, k, (trials,), generator=gen)
    match = torch.rand(trials, generator=gen) < 0.5
    w0 = max(device.short_term_levels()[1]) / device.g_range_s  # one pulse of the top level (weight units)
    lo, hi = float(device.tau_s(device.v_bias_min_v)), float(device.tau_s(device.v_bias_max_v))
    factors = (0.1, 0.3, 1.0, 3.0, 30.0) if small else (0.1, 0.3, 0.6, 1.0, 1.5, 3.0, 10.0, 30.0)
    taus = sorted({min(max(f * delay_s, lo), hi) for f in factors})
    rows = [run_tau(t, patterns, order, match, delay_s, iti_s, w0, device, seed) for t in taus]
    best = max(rows, key=lambda r: (r["accuracy"], -r["energy_per_trial_j"]))
    report = analyze(best["layer"], best["probe"].unsqueeze(0), programming=False)
    return {"n": n, "patterns": k, "trials": trials, "delay_s": delay_s, "iti_s": iti_s, "rows": rows,
            "best_tau_s": best["tau_s"], "recall_read": report}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="32 x 32 synapses, 24 trials per tau (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delay", type=float, default=1.0, help="delay D between storing and the cue (s)")
    ap.add_argument("--iti", type=float, default=1.0, help="interval from the cue to the next trial (s)")
    args = ap.parse_args(argv)
    out = run(args.small, args.seed, args.delay, args.iti)
    print(f"delayed match-to-sample: {out['patterns']} patterns of {out['n']}, {out['trials']} trials per tau, "
          f"delay {out['delay_s']:g} s, next sample {out['iti_s']:g} s later (chance 0.5)")
    print(f"  {'tau (s)':>9}{'V_bias (V)':>12}{'tau/D':>8}{'accuracy':>10}{'hits':>7}{'f.a.':>7}{'J per trial':>14}"
          "   top components")
    for r in out["rows"]:
        top = sorted(r["by_component_j_per_trial"].items(), key=lambda kv: -kv[1])[:3]
        print(f"  {r['tau_s']:>9.3g}{r['v_bias_v']:>12.3f}{r['tau_s'] / out['delay_s']:>8.3g}{r['accuracy']:>10.2f}"
              f"{r['hit_rate']:>7.2f}{r['false_alarm_rate']:>7.2f}{r['energy_per_trial_j']:>14.4g}   " + ", ".join(f"{c} {j:.3g}" for c, j in top))
    print(f"best tau {out['best_tau_s']:.3g} s; one probe read at that tau (analyze):")
    print(out["recall_read"].table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
